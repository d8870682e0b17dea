"""LSAEncoder: a dense text encoder learned from the corpus itself (TF-IDF + truncated SVD).

Latent semantic analysis: the TF-IDF matrix of the passages (terms from
:mod:`executors.terms`) is factored by a randomized truncated SVD (Halko, Martinsson and
Tropp 2011), numpy only; a text's embedding is its TF-IDF vector projected on the top
``dim`` right singular vectors. Terms that occur in the same passages get close
directions, so "send mail" finds ``smtplib`` code that never says "send mail".

Example
-------
>>> from runtime import Flow
>>> with Flow(workspace='ws').add(uses=LSAEncoder, uses_with={'dim': 64}) as f:  # doctest: +SKIP
...     f.post('/fit', passages)                                  # streamed, any number of requests
...     f.post('/index', passages, on_done=store)                 # fits first, then encodes
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Iterable, Sequence

import numpy as np

from runtime import Document, DocumentArray, Executor, requests

from .terms import TOKENIZER_VERSION, load_strings, path_terms, save_strings, term_counts

__all__ = ['LSAEncoder', 'randomized_svd', 'csr_matmul', 'csr_rmatmul']

logger = logging.getLogger(__name__)

#: 2: vocab.npy holds UTF-8 bytes (terms.save_strings), not a padded str array.
_FORMAT = 2
_MASK64 = (1 << 64) - 1
#: Postings handled at a time by the sparse products: bounds their scratch memory to about
#: BLOCK_NNZ * (dim + 10) * 8 bytes whatever the corpus size.
BLOCK_NNZ = 1 << 15


def _row_blocks(indptr: np.ndarray, block_nnz: int) -> Iterable[tuple[int, int]]:
    n = len(indptr) - 1
    row = 0
    while row < n:
        end = int(np.searchsorted(indptr, indptr[row] + block_nnz, side='right')) - 1
        end = min(max(end, row + 1), n)
        yield row, end
        row = end


def csr_matmul(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, x: np.ndarray,
               block_nnz: int = BLOCK_NNZ) -> np.ndarray:
    """``A @ x`` for a CSR matrix ``A`` given by its three arrays (no scipy).

    Example
    -------
    >>> csr_matmul(np.array([0, 2, 2, 3]), np.array([0, 1, 1]), np.array([1., 2., 3.]), np.eye(2)).tolist()
    [[1.0, 2.0], [0.0, 0.0], [0.0, 3.0]]
    """
    n = len(indptr) - 1
    out = np.zeros((n, x.shape[1]), np.result_type(data.dtype, x.dtype))
    for lo_row, hi_row in _row_blocks(indptr, block_nnz):
        lo, hi = int(indptr[lo_row]), int(indptr[hi_row])
        if hi == lo:
            continue
        g = x[indices[lo:hi]] * data[lo:hi, None]
        starts = indptr[lo_row:hi_row] - lo
        ends = indptr[lo_row + 1:hi_row + 1] - lo
        full = starts < ends
        # reduceat over the non-empty rows' starts: an empty row adds nothing in between.
        out[lo_row:hi_row][full] = np.add.reduceat(g, starts[full], axis=0)
    return out


def csr_rmatmul(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, y: np.ndarray, ncols: int,
                block_nnz: int = BLOCK_NNZ) -> np.ndarray:
    """``A.T @ y`` for a CSR matrix ``A`` with ``ncols`` columns (no transposed copy of A:
    each block of postings is sorted by column on the fly).

    Example
    -------
    >>> csr_rmatmul(np.array([0, 2, 2, 3]), np.array([0, 1, 1]), np.array([1., 2., 3.]), np.eye(3), 2).tolist()
    [[1.0, 0.0, 0.0], [2.0, 0.0, 3.0]]
    """
    out = np.zeros((ncols, y.shape[1]), np.result_type(data.dtype, y.dtype))
    for lo_row, hi_row in _row_blocks(indptr, block_nnz):
        lo, hi = int(indptr[lo_row]), int(indptr[hi_row])
        if hi == lo:
            continue
        rows = np.repeat(np.arange(lo_row, hi_row), np.diff(indptr[lo_row:hi_row + 1]))
        cols = indices[lo:hi]
        order = np.argsort(cols, kind='stable')
        cs = cols[order]
        uniq, first = np.unique(cs, return_index=True)
        g = y[rows[order]] * data[lo:hi][order, None]
        out[uniq] += np.add.reduceat(g, first, axis=0)
    return out


def randomized_svd(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, ncols: int, k: int,
                   oversample: int = 10, power_iters: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` singular values and right singular vectors ``(ncols, k)`` of a CSR matrix.

    Randomized range finder with ``power_iters`` power iterations (re-orthonormalised each
    time), then an exact SVD of the small projected matrix. Costs ``2 (power_iters + 1)``
    sparse products with ``k + oversample`` columns.

    Example
    -------
    >>> s, v = randomized_svd(np.array([0, 1, 2]), np.array([0, 1]), np.array([3., 1.]), 2, 1)
    >>> s.round(3).tolist(), np.abs(v[:, 0]).round(3).tolist()
    ([3.0], [1.0, 0.0])
    """
    n = len(indptr) - 1
    ell = min(k + oversample, n, ncols)
    rng = np.random.default_rng(seed)
    omega = rng.standard_normal((ncols, ell)).astype(np.float32)
    q, _ = np.linalg.qr(csr_matmul(indptr, indices, data, omega))
    del omega
    for _ in range(power_iters):
        z, _ = np.linalg.qr(csr_rmatmul(indptr, indices, data, q, ncols))
        q, _ = np.linalg.qr(csr_matmul(indptr, indices, data, z))
    bt = csr_rmatmul(indptr, indices, data, q, ncols)   # (Q^T A)^T, ncols x ell
    u, s, _ = np.linalg.svd(bt, full_matrices=False)
    k = min(k, ell)
    return s[:k].astype(np.float32), np.ascontiguousarray(u[:, :k], np.float32)


