"""MemmapIndexer: documents and their embeddings on disk, exact top-k search.

Example
-------
>>> from runtime import Flow
>>> f = (Flow(workspace='ws').add(uses=HashingTextEncoder)  # doctest: +SKIP
...      .add(uses=MemmapIndexer, shards=2, polling={'/index': 'any', '*': 'all'}))
"""
from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from runtime import Document, DocumentArray, DocumentArrayMemmap, Executor, requests
from runtime.control.merge import match_limit

from .fusion import branch_scores
from .parents import ParentMap, plan_update, requested_ids, resolve

__all__ = ['MemmapIndexer', 'top_k']

logger = logging.getLogger(__name__)

METRICS = ('cosine', 'dot', 'l2')
#: Rows scored at a time: bounds the scratch memory of a search to about
#: block * (dim + queries) * 4 bytes, whatever the size of the index.
DEFAULT_BLOCK_ROWS = 65536


def _keys(metric: str, q: np.ndarray, q_sq: np.ndarray, block: np.ndarray, block_sq: np.ndarray) -> np.ndarray:
    """(queries, rows) sort keys of one block, smaller is better: -dot, -cosine similarity
    or the euclidean distance (``_score`` turns a key into the reported score)."""
    dots = q @ block.T
    if metric == 'dot':
        return np.negative(dots, out=dots)
    if metric == 'cosine':
        denom = np.sqrt(q_sq)[:, None] * np.sqrt(block_sq)[None, :]
        # A zero vector (say, an empty text) has cosine similarity 0 with everything (distance
        # 1, as DocumentArray.match gives), not NaN.
        sim = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        return np.negative(sim, out=sim)
    # |x - q|^2 = |x|^2 - 2 x.q + |q|^2, clipped at 0 against rounding.
    return np.sqrt(np.maximum(block_sq[None, :] - 2 * dots + q_sq[:, None], 0))


def _score(metric: str, key: np.ndarray) -> np.ndarray:
    """The score reported under the metric's name, with its Jina 2 meaning (see
    ``runtime.scores.DISTANCE_SCORES``): 'cosine' is the cosine *distance* ``1 - similarity``
    and 'l2' the euclidean distance (smaller is better), 'dot' the inner product (larger is
    better)."""
    if metric == 'cosine':
        return 1 + key
    if metric == 'dot':
        return -key
    return key


