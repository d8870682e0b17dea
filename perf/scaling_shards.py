"""The shards half of the scaling benchmark (``perf.bench_scaling``): search over an index
split into shards.

An in-memory indexer (``MatIndexer``: one matrix, cosine top-10 by one matmul) indexes N
random unit vectors (100,000; 20,000 with ``--quick``) as one shard, and as ``shards=2``
with ``polling={'/index': 'any', '/search': 'all'}``; then both answer the same queries
(requests of 10; each timed run posts them again until 0.5 s have passed) and their
throughput is compared. The top-10 ids of a few queries are checked against each other and
against numpy in the parent.

Example
-------
>>> sh = measure_shards(2_000, 20, reps=1, min_s=0.0, env={'OMP_NUM_THREADS': '1'})  # doctest: +SKIP
>>> figures, search = shard_figures(sh, 2_000, 20)  # doctest: +SKIP
>>> figures['search_same_top10']['ok']  # doctest: +SKIP
True
"""
from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np

from perf.common import entry, median
from runtime import Document, DocumentArray, Executor, Flow, requests

__all__ = ['MatIndexer', 'measure_shards', 'shard_figures', 'INDEX_SIZE', 'QUERIES', 'QUERY_REQUEST_SIZE',
           'INDEX_REQUEST_SIZE', 'TOP_K', 'SEARCH_REPS', 'CHECK_QUERIES']

#: Vectors of the index and the queries: BERT-sized, as the replicas benchmark's embeddings.
DIM = 768
INDEX_SIZE = {'full': 100_000, 'quick': 20_000, 'tiny': 2_000}
QUERIES = {'full': 200, 'quick': 100, 'tiny': 20}
QUERY_REQUEST_SIZE = 10
INDEX_REQUEST_SIZE = 1000
TOP_K = 10
#: Timed rounds of a full run (--quick: 3, --tiny: 1).
SEARCH_REPS = 5
#: Queries whose top-10 ids are compared: 1 shard, 2 shards and numpy in the parent.
CHECK_QUERIES = 5


