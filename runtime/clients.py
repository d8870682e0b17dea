"""Jina 2's ``jina.clients``: ``Client``, runtime's client of a Flow served over HTTP
(``runtime.Client``).

Example
-------
>>> from runtime.clients import Client  # doctest: +SKIP
>>> Client(port=12345).post('/index', Document(text='hi'))  # doctest: +SKIP
"""
from .types._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {'Client': 'runtime.serving.client'})
