"""Jina 2's ``jina.types.request``: ``Request`` / ``Response`` (what callbacks receive;
both are ``runtime.Response``)."""
from .._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {
    'Request': ('runtime.response', 'Response'), 'Response': 'runtime.response'})
