"""SparseIndexer: BM25 over an inverted index kept as plain numpy arrays in the workspace.

Example
-------
>>> from runtime import Flow
>>> f = (Flow(workspace='ws').add(uses=TextSegmenter)  # doctest: +SKIP
...      .add(uses=SparseIndexer, shards=2, polling={'/index': 'any', '*': 'all'}))
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import numpy as np

from runtime import Document, DocumentArray, DocumentArrayMemmap, Executor, requests

from .terms import TOKENIZER_VERSION, path_terms, term_counts

__all__ = ['SparseIndexer', 'bm25_scores']

logger = logging.getLogger(__name__)

_FORMAT = 1
# The committed index: one .npy each, opened with mmap_mode='r' (nothing is read until a
# query touches it). Postings are grouped by term: term t's postings are ptr[t]:ptr[t+1].
_ARRAYS = ('ptr', 'post_doc', 'post_tf', 'post_name', 'doc_len', 'name_len', 'deleted')
# Postings of documents indexed since the last commit: raw appends, one file per column.
_PENDING = (('terms', np.int32), ('docs', np.int32), ('tf', np.uint16), ('name', np.uint16))


def bm25_scores(ptr: np.ndarray, post_doc: np.ndarray, post_tf: np.ndarray, doc_len: np.ndarray,
                terms: list[int], weights: list[float], k1: float = 1.2, b: float = 0.75) -> np.ndarray:
    """BM25 score of every document for a query of ``terms`` (ids, each with a weight).

    ``score(d) = sum_t w_t * idf(t) * tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avg|d|))``
    with ``idf(t) = log(1 + (N - df + 0.5) / (df + 0.5))`` (never negative). Only the
    postings of the query's terms are read.

    Example
    -------
    >>> ptr = np.array([0, 2, 3]); docs = np.array([0, 1, 1]); tf = np.array([1., 3., 1.])
    >>> bm25_scores(ptr, docs, tf, np.array([4., 4.]), [0], [1.0]).round(3).tolist()
    [0.182, 0.278]
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


