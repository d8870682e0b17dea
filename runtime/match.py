"""Exact nearest neighbours between two sequences of Documents, numpy only.

The distance matrix is never built whole: the right-hand embeddings are read in row
batches (each read once, so a ``DocumentArrayMemmap`` streams from disk), and for each
batch the queries go in blocks of at most a few tens of MB; each block is one matrix
product (BLAS) that already ranks the candidates, cut to the best ``limit`` per query
with ``argpartition`` and merged into a running best. Memory is O(queries x limit +
block), whatever the size of either side.

Where Jina 2.0 was wrong this does the right thing: ``normalization`` rescales with the
smallest and largest distance of each query over *all* candidates (Jina 2.0 used the
top-``limit`` only, and its batched variant each batch's own range); a zero embedding has
cosine distance 1 instead of NaN.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from .scores import SIMILARITY, is_distance

__all__ = ['match', 'METRICS']

#: The metrics computed natively; any other str needs ``use_scipy=True``.
METRICS = ('cosine', 'euclidean', 'sqeuclidean')
#: Rows of the right-hand side read at once, and the size of one block of distances.
DEFAULT_BATCH = 16384
_BLOCK_BYTES = 64 << 20


def _embeddings(docs: Any, side: str) -> np.ndarray:
    emb = docs.embeddings if hasattr(type(docs), 'embeddings') else None
    if emb is None and not hasattr(type(docs), 'embeddings'):
        from .array import _stack
        emb = _stack(docs, 'embedding')
    if emb is None:
        raise ValueError(f'match() needs embeddings: no document of the {side} ({len(docs)} documents) has one; '
                         f'set them first, e.g. docs.embeddings = encoder(docs)')
    if not isinstance(emb, np.ndarray):
        raise TypeError(f'match() works on numpy embeddings; the {side} has {type(emb).__name__}: '
                        f'convert it with np.asarray(...) first')
    if emb.dtype.kind not in 'fiub':
        raise TypeError(f'match() needs numeric embeddings; the {side} has dtype {emb.dtype}')
    return emb.reshape(len(emb), -1) if emb.ndim != 2 else emb


def _check_limit(limit: Any) -> int | None:
    """``limit`` as a positive int, or None for every candidate."""
    if limit is None or (isinstance(limit, float) and math.isinf(limit) and limit > 0):
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, float, np.integer)) or limit != limit:
        raise TypeError(f'limit takes a positive int (matches per document) or None for all, got {limit!r}')
    if limit <= 0:
        raise ValueError(f'limit must be larger than 0, got {limit}')
    return int(limit)


def _distance_fn(metric: str | Callable, use_scipy: bool) -> tuple[str | None, Callable | None]:
    """(native metric name, or None) and (a callable computing a block, or None)."""
    if callable(metric):
        return None, lambda x, y: np.asarray(metric(x, y))
    if not isinstance(metric, str):
        raise TypeError(f"metric takes 'cosine', 'euclidean', 'sqeuclidean' or a function "
                        f"f(X, Y) -> distances (len(X), len(Y)), got {type(metric).__name__}")
    if use_scipy:
        try:
            from scipy.spatial.distance import cdist
        except ImportError:
            raise ImportError(f"use_scipy=True needs scipy, which is not installed (pip install scipy); "
                              f"without it, metric can be one of {METRICS} or a function") from None
        return None, lambda x, y: cdist(x, y, metric)
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not built in: use one of {METRICS}, a function f(X, Y) -> "
                         f"distances, or use_scipy=True for scipy's metrics")
    return metric, None


def _check_kwargs(kwargs: dict) -> None:
    device = kwargs.pop('device', 'cpu')
    if device != 'cpu':
        raise ValueError(f"match(device={device!r}): only 'cpu' (numpy) is supported")
    if kwargs.pop('is_sparse', False):
        raise ValueError('match(is_sparse=True): sparse embeddings are not supported; pass dense numpy arrays')
    kwargs.pop('num_worker', None)  # Jina 2's thread count for building matches: no effect here by design
    if kwargs:
        raise TypeError(f'match() got unexpected arguments {sorted(kwargs)}; it takes metric, limit, normalization, '
                        f'metric_name, batch_size, exclude_self, traversal_ldarray, traversal_rdarray, only_id, '
                        f'use_scipy')


def _top_k(X: np.ndarray, Y: np.ndarray, k: int, native: str | None, fn: Callable | None,
           batch_size: int, want_range: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The ``k`` smallest distances of each row of X to the rows of Y, sorted, with their
    indices into Y; and each row's min / max over all of Y when ``want_range``.

    The native metrics cost one matrix product, a pass over the block's columns and one
    ``argpartition`` per block: cosine multiplies unit query rows and divides each block's
    columns by the candidates' norms (the largest result is the nearest); (sq)euclidean
    turns ``x.y`` into ``|y|^2 - 2 x.y``, which ranks each query's candidates as
    ``|x - y|^2`` does (``|x|^2`` is added to the chosen ones only).
    """
    nq, nd = len(X), len(Y)
    dt = np.result_type(X.dtype, Y.dtype, np.float32)
    X = np.ascontiguousarray(X, dtype=dt)
    largest = native == 'cosine'  # the block holds similarities: keep the largest
    if native == 'cosine':
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        X = X / np.where(norms > 0, norms, 1)
    elif native is not None:
        x2 = np.einsum('ij,ij->i', X, X)[:, None]
    best_d = np.full((nq, k), np.inf, dtype=dt)
    best_i = np.zeros((nq, k), dtype=np.int64)
    lo = np.full(nq, np.inf, dtype=dt) if want_range else None
    hi = np.full(nq, -np.inf, dtype=dt) if want_range else None
    qb = max(1, min(nq, _BLOCK_BYTES // (dt.itemsize * min(batch_size, nd))))
    rows = np.arange(nq)[:, None]
    for r0 in range(0, nd, batch_size):
        Yb = np.asarray(Y[r0:r0 + batch_size], dtype=dt)
        # What depends on the candidates alone is applied to each block's columns, not to
        # the batch's rows: a block is a few MB, the batch tens of MB, and their norms take
        # one pass without a temporary.
        if native is not None:
            y2 = np.einsum('ij,ij->i', Yb, Yb)
            if native == 'cosine':
                ynorm = np.sqrt(y2)
                ynorm[ynorm == 0] = 1
        YbT = Yb.T
        for q0 in range(0, nq, qb):
            Xq = X[q0:q0 + qb]
            if native is None:
                block = np.asarray(fn(Xq, Yb), dtype=dt)
                if block.shape != (len(Xq), len(Yb)):
                    raise ValueError(f'the metric function returned shape {block.shape} for inputs of '
                                     f'{len(Xq)} and {len(Yb)} rows; it must return ({len(Xq)}, {len(Yb)})')
            else:
                block = Xq @ YbT
                if native == 'cosine':
                    block /= ynorm
                else:  # |y|^2 - 2 x.y: |x - y|^2 but for |x|^2, the same for all of a row
                    block *= -2
                    block += y2
            kk = min(k, block.shape[1])
            if kk < block.shape[1]:
                idx = (np.argpartition(block, -kk, axis=1)[:, -kk:] if largest
                       else np.argpartition(block, kk - 1, axis=1)[:, :kk])
                vals = np.take_along_axis(block, idx, axis=1)
            else:
                idx = np.broadcast_to(np.arange(block.shape[1]), block.shape)
                vals = block
            if want_range:
                bmin, bmax = block.min(axis=1), block.max(axis=1)
            if native == 'cosine':
                vals = 1 - vals
                if want_range:
                    bmin, bmax = 1 - bmax, 1 - bmin
            elif native is not None:
                xq2 = x2[q0:q0 + qb]
                vals = np.maximum(vals + xq2, 0)  # rounding can make a square slightly negative
                if want_range:
                    bmin, bmax = np.maximum(bmin + xq2[:, 0], 0), np.maximum(bmax + xq2[:, 0], 0)
            if want_range:
                np.minimum(lo[q0:q0 + qb], bmin, out=lo[q0:q0 + qb])
                np.maximum(hi[q0:q0 + qb], bmax, out=hi[q0:q0 + qb])
            cand_d = np.concatenate([best_d[q0:q0 + qb], vals], axis=1)
            cand_i = np.concatenate([best_i[q0:q0 + qb], idx + r0], axis=1)
            keep = np.argpartition(cand_d, k - 1, axis=1)[:, :k]
            best_d[q0:q0 + qb] = np.take_along_axis(cand_d, keep, axis=1)
            best_i[q0:q0 + qb] = np.take_along_axis(cand_i, keep, axis=1)
    order = np.lexsort((best_i, best_d))  # by distance, then by position: ties are stable
    best_d, best_i = best_d[rows, order], best_i[rows, order]
    if native == 'euclidean':
        best_d = np.sqrt(best_d)
        if want_range:
            lo, hi = np.sqrt(lo), np.sqrt(hi)
    return best_d, best_i, lo, hi


def _normalize(dist: np.ndarray, bounds: Sequence[float], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Min-max rescale each row: its smallest distance over all candidates to ``a``, its
    largest to ``b`` (a row whose distances are all equal maps to ``a``)."""
    a, b = bounds
    span = (hi - lo)[:, None]
    ratio = np.divide(dist - lo[:, None], span, out=np.zeros_like(dist), where=span > 0)
    return a + ratio * (b - a)


def match(left: Any, right: Any, metric: str | Callable = 'cosine', limit: int | float | None = 20,
          normalization: tuple[float, float] | None = None, metric_name: str | None = None,
          batch_size: int | None = None, exclude_self: bool = False,
          traversal_ldarray: str | Sequence[str] | None = None,
          traversal_rdarray: str | Sequence[str] | None = None, only_id: bool = False,
          use_scipy: bool = False, **kwargs: Any) -> None:
    """Fill each left document's ``matches`` with its nearest right documents by embedding.

    Each match is a shallow copy of the right document (its arrays shared, its tags,
    scores, chunks and matches containers its own) with ``adjacency`` one more than the
    query's and ``scores[metric_name]`` set to the distance (smaller is closer), sorted
    closest first. A query's previous matches are replaced.

    Parameters
    ----------
    left, right : DocumentArray, DocumentArrayMemmap or any sequence of Documents
    metric : 'cosine' (default), 'euclidean', 'sqeuclidean', or f(X, Y) -> distances
        Cosine *distance* is ``1 - cosine similarity``.
    limit : int or None
        Matches per document (default 20, as Jina 2; None or ``math.inf`` for all).
    normalization : (a, b), optional
        Rescale each query's distances min-max into ``[a, b]``: its closest candidate gets
        ``a``, its farthest ``b``; ``(1, 0)`` turns distances into scores in [0, 1], larger
        is better then: the scores get ``op_name='similarity'``, which the shard merge and
        the rankers read (a 'cosine' score is a distance otherwise).
    metric_name : str, optional
        The score's name (default: the metric's name). A name that is not a distance's
        (``runtime.scores.DISTANCE_SCORES``) gets ``op_name='distance'`` while smaller is
        better, so that the shard merge still sorts the matches closest first.
    batch_size : int, optional
        Right-hand rows read at once (default 16384): bounds memory for big right sides.
    exclude_self : bool
        Skip right documents with the same id as the query.
    traversal_ldarray, traversal_rdarray : traversal paths, optional
        Match the documents these paths reach (e.g. ``['c']``) instead of the roots.
    only_id : bool
        Matches carry only the id (and the score, adjacency): faster for big documents.
    use_scipy : bool
        Compute a str ``metric`` with ``scipy.spatial.distance.cdist`` (needs scipy).

    Example
    -------
    >>> from runtime import DocumentArray, Document
    >>> a = DocumentArray([Document(id='q', embedding=np.array([0., 1.]))])
    >>> b = DocumentArray([Document(id=i, embedding=np.array(e)) for i, e in [('x', [1., 0.]), ('y', [1., 1.])]])
    >>> a.match(b, limit=1)
    >>> a[0].matches[0].id, round(float(a[0].matches[0].scores['cosine']), 4)
    ('y', 0.2929)
    """
    _check_kwargs(dict(kwargs))
    limit = _check_limit(limit)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size <= 0):
        raise ValueError(f'batch_size must be a positive int (right-hand rows per batch), got {batch_size!r}')
    if normalization is not None:
        if (not isinstance(normalization, (tuple, list)) or len(normalization) != 2
                or not all(isinstance(v, (int, float)) for v in normalization)):
            raise TypeError(f'normalization takes a pair (a, b) of numbers, e.g. (0, 1) or (1, 0), got {normalization!r}')
    native, fn = _distance_fn(metric, use_scipy)
    if metric_name is None:
        metric_name = getattr(metric, '__name__', 'metric') if callable(metric) else metric
    lhs = left.traverse_flat(traversal_ldarray) if traversal_ldarray else left
    rhs = right.traverse_flat(traversal_rdarray) if traversal_rdarray else right
    if not len(lhs) or not len(rhs):
        return
    X, Y = _embeddings(lhs, 'left-hand side'), _embeddings(rhs, 'right-hand side')
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f'match(): the embeddings have different sizes: {X.shape[1]} on the left, '
                         f'{Y.shape[1]} on the right')
    want = len(Y) if limit is None else min(len(Y), limit + (1 if exclude_self else 0))
    dist, idx, lo, hi = _top_k(X, Y, want, native, fn, int(batch_size or DEFAULT_BATCH), normalization is not None)
    if normalization is not None:
        dist = _normalize(dist, normalization, lo, hi)
    # The score's direction travels with it (the shard merge and the rankers read it):
    # normalized to (1, 0), a distance's name holds a similarity.
    larger_better = normalization is not None and normalization[0] > normalization[1]
    op_name = SIMILARITY if larger_better else '' if is_distance(metric_name) else 'distance'
    _fill_matches(lhs, rhs, dist, idx, limit or len(Y), metric_name, exclude_self, only_id, op_name)


def _fill_matches(lhs: Any, rhs: Any, dist: np.ndarray, idx: np.ndarray, limit: int, metric_name: str,
                  exclude_self: bool, only_id: bool, op_name: str = '') -> None:
    from .document import Document
    from .scores import NamedScore
    left_ids = {d.id for d in lhs}
    fetched: dict[int, Any] = {}  # a right document that matches several queries is read once
    for q, row_i, row_d in zip(lhs, idx.tolist(), dist.tolist()):
        found = []
        adjacency = q.adjacency + 1
        for j, value in zip(row_i, row_d):
            d = fetched.get(j)
            if d is None:
                d = fetched[j] = rhs[j]
            if exclude_self and d.id == q.id:
                continue
            if only_id:
                m = Document(id=d.id, adjacency=adjacency)
            else:
                m = Document(d, adjacency=adjacency)  # shallow copy: own containers, shared arrays
                if d.id in left_ids:
                    # Matching an array with itself: a match must not carry the query's own
                    # (or another query's) matches, or they nest without end.
                    m.matches = None
            m.scores[metric_name] = NamedScore(value, op_name=op_name) if op_name else value
            found.append(m)
            if len(found) >= limit:
                break
        matches = q.matches
        matches.clear()
        matches.extend(found)
