"""Ready-made executors built on the public ``runtime`` API, and the demo (``python -m executors.demo``).

- :class:`TextSegmenter`: long texts -> passages (with parent id, uri and line numbers).
- :class:`HashingTextEncoder`: text -> L2-normalised float32 embedding, no model needed.
- :class:`MemmapIndexer`: documents and embeddings on disk, exact top-k search.

Example
-------
>>> from runtime import Flow
>>> from executors import HashingTextEncoder, MemmapIndexer, TextSegmenter
>>> f = (Flow(workspace='ws').add(uses=TextSegmenter).add(uses=HashingTextEncoder, replicas=2)
...      .add(uses=MemmapIndexer))
"""
from .encoders import HashingTextEncoder
from .indexers import MemmapIndexer
from .segmenters import TextSegmenter

__all__ = ['HashingTextEncoder', 'MemmapIndexer', 'TextSegmenter']
