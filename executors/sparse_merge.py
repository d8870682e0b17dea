"""A SparseIndexer commit too large to sort at once, merged one range of terms at a time
(``RangeMerge``), so that its memory does not grow with the index; ``sparse`` uses it past
``sparse._MERGE_POSTINGS`` postings, and below that ``merge_in_memory`` (one sort).

Example
-------
>>> ptr_of(np.array([2, 0, 3]))
array([0, 2, 2, 5])
"""
from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any, BinaryIO, Iterator

import numpy as np

from . import pending_log
from .bm25 import POSTINGS, unpack_index

__all__ = ['RangeMerge', 'merge_in_memory', 'ptr_of', 'INDEX', 'DELETE']

# Records of the pending log (executors.pending_log): what changed since the last commit.
INDEX, DELETE = 1, 2
# A pending posting as the range merge spills it to disk (its row already renumbered).
_SPILL = np.dtype([('term', '<i4'), ('row', '<i4'), ('tf', '<u2'), ('name', '<u2')])


def ptr_of(counts: np.ndarray) -> np.ndarray:
    """Where each term's postings start (and the last ends), from their counts."""
    ptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return ptr


def merge_in_memory(arrays: dict[str, np.ndarray], log_path: str, live: np.ndarray, n_terms: int,
                    any_deleted: bool) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The next generation's postings (``ptr``, ``post_doc``, ``post_tf``, ``post_name``:
    the committed ``arrays`` and the pending log's, those of rows not ``live`` dropped,
    grouped by term), which terms are still used, and the pending rows' lengths (text and
    name, flat), by one sort in memory (~50 bytes a posting).

    Example
    -------
    >>> postings, used, lens = merge_in_memory(arrays, log_path, live, len(vocab), False)  # doctest: +SKIP
    """
    pend: dict[str, list[np.ndarray]] = {name: [] for name in POSTINGS}
    for kind, payload, _ in pending_log.records(log_path):
        if kind == INDEX:
            _, cols = unpack_index(payload, with_postings=True)
            for name in POSTINGS:
                pend[name].append(cols[name])
    cols = {name: np.concatenate(parts) if parts else np.zeros(0, POSTINGS[name]) for name, parts in pend.items()}
    del pend
    a = arrays
    rows = np.concatenate([a['post_doc'], cols['rows']])
    terms = np.concatenate([np.repeat(np.arange(len(a['ptr']) - 1, dtype=np.int32), np.diff(a['ptr'])),
                            cols['terms']])
    keep = np.flatnonzero(live[rows]) if any_deleted else None
    if keep is not None:
        terms = terms[keep]
    order = np.argsort(terms, kind='stable')  # old postings first within a term: rows stay sorted
    if keep is not None:
        order = keep[order]   # positions in the concatenated columns
    del keep
    counts = np.bincount(terms, minlength=n_terms)
    del terms
    used = counts > 0
    new_row = np.cumsum(live, dtype=np.int64) - 1   # live row -> its row in the next generation
    postings = {'ptr': ptr_of(counts[used]),
                'post_doc': new_row[rows[order]].astype(np.int32),
                'post_tf': np.concatenate([a['post_tf'], cols['tf']])[order],
                'post_name': np.concatenate([a['post_name'], cols['name']])[order]}
    return postings, used, cols['lens']


class RangeMerge:
    """The postings of a commit too large to sort at once (over ``_MERGE_POSTINGS``) merged
    one range of terms at a time, into the same arrays as ``merge_in_memory``.

    Pass 1 counts each term's live postings (the next ``ptr``) and cuts the terms into
    ranges of at most ``chunk`` postings; pass 2 spills the pending postings, in log order,
    to one file per range; then each range's committed postings and its spill file are
    sorted by term, stably (committed before pending, so rows stay ascending within a term),
    and appended to ``post_doc.npy``, ``post_tf.npy`` and ``post_name.npy`` in ``gen_dir``.
    Memory: ~50 bytes a posting of one range, ~60 a term and ~40 a row; disk: 12 bytes a
    pending posting, in ``gen_dir`` (which a killed commit's restart removes) until the
    arrays are written.

    Example
    -------
    >>> counts, lens = _RangeMerge(arrays, log, live, len(vocab), gen_dir, 2_000_000).run()  # doctest: +SKIP
    """

    def __init__(self, arrays: dict[str, np.ndarray], log_path: str, live: np.ndarray, n_terms: int,
                 gen_dir: str, chunk: int) -> None:
        self.a, self.log_path, self.live, self.gen_dir = arrays, log_path, live, gen_dir
        self.n_terms, self.chunk = n_terms, max(1, int(chunk))
        self.any_dead = not live.all()
        self.new_row = np.cumsum(live, dtype=np.int32) - 1   # live row -> its row in the next generation
        self.old_ptr = np.asarray(arrays['ptr'], np.int64)
        self.n_old_terms = len(self.old_ptr) - 1
        self.old = np.zeros(n_terms, np.int64)               # committed postings per term, dead ones too
        self.old[:self.n_old_terms] = np.diff(self.old_ptr)
        self.spill_dir = os.path.join(gen_dir, 'spill')

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        """Write the postings; (live postings per term, the pending rows' lengths as logged)."""
        pending, lens = self.count_pending()
        counts = self.old - self.dead_committed() + pending
        bounds = self.term_ranges(self.old + pending)   # the committed dead too: they are read
        self.spill_pending(bounds)
        self.write_ranges(bounds, counts)
        shutil.rmtree(self.spill_dir)
        return counts, lens

    def _pending(self) -> Iterator[dict[str, np.ndarray]]:
        """The postings of each index record of the log, one record in memory at a time."""
        for kind, payload, _ in pending_log.records(self.log_path):
            if kind == INDEX:
                yield unpack_index(payload, with_postings=True)[1]

    def count_pending(self) -> tuple[np.ndarray, np.ndarray]:
        """Pass 1: the live pending postings of each term, and the pending rows' lengths."""
        counts = np.zeros(self.n_terms, np.int64)
        lens: list[np.ndarray] = []
        held: list[np.ndarray] = []
        n = 0
        for cols in self._pending():
            lens.append(cols['lens'].copy())   # (a view would hold the whole record)
            terms = cols['terms'][self.live[cols['rows']]] if self.any_dead else cols['terms'].copy()
            held.append(terms)
            n += len(terms)
            if n >= self.chunk:   # one bincount per chunk, not per record: it allocates a count per term
                counts += np.bincount(np.concatenate(held), minlength=self.n_terms)
                held, n = [], 0
        if held:
            counts += np.bincount(np.concatenate(held), minlength=self.n_terms)
        return counts, np.concatenate(lens) if lens else np.zeros(0, np.float32)

    def dead_committed(self) -> np.ndarray:
        """The committed postings of each term whose row is not live any more."""
        dead = np.zeros(self.n_terms, np.int64)
        if not self.any_dead:
            return dead
        n = len(self.a['post_doc'])
        for lo in range(0, n, self.chunk):
            pos = np.flatnonzero(~self.live[_read(self.a['post_doc'], lo, min(n, lo + self.chunk))]) + lo
            if len(pos):
                dead += np.bincount(np.searchsorted(self.old_ptr, pos, 'right') - 1, minlength=self.n_terms)
        return dead

    def term_ranges(self, weight: np.ndarray) -> np.ndarray:
        """Bounds ``t0 < t1 < ...`` of term ranges with at most ``chunk`` postings to read
        (``weight`` per term) each; a term with more is a range of its own."""
        ends = np.cumsum(weight)
        bounds = [0]
        while bounds[-1] < self.n_terms:
            t0 = bounds[-1]
            base = int(ends[t0 - 1]) if t0 else 0
            bounds.append(max(int(np.searchsorted(ends, base + self.chunk, 'right')), t0 + 1))
        return np.array(bounds, np.int64)

    def _spill_path(self, r: int) -> str:
        return os.path.join(self.spill_dir, f'{r}.bin')

    def spill_pending(self, bounds: np.ndarray) -> None:
        """Pass 2: append each live pending posting (its row renumbered) to its range's
        file, in log order, ``chunk`` postings held at most."""
        os.makedirs(self.spill_dir)
        held: dict[int, list[np.ndarray]] = {}
        n = 0
        for cols in self._pending():
            keep = self.live[cols['rows']] if self.any_dead else slice(None)
            terms = cols['terms'][keep]
            if not len(terms):
                continue
            rec = np.empty(len(terms), _SPILL)
            rec['term'], rec['row'] = terms, self.new_row[cols['rows'][keep]]
            rec['tf'], rec['name'] = cols['tf'][keep], cols['name'][keep]
            of = np.searchsorted(bounds, terms, 'right') - 1   # the range of each posting
            order = np.argsort(of, kind='stable')              # (stable: log order within a range)
            rec, of = rec[order], of[order]
            cuts = np.flatnonzero(of[1:] != of[:-1]) + 1
            for r, piece in zip(of[np.r_[0, cuts]].tolist(), np.split(rec, cuts)):
                held.setdefault(r, []).append(piece)
            n += len(rec)
            if n >= self.chunk:
                self._flush(held)
                held, n = {}, 0
        self._flush(held)

    def _flush(self, held: dict[int, list[np.ndarray]]) -> None:
        # Opened per flush, not kept open: a range count can exceed the open-file limit.
        for r, pieces in held.items():
            with open(self._spill_path(r), 'ab') as fp:
                for piece in pieces:
                    fp.write(piece.data)

    def write_ranges(self, bounds: np.ndarray, counts: np.ndarray) -> None:
        """Append each range's postings, range after range, to the next generation's files."""
        names = {'post_doc': np.int32, 'post_tf': np.uint16, 'post_name': np.uint16}
        total = int(counts.sum())
        with contextlib.ExitStack() as stack:
            files = {name: stack.enter_context(_open_npy(os.path.join(self.gen_dir, f'{name}.npy'), dtype, total))
                     for name, dtype in names.items()}
            for r, (t0, t1) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
                n = 0
                for cols in self._range_postings(r, t0, t1):
                    for name, dtype in names.items():
                        files[name].write(np.ascontiguousarray(cols[name], dtype).data)
                    n += len(cols['post_doc'])
                if n != int(counts[t0:t1].sum()):
                    raise RuntimeError(f'sparse index commit: {n} postings for terms {t0}:{t1}, '
                                       f'{int(counts[t0:t1].sum())} counted; this is a bug, please report it')

    def _committed(self, lo: int, hi: int) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """(which were kept or None for all, the live committed postings lo:hi, rows renumbered)."""
        doc, tf, name = (_read(self.a[k], lo, hi) for k in ('post_doc', 'post_tf', 'post_name'))
        keep = self.live[doc] if self.any_dead else None
        if keep is not None:
            doc, tf, name = doc[keep], tf[keep], name[keep]
        return keep, {'post_doc': self.new_row[doc], 'post_tf': tf, 'post_name': name}

    def _range_postings(self, r: int, t0: int, t1: int) -> Iterator[dict[str, np.ndarray]]:
        """The live postings of terms t0..t1-1 in the next generation's order, in pieces."""
        lo, hi = (int(self.old_ptr[min(t, self.n_old_terms)]) for t in (t0, t1))
        path = self._spill_path(r)
        spilled = os.path.exists(path)
        if t1 - t0 == 1:   # one term: nothing to sort, so streamed however many postings it has
            for s in range(lo, hi, self.chunk):
                yield self._committed(s, min(hi, s + self.chunk))[1]
            if spilled:
                with open(path, 'rb') as fp:
                    while len(rec := np.fromfile(fp, _SPILL, self.chunk)):
                        yield {'post_doc': rec['row'], 'post_tf': rec['tf'], 'post_name': rec['name']}
            return
        keep, old = self._committed(lo, hi)
        if not spilled:    # committed postings are grouped by term already
            yield old
            return
        t_old = min(t1, self.n_old_terms)
        terms = np.repeat(np.arange(t0, max(t0, t_old), dtype=np.int32), self.old[t0:max(t0, t_old)])
        if keep is not None:
            terms = terms[keep]
        rec = np.fromfile(path, _SPILL)
        order = np.argsort(np.concatenate([terms, rec['term']]), kind='stable')
        del terms
        yield {name: np.concatenate([old[name], rec[field]])[order]
               for name, field in (('post_doc', 'row'), ('post_tf', 'tf'), ('post_name', 'name'))}


def _read(array: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``array[lo:hi]``, read from its file if it is a memory map: the pages a commit reads
    once stay out of this process's resident memory (they would stay in it, mapped, until
    the generation is closed)."""
    if isinstance(array, np.memmap) and array.filename and hi > lo:
        return np.fromfile(array.filename, array.dtype, hi - lo, offset=array.offset + lo * array.itemsize)
    return np.array(array[lo:hi])


def _open_npy(path: str, dtype: Any, n: int) -> BinaryIO:
    """A new .npy file of ``n`` values of ``dtype`` (as ``np.save`` writes it), open after
    its header for the values to be appended: written by ``write``, they never sit in this
    process's memory as a memory map's dirty pages would."""
    fp = open(path, 'wb')
    try:
        np.lib.format.write_array_header_1_0(fp, {'descr': np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                  'fortran_order': False, 'shape': (n,)})
    except BaseException:
        fp.close()
        raise
    return fp
