"""Ready-made executors built on the public ``runtime`` API, and the demo (``python -m executors.demo``).

- :class:`TextSegmenter`: long texts -> passages (with parent id, uri and line numbers).
- :class:`HashingTextEncoder`: text -> L2-normalised float32 embedding, no model needed.
- :class:`MemmapIndexer`: documents and embeddings on disk, exact top-k search.
- :class:`SparseIndexer`: BM25 over an inverted index of identifier-aware terms (lexical search).
- :class:`LSAEncoder`: a dense encoder fitted on the corpus (TF-IDF + randomized SVD), ``/fit``.
- :class:`FusionRanker`: joins the rankings of parallel search branches (normalised sum or RRF).

Example
-------
>>> from runtime import Flow
>>> from executors import HashingTextEncoder, MemmapIndexer, TextSegmenter
>>> f = (Flow(workspace='ws').add(uses=TextSegmenter).add(uses=HashingTextEncoder, replicas=2)
...      .add(uses=MemmapIndexer))
"""
from .encoders import HashingTextEncoder
from .fusion import FusionRanker
from .indexers import MemmapIndexer
from .lsa import LSAEncoder
from .segmenters import TextSegmenter
from .sparse import SparseIndexer

__all__ = ['FusionRanker', 'HashingTextEncoder', 'LSAEncoder', 'MemmapIndexer', 'SparseIndexer', 'TextSegmenter']
