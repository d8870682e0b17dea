"""Jina 2's ``jina.types.arrays``: ``DocumentArray``, ``DocumentArrayMemmap``, ``ChunkArray``,
``MatchArray``."""
from .._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {
    'DocumentArray': 'runtime.array', 'DocumentArrayMemmap': 'runtime.memmap',
    'ChunkArray': 'runtime.nested', 'MatchArray': 'runtime.nested',
})
