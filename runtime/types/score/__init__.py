"""Jina 2's ``jina.types.score``: ``NamedScore``."""
from .._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {'NamedScore': 'runtime.scores'})