class SparseIndexer(Executor):
    """Store passages in an inverted index and rank them by BM25 (lexical search, no model).

    Each document's terms (see :mod:`executors.terms`: identifiers split at ``_`` and
    camelCase, stop words dropped, light stemming) come from two *fields*: the text, and
    the *name* (the words of the last ``name_depth`` components of ``tags[path_tag]`` or
    ``uri``: ``json/decoder.py`` -> json, decod). A field-weighted BM25 (BM25F) counts a
    name occurrence ``name_weight`` times: a query for "gzip" prefers ``gzip.py``.

    Endpoints
    ---------
    ``/index``
        Add the documents (their text, uri and tags are stored for the matches). A
        document whose id is stored already replaces it.
    ``/search``
        For each query (``doc.text``), set ``matches`` to the ``limit`` / ``top_k``
        (default 10) best documents with ``scores['bm25']``. With ``rank_tag`` set, the
        ranking is also written to ``query.tags[rank_tag] = {'ids': [...], 'scores':
        [...]}``: a join of parallel branches merges matches by id (a match both
        branches found keeps one branch's scores), tags key by key, so a fusion step
        after the join still sees every branch's ranking (see ``FusionRanker``).
    ``/delete``
        Delete the documents with these ids (and ``parameters['ids']``).
    ``/status``
        ``{'count', 'terms', 'postings', 'shard', 'workspace'}``.

    Storage (``<workspace>/sparse``; one folder per shard)
    -----------------------------------------------------
    ``vocab.npy`` (the terms, position = term id), ``ptr.npy`` (int64, V + 1),
    ``post_doc.npy`` (int32 row), ``post_tf.npy`` / ``post_name.npy`` (uint16 term
    frequency in the text / name), ``doc_len.npy`` / ``name_len.npy`` (float32),
    ``deleted.npy`` (bool), ``ids.npy`` (row -> id); the documents themselves in a
    ``DocumentArrayMemmap`` (``docs``). New postings are appended to ``pending.*`` files
    while indexing (memory stays bounded by one request) and merged into the arrays by
    one sort when the index is next searched or the executor closes.

    Shards: ``polling={'/index': 'any', '*': 'all'}``, as for ``MemmapIndexer``; each shard
    computes IDF over its own documents (as Lucene shards do), and the Flow's default merge
    sorts the shards' matches by ``bm25``.

    Parameters
    ----------
    k1, b : float
        BM25's term-frequency saturation (default 1.2) and length normalisation (0.75).
    name_weight : float
        Weight of a name-field occurrence relative to a text one (default 3.0).
    name_depth : int
        Path components that make the name field (default 3).
    path_tag : str
        Tag read for the name before ``uri`` (default 'path').
    max_chars : int
        Characters of a text read (default 100,000).
    rank_tag : str, optional
        Also write the ranking into this tag of each query (for a fusion step).
    default_limit : int
        Matches per query without ``limit`` / ``top_k`` (default 10).

    Example
    -------
    >>> idx = SparseIndexer(metas={'workspace': '/tmp/sparse-doc'})  # doctest: +SKIP
    >>> idx.index(DocumentArray([Document(text='import gzip', uri='a.py')]), {})  # doctest: +SKIP
    >>> q = DocumentArray([Document(text='gzip')]); idx.search(q, {}); q[0].matches[0].uri  # doctest: +SKIP
    'a.py'
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75, name_weight: float = 3.0, name_depth: int = 3,
                 path_tag: str = 'path', max_chars: int = 100_000, rank_tag: str | None = None,
                 default_limit: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not (k1 >= 0 and 0 <= b <= 1 and name_weight >= 0):
            raise ValueError(f'need k1 >= 0, 0 <= b <= 1 and name_weight >= 0; got k1={k1!r}, b={b!r}, '
                             f'name_weight={name_weight!r}')
        self.k1, self.b, self.name_weight, self.name_depth = float(k1), float(b), float(name_weight), name_depth
        self.path_tag, self.max_chars, self.rank_tag, self.default_limit = path_tag, max_chars, rank_tag, default_limit
        self.path = os.path.join(self.workspace, 'sparse')
        os.makedirs(self.path, exist_ok=True)
        self._dam = DocumentArrayMemmap(os.path.join(self.path, 'docs'))
        self._load()

    # -- storage ---------------------------------------------------------------------------
    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _load(self) -> None:
        meta_path = self._file('meta.json')
        meta = None
        if os.path.exists(meta_path):
            with open(meta_path, encoding='utf-8') as fp:
                meta = json.load(fp)
            if meta.get('format') != _FORMAT or meta.get('tokenizer') != TOKENIZER_VERSION:
                raise ValueError(f'the sparse index at {self.path} was written by another version '
                                 f'({meta}); index again into a new workspace')
        if meta is None:
            self._vocab_list: list[str] = []
            self._arrays: dict[str, np.ndarray] = {
                'ptr': np.zeros(1, np.int64), 'post_doc': np.zeros(0, np.int32), 'post_tf': np.zeros(0, np.uint16),
                'post_name': np.zeros(0, np.uint16), 'doc_len': np.zeros(0, np.float32),
                'name_len': np.zeros(0, np.float32), 'deleted': np.zeros(0, bool)}
            self._ids: list[str] = []
        else:
            self._vocab_list = np.load(self._file('vocab.npy')).tolist()
            self._arrays = {k: np.load(self._file(f'{k}.npy'), mmap_mode='r') for k in _ARRAYS}
            self._ids = np.load(self._file('ids.npy')).tolist()
        self._vocab = {t: i for i, t in enumerate(self._vocab_list)}
        self._row_of = {d: i for i, d in enumerate(self._ids)}
        self._deleted = set(np.flatnonzero(self._arrays['deleted']).tolist())
        # Rows and lengths of documents indexed since the last commit.
        self._new_lens: list[np.ndarray] = []
        self._pending_rows = 0
        self._dirty = any(os.path.exists(self._file(f'pending.{c}')) for c, _ in _PENDING)
        if self._dirty:  # a run that was killed before committing: its postings are complete
            self._pending_rows = len(self._ids) - len(self._arrays['doc_len'])
            if os.path.exists(self._file('pending.lens')):
                self._new_lens.append(np.fromfile(self._file('pending.lens'), np.float32).reshape(-1, 2))
        self._weighted_tf: np.ndarray | None = None

    def _append_pending(self, cols: dict[str, np.ndarray], lens: np.ndarray) -> None:
        for name, dtype in _PENDING:
            with open(self._file(f'pending.{name}'), 'ab') as fp:
                fp.write(np.ascontiguousarray(cols[name], dtype).tobytes())
        with open(self._file('pending.lens'), 'ab') as fp:
            fp.write(np.ascontiguousarray(lens, np.float32).tobytes())
        self._new_lens.append(lens)
        self._dirty = True

    def commit(self) -> None:
        """Merge the pending postings into the term-grouped arrays and save them (called by
        the next search and by ``close``; one stable sort of the postings by term).

        Example
        -------
        >>> idx.commit()  # doctest: +SKIP
        """
        if not self._dirty:
            return
        a = self._arrays
        old_terms = np.repeat(np.arange(len(a['ptr']) - 1, dtype=np.int32), np.diff(a['ptr']))
        pend = {name: (np.fromfile(self._file(f'pending.{name}'), dtype)
                       if os.path.exists(self._file(f'pending.{name}')) else np.zeros(0, dtype))
                for name, dtype in _PENDING}
        terms = np.concatenate([old_terms, pend['terms']])
        order = np.argsort(terms, kind='stable')  # old postings first within a term: rows stay sorted
        del old_terms
        nterms = len(self._vocab_list)
        ptr = np.zeros(nterms + 1, np.int64)
        np.cumsum(np.bincount(terms, minlength=nterms), out=ptr[1:])
        del terms
        out = {'ptr': ptr,
               'post_doc': np.concatenate([a['post_doc'], pend['docs']])[order],
               'post_tf': np.concatenate([a['post_tf'], pend['tf']])[order],
               'post_name': np.concatenate([a['post_name'], pend['name']])[order]}
        del order, pend
        lens = np.concatenate(self._new_lens) if self._new_lens else np.zeros((0, 2), np.float32)
        out['doc_len'] = np.concatenate([a['doc_len'], lens[:, 0]]).astype(np.float32)
        out['name_len'] = np.concatenate([a['name_len'], lens[:, 1]]).astype(np.float32)
        deleted = np.zeros(len(self._ids), bool)
        deleted[list(self._deleted)] = True
        out['deleted'] = deleted
        for k, v in out.items():
            np.save(self._file(f'{k}.tmp.npy'), v)
        np.save(self._file('vocab.tmp.npy'), np.array(self._vocab_list, dtype=str))
        np.save(self._file('ids.tmp.npy'), np.array(self._ids, dtype=str))
        # Renamed into place one by one, meta last: a crash before it leaves the old index
        # plus the pending files, which the next start merges again.
        for k in (*_ARRAYS, 'vocab', 'ids'):
            os.replace(self._file(f'{k}.tmp.npy'), self._file(f'{k}.npy'))
        with open(self._file('meta.json'), 'w', encoding='utf-8') as fp:
            json.dump({'format': _FORMAT, 'tokenizer': TOKENIZER_VERSION, 'rows': len(self._ids),
                       'terms': nterms, 'postings': int(ptr[-1])}, fp)
        for name, _ in (*_PENDING, ('lens', None)):
            if os.path.exists(self._file(f'pending.{name}')):
                os.unlink(self._file(f'pending.{name}'))
        self._dam.flush()
        self._arrays = {k: np.load(self._file(f'{k}.npy'), mmap_mode='r') for k in _ARRAYS}
        self._new_lens, self._pending_rows, self._dirty, self._weighted_tf = [], 0, False, None
        logger.debug('%s: committed %d rows, %d terms, %d postings', self.metas.name, len(self._ids), nterms,
                     int(ptr[-1]))

    # -- endpoints -------------------------------------------------------------------------
    def _name_of(self, d: Document) -> str | None:
        tags = d.tags
        return (tags.get(self.path_tag) if tags else None) or d.uri or None

    @requests(on='/index')
    def index(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> None:
        """Add the documents to the index (a stored id is replaced).

        Example
        -------
        >>> idx.index(DocumentArray([Document(text='open a socket', uri='net.py')]), {})  # doctest: +SKIP
        """
        if not len(docs):
            return
        terms: list[int] = []
        rows: list[int] = []
        tfs: list[int] = []
        names: list[int] = []
        lens = np.zeros((len(docs), 2), np.float32)
        vocab, vocab_list = self._vocab, self._vocab_list
        for k, d in enumerate(docs):
            old = self._row_of.get(d.id)
            if old is not None:
                self._deleted.add(old)
            row = len(self._ids)
            self._ids.append(d.id)
            self._row_of[d.id] = row
            body = term_counts(d.text, self.max_chars)
            name: dict[str, int] = {}
            for t in path_terms(self._name_of(d), self.name_depth):
                name[t] = name.get(t, 0) + 1
            lens[k] = (sum(body.values()), sum(name.values()))
            for t in body.keys() | name.keys():
                tid = vocab.get(t)
                if tid is None:
                    tid = vocab[t] = len(vocab_list)
                    vocab_list.append(t)
                terms.append(tid)
                rows.append(row)
                tfs.append(min(body.get(t, 0), 65535))
                names.append(min(name.get(t, 0), 65535))
        self._append_pending({'terms': np.array(terms, np.int32), 'docs': np.array(rows, np.int32),
                              'tf': np.array(tfs, np.uint16), 'name': np.array(names, np.uint16)}, lens)
        self._pending_rows += len(docs)
        # The stored copy needs no embedding: the index is the postings.
        self._dam.extend(Document(d, copy=True) if d.embedding is None else _without_embedding(d) for d in docs)

    def _scoring_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(BM25F term frequency per posting, field-weighted length per row), cached."""
        a = self._arrays
        if self._weighted_tf is None:
            self._weighted_tf = (a['post_tf'].astype(np.float32) + self.name_weight * a['post_name'])
            self._weighted_len = a['doc_len'] + self.name_weight * a['name_len']
        return self._weighted_tf, self._weighted_len

    def rank(self, text: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) of the ``limit`` best documents for a query text, best first.

        Example
        -------
        >>> rows, scores = idx.rank('read a gzip file', 5)  # doctest: +SKIP
        """
        self.commit()
        q = term_counts(text, self.max_chars)
        ids = [self._vocab[t] for t in q if t in self._vocab]
        if not ids or limit <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        tf, length = self._scoring_arrays()
        a = self._arrays
        scores = bm25_scores(a['ptr'], a['post_doc'], tf, length, ids,
                             [float(q[self._vocab_list[i]]) for i in ids], self.k1, self.b)
        if self._deleted:
            scores[list(self._deleted)] = 0.0
        hit = np.flatnonzero(scores > 0)
        if len(hit) > limit:
            hit = hit[np.argpartition(-scores[hit], limit - 1)[:limit]]
        order = np.lexsort((hit, -scores[hit]))   # by score, ties by row: deterministic
        hit = hit[order]
        return hit, scores[hit]

    @requests(on='/search')
    def search(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> None:
        """Set each query's ``matches`` (and ``tags[rank_tag]``) to its best documents.

        Example
        -------
        >>> q = DocumentArray([Document(text='send mail')]); idx.search(q, {'limit': 3})  # doctest: +SKIP
        """
        limit = parameters.get('limit', parameters.get('top_k', self.default_limit))
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise ValueError(f"parameters 'limit' / 'top_k' must be an int >= 0, got {limit!r}")
        for d in docs:
            rows, scores = self.rank(d.text or '', limit)
            matches = []
            for row, s in zip(rows.tolist(), scores.tolist()):
                m = Document(self._dam[self._ids[row]], copy=True)
                m.scores = {'bm25': float(s)}
                matches.append(m)
            d.matches = matches
            if self.rank_tag:
                d.tags[self.rank_tag] = {'ids': [m.id for m in matches], 'scores': [float(s) for s in scores]}

    @requests(on='/delete')
    def delete(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> dict:
        """Delete the documents with these ids (and ``parameters['ids']``); others are ignored.

        Example
        -------
        >>> idx.delete(DocumentArray(), {'ids': ['a']})  # doctest: +SKIP
        {'deleted': 1, 'missing': 0}
        """
        ids = [d.id for d in docs] + list(parameters.get('ids') or [])
        deleted = 0
        for doc_id in dict.fromkeys(ids):
            row = self._row_of.pop(doc_id, None)
            if row is not None:
                self._deleted.add(row)
                del self._dam[doc_id]
                deleted += 1
        if deleted:
            self._dirty = True  # the deleted flags are saved by the next commit
        return {'deleted': deleted, 'missing': len(dict.fromkeys(ids)) - deleted}

    @requests(on='/status')
    def status(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> dict:
        """How many documents, terms and postings this shard holds.

        Example
        -------
        >>> idx.status(DocumentArray(), {})['count']  # doctest: +SKIP
        3
        """
        self.commit()
        return {'count': len(self._row_of), 'terms': len(self._vocab_list),
                'postings': int(self._arrays['ptr'][-1]), 'shard': self.runtime_args.shard_id,
                'workspace': self.path}

    @property
    def count(self) -> int:
        """Documents stored (deleted ones excluded).

        >>> SparseIndexer(metas={'workspace': '/tmp/sp-doc'}).count  # doctest: +SKIP
        0
        """
        return len(self._row_of)

    def close(self) -> None:
        """Commit the pending postings and close the document store.

        Example
        -------
        >>> idx.close()  # doctest: +SKIP
        """
        try:
            self.commit()
        finally:
            self._dam.close()


def _without_embedding(d: Document) -> Document:
    c = Document(d, copy=True)
    c.embedding = None
    return c