class _FitData:
    """The term counts of the passages seen by ``/fit``, as growing CSR pieces; at most
    ``cap`` rows are kept, a uniform sample chosen by hash (keep rows whose hash has its
    low ``level`` bits zero, one more bit each time the sample outgrows the cap)."""

    def __init__(self, cap: int) -> None:
        self.cap, self.level = cap, 0
        self.vocab: dict[str, int] = {}
        self.lengths: list[np.ndarray] = []
        self.indices: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.hashes: list[np.ndarray] = []
        self.rows = 0
        self.seen = 0
        self.fingerprint = 0

    def add(self, counts: Sequence[dict[str, float]], hashes: Sequence[int]) -> None:
        idx: list[int] = []
        val: list[float] = []
        lens: list[int] = []
        kept: list[int] = []
        mask = (1 << self.level) - 1
        vocab = self.vocab
        for c, h in zip(counts, hashes):
            self.seen += 1
            self.fingerprint = (self.fingerprint + h) & _MASK64
            if h & mask:
                continue
            for t, v in c.items():
                tid = vocab.get(t)
                if tid is None:
                    tid = vocab[t] = len(vocab)
                idx.append(tid)
                val.append(v)
            lens.append(len(c))
            kept.append(h)
        if kept:
            self.indices.append(np.array(idx, np.int32))
            self.counts.append(np.array(val, np.float32))
            self.lengths.append(np.array(lens, np.int64))
            self.hashes.append(np.array(kept, np.uint64))
            self.rows += len(kept)
        while self.rows > self.cap:
            self._halve()

    def _halve(self) -> None:
        self.level += 1
        lens, idx, val, hashes = self.arrays()
        keep = (hashes & np.uint64((1 << self.level) - 1)) == 0
        entry_keep = np.repeat(keep, lens)
        self.indices, self.counts = [idx[entry_keep]], [val[entry_keep]]
        self.lengths, self.hashes = [lens[keep]], [hashes[keep]]
        self.rows = int(keep.sum())

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(row lengths, term ids, counts, row hashes), each concatenated once."""
        def cat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
            out = np.concatenate(parts) if parts else np.zeros(0, dtype)
            parts.clear()  # the pieces go: the corpus is held once
            return out
        return (cat(self.lengths, np.int64), cat(self.indices, np.int32), cat(self.counts, np.float32),
                cat(self.hashes, np.uint64))


class LSAEncoder(Executor):
    """Embed texts with a latent semantic model fitted on the corpus (no download).

    Endpoints
    ---------
    ``/fit``
        Add the request's documents to the fitting set (streamed: send the corpus in as
        many requests as you like). With ``parameters={'finish': True}`` the model is
        fitted at the end of that request; otherwise at the first ``/index`` or
        ``/search`` that follows. If the documents are exactly those the saved model was
        fitted on (same fingerprint: a hash of every text and name, in any order) and
        the settings are the same, the saved model is kept: no refit. Returns
        ``{'fitted': bool, 'docs': n}`` when it finishes.
    ``/index``, ``/search``, ``/update``
        Set ``docs.embeddings``: the L2-normalised projection of each text's TF-IDF vector
        (a text with no known term gets a zero vector). Raises if no model was fitted.

    Fitting
    -------
    The term counts of the fitting set are held once, as numpy CSR arrays (8 bytes per
    distinct term of a passage), never as Python lists of tokens; with more than
    ``max_fit_docs`` passages a uniform sample of them is kept (chosen by hash), which
    bounds the memory whatever the corpus. Terms in fewer than ``min_df`` passages are
    dropped (unless that leaves none: then every term is kept, with a warning) and at most
    ``max_features`` (the most frequent) kept. The model is saved in
    ``<workspace>/lsa`` (``vocab.npy`` and ``vocab-ends.npy``, ``idf.npy``,
    ``components.npy``, ``model.json`` with the fingerprint and settings) and loaded when
    the executor starts. Fit with one replica: each replica would see part of the corpus.

    Parameters
    ----------
    dim : int
        Embedding size (default 256).
    min_df : int
        Least number of fitting passages a term must occur in (default 2; 1 if no term
        occurs in that many).
    max_features : int
        Largest vocabulary (default 60,000).
    max_fit_docs : int
        Largest fitting sample (default 60,000 passages).
    name_weight : float
        Weight of the words of the file and folder name (``tags[path_tag]`` or ``uri``)
        among a passage's terms (default 2.0).
    power_iters, oversample, seed : int
        Of the randomized SVD (defaults 2, 10, 0).

    Example
    -------
    >>> enc = LSAEncoder(metas={'workspace': '/tmp/lsa-doc'}, dim=2, min_df=1)  # doctest: +SKIP
    >>> enc.fit(DocumentArray([Document(text='gzip file'), Document(text='send mail')]), {'finish': True})  # doctest: +SKIP
    {'fitted': True, 'docs': 2}
    """

    def __init__(self, dim: int = 256, min_df: int = 2, max_features: int = 60_000, max_fit_docs: int = 60_000,
                 name_weight: float = 2.0, name_depth: int = 3, path_tag: str = 'path', max_chars: int = 100_000,
                 power_iters: int = 2, oversample: int = 10, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f'dim must be a positive int, got {dim!r}')
        self.dim, self.min_df, self.max_features, self.max_fit_docs = dim, min_df, max_features, max_fit_docs
        self.name_weight, self.name_depth, self.path_tag, self.max_chars = name_weight, name_depth, path_tag, max_chars
        self.power_iters, self.oversample, self.seed = power_iters, oversample, seed
        self.path = os.path.join(self.workspace, 'lsa')
        self._fit: _FitData | None = None
        self._vocab: dict[str, int] = {}
        self._idf: np.ndarray | None = None
        self._components: np.ndarray | None = None
        self.fingerprint: str | None = None
        self._load()

    @property
    def settings(self) -> dict:
        """What changes the model besides the corpus (a saved model is kept only if equal).

        >>> LSAEncoder(metas={'workspace': '/tmp/lsa-doc'}).settings['dim']  # doctest: +SKIP
        256
        """
        return {'format': _FORMAT, 'tokenizer': TOKENIZER_VERSION, 'dim': self.dim, 'min_df': self.min_df,
                'max_features': self.max_features, 'max_fit_docs': self.max_fit_docs,
                'name_weight': self.name_weight, 'name_depth': self.name_depth, 'path_tag': self.path_tag,
                'max_chars': self.max_chars, 'power_iters': self.power_iters, 'oversample': self.oversample,
                'seed': self.seed}

    @property
    def fitted(self) -> bool:
        """Whether a model is loaded (fitted here or read from the workspace).

        >>> LSAEncoder(metas={'workspace': '/tmp/lsa-empty'}).fitted  # doctest: +SKIP
        False
        """
        return self._components is not None

    # -- model files -----------------------------------------------------------------------
    def _load(self) -> None:
        meta_path = os.path.join(self.path, 'model.json')
        if not os.path.exists(meta_path):
            return
        with open(meta_path, encoding='utf-8') as fp:
            meta = json.load(fp)
        if meta.get('settings') != self.settings:
            logger.info('%s: the saved model has other settings; it will be refitted', self.metas.name)
            return
        self._vocab = {t: i for i, t in enumerate(load_strings(os.path.join(self.path, 'vocab.npy')))}
        self._idf = np.load(os.path.join(self.path, 'idf.npy'))
        self._components = np.load(os.path.join(self.path, 'components.npy'), mmap_mode='r')
        self.fingerprint = meta['fingerprint']

    def _save(self, vocab: list[str], meta: dict) -> None:
        os.makedirs(self.path, exist_ok=True)
        meta_path = os.path.join(self.path, 'model.json')
        if os.path.exists(meta_path):
            os.unlink(meta_path)   # no model.json until every array of the new model is written
        save_strings(os.path.join(self.path, 'vocab.npy'), vocab)
        np.save(os.path.join(self.path, 'idf.npy'), self._idf)
        np.save(os.path.join(self.path, 'components.npy'), self._components)
        with open(meta_path, 'w', encoding='utf-8') as fp:
            json.dump(meta, fp, indent=1)

    # -- features --------------------------------------------------------------------------
    def _doc_counts(self, d: Document) -> dict[str, float]:
        counts: dict[str, float] = dict(term_counts(d.text, self.max_chars))
        tags = d.tags
        name = (tags.get(self.path_tag) if tags else None) or d.uri or None
        for t in path_terms(name, self.name_depth):
            counts[t] = counts.get(t, 0.0) + self.name_weight
        return counts

    @staticmethod
    def _doc_hash(d: Document) -> int:
        h = hashlib.blake2b(digest_size=8)
        h.update((d.text or '').encode('utf-8', 'surrogatepass'))
        h.update(b'\0')
        h.update(((d.tags.get('path') if d.tags else None) or d.uri or '').encode('utf-8', 'surrogatepass'))
        return int.from_bytes(h.digest(), 'little')

    # -- endpoints -------------------------------------------------------------------------
    @requests(on='/fit')
    def fit(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> dict | None:
        """Add the documents to the fitting set; with ``parameters['finish']``, fit now.

        Example
        -------
        >>> enc.fit(passages, {})  # doctest: +SKIP
        >>> enc.fit(DocumentArray(), {'finish': True})  # doctest: +SKIP
        {'fitted': True, 'docs': 1234}
        """
        if self._fit is None:
            self._fit = _FitData(self.max_fit_docs)
        self._fit.add([self._doc_counts(d) for d in docs], [self._doc_hash(d) for d in docs])
        if parameters.get('finish'):
            return self.finish_fit()
        return None

    def finish_fit(self) -> dict:
        """Fit the model on the documents sent to ``/fit`` (unless the saved model was fitted
        on the same ones) and save it.

        Example
        -------
        >>> enc.finish_fit()  # doctest: +SKIP
        {'fitted': False, 'docs': 1234}
        """
        data, self._fit = self._fit, None
        if data is None:
            raise ValueError(f'{self.metas.name}: nothing to fit on: send the corpus to /fit first')
        if data.seen == 0:
            raise ValueError(f'{self.metas.name}: nothing to fit on: the requests sent to /fit held no '
                             f'documents (an empty corpus?): send documents with text')
        fingerprint = f'{data.seen}:{data.fingerprint:016x}'
        if self.fitted and fingerprint == self.fingerprint:
            logger.info('%s: corpus unchanged (%s): keeping the saved model', self.metas.name, fingerprint)
            return {'fitted': False, 'docs': data.seen}
        lens, idx, val, _ = data.arrays()
        terms = list(data.vocab)
        del data
        n = len(lens)
        df = np.bincount(idx, minlength=len(terms))
        keep = np.flatnonzero(df >= self.min_df)
        if len(keep) == 0 and len(terms):
            # A tiny corpus (one file: no term is in two passages). A model of every term
            # serves better than none, which would fail every /index and /search.
            logger.warning('%s: no term occurs in %d or more of the %d fitting passages: fitting on all %d '
                           'terms (min_df=1)', self.metas.name, self.min_df, n, len(terms))
            keep = np.arange(len(terms))
        if len(keep) > self.max_features:
            keep = keep[np.argsort(-df[keep], kind='stable')[:self.max_features]]
            keep.sort()
        remap = np.full(len(terms), -1, np.int64)
        remap[keep] = np.arange(len(keep))
        idf = (np.log((1.0 + n) / (1.0 + df[keep])) + 1.0).astype(np.float32)
        new = remap[idx]
        ok = new >= 0
        rows = np.repeat(np.arange(n), lens)[ok]
        indices = new[ok].astype(np.int32)
        del new, idx
        values = np.log1p(val[ok]) * idf[indices]   # sublinear tf
        del val, ok
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        del rows
        # Unit rows: long passages must not dominate the factorisation.
        norms = np.sqrt(np.add.reduceat(values ** 2, indptr[:-1].clip(max=max(len(values) - 1, 0)))
                        if len(values) else np.zeros(n))
        norms[np.diff(indptr) == 0] = 1.0
        values = (values / np.repeat(norms, np.diff(indptr))).astype(np.float32)
        if len(keep) == 0:
            raise ValueError(f'{self.metas.name}: the {n} fitting passages hold no terms (words of two or more '
                             f'letters that are not stop words): send documents with text')
        _, comps = randomized_svd(indptr, indices, values, len(keep), self.dim, self.oversample,
                                  self.power_iters, self.seed)
        if comps.shape[1] < self.dim:  # a tiny corpus: pad, so the embedding size is what was asked
            comps = np.hstack([comps, np.zeros((comps.shape[0], self.dim - comps.shape[1]), np.float32)])
        vocab = [terms[i] for i in keep.tolist()]
        self._vocab = {t: i for i, t in enumerate(vocab)}
        self._idf, self._components, self.fingerprint = idf, comps, fingerprint
        self._save(vocab, {'fingerprint': fingerprint, 'settings': self.settings, 'fit_docs': n,
                           'terms': len(vocab)})
        logger.info('%s: fitted on %d passages, %d terms -> %d dims', self.metas.name, n, len(vocab), self.dim)
        return {'fitted': True, 'docs': int(n)}

    def embed(self, docs: Sequence[Document]) -> np.ndarray:
        """The (N, dim) float32 embeddings of documents (text and name words).

        Example
        -------
        >>> enc.embed([Document(text='send mail')]).shape  # doctest: +SKIP
        (1, 256)
        """
        if self._fit is not None:
            self.finish_fit()
        if not self.fitted:
            raise ValueError(f'{self.metas.name}: no model in {self.path}: post the corpus to /fit first')
        idx: list[int] = []
        val: list[float] = []
        indptr = np.zeros(len(docs) + 1, np.int64)
        vocab = self._vocab
        for k, d in enumerate(docs):
            for t, v in self._doc_counts(d).items():
                i = vocab.get(t)
                if i is not None:
                    idx.append(i)
                    val.append(v)
            indptr[k + 1] = len(idx)
        indices = np.array(idx, np.int64)
        values = np.log1p(np.array(val, np.float32)) * self._idf[indices]
        emb = csr_matmul(indptr, indices, values.astype(np.float32), self._components)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return (emb / np.maximum(norms, 1e-12)).astype(np.float32)

    @requests(on=['/index', '/search', '/update'])
    def encode(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> None:
        """Set ``docs.embeddings`` (fitting first if ``/fit`` documents are waiting).

        Example
        -------
        >>> enc.encode(DocumentArray([Document(text='compress data')]), {})  # doctest: +SKIP
        """
        if len(docs):
            docs.embeddings = self.embed(docs)
