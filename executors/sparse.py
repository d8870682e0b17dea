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
import shutil
from typing import Any

import numpy as np

from runtime import Document, DocumentArray, DocumentArrayMemmap, Executor, requests
from runtime.control.merge import match_limit

from . import pending_log
from .bm25 import bm25_scores, pack_index, unpack_index
from .fusion import branch_scores
from .parents import ParentMap, plan_update, requested_ids, resolve
from .sparse_merge import DELETE as _DELETE, INDEX as _INDEX, RangeMerge as _RangeMerge, merge_in_memory
from .sparse_merge import ptr_of as _ptr_of
from .terms import TOKENIZER_VERSION, load_strings, path_terms, save_strings, term_counts

__all__ = ['SparseIndexer', 'bm25_scores']

logger = logging.getLogger(__name__)

#: 3: vocab.npy and ids.npy hold UTF-8 bytes (terms.save_strings), not padded str arrays.
_FORMAT = 3
# The committed index (a generation, in gen-<n>/): one .npy each, opened with mmap_mode='r'
# (nothing is read until a query touches it). Postings are grouped by term: term t's
# postings are ptr[t]:ptr[t+1].
_ARRAYS = ('ptr', 'post_doc', 'post_tf', 'post_name', 'doc_len', 'name_len', 'deleted')
#: A commit of at most this many postings (committed plus pending) merges them in memory
#: with one sort (~50 bytes a posting: ~50 MB here); a larger one merges one range of
#: terms of at most this many postings at a time, so its memory does not grow with the index.
_MERGE_POSTINGS = 1_000_000


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
        document whose id is stored already *in this shard* replaces it (post changed
        documents to ``/update``: see ``MemmapIndexer``).
    ``/search``
        For each query (``doc.text``), set ``matches`` to the ``limit`` / ``top_k``
        (default 10) best documents with ``scores['bm25']`` (larger is better). With
        ``rank_tag`` set, each match also carries it as ``scores[rank_tag]`` (``op_name``
        'bm25'), the ranking of this branch for a ``FusionRanker`` after a join.
    ``/update``
        Replace the stored documents with these ids; passages (``parent_id`` set)
        replace all the stored passages of their document, stale ones removed (as
        ``MemmapIndexer``). Returns ``{'updated', 'missing', 'removed'}``.
    ``/delete``
        Delete the documents with these ids (and ``parameters['ids']``), and the passages
        of the documents with these ids. Returns ``{'deleted', 'missing'}``.
    ``/status``
        ``{'count', 'terms', 'postings', 'shard', 'workspace'}``.

    Storage (``<workspace>/sparse``; one folder per shard)
    -----------------------------------------------------
    A committed *generation* in ``gen-<n>/``: ``vocab.npy`` (the terms, position = term
    id; their UTF-8 bytes, ``vocab-ends.npy`` where each ends), ``ptr.npy`` (int64,
    V + 1), ``post_doc.npy`` (int32 row), ``post_tf.npy`` /
    ``post_name.npy`` (uint16 term frequency in the text / name), ``doc_len.npy`` /
    ``name_len.npy`` (float32), ``deleted.npy`` (bool; all false, as a commit drops
    deleted rows), ``ids.npy`` (row -> id; as ``vocab.npy``, with ``ids-ends.npy``);
    ``meta.json`` names the current one. The documents themselves are in a
    ``DocumentArrayMemmap`` (``docs``). Each ``/index`` and ``/delete`` appends one
    checksummed record to ``pending-<n>.log`` (the new ids, the new terms, the postings;
    memory stays bounded by one request); the next search, ``/status`` or ``close()``
    merges them into generation n + 1 (by one sort; past a million postings, one range of
    terms at a time, so that a commit needs ~50 MB plus some 60 bytes a term and 40 a row,
    however many postings, and spills up to 12 bytes a pending posting to disk meanwhile),
    and replacing ``meta.json`` switches to it. A commit keeps live rows only (deleted and
    replaced documents leave no posting, row or unused term behind), and the document store
    is pruned once its replaced and deleted records outnumber the live ones: BM25's
    statistics are those of the live documents, and an index that is updated again and
    again stays the size of what it holds.

    Durability: a change is on disk when its request is answered. A run killed at any
    point (during a request, a commit, or after) restarts from the generation that
    ``meta.json`` names plus its log, replayed: everything whose request was answered
    is found again; a record torn by the kill is cut off; what a killed commit left is
    removed. As for ``MemmapIndexer``, an OS crash or power loss can lose the last
    seconds (no fsync).

    Shards: ``polling={'/index': 'any', '*': 'all'}``, as for ``MemmapIndexer``; each shard
    computes IDF over its own documents (as Lucene shards do), and the Flow's default merge
    sorts the shards' matches by ``bm25`` (with ``rank_tag``, the branch's ranking goes
    with them: it is the matches).

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
        The name of this search branch: each match also carries its score under it
        (for a ``FusionRanker`` after a join of parallel branches).
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
        self._dam = DocumentArrayMemmap(os.path.join(self.path, 'docs'))  # one writer: it locks the folder
        self._parents = ParentMap(self._dam)
        self._load()

    # -- storage ---------------------------------------------------------------------------
    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _log_path(self, generation: int) -> str:
        return self._file(f'pending-{generation}.log')

    def _load(self) -> None:
        """Open the committed generation named by meta.json, remove what a killed run left
        of other generations, and replay the pending log on top."""
        meta_path = self._file('meta.json')
        meta = None
        if os.path.exists(meta_path):
            with open(meta_path, encoding='utf-8') as fp:
                meta = json.load(fp)
            if meta.get('format') != _FORMAT or meta.get('tokenizer') != TOKENIZER_VERSION:
                raise ValueError(f'the sparse index at {self.path} was written by another version (format '
                                 f'{meta.get("format")}, tokenizer {meta.get("tokenizer")}; this one reads format '
                                 f'{_FORMAT}, tokenizer {TOKENIZER_VERSION}): index again into a new workspace, '
                                 f'or delete {self.path} first')
        self._gen = int(meta['generation']) if meta else 0
        # Replaced and deleted documents' records in the document store as of that commit
        # (the rows deleted since, counted in _deleted, add theirs): it is pruned once they
        # outnumber the live ones. Older versions did not count them: 0.
        self._docs_dead = int(meta.get('docs_dead', 0)) if meta else 0
        if meta is None:
            self._vocab_list: list[str] = []
            self._arrays: dict[str, np.ndarray] = {
                'ptr': np.zeros(1, np.int64), 'post_doc': np.zeros(0, np.int32), 'post_tf': np.zeros(0, np.uint16),
                'post_name': np.zeros(0, np.uint16), 'doc_len': np.zeros(0, np.float32),
                'name_len': np.zeros(0, np.float32), 'deleted': np.zeros(0, bool)}
            self._ids: list[str] = []
        else:
            gen_dir = self._file(f'gen-{self._gen}')
            self._vocab_list = load_strings(os.path.join(gen_dir, 'vocab.npy'))
            self._arrays = {k: np.load(os.path.join(gen_dir, f'{k}.npy'), mmap_mode='r') for k in _ARRAYS}
            self._ids = load_strings(os.path.join(gen_dir, 'ids.npy'))
        self._remove_other_generations()
        self._vocab = {t: i for i, t in enumerate(self._vocab_list)}
        self._deleted = set(np.flatnonzero(self._arrays['deleted']).tolist())
        # A replaced id's latest row; a deleted one's none.
        self._row_of = {d: i for i, d in enumerate(self._ids) if i not in self._deleted}
        self._weighted_tf: np.ndarray | None = None
        self._pending_postings = 0   # in the log: the commit merges in memory or by term ranges
        replayed = end = 0
        for kind, payload, end in pending_log.records(self._log_path(self._gen)):
            # What was indexed and deleted since the commit, in order.
            if kind == _INDEX:
                head, _ = unpack_index(payload, with_postings=False)
                self._apply_index(head)
                self._pending_postings += head['postings']
            else:
                self._apply_delete(json.loads(bytes(payload))['ids'])
            replayed += 1
        pending_log.cut_torn_tail(self._log_path(self._gen), end)
        # A generation written before commits compacted can still hold deleted rows: the
        # next commit drops them (until then they are never returned, only counted by BM25).
        self._dirty = bool(replayed) or bool(self._deleted)
        if replayed:
            logger.info('%s: replayed %d pending records of %s', self.metas.name, replayed, self.path)

    def _remove_other_generations(self) -> None:
        # Left by a run killed during a commit: a half-written next generation, or the
        # previous one and its log (the switch to this one had happened).
        keep = {f'gen-{self._gen}', os.path.basename(self._log_path(self._gen))}
        for name in os.listdir(self.path):
            if name in keep or not (name.startswith('gen-') or name.startswith('pending-')
                                    or name == 'meta.tmp.json'):
                continue
            full = self._file(name)
            if os.path.isdir(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)

    def _apply_index(self, head: dict) -> None:
        """Take an index record's new rows and terms into the in-memory state (as index()
        did, and as a restart replays it)."""
        if head['row_base'] != len(self._ids) or head['vocab_base'] != len(self._vocab_list):
            raise ValueError(f'the pending log of the sparse index at {self.path} does not fit its '
                             f'committed arrays (rows {head["row_base"]} != {len(self._ids)} or terms '
                             f'{head["vocab_base"]} != {len(self._vocab_list)}); index again into a new workspace')
        for t in head['terms']:
            self._vocab[t] = len(self._vocab_list)
            self._vocab_list.append(t)
        for doc_id in head['ids']:
            old = self._row_of.get(doc_id)
            if old is not None:
                self._deleted.add(old)
            self._row_of[doc_id] = len(self._ids)
            self._ids.append(doc_id)

    def _apply_delete(self, ids: list[str]) -> None:
        for doc_id in ids:
            row = self._row_of.pop(doc_id, None)
            if row is not None:
                self._deleted.add(row)

    def commit(self) -> None:
        """Merge the pending postings into the term-grouped arrays and save them as the next
        generation (called by the next search, by ``/status`` and by ``close``; one stable
        sort of the postings by term, or for a large index one range of terms at a time, so
        that its memory stays bounded).

        The next generation holds live rows only: the postings of deleted and replaced rows
        are dropped, the rows renumbered and terms no live row uses removed, so BM25's
        statistics (N, document frequencies, average length) are those of a fresh index of
        the live documents and the index does not grow with updates.

        Example
        -------
        >>> idx.commit()  # doctest: +SKIP
        """
        if not self._dirty:
            return
        # The next generation is written whole in its own folder, then meta.json (replaced
        # atomically) switches to it: a run killed before the switch restarts from the
        # previous generation and its log (and removes this folder), one killed after from
        # this one.
        gen = self._gen + 1
        gen_dir = self._file(f'gen-{gen}')
        shutil.rmtree(gen_dir, ignore_errors=True)
        os.makedirs(gen_dir)
        live, used, postings = self._write_postings(gen_dir)
        # Rows and terms get new numbers in the next generation; the in-memory state takes
        # them once meta.json names it. Safe: that generation starts with an empty log, so
        # no record refers to the old numbers (a run killed before the switch replays the
        # old log over the old generation, both in the old numbers).
        dropped = bool(self._deleted)
        ids = [d for d, keep in zip(self._ids, live.tolist()) if keep] if dropped else self._ids
        vocab = (self._vocab_list if used.all()
                 else [t for t, keep in zip(self._vocab_list, used.tolist()) if keep])
        docs_dead = self._docs_dead + len(self._deleted)
        if docs_dead > len(ids):
            # Before the switch: a run killed after the prune restarts from the previous
            # generation, which names the same live documents (it only overcounts the dead).
            self._dam.prune()
            docs_dead = 0
        self._write_generation(gen, ids, vocab, docs_dead, postings)
        self._gen, self._ids, self._deleted, self._docs_dead = gen, ids, set(), docs_dead
        self._pending_postings = 0
        if dropped:   # else every row kept its number (one dict over all ids is worth sparing)
            self._row_of = {d: i for i, d in enumerate(ids)}
        if len(vocab) != len(self._vocab_list):
            self._vocab_list, self._vocab = vocab, {t: i for i, t in enumerate(vocab)}
        self._remove_other_generations()
        self._arrays = {k: np.load(os.path.join(gen_dir, f'{k}.npy'), mmap_mode='r') for k in _ARRAYS}
        self._dirty, self._weighted_tf = False, None
        logger.debug('%s: committed generation %d: %d rows, %d terms, %d postings', self.metas.name, gen,
                     len(ids), len(vocab), postings)

    def _write_postings(self, gen_dir: str) -> tuple[np.ndarray, np.ndarray, int]:
        """Write the next generation's arrays (``_ARRAYS``) into ``gen_dir``: (which rows are
        live, which terms are still used, how many postings it holds)."""
        live = np.ones(len(self._ids), bool)
        live[list(self._deleted)] = False
        if int(self._arrays['ptr'][-1]) + self._pending_postings <= _MERGE_POSTINGS:
            # the fastest, for an index of this size
            postings, used, lens = merge_in_memory(self._arrays, self._log_path(self._gen), live,
                                                   len(self._vocab_list), bool(self._deleted))
            out = {**postings, **self._row_arrays(lens, live)}
        else:
            merge = _RangeMerge(self._arrays, self._log_path(self._gen), live, len(self._vocab_list), gen_dir,
                                _MERGE_POSTINGS)
            counts, lens = merge.run()
            used = counts > 0
            out = {'ptr': _ptr_of(counts[used]), **self._row_arrays(lens, live)}
        for k, v in out.items():
            np.save(os.path.join(gen_dir, f'{k}.npy'), v)
        return live, used, int(out['ptr'][-1])

    def _row_arrays(self, lens: np.ndarray, live: np.ndarray) -> dict[str, np.ndarray]:
        """The next generation's per-row arrays, from the committed rows' lengths and the
        pending ones (``lens``: text and name length of each pending row, flat)."""
        a = self._arrays
        lens = lens.reshape(-1, 2)
        doc_len = np.concatenate([a['doc_len'], lens[:, 0]]).astype(np.float32)
        name_len = np.concatenate([a['name_len'], lens[:, 1]]).astype(np.float32)
        if len(doc_len) != len(self._ids):
            raise RuntimeError(f'sparse index at {self.path}: {len(doc_len)} row lengths for '
                               f'{len(self._ids)} rows; this is a bug, please report it')
        # 'deleted' is always empty now; kept so a generation stays in the format older code reads.
        return {'doc_len': doc_len[live], 'name_len': name_len[live], 'deleted': np.zeros(int(live.sum()), bool)}

    def _write_generation(self, gen: int, ids: list[str], vocab: list[str], docs_dead: int,
                          postings: int) -> None:
        """Complete generation ``gen`` (its arrays written already) and switch meta.json to it."""
        gen_dir = self._file(f'gen-{gen}')
        save_strings(os.path.join(gen_dir, 'vocab.npy'), vocab)
        save_strings(os.path.join(gen_dir, 'ids.npy'), ids)
        # The documents' own store saves its index too (it has its own log).
        self._dam.flush()
        with open(self._file('meta.tmp.json'), 'w', encoding='utf-8') as fp:
            json.dump({'format': _FORMAT, 'tokenizer': TOKENIZER_VERSION, 'generation': gen,
                       'rows': len(ids), 'terms': len(vocab), 'postings': postings,
                       'docs_dead': docs_dead}, fp)
        os.replace(self._file('meta.tmp.json'), self._file('meta.json'))

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
        vocab = self._vocab
        new_terms: dict[str, int] = {}   # taken into the vocabulary once the record is logged
        row_base, vocab_base = len(self._ids), len(self._vocab_list)
        for k, d in enumerate(docs):
            body = term_counts(d.text, self.max_chars)
            name: dict[str, int] = {}
            for t in path_terms(self._name_of(d), self.name_depth):
                name[t] = name.get(t, 0) + 1
            lens[k] = (sum(body.values()), sum(name.values()))
            for t in body.keys() | name.keys():
                tid = vocab.get(t)
                if tid is None:
                    tid = new_terms.setdefault(t, vocab_base + len(new_terms))
                terms.append(tid)
                rows.append(row_base + k)
                tfs.append(min(body.get(t, 0), 65535))
                names.append(min(name.get(t, 0), 65535))
        head = {'ids': [d.id for d in docs], 'terms': list(new_terms), 'row_base': row_base,
                'vocab_base': vocab_base}
        cols = {'terms': np.array(terms, np.int32), 'rows': np.array(rows, np.int32),
                'tf': np.array(tfs, np.uint16), 'name': np.array(names, np.uint16), 'lens': lens.reshape(-1)}
        # The documents first, then the record: a run killed between the two has stored
        # documents that no posting reaches yet, never postings of a missing document. (A
        # document stored again under its id is the new one while the old postings still
        # lead to it, until the request is sent again: its answer never went out.)
        stored = [Document(d, copy=True) if d.embedding is None else _without_embedding(d) for d in docs]
        self._dam.extend(stored)  # the stored copy needs no embedding: the index is the postings
        pending_log.append(self._log_path(self._gen), _INDEX, pack_index(head, cols))
        self._apply_index(head)
        self._pending_postings += len(terms)
        self._parents.stored(stored)
        self._dirty = True

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
        limit = match_limit(parameters, self.default_limit)  # (3.0 and numpy ints taken, as in a join)
        if limit is None:  # (default_limit=None: no limit)
            limit = len(self._ids)
        for d in docs:
            rows, scores = self.rank(d.text or '', limit)
            matches = []
            for row, s in zip(rows.tolist(), scores.tolist()):
                m = Document(self._dam[self._ids[row]], copy=True)
                m.scores = None  # (a stored document's own scores: assigning would merge into them)
                m.scores = branch_scores('bm25', float(s), self.rank_tag)
                matches.append(m)
            d.matches = matches

    @requests(on='/update')
    def update(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> dict:
        """Replace the stored documents with these ids (others are ignored); passages
        (``parent_id`` set) replace all the stored passages of their document, as
        ``MemmapIndexer``'s ``/update`` does.

        Example
        -------
        >>> idx.update(DocumentArray([Document(id='a', text='new text')]), {})  # doctest: +SKIP
        {'updated': 1, 'missing': 0, 'removed': 0}
        """
        store, stale, emptied = plan_update(docs, self._row_of.__contains__, self._parents)
        self._remove(stale)
        self.index(DocumentArray(store), parameters)
        return {'updated': len(store), 'missing': len(docs) - len(store) - emptied, 'removed': len(stale)}

    @requests(on='/delete')
    def delete(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> dict:
        """Delete the documents with these ids (and ``parameters['ids']``), and the passages of
        documents with these ids (stored documents whose ``parent_id`` is one); others are
        ignored. ``deleted`` counts stored documents removed, ``missing`` the ids that
        named none.

        Example
        -------
        >>> idx.delete(DocumentArray(), {'ids': ['a']})  # doctest: +SKIP
        {'deleted': 1, 'missing': 0}
        """
        gone, missing = resolve(requested_ids(docs, parameters), self._row_of.__contains__, self._parents)
        self._remove(gone)
        return {'deleted': len(gone), 'missing': missing}

    def _remove(self, ids: list[str]) -> None:
        if not ids:
            return
        # The record first, then the documents: a run killed between the two keeps
        # documents that no posting reaches, never postings of a missing document.
        pending_log.append(self._log_path(self._gen), _DELETE, [json.dumps({'ids': ids}).encode('utf-8')])
        self._apply_delete(ids)
        self._dirty = True
        for doc_id in ids:
            if doc_id in self._dam:
                del self._dam[doc_id]
            self._parents.removed(doc_id)

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
