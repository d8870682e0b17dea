"""Jina 2's ``jina.types.arrays.chunk``: ``ChunkArray``."""
from .._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {'ChunkArray': 'runtime.nested'})