def top_k(queries: np.ndarray, matrix: np.ndarray, k: int, metric: str = 'cosine',
          sq_norms: np.ndarray | None = None, block_rows: int = DEFAULT_BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k rows of ``matrix`` for each query, reading ``block_rows`` rows at a time.

    Parameters
    ----------
    queries : (Q, D) array
    matrix : (N, D) array (an ``np.memmap`` is read block by block, never whole)
    k : int
    metric : 'cosine', 'dot' or 'l2'
        'cosine' (distance, ``1 - cosine similarity``) and 'l2' (euclidean distance): lower
        is better; 'dot' (inner product): higher is better.
    sq_norms : (N,) array, optional
        Squared norms of the rows, if known (cosine and l2 need them).
    block_rows : int

    Returns
    -------
    (positions, scores) : two (Q, min(k, N)) arrays, best first; ties by lower position.

    Example
    -------
    >>> m = np.eye(3, dtype=np.float32)
    >>> pos, dist = top_k(np.array([[0, 1, 0]], np.float32), m, 2)
    >>> pos.tolist(), dist.tolist()
    ([[1, 0]], [[0.0, 1.0]])
    """
    if metric not in METRICS:
        raise ValueError(f'metric must be one of {METRICS}, got {metric!r}')
    q = np.asarray(queries)
    if q.ndim != 2 or matrix.ndim != 2 or q.shape[1] != matrix.shape[1]:
        raise ValueError(f'queries of shape {q.shape} cannot be compared with stored embeddings of shape '
                         f'{matrix.shape}: the dimensions must match')
    dtype = np.result_type(q.dtype, matrix.dtype, np.float32)
    q = q.astype(dtype, copy=False)
    n, nq = matrix.shape[0], q.shape[0]
    k = min(k, n)
    if k <= 0 or nq == 0:
        return np.zeros((nq, 0), np.int64), np.zeros((nq, 0), dtype)
    q_sq = np.einsum('ij,ij->i', q, q)
    best_pos = np.zeros((nq, 0), np.int64)
    best_key = np.zeros((nq, 0), dtype)
    for lo in range(0, n, block_rows):
        block = np.asarray(matrix[lo:lo + block_rows], dtype=dtype)
        if metric == 'dot':
            b_sq = None
        elif sq_norms is not None:
            b_sq = sq_norms[lo:lo + len(block)]
        else:
            b_sq = np.einsum('ij,ij->i', block, block)
        key = _keys(metric, q, q_sq, block, b_sq)
        pos = np.arange(lo, lo + len(block))
        # Only this block's own k best join the running candidates: O(block) per block.
        if key.shape[1] > k:
            part = np.argpartition(key, k - 1, axis=1)[:, :k]
            key = np.take_along_axis(key, part, axis=1)
            cand = pos[part]
        else:
            cand = np.broadcast_to(pos, key.shape)
        best_key = np.concatenate([best_key, key], axis=1)
        best_pos = np.concatenate([best_pos, cand], axis=1)
        if best_key.shape[1] > k:
            part = np.argpartition(best_key, k - 1, axis=1)[:, :k]
            best_key = np.take_along_axis(best_key, part, axis=1)
            best_pos = np.take_along_axis(best_pos, part, axis=1)
    order = np.lexsort((best_pos, best_key), axis=1)  # by key, then position: deterministic ties
    best_pos = np.take_along_axis(best_pos, order, axis=1)
    best_key = np.take_along_axis(best_key, order, axis=1)
    return best_pos, _score(metric, best_key)


class MemmapIndexer(Executor):
    """Store documents with their embeddings in a ``DocumentArrayMemmap``; exact top-k search.

    Endpoints
    ---------
    ``/index``
        Store the documents (each must have an embedding of the index's dimension; a
        document whose id is already stored *in this shard* replaces it). To replace a
        document whose passages may have changed, or with several shards, post it to
        ``/update``: ``/index`` replaces only the passages with the same number, and a
        shard polled with 'any' cannot see another shard's copy.
    ``/search``
        For each query document (with an embedding), set ``matches`` to the ``limit`` (or
        ``top_k``, default 10) best stored documents, each with ``scores[metric]`` and the
        stored fields (text, uri, tags, parent_id...) but not the embedding. The scores
        mean what Jina 2's ``DocumentArray.match`` wrote: ``scores['cosine']`` is the cosine
        distance (``1 - similarity``, smaller is better), so the Flow's shard merge sorts them
        right.
    ``/update``
        Replace the stored documents that have these ids (ids not stored are ignored).
        Passages (``TextSegmenter``'s output: ``parent_id`` set) replace their document
        whole: every stored passage of that parent is replaced or, if the document has
        no such passage any more, removed, and its new passages are added. Returns
        ``{'updated': n, 'missing': m, 'removed': r}`` (documents stored, documents
        ignored, stale passages removed).
    ``/delete``
        Delete the documents with these ids (the documents' ids and ``parameters['ids']``)
        and the passages of the documents with these ids (stored documents whose
        ``parent_id`` is one); ids that name nothing are ignored. Returns
        ``{'deleted': n, 'missing': m}`` (stored documents removed, ids that named none).
    ``/status``
        Returns ``{'count', 'dim', 'metric', 'shard', 'workspace'}`` (send it with no
        documents: ``f.post('/status', return_results=True)``).

    Design
    ------
    - *Storage*: ``<workspace>/index`` (``self.workspace`` has one sub-folder per shard).
      Opening the same workspace in a new Flow finds the index.
    - *Durability*: every document is written to the record log when its ``/index``
      request is handled, so it survives the process being killed once the request is
      answered. The index snapshot that makes reopening fast is saved by ``close()`` (when
      the Flow stops), not after every request: a snapshot costs O(index size), which per
      request would make indexing quadratic. After a crash, reopening replays the log
      instead (slower, nothing lost). An OS crash or power loss can lose the last
      seconds unless ``sync=True`` (an fsync per request).
    - *Search* reads the stored matrix (a memmap view, no copy) ``block_rows`` rows at a
      time with a running top-k, so its scratch memory is bounded for millions of rows.
      Squared row norms are kept in memory (4 bytes per row) for cosine / l2.
    - *Whole documents*: the first update or delete reads every stored document's
      ``parent_id`` once (a streaming pass) to know the passages of each document; an
      index that is only added to and searched never pays for it.
    - *Updates and deletes* leave the matrix with holes, which would make every search
      gather a copy of it; the store is compacted (``prune``) before the next search
      instead, once for any number of updates in between.
    - *Shards*: use ``polling={'/index': 'any', '*': 'all'}``: each document is stored by
      one shard, and search, update, delete and status go to every shard (update and
      delete with 'any' would reach only one shard, which may not hold the id). The
      matches of all shards are joined by the Flow's default merge (sorted by the first
      score, a distance ascending, cut to ``limit`` / ``top_k``).
    - *Replicas* would share one store, which has one writer: use shards instead.

    Parameters
    ----------
    metric : 'cosine' (default), 'dot' or 'l2'
        The score of the matches (named so in ``match.scores``): 'cosine' (``1 - cosine
        similarity``) and 'l2' (euclidean) are distances, smaller is better, as Jina 2's
        ``DocumentArray.match`` wrote them; 'dot' (inner product) is a similarity.
    block_rows : int
        Rows scored at a time (default 65,536).
    default_limit : int
        Matches per query when the parameters give no ``limit`` / ``top_k`` (default 10).
    sync : bool
        fsync after every ``/index`` / ``/update`` / ``/delete`` request (default False).
    rank_tag : str, optional
        The name of this search branch, for a ``FusionRanker`` after a join of parallel
        branches: each match also carries its score as ``scores[rank_tag]`` (with
        ``op_name`` the metric, which tells the fusion which way is better). The shard
        merge and the join carry it as any score (a match two branches found keeps
        both branches' scores).

    Example
    -------
    >>> from runtime import Flow
    >>> with Flow(workspace='ws').add(uses=MemmapIndexer) as f:  # doctest: +SKIP
    ...     f.index(DocumentArray([Document(text='a', embedding=np.ones(4, np.float32))]))
    ...     f.search(Document(embedding=np.ones(4, np.float32)), parameters={'limit': 1},
    ...              on_done=lambda r: print(r.docs[0].matches[0].scores))
    {'cosine': 0.0}
    """

    def __init__(self, metric: str = 'cosine', block_rows: int = DEFAULT_BLOCK_ROWS, default_limit: int = 10,
                 sync: bool = False, rank_tag: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rank_tag = rank_tag
        if metric not in METRICS:
            raise ValueError(f'metric must be one of {METRICS}, got {metric!r}')
        if not isinstance(block_rows, int) or block_rows < 1:
            raise ValueError(f'block_rows must be a positive int, got {block_rows!r}')
        self.metric, self.block_rows, self.default_limit, self.sync = metric, block_rows, default_limit, sync
        self.path = os.path.join(self.workspace, 'index')
        self._dam = DocumentArrayMemmap(self.path)
        self._parents = ParentMap(self._dam)
        self._sq_norms: np.ndarray | None = None   # squared norms of the stored rows, in order
        self._needs_prune = False
        # Read from one stored document: .embeddings could gather a copy of the whole
        # matrix while updates are pending.
        self._dim: int | None = int(self._dam[0].embedding.shape[0]) if len(self._dam) else None
        logger.debug('%s: %d documents in %s', self.metas.name, len(self._dam), self.path)

    # -- helpers -------------------------------------------------------------------------
    @property
    def dim(self) -> int | None:
        """The stored embeddings' dimension (None while the index is empty).

        >>> MemmapIndexer(metas={'workspace': '/tmp/ws-doc'}).dim is None  # doctest: +SKIP
        True
        """
        return self._dim if len(self._dam) else None

    @property
    def count(self) -> int:
        """How many documents are stored (not ``__len__``: an empty executor must stay truthy).

        >>> MemmapIndexer(metas={'workspace': '/tmp/ws-doc'}).count  # doctest: +SKIP
        0
        """
        return len(self._dam)

    def _check_embeddings(self, docs: DocumentArray, what: str) -> np.ndarray:
        emb = docs.embeddings if len(docs) else None
        missing = [d.id for d in docs if d.embedding is None]
        if missing:
            raise ValueError(f'{what}: {len(missing)} document(s) have no embedding (first: {missing[0]!r}); '
                             f'put an encoder before the indexer in the Flow')
        if emb is None or emb.ndim != 2:
            raise ValueError(f'{what}: embeddings must be 1-d vectors of one size, got shape '
                             f'{None if emb is None else emb.shape}')
        dim = self.dim
        if dim is not None and emb.shape[1] != dim:
            raise ValueError(f'{what}: embeddings have dimension {emb.shape[1]} but the index at {self.path} '
                             f'holds dimension {dim}; re-index into a new workspace to change it')
        return emb

    def _store_view(self) -> np.ndarray | None:
        """The stored matrix as a memmap view (compacting first after updates / deletes)."""
        if self._needs_prune:
            self._dam.prune()
            self._needs_prune = False
            self._sq_norms = None
        emb = self._dam.embeddings if len(self._dam) else None
        if emb is not None and self._sq_norms is None and self.metric != 'dot':
            norms = np.empty(len(emb), np.float32)
            for lo in range(0, len(emb), self.block_rows):
                block = np.asarray(emb[lo:lo + self.block_rows], np.float32)
                norms[lo:lo + len(block)] = np.einsum('ij,ij->i', block, block)
            self._sq_norms = norms
        return emb

    def _synced(self) -> None:
        if self.sync:
            self._dam.flush(sync=True)

    # -- endpoints -----------------------------------------------------------------------
    @requests(on='/index')
    def index(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> None:
        """Store ``docs`` (with embeddings); ids already stored are replaced.

        Example
        -------
        >>> idx.index(DocumentArray([Document(embedding=np.ones(4, np.float32))]), {})  # doctest: +SKIP
        """
        if not len(docs):
            return
        emb = self._check_embeddings(docs, '/index')
        before = len(self._dam)
        self._dam.extend(docs)
        self._parents.stored(docs)
        self._dim = int(emb.shape[1])
        if len(self._dam) != before + len(docs):
            # Some ids were stored already (or repeated): rows moved, compact before searching.
            self._needs_prune = True
        elif self._sq_norms is not None:
            e = np.asarray(emb, np.float32)
            self._sq_norms = np.concatenate([self._sq_norms, np.einsum('ij,ij->i', e, e)])
        self._synced()

    @requests(on='/search')
    def search(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> None:
        """Set each query's ``matches`` to its ``limit`` / ``top_k`` best stored documents.

        Example
        -------
        >>> q = DocumentArray([Document(embedding=np.ones(4, np.float32))])
        >>> idx.search(q, {'limit': 3}); q[0].matches[0].scores  # doctest: +SKIP
        {'cosine': 0.0}
        """
        if not len(docs):
            return
        limit = match_limit(parameters, self.default_limit)  # (3.0 and numpy ints taken, as in a join)
        q = self._check_embeddings(docs, '/search')
        stored = self._store_view()
        if limit is None and stored is not None:  # (default_limit=None: no limit)
            limit = len(stored)
        if stored is None or limit == 0:
            for d in docs:
                d.matches = []
            return
        pos, score = top_k(q, stored, limit, self.metric, self._sq_norms, self.block_rows)
        # A query of zeros (a text with no term the encoder knows) ties with every row under
        # cosine and dot: any 'limit' rows would come back, scored as well as each other, and
        # a fusion would rank them as high as real hits. It gets no matches instead.
        blank = np.zeros(len(docs), bool) if self.metric == 'l2' else ~np.any(q, axis=1)
        flat = np.unique(pos[~blank])
        found = self._dam[flat.tolist()] if len(flat) else []  # one read of every matched document
        by_pos = dict(zip(flat.tolist(), found))
        for d, row_pos, row_score, nothing in zip(docs, pos.tolist(), score.tolist(), blank.tolist()):
            matches = []
            for p, s in ([] if nothing else zip(row_pos, row_score)):
                m = Document(by_pos[p], copy=True)  # a query's matches must not share objects
                m.embedding = None                  # results show text and place, not vectors
                m.scores = None  # (a stored document's own scores: assigning would merge into them)
                m.scores = branch_scores(self.metric, float(s), self.rank_tag)
                matches.append(m)
            d.matches = matches

    @requests(on='/update')
    def update(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> dict:
        """Replace the stored documents with these ids (others are ignored); passages replace
        all the stored passages of their document (see the class docstring).

        Example
        -------
        >>> idx.update(DocumentArray([doc]), {})  # doctest: +SKIP
        {'updated': 1, 'missing': 0, 'removed': 0}
        """
        if not len(docs):
            return {'updated': 0, 'missing': 0, 'removed': 0}
        store, stale, emptied = plan_update(docs, self._dam.__contains__, self._parents)
        if store:
            self._check_embeddings(DocumentArray(store), '/update')  # (an emptied document has none)
        for doc_id in stale:
            del self._dam[doc_id]
            self._parents.removed(doc_id)
        if store:
            self._dam.extend(store)  # stored ids are replaced in place, new ones added
            self._parents.stored(store)
        if store or stale:
            self._needs_prune = True
        self._synced()
        return {'updated': len(store), 'missing': len(docs) - len(store) - emptied, 'removed': len(stale)}

    @requests(on='/delete')
    def delete(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> dict:
        """Delete the documents with these ids (and ``parameters['ids']``) and the passages of
        the documents with these ids; others are ignored.

        Example
        -------
        >>> idx.delete(DocumentArray(), {'ids': ['a', 'b']})  # doctest: +SKIP
        {'deleted': 2, 'missing': 0}
        """
        gone, missing = resolve(requested_ids(docs, parameters), self._dam.__contains__, self._parents)
        for doc_id in gone:
            del self._dam[doc_id]
            self._parents.removed(doc_id)
        if gone:
            self._needs_prune = True
        self._synced()
        return {'deleted': len(gone), 'missing': missing}

    @requests(on='/status')
    def status(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> dict:
        """How many documents this shard stores, and its settings.

        Example
        -------
        >>> idx.status(DocumentArray(), {})['count']  # doctest: +SKIP
        3
        """
        return {'count': len(self._dam), 'dim': self.dim, 'metric': self.metric,
                'shard': self.runtime_args.shard_id, 'workspace': self.path}

    def close(self) -> None:
        """Compact if updates / deletes are pending, save the index snapshot and release the store.

        Example
        -------
        >>> idx.close()  # doctest: +SKIP
        """
        try:
            if self._needs_prune:
                self._dam.prune()
                self._needs_prune = False
        finally:
            self._dam.close()
