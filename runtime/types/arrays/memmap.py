"""Jina 2's ``jina.types.arrays.memmap``: ``DocumentArrayMemmap``."""
from .._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {'DocumentArrayMemmap': 'runtime.memmap'})
