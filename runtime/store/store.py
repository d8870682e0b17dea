"""One open DocumentArrayMemmap directory: its files, index, writer lock, reads and writes.

Files in the directory (``<g>`` is the generation, bumped by prune / clear / repair):
``meta.json`` (format, version, generation, embedding layout, crc; replaced atomically: it
is the single switch between generations), ``records.<g>.bin`` (:mod:`.log`),
``embeddings.<g>.bin`` (:mod:`.embeddings`), ``index.<g>.pkl`` (:mod:`.index`) and
``writer.lock`` (``flock``-ed by the one process that writes). All are created 0600.

A record is written with one unbuffered ``os.write`` after its embedding row is in the
(shared, page-cache backed) map, so a writer killed at any point leaves a valid prefix plus
at most a torn tail, which readers skip and the next writer cuts off. ``flush()`` does not
fsync unless ``sync=True``: the page cache survives the process (SIGKILL included).

Within one process every DocumentArrayMemmap on the same directory shares one Store (the
usual "reopen" pattern sees the same documents and may write); across processes one
writes at a time (``flock``) and any number read. Records are pickles: open only
directories you (or code you trust) wrote.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import pickle
from typing import Any, Iterable, Sequence

import numpy as np

from ..document import Document
from ..errors import CorruptStoreError
from .embeddings import EmbeddingStore
from . import directory
from .format import (LOCK, META, OP_LAYOUT, atomic_write, file_name, has_store_files, layout_payload, matrix_ok,
                     meta_bytes, open_new, parse_layout, parse_meta, record)
from .index import Index, load_snapshot, snapshot_bytes, snapshot_stamp, synced_bytes_of
from .log import RecordLog, encode_del, encode_put

__all__ = ['Store']

logger = logging.getLogger('runtime')

_EMB = Document.FIELDS.index('embedding')  # Document._state() lists the fields in FIELDS order
WRITE_DOCS = 1024                    # extend() writes this many records per os.write ...
WRITE_BYTES = 4 << 20                # ... or this many bytes, whichever comes first
_OPEN: dict[str, 'Store'] = {}       # realpath -> the Store every handle in this process shares


def _drop_locks_in_child() -> None:
    # A forked child shares the parent's open file descriptions, flock included: were it to
    # keep the lock, both would append to one log. Closing the child's copy of the fd leaves
    # the parent's lock in place; a write in the child then asks for the lock like any other
    # process (and gets the "another process is writing" error while the parent holds it).
    for store in list(_OPEN.values()):
        if store.lock_fd is not None:
            try:
                os.close(store.lock_fd)
            except OSError:
                pass
            store.lock_fd = None


os.register_at_fork(after_in_child=_drop_locks_in_child)


class _Switched(Exception):
    """A reader found the generation it was opening replaced (a prune or clear): it opens again."""


class Store:
    """The state of one directory; :class:`runtime.memmap.DocumentArrayMemmap` is its
    public face. Use :meth:`acquire` / :meth:`release` to share it within a process.

    Examples
    --------
    >>> s = Store.acquire('./my-mmap'); len(s.ix); s.release()  # doctest: +SKIP
    0
    """

    def __init__(self, path: str | os.PathLike, lock: bool = False, salvage: list | None = None) -> None:
        # Set first so that close() works whatever __init__ fails on.
        self.closed = True
        self.why_closed = ''  # for the error a closed store gives
        self.log: RecordLog | None = None
        self.emb: EmbeddingStore | None = None
        self.lock_fd: int | None = None
        self.version = 0
        self.refs = 0
        self.pid = os.getpid()
        self.path = os.path.abspath(os.fspath(path))
        self.key = os.path.realpath(self.path)
        self.ix = Index()
        directory.prepare(self.path, salvage is not None)
        try:
            if lock:
                self.take_lock()
            self.load(salvage)
        except BaseException:
            self.close_files()
            self.release_lock()
            raise
        self.closed = False

    def __reduce__(self) -> tuple:
        # (its descriptors and maps mean nothing in another process, or in a copy)
        raise TypeError(f'a Store cannot be copied or pickled: open DocumentArrayMemmap({self.path!r}) where it '
                        f'is needed')

    @classmethod
    def acquire(cls, path: str | os.PathLike) -> 'Store':
        """The Store of ``path`` shared by this process's handles (opened if none is)."""
        key = os.path.realpath(os.path.abspath(os.fspath(path)))
        store = _OPEN.get(key)
        if store is None or store.closed or store.pid != os.getpid():
            store = cls(path)
            _OPEN[key] = store
        store.refs += 1
        return store

    def release(self) -> None:
        """One handle is done; the last one closes (and flushes) the Store."""
        self.refs -= 1
        if self.refs <= 0:
            if _OPEN.get(self.key) is self:
                del _OPEN[self.key]
            self.close()

    def file(self, kind: str, gen: int | None = None) -> str:
        return os.path.join(self.path, file_name(kind, self.gen if gen is None else gen))

    # -- directory and meta ----------------------------------------------------------------
    def remove_stale(self, newer_too: bool) -> None:
        directory.remove_stale(self.path, self.gen, newer_too)

    def read_meta(self) -> tuple[int, tuple | None]:
        try:
            with open(os.path.join(self.path, META), 'rb') as fp:
                raw = fp.read()
        except FileNotFoundError:
            if has_store_files(self.path):  # (damage, such as an interrupted copy: repair() mends it)
                raise CorruptStoreError(os.path.join(self.path, META), 0,
                                        'is missing; the record files are there') from None
            raise ValueError(f'{self.path} is not a DocumentArrayMemmap directory (any more): '
                             f'{META} is missing') from None
        return parse_meta(raw, self.path)

    def write_meta(self, gen: int, sync: bool = False) -> None:
        atomic_write(os.path.join(self.path, META), meta_bytes(gen, self.layout), sync)

    # -- loading ---------------------------------------------------------------------------
    def load(self, salvage: list | None = None) -> None:
        """(Re)read everything from disk, as a fresh open would. With a ``salvage`` list
        (``repair``), damage is recorded there instead of raised."""
        writable = self.lock_fd is not None
        for _ in range(20):
            opened = directory.open_generation(self, salvage, writable)
            if opened is None:
                continue  # a prune switched generations under us: read the new one
            self.close_files()
            self.log, self.emb, self.gen, self.layout = opened
            # durable: bytes of the record file known to be fsynced; index_durable, index_synced
            # and index_stamp: what the snapshot on disk records of it, whether it was itself
            # fsynced (see flush), and which file it is (see ensure_writer).
            self.ix, self.end, self.index_covered, self.index_synced = Index(), 0, None, False
            self.durable, self.index_durable, self.index_stamp = 0, 0, None
            try:
                self._load_index(salvage)
                if self.layout is None and self.ix.next_row > 0 and not self._layout_after_snapshot():
                    continue
                self.replay(self.end, salvage)
            except _Switched:
                continue
            break
        else:  # pragma: no cover - needs a writer pruning in a tight loop
            raise RuntimeError(f'{self.path} changed generation 20 times while being opened')
        self.version += 1
        self.remove_stale(newer_too=writable)

    def _layout_after_snapshot(self) -> bool:
        # The snapshot covers rows but meta.json had no layout: a writer set it (meta.json, the
        # layout record, rows, the snapshot) between our reads. Read it again; False: a prune
        # switched generations meanwhile (start over). A layout still missing is damage.
        gen, layout = self.read_meta()
        if gen != self.gen:
            return False
        if layout is not None:
            self._adopt_layout(layout)
        return True

    def _load_index(self, salvage: list | None) -> None:
        # index_covered: what the snapshot on disk covers; None: no snapshot, -1: unusable.
        # (With ``salvage`` the log is replayed whole: the snapshot only tells of a cut file.)
        where = self.file('index')
        try:
            with open(where, 'rb') as fp:
                raw, self.index_stamp = fp.read(), snapshot_stamp(fp.fileno())
        except FileNotFoundError:
            return
        ix, covered, self.durable = load_snapshot(raw, where, self.gen, self.log, salvage)
        self.index_durable = self.durable
        if ix is None:
            self.index_covered = None if salvage is not None else -1
            return
        # All it covers synced: a synced flush wrote it (and fsynced it), nearly always.
        self.ix, self.end, self.index_covered, self.index_synced = ix, covered, covered, self.durable == covered

    def replay(self, start: int, salvage: list | None = None) -> None:
        """Apply the records from byte ``start`` on (up to a torn tail)."""
        damaged = [] if salvage is not None else None
        self.end, size = self.log.scan(start, self.ix.put, self.ix.delete, self._on_layout, damaged)
        if damaged:
            salvage.extend(('records', rng) for rng in damaged)
        if salvage is not None and size > self.end:
            salvage.append(('records', (self.end, size)))
        if self.layout is None and self.ix.next_row > 0:
            raise CorruptStoreError(self.log.path, 0, 'records point at embedding rows but neither meta.json '
                                                      'nor the record log names the matrix layout')

    def _on_layout(self, payload: bytes, off: int) -> None:
        try:
            d = json.loads(payload)
            layout = parse_layout(d['emb_dtype'], d['emb_shape'], self.log.path)
        except Exception:
            layout = None
        if layout is None:
            raise CorruptStoreError(self.log.path, off, 'the layout record is invalid')
        if self.layout is None:  # another process fixed the layout after we read meta.json
            self._adopt_layout(layout)
        elif layout != self.layout:
            raise CorruptStoreError(os.path.join(self.path, META), 0,
                                    f'names another embedding layout than the record log ({layout[0]}{list(layout[1])})')

    def _adopt_layout(self, layout: tuple) -> None:
        self.layout = layout
        try:
            self.emb = EmbeddingStore(self.file('embeddings'), layout, self.lock_fd is not None)
        except FileNotFoundError:
            if self.read_meta()[0] != self.gen:
                raise _Switched() from None  # a prune or clear went on to a new generation meanwhile
            raise CorruptStoreError(self.file('embeddings'), 0, 'is missing') from None

    # -- the writer ------------------------------------------------------------------------
    def take_lock(self) -> None:
        fd = open_new(os.path.join(self.path, LOCK), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RuntimeError(f'another process is writing to {self.path} (it holds {LOCK}); a '
                                   f'DocumentArrayMemmap has one writer at a time: close it there first, '
                                   f'or only read here (reload() shows its changes)') from None
            raise
        self.lock_fd = fd

    def ensure_writer(self) -> None:
        self.check_open()
        if self.lock_fd is not None:
            return
        self.take_lock()
        try:
            gen, _ = self.read_meta()
            if gen == self.gen and snapshot_stamp(self.file('index')) != self.index_stamp:
                # Another writer replaced the snapshot since we read it: it may have synced more.
                self.durable = max(self.durable, synced_bytes_of(self.file('index'), gen))
            if gen != self.gen or self.log.size() < max(self.end, self.durable):
                self.load()  # pruned or cut short since we read it: start over, now writable
            else:
                # Catch up with what an earlier writer appended since we opened, reopen for writing.
                log = RecordLog(self.log.path, writable=True)
                self.log.close()
                self.log = log
                if self.emb is not None:
                    self.emb.close()
                    self.emb = EmbeddingStore(self.file('embeddings'), self.layout, writable=True)
                self.replay(self.end)
            size = self.log.size()
            if self.end < self.durable:  # (load raised if the file is shorter than that)
                raise CorruptStoreError(self.log.path, self.end, f'the record here runs past the end of the file, '
                                        f'but the first {self.durable} bytes were synced to disk whole: the '
                                        f'file was changed after they were written')
            stale = self.index_covered is not None and (self.index_covered < 0 or self.index_covered > self.end)
            if stale or size > self.end:
                # A snapshot that may cover bytes we are about to cut and overwrite is replaced by one
                # of what is left; unlinking it would lose the count of synced bytes it holds.
                self.write_index(sync=False)
            if size > self.end:  # a scan raises on damage: what is left here is a torn tail
                logger.warning('%s: dropping a torn tail of %d bytes after the last complete record '
                               '(a writer stopped mid-append)', self.path, size - self.end)
                self.log.truncate(self.end)
            self.remove_stale(newer_too=True)
        except BaseException as exc:
            self.release_lock()
            self.reread_after(exc, 'taking over the writing of')
            raise

    def reread_after(self, exc: BaseException, failed: str) -> None:
        """Read the directory again after ``failed`` (e.g. ``'repairing'``) raised ``exc`` and
        the lock was given back; the caller then re-raises ``exc``. Should reading fail too,
        what is in memory is unknown: the store is closed (its handles refuse every use) and
        the error raised names both failures, caused by ``exc`` (an interrupt stays itself)."""
        try:
            self.load()
        except Exception as again:
            self.close()  # the lock is already given back: nothing is flushed
            self.why_closed = f' (after {failed} it failed)'
            if not isinstance(exc, Exception):  # an interrupt stays itself; say why it is closed
                logger.warning('%s: closed: reading it again after %s was interrupted failed: %s: %s', self.path,
                               failed, type(again).__name__, again)
                return
            same = isinstance(exc, CorruptStoreError) and isinstance(again, CorruptStoreError) and (
                exc.file, exc.offset) == (again.file, again.offset)  # the same damage: say it once
            what = (f'{failed} {self.path} failed {"on it" if same else f"({type(exc).__name__}: {exc})"} '
                    f'and reading it again afterwards failed too, so every DocumentArrayMemmap open on it '
                    f'in this process is now closed')
            if isinstance(again, CorruptStoreError):
                raise CorruptStoreError(again.file, again.offset, f'{again.problem}; {what}') from exc
            raise RuntimeError(f'{what}: {type(again).__name__}: {again}. Fix the cause and open it '
                               f'again') from exc

    def release_lock(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)  # closing the fd drops the flock
            self.lock_fd = None

    def append_bytes(self, data: bytes) -> int:
        """Write ``data`` at the end of the record file; return where it starts."""
        start = self.end
        self.log.append(data, start)
        self.end = start + len(data)
        return start

    def _set_layout(self, emb: np.ndarray) -> None:
        # The first embedding fixes the matrix; meta.json and the log record it before any row.
        layout = (emb.dtype, emb.shape)
        try:
            self.emb = EmbeddingStore(self.file('embeddings'), layout, writable=True, create=True)
            self.emb.grow(self.ix.next_row + 1)
            self.layout = layout
            self.write_meta(self.gen)
            self.append_bytes(record(OP_LAYOUT, layout_payload(*layout)))
        except BaseException:  # no rows without a layout on disk to read them with
            self.layout = None
            if self.emb is not None:
                self.emb.close()
                self.emb = None
            raise

    def encode(self, doc: Document, old: str | None) -> tuple[str, int, bytes]:
        """(id, matrix row or -1, record bytes) of ``doc``; its embedding row is written now,
        before the record, so that a valid record always has its row."""
        state = doc._state()
        emb = state[_EMB]
        row, crc = -1, 0
        if emb is not None:
            if self.layout is None and matrix_ok(emb):
                self._set_layout(emb)
            layout = self.layout
            if layout is not None and emb.shape == layout[1] and emb.dtype == layout[0]:
                row = self.ix.next_row
                crc = self.emb.write(row, emb)
                self.ix.next_row = row + 1
                state = (None,) + state[1:_EMB] + (None,) + state[_EMB + 1:]
            else:
                state = (None,) + state[1:]
        else:
            state = (None,) + state[1:]
        return doc._id, row, encode_put(doc._id, old, row, crc, state)

    def put_one(self, doc: Document, old: str | None) -> None:
        if self.lock_fd is None:
            self.ensure_writer()
        doc_id, row, rec = self.encode(doc, old)
        self.ix.put(doc_id, old, self.append_bytes(rec), len(rec), row)

    def extend(self, docs: Iterable[Any], check: Any) -> None:
        """Append ``docs`` in batches; ``check(doc)`` refuses what is not a Document."""
        self.ensure_writer()
        batch: list[tuple[str, int, bytes]] = []
        nbytes = 0
        try:
            for doc in docs:
                if type(doc) is not Document:
                    check(doc)
                item = self.encode(doc, None)
                batch.append(item)
                nbytes += len(item[2])
                if len(batch) >= WRITE_DOCS or nbytes >= WRITE_BYTES:
                    full, batch, nbytes = batch, [], 0
                    self._commit(full)
        except BaseException:
            if batch:  # keep the documents before the bad one, as list.extend does
                self._commit(batch)
            raise
        if batch:
            self._commit(batch)

    def _commit(self, batch: list[tuple[str, int, bytes]]) -> None:
        ids, rows, recs = zip(*batch)
        off = self.append_bytes(b''.join(recs))
        offs, lens = [], []
        for rec in recs:
            offs.append(off)
            lens.append(len(rec))
            off += len(rec)
        self.ix.put_new(ids, offs, lens, rows)

    def delete_ids(self, ids: Sequence[str]) -> None:
        self.ensure_writer()
        self.append_bytes(b''.join(encode_del(doc_id) for doc_id in ids))
        for doc_id in ids:
            self.ix.delete(doc_id)

    # -- reading ---------------------------------------------------------------------------
    def _decode(self, raw: bytes, slot: int) -> tuple[Document, int, int]:
        off, doc_id = self.ix.off[slot], self.ix.ids[slot]
        row, crc, _, start = self.log.parse_put(raw, off, doc_id)
        try:
            d = Document._from_state(pickle.loads(memoryview(raw)[start:]))
        except Exception as exc:  # intact bytes that do not load: written by something else
            raise CorruptStoreError(self.log.path, off, f'the record of document {doc_id!r} does not '
                                                        f'load ({type(exc).__name__}: {exc})') from None
        if row >= 0 and self.emb is None:
            raise CorruptStoreError(self.log.path, off, f'the record of document {doc_id!r} points at an '
                                                        f'embedding row but there is no matrix')
        d._id = doc_id
        return d, row, crc

    @property
    def row_bytes(self) -> int:
        """Bytes of one embedding row (0 while the store has none): what reading a
        document adds to its record, for bounding read windows (``Index.windows``)."""
        return self.emb.row_nbytes if self.emb is not None else 0

    def read_slots(self, slots: Sequence[int]) -> list[Document]:
        ix = self.ix
        raws = self.log.read([ix.off[s] for s in slots], [ix.len[s] for s in slots])
        docs, with_row, rows, crcs, ids = [], [], [], [], []
        for k, (slot, raw) in enumerate(zip(slots, raws)):
            d, row, crc = self._decode(raw, slot)
            docs.append(d)
            if row >= 0:
                with_row.append(k)
                rows.append(row)
                crcs.append(crc)
                ids.append(d._id)
        if len(rows) == 1:
            docs[with_row[0]]._embedding = self.emb.read(rows[0], crcs[0], ids[0])
        elif rows:
            # One gather for the window; each document gets its own row of the copy.
            for k, emb in zip(with_row, self.emb.gather(rows, crcs, ids)):
                docs[k]._embedding = emb
        return docs

    def read_slot(self, slot: int) -> Document:
        ix = self.ix
        d, row, crc = self._decode(os.pread(self.log.fd, ix.len[slot], ix.off[slot]), slot)
        if row >= 0:
            d._embedding = self.emb.read(row, crc, d._id)
        return d

    def matrix(self) -> np.ndarray | None:
        """The live documents' rows of the matrix (a read-only view while they are exactly
        its first rows), or None when some live document has no row there."""
        n = len(self.ix)
        if self.emb is None or n == 0:
            return None
        if self.ix.is_dense():
            if self.emb.cap < n:
                self.emb.map()  # another process grew the matrix since we mapped it
            if self.emb.cap >= n:
                view = self.emb.mm[:n]
                view.flags.writeable = False  # writing would bypass the records and their crcs
                return view
        rows = self.ix.live_rows()
        if not (rows >= 0).all():
            return None
        top = int(rows.max())
        if top >= self.emb.cap:
            self.emb.ensure(top, self.ix.ids[self.ix.slots_of([int(rows.argmax())])[0]])
        return self.emb.mmv[rows]

    # -- flushing and closing --------------------------------------------------------------
    def flush(self, sync: bool = False) -> None:
        self.check_open()
        if self.lock_fd is None:
            return
        if sync:
            if self.emb is not None and self.emb.mm is not None:
                self.emb.mm.flush()
            os.fsync(self.log.fd)
            self.durable = self.end
        if self.index_covered == self.end and self.index_durable == self.durable and (self.index_synced or not sync):
            return
        self.write_index(sync)

    def write_index(self, sync: bool) -> None:
        """Replace the snapshot by one of the index now (fsynced with ``sync``). It carries
        the count of synced bytes over unsynced flushes: a shorter file is cut (see .index)."""
        blob = snapshot_bytes(self.gen, self.end, self.log.tail_crc(self.end), self.ix.next_row,
                              self.ix.live_columns(), self.durable)
        atomic_write(self.file('index'), blob, sync)
        self.index_covered, self.index_durable, self.index_synced = self.end, self.durable, sync
        self.index_stamp = snapshot_stamp(self.file('index'))

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.lock_fd is not None and self.pid == os.getpid():
                self.flush()
        finally:
            self.closed = True
            self.version += 1
            self.close_files()
            self.release_lock()
            self.ix = Index()

    def close_files(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None
        if self.emb is not None:
            self.emb.close()
            self.emb = None

    def check_open(self) -> None:
        if self.closed:
            raise ValueError(f'DocumentArrayMemmap at {self.path} is closed{self.why_closed}; open it again '
                             f'to use it')
