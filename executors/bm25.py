"""BM25 scoring over postings kept as plain numpy arrays, and the record in which
``SparseIndexer`` logs a batch of postings before they are committed (``pack_index``).
"""
from __future__ import annotations

import json
import struct

import numpy as np

__all__ = ['POSTINGS', 'bm25_scores', 'pack_index', 'unpack_index']

#: The postings (and row lengths) of an index record, in this order after its JSON head.
POSTINGS = {'terms': np.int32, 'rows': np.int32, 'tf': np.uint16, 'name': np.uint16, 'lens': np.float32}


def pack_index(head: dict, cols: dict[str, np.ndarray]) -> list[bytes]:
    """An index record's payload: a JSON head (ids, new terms, where their rows and term ids
    start, how many postings) and the columns, raw; ``unpack_index`` reads it back.

    Example
    -------
    >>> cols = {'terms': [0, 1], 'rows': [0, 0], 'tf': [2, 1], 'name': [0, 0], 'lens': [3.0, 0.0]}
    >>> head, back = unpack_index(memoryview(b''.join(pack_index({'ids': ['a']}, cols))), True)
    >>> head['postings'], back['tf'].tolist()
    (2, [2, 1])
    """
    raw = json.dumps({**head, 'postings': len(cols['terms'])}).encode('utf-8')
    return [struct.pack('<I', len(raw)), raw,
            *(np.ascontiguousarray(cols[name], dtype).tobytes() for name, dtype in POSTINGS.items())]


def unpack_index(payload: memoryview, with_postings: bool) -> tuple[dict, dict[str, np.ndarray] | None]:
    (size,) = struct.unpack_from('<I', payload, 0)
    head = json.loads(bytes(payload[4:4 + size]))
    if not with_postings:
        return head, None
    n, rows = head['postings'], len(head['ids'])
    cols = {}
    pos = 4 + size
    for name, dtype in POSTINGS.items():
        count = 2 * rows if name == 'lens' else n
        cols[name] = np.frombuffer(payload, dtype, count, pos)
        pos += count * np.dtype(dtype).itemsize
    return head, cols


def bm25_scores(ptr: np.ndarray, post_doc: np.ndarray, post_tf: np.ndarray, doc_len: np.ndarray,
                terms: list[int], weights: list[float], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """BM25 score of every document for a query of ``terms`` (ids, each with a weight).

    ``score(d) = sum_t w_t * idf(t) * tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avg|d|))``
    with ``idf(t) = log(1 + (N - df + 0.5) / (df + 0.5))`` (never negative). Only the
    postings of the query's terms are read.

    Example
    -------
    >>> ptr = np.array([0, 2, 3]); docs = np.array([0, 1, 1]); tf = np.array([1., 3., 1.])
    >>> [round(s, 3) for s in bm25_scores(ptr, docs, tf, np.array([4., 4.]), [0], [1.0]).tolist()]
    [0.182, 0.287]
    """
    n = len(doc_len)
    scores = np.zeros(n, np.float32)
    if n == 0:
        return scores
    norm = k1 * (1.0 - b + b * doc_len / max(float(doc_len.mean()), 1e-9))
    for t, w in zip(terms, weights):
        lo, hi = int(ptr[t]), int(ptr[t + 1])
        if hi == lo:
            continue
        df = hi - lo
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        d = np.asarray(post_doc[lo:hi])
        tf = np.asarray(post_tf[lo:hi], np.float32)
        # A term's postings name each document once, so plain fancy-index += is exact.
        scores[d] += (w * idf) * tf * (k1 + 1.0) / (tf + norm[d])
    return scores
