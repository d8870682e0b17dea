"""Jina 2's ``jina.types.arrays.document``: ``DocumentArray``."""
from .._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {'DocumentArray': 'runtime.array'})
