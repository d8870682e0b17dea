"""Jina 2's ``jina.types.arrays.match``: ``MatchArray``."""
from .._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {'MatchArray': 'runtime.nested'})