class MatIndexer(Executor):
    """An in-memory index: ``/index`` appends the (normalized) embeddings, ``/search``
    scores the queries against all of them with one matmul and keeps the top ``top_k``
    (parameter, default 10) as matches carrying only an id and ``scores['cosine']`` (a
    distance, ``1 - similarity``, as ``DocumentArray.match`` writes it).
    ``/stats`` answers one document per shard with ``tags['n']`` (its size).

    Example
    -------
    >>> with Flow().add(uses=MatIndexer, shards=2, polling={'/search': 'all'}) as f:  # doctest: +SKIP
    ...     f.index(docs)
    ...     f.search(queries, parameters={'top_k': 10}, on_done=print)
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._parts: list[np.ndarray] = []  # (rows, dim) blocks indexed since the last search
        self._ids: list[str] = []
        # Every vector as a column of one C-contiguous (dim, n) matrix, built by the first
        # search after an index: with a few queries per request the matmul is bound by
        # memory bandwidth, and this layout reads faster than the transpose of (n, dim) rows.
        self._mat_t = np.zeros((DIM, 0), np.float32)

    @requests(on='/index')
    def index(self, docs: DocumentArray, **kwargs: Any) -> None:
        x = np.array(docs.embeddings, dtype=np.float32)  # a copy: the request's memory is not ours
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))
        self._parts.append(x)
        self._ids.extend(d.id for d in docs)

    def _matrix_t(self) -> np.ndarray:
        if self._parts:
            self._mat_t = np.ascontiguousarray(np.concatenate([self._mat_t.T, *self._parts]).T)
            self._parts = []
        return self._mat_t

    @requests(on='/search')
    def search(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> None:
        mat_t = self._matrix_t()
        top_k = int(parameters.get('top_k', TOP_K))
        n = mat_t.shape[1]
        k = min(top_k, n)
        if not k or not len(docs):
            return
        q = np.asarray(docs.embeddings, dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), np.float32(1e-12))
        scores = q @ mat_t  # (queries, n): the one matmul
        best = np.argpartition(scores, n - k, axis=1)[:, n - k:]
        ids = self._ids
        for i, d in enumerate(docs):
            row = best[i]
            s = scores[i, row]
            order = np.argsort(-s, kind='stable')
            # (a distance, 1 - similarity, as DocumentArray.match writes 'cosine')
            d.matches = DocumentArray([Document(id=ids[j], scores={'cosine': 1.0 - float(v)})
                                       for j, v in zip(row[order].tolist(), s[order].tolist())])

    @requests(on='/stats')
    def stats(self, docs: DocumentArray, **kwargs: Any) -> DocumentArray:
        n = len(self._ids)
        return DocumentArray([Document(id=f'shard-{self.runtime_args.shard_id}', tags={'n': n})])


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _search_seconds(f: Flow, queries: DocumentArray, min_s: float = 0.0) -> float:
    """Seconds per post of ``queries`` to '/search', posting them again until ``min_s``
    have passed (one timed run of 100 queries alone is ~0.2 s); checks every answer."""
    count = 0

    def on_done(resp: Any) -> None:
        nonlocal count
        for d in resp.docs:
            count += len(d.matches) == TOP_K

    posts = 0
    t0 = time.perf_counter()
    while True:
        f.post('/search', queries, on_done=on_done, request_size=QUERY_REQUEST_SIZE, parameters={'top_k': TOP_K})
        posts += 1
        seconds = time.perf_counter() - t0
        if seconds >= min_s:
            break
    if count != posts * len(queries):
        raise RuntimeError(f'{count} of {posts * len(queries)} queries came back with {TOP_K} matches')
    return seconds / posts


def _top_ids(f: Flow, queries: DocumentArray) -> dict[str, list[tuple[str, float]]]:
    out = {}
    for resp in f.post('/search', queries, request_size=QUERY_REQUEST_SIZE, parameters={'top_k': TOP_K},
                       return_results=True):
        for d in resp.docs:
            out[d.id] = [(m.id, m.scores['cosine']) for m in d.matches]
    return out


def measure_shards(index_size: int, n_queries: int, reps: int, min_s: float, env: dict) -> dict[str, Any]:
    """Index into one shard and into two (polling any for /index, all for /search); search
    throughput of both, runs (each at least ``min_s``) alternating.

    Parameters
    ----------
    index_size, n_queries : int
        Vectors indexed; queries per timed post.
    reps : int
        Timed rounds; each round runs both Flows once.
    min_s : float
        Shortest timed run: the queries are posted again until it has passed.
    env : dict
        The executors' environment (the caller pins BLAS to one thread with it).

    Returns
    -------
    dict
        ``index_s`` and ``search_s`` (seconds, per Flow: ``'one'``, ``'two'``), ``sizes``
        (documents per shard), ``same_top10`` (per checked query) and ``max_score_diff``.

    Example
    -------
    >>> sh = measure_shards(2_000, 20, reps=1, min_s=0.0, env={'OMP_NUM_THREADS': '1'})  # doctest: +SKIP
    >>> all(sh['same_top10'].values())  # doctest: +SKIP
    True
    """
    rng = np.random.default_rng(7)
    x = _unit(rng, index_size)
    docs = DocumentArray([Document(id=str(i)) for i in range(index_size)])
    docs.embeddings = x
    q = _unit(rng, n_queries)
    queries = DocumentArray([Document(id=f'q{i}') for i in range(n_queries)])
    queries.embeddings = q
    # Ground truth for the first queries, computed here.
    scores = q[:CHECK_QUERIES] @ x.T
    truth = {f'q{i}': [str(j) for j in np.argsort(-scores[i], kind='stable')[:TOP_K]] for i in range(CHECK_QUERIES)}
    out: dict[str, Any] = {'index_s': {}, 'search_s': {'one': [], 'two': []}, 'sizes': {}}
    polling = {'/index': 'any', '/search': 'all', '/stats': 'all'}
    with Flow().add(name='idx', uses=MatIndexer, env=env) as one, \
            Flow().add(name='idx', uses=MatIndexer, env=env, shards=2, polling=polling) as two:
        flows = {'one': one, 'two': two}
        for name, f in flows.items():
            t0 = time.perf_counter()
            f.index(docs, request_size=INDEX_REQUEST_SIZE)
            out['index_s'][name] = time.perf_counter() - t0
            stats = f.post('/stats', None, return_results=True)
            out['sizes'][name] = {d.id: d.tags['n'] for r in stats for d in r.docs}
        tops = {name: _top_ids(f, queries[:CHECK_QUERIES]) for name, f in flows.items()}  # also the warm-up
        for name, f in flows.items():
            _search_seconds(f, queries)  # warm-up of the full batch
        for _ in range(reps):
            for name, f in flows.items():
                gc.collect()
                out['search_s'][name].append(_search_seconds(f, queries, min_s))
    ids = {name: {qid: [m for m, _ in t[qid]] for qid in truth} for name, t in tops.items()}
    out['same_top10'] = {qid: ids['one'][qid] == ids['two'][qid] == truth[qid] for qid in truth}
    out['max_score_diff'] = max(abs(a[1] - b[1]) for qid in truth for a, b in zip(tops['one'][qid], tops['two'][qid]))
    return out


def shard_figures(sh: dict[str, Any], index_size: int, n_queries: int) -> tuple[dict[str, dict], dict[str, Any]]:
    """The figures of a ``measure_shards`` result, and its summary for the report.

    Returns
    -------
    figures : dict
        ``search_qps_1``, ``search_qps_2`` (2 shards against 1, the ratio a median of
        per-round ratios), ``index_docs_per_s_1``, ``index_docs_per_s_2`` and
        ``search_same_top10``, each a ``perf.common.entry``.
    search : dict
        Shard sizes, the top-10 check per query, the largest score difference, and the
        queries/s of both Flows.

    Example
    -------
    >>> figures, search = shard_figures(measure_shards(2_000, 20, 1, 0.0, {}), 2_000, 20)  # doctest: +SKIP
    >>> search['qps_two'] / search['qps_one']  # doctest: +SKIP
    1.7
    """
    nq = n_queries
    s1, s2 = median(sh['search_s']['one']), median(sh['search_s']['two'])
    ratios = [a / b for a, b in zip(sh['search_s']['one'], sh['search_s']['two'])]
    idx = f'{index_size:,} x {DIM}'
    figs: dict[str, dict] = {}
    figs['search_qps_1'] = entry(f'search, 1 shard ({idx}, {nq} queries, {QUERY_REQUEST_SIZE}/request, top-{TOP_K})',
                                 nq / s1, 'queries/s')
    figs['search_qps_2'] = entry('search, 2 shards (polling /search all)', nq / s2, 'queries/s', baseline=nq / s1,
                                 baseline_label='1 shard', ratio=median(ratios))
    figs['index_docs_per_s_1'] = entry(f'index, 1 shard ({INDEX_REQUEST_SIZE}/request)',
                                       index_size / sh['index_s']['one'], 'docs/s')
    figs['index_docs_per_s_2'] = entry('index, 2 shards (polling /index any)', index_size / sh['index_s']['two'],
                                       'docs/s', baseline=index_size / sh['index_s']['one'],
                                       baseline_label='1 shard', ratio=sh['index_s']['one'] / sh['index_s']['two'])
    same = all(sh['same_top10'].values())
    sizes_ok = sum(sh['sizes']['two'].values()) == index_size and sum(sh['sizes']['one'].values()) == index_size
    figs['search_same_top10'] = entry(f'top-{TOP_K} ids: 2 shards == 1 shard == numpy ({CHECK_QUERIES} queries)',
                                      float(same and sizes_ok), 'bool', target='true', ok=same and sizes_ok,
                                      note=f'shard sizes {sh["sizes"]["two"]}')
    search = {'index_sizes': sh['sizes'], 'same_top10': sh['same_top10'], 'max_score_diff': sh['max_score_diff'],
              'qps_one': nq / s1, 'qps_two': nq / s2}
    return figs, search
