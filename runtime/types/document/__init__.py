"""Jina 2's ``jina.types.document``: ``Document``."""
from .._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {'Document': 'runtime.document'})
