"""DocumentArrayMemmap: a DocumentArray persisted in a directory, embeddings memory-mapped.

Files in the directory (``<g>`` is the generation, bumped by ``prune`` / ``clear``):

``meta.json``
    ``{"format": "shmflow-dam", "version": 1, "generation": g, "emb_dtype": ..., "emb_shape": ...}``,
    replaced atomically. It is the single switch between generations.
``records.<g>.bin``
    Append-only log. Each record is ``<B op><I payload length><I crc32(payload)>`` + payload.
    PUT payload: ``<q emb row><I id length><I replaced-id length>`` + id + replaced id +
    ``pickle(Document._state())`` with the id (and, when the matrix holds it, the embedding)
    left out. DEL payload: the id (utf-8).
``embeddings.<g>.bin``
    One ``np.memmap`` matrix ``(capacity, *emb_shape)`` of ``emb_dtype``; rows are handed out
    in order and never reused within a generation.
``index.<g>.pkl``
    Snapshot of the in-memory index written by ``flush``: how many record bytes it covers, the
    live ids in order and their record offsets / lengths / matrix rows. Opening loads it and
    replays only the records after it.
``writer.lock``
    ``flock``-ed by the one process that writes.

The record file is the source of truth; everything else can be rebuilt from it (except the
matrix rows, which records point into). A record is written with one unbuffered ``os.write``
after its embedding row is in the (shared, page-cache backed) map, so a writer killed at any
point leaves a valid prefix plus at most one torn record, which readers skip and the next
writer truncates.

Choices worth knowing:

- The id and matrix row sit in a small binary prefix, not inside the pickle, so that opening
  (replaying the log after the index) and ``prune`` never unpickle a document.
- Rows are never reused within a generation, and an update writes a new row: otherwise a
  log cut short (a torn tail, or a truncation) could bring back a record whose row already
  holds another document's embedding. ``prune`` makes rows contiguous again.
- The index snapshot carries the crc of the last 4 KiB it covers, so a record file that was
  cut and written again is never read through a stale snapshot.
- ``flush()`` does not msync / fsync unless ``sync=True``: pages of a shared map and of
  ``os.write`` are in the page cache already, which survives the process (SIGKILL
  included); only an OS crash or power loss needs the sync.

Records are pickles: open only directories you (or code you trust) wrote.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import pickle
import re
import struct
import zlib
from array import array
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .array import DocumentArray, DocumentSequence, _check_doc, _stack
from .document import Document

__all__ = ['DocumentArrayMemmap']

logger = logging.getLogger(__name__)

_FORMAT = 'shmflow-dam'
_VERSION = 1
_META = 'meta.json'
_LOCK = 'writer.lock'
_HDR = struct.Struct('<BII')         # op, payload length, crc32(payload)
_PUT = struct.Struct('<qII')         # matrix row (-1: embedding inline), id length, replaced-id length
_HEAD = struct.Struct('<BIIqII')     # both of the above, as a PUT record starts
_HDR_SIZE, _HEAD_SIZE = _HDR.size, _HEAD.size
_OP_PUT, _OP_DEL = 1, 2
_EMB = Document.FIELDS.index('embedding')  # Document._state() lists the fields in FIELDS order
_WRITE_DOCS = 1024                   # extend() writes this many records per os.write ...
_WRITE_BYTES = 4 << 20               # ... or this many bytes, whichever comes first
_READ_DOCS = 1024                    # iteration reads this many documents per window
_REPLAY_CHUNK = 4 << 20
_GEN_FILE = re.compile(r'(records|embeddings|index)\.(\d+)\.(bin|pkl)(\.\d+\.tmp)?')
_META_TMP = re.compile(re.escape(_META) + r'\.\d+\.tmp')


class _NotADirectory(NotADirectoryError, ValueError):
    """A file stands where the directory should be (both an OSError and a ValueError, so
    either ``except`` catches it)."""


def _atomic_write(path: str, data: bytes, sync: bool = False) -> None:
    # A reader must see the old or the new file, never half of one.
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'wb') as fp:
        fp.write(data)
        if sync:
            fp.flush()
            os.fsync(fp.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: str) -> None:
    # A rename is durable only once its directory is synced.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    n = os.write(fd, data)
    if n < len(data):  # only on odd file systems or a full disk; keep going, then let it raise
        view = memoryview(data)
        while n < len(data):
            n += os.write(fd, view[n:])


def _matrix_ok(emb: np.ndarray) -> bool:
    # Only plain numeric dtypes survive the trip through dtype.str in meta.json.
    # ndim >= 1: rows of a 1-d matrix would come back as numpy scalars, not arrays.
    return emb.dtype.kind in 'biufc' and emb.ndim >= 1 and emb.nbytes > 0


def _to_numpy(buf: array | bytearray, dtype: Any = np.int64) -> np.ndarray:
    # Copy rather than keep a view: an array.array that exports a buffer cannot grow.
    return np.frombuffer(buf, dtype=dtype).copy()


class DocumentArrayMemmap(DocumentSequence):
    """A DocumentArray kept on disk in the directory ``path``, with embeddings in one
    ``np.memmap`` matrix.

    Same interface as DocumentArray: ``append`` / ``extend``, ``dam[i]`` (live documents
    only, negative too), ``dam['id']``, slices and lists (-> DocumentArray), iteration
    (streams, constant memory), ``len``, ``in``, ``del dam['id']``, ``dam['id'] = doc``
    (keeps the position), ``.embeddings``, ``.texts``, ``.blobs``, ``get_attributes``.
    Appending a document whose id is already present replaces it in place.

    Every append is on disk (in the OS page cache) when the call returns: another process
    that opens the directory or calls ``reload()`` sees it, and a crash loses at most the
    document being written. ``flush()`` also saves the index, so reopening does not have to
    replay the log. One process writes at a time (``flock``); any number read.

    A fetched document is a copy: changing it changes nothing on disk until it is stored
    again with ``dam[doc.id] = doc``. Not thread-safe.

    Parameters
    ----------
    path : str or os.PathLike
        Directory to use; created if missing. An existing directory must be empty or one
        that a DocumentArrayMemmap wrote.

    Raises
    ------
    ValueError
        The directory holds something else.
    NotADirectoryError
        ``path`` is a file (also a ValueError).

    Examples
    --------
    >>> with DocumentArrayMemmap('./my-mmap') as dam:
    ...     dam.extend(Document(text=f'doc {i}', embedding=np.ones(4, np.float32)) for i in range(3))
    ...     dam[0].text, dam.embeddings.shape
    ('doc 0', (3, 4))
    >>> len(DocumentArrayMemmap('./my-mmap'))
    3
    """

    def __init__(self, path: str | os.PathLike) -> None:
        # Set first so that close() / __del__ work whatever __init__ fails on.
        self._closed = True
        self._rfd: int | None = None
        self._efile: Any = None
        self._lock_fd: int | None = None
        self._mm: np.memmap | None = None
        self._version = 0
        self._path = os.path.abspath(os.fspath(path))
        self._prepare_dir()
        self._reset_index()
        try:
            self._load()
        except BaseException:
            self._close_files()
            raise
        self._closed = False

    # -- directory and meta ----------------------------------------------------------------
    @property
    def path(self) -> str:
        """The directory (absolute path).

        >>> DocumentArrayMemmap('./my-mmap').path
        '/home/me/my-mmap'
        """
        return self._path

    def _file(self, kind: str, gen: int | None = None) -> str:
        gen = self._gen if gen is None else gen
        ext = 'pkl' if kind == 'index' else 'bin'
        return os.path.join(self._path, f'{kind}.{gen}.{ext}')

    def _prepare_dir(self) -> None:
        path = self._path
        if os.path.lexists(path) and not os.path.isdir(path):
            raise _NotADirectory(f'DocumentArrayMemmap needs a directory, but {path} is a file; '
                                 f'pass the path of a new or empty directory (or one it wrote before)')
        os.makedirs(path, exist_ok=True)
        if os.path.exists(os.path.join(path, _META)):
            return  # validated by _read_meta
        foreign = [e for e in os.listdir(path) if not self._is_fresh_leftover(e)]
        if foreign:
            shown = ', '.join(sorted(foreign)[:5]) + (', ...' if len(foreign) > 5 else '')
            raise ValueError(f'{path} is not a DocumentArrayMemmap directory: it holds {shown} and no '
                             f'{_META}; nothing there is overwritten. Pass a new or empty directory')
        # records.0.bin first, meta.json last: once meta exists, so does the record file.
        os.close(os.open(os.path.join(path, 'records.0.bin'), os.O_WRONLY | os.O_CREAT, 0o644))
        tmp = os.path.join(path, f'{_META}.{os.getpid()}.tmp')
        with open(tmp, 'w') as fp:
            json.dump(self._meta_dict(0, None, None), fp)
        try:
            os.link(tmp, os.path.join(path, _META))  # fails if another process got there first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)

    def _is_fresh_leftover(self, name: str) -> bool:
        # What a creation interrupted before meta.json existed can leave: nothing of value.
        if name == _LOCK or _META_TMP.fullmatch(name):
            return True
        if name == 'records.0.bin':
            return os.path.getsize(os.path.join(self._path, name)) == 0
        return False

    @staticmethod
    def _meta_dict(gen: int, dtype: np.dtype | None, shape: tuple | None) -> dict:
        return {'format': _FORMAT, 'version': _VERSION, 'generation': gen,
                'emb_dtype': None if dtype is None else dtype.str,
                'emb_shape': None if shape is None else list(shape)}

    def _read_meta(self) -> dict:
        where = os.path.join(self._path, _META)
        try:
            with open(where, 'rb') as fp:
                raw = fp.read()
        except FileNotFoundError:
            raise ValueError(f'{self._path} is not a DocumentArrayMemmap directory (any more): '
                             f'{_META} is missing') from None
        try:
            meta = json.loads(raw)
        except ValueError:
            meta = None
        if not isinstance(meta, dict) or meta.get('format') != _FORMAT:
            raise ValueError(f'{self._path} is not a DocumentArrayMemmap directory: its {_META} belongs to '
                             f'something else; nothing there is overwritten. Pass a new or empty directory')
        if meta.get('version') != _VERSION:
            raise ValueError(f'{self._path} was written by DocumentArrayMemmap format version '
                             f'{meta.get("version")!r}; this version reads only version {_VERSION}')
        gen = meta.get('generation')
        if not isinstance(gen, int) or gen < 0:
            raise ValueError(f'{self._path}: {_META} is damaged (generation {gen!r})')
        return meta

    def _write_meta(self, gen: int, sync: bool = False) -> None:
        data = json.dumps(self._meta_dict(gen, self._emb_dtype, self._emb_shape)).encode()
        _atomic_write(os.path.join(self._path, _META), data, sync)

    def _remove_stale(self, newer_too: bool) -> None:
        # Older generations are garbage once meta.json moved on; newer ones are the leftovers
        # of an interrupted prune, removable only by the writer (a prune may be under way).
        for name in os.listdir(self._path):
            m = _GEN_FILE.fullmatch(name)
            if not m:
                continue
            gen = int(m.group(2))
            if gen < self._gen or (newer_too and (gen > self._gen or m.group(4))):
                try:
                    os.unlink(os.path.join(self._path, name))
                except OSError:  # read-only directory or already gone: harmless
                    pass

    # -- in-memory index -------------------------------------------------------------------
    def _reset_index(self) -> None:
        # Per slot (append order): record offset, record length, matrix row, alive flag, id.
        # array.array appends at list speed and converts to numpy with one memcpy.
        self._off = array('q')
        self._len = array('q')
        self._row = array('q')
        self._alive = bytearray()
        self._ids: list[str] = []
        self._map: dict[str, int] = {}
        self._n_dead = 0
        self._live: np.ndarray | None = None   # cached np.flatnonzero(alive)
        self._dense: bool | None = True        # live rows are exactly 0..n-1 (None: unknown)
        self._next_row = 0
        self._end = 0                          # bytes of valid records
        self._index_covered: int | None = None  # what index.<g>.pkl on disk covers, -1 if unusable

    def _apply_put(self, doc_id: str, old: str | None, off: int, length: int, row: int) -> None:
        m = self._map
        slot = None
        if old is not None and old != doc_id:
            slot = m.pop(old, None)
            if slot is not None:  # stored at another document's position: take its slot
                other = m.get(doc_id)
                if other is not None:
                    self._kill(other)
                self._ids[slot] = doc_id
                m[doc_id] = slot
        if slot is None:
            slot = m.get(doc_id)
        if slot is None:
            slot = len(self._ids)
            m[doc_id] = slot
            self._ids.append(doc_id)
            self._off.append(off)
            self._len.append(length)
            self._row.append(row)
            self._alive.append(1)
            self._live = None
            if self._dense:
                self._dense = row == slot
        else:
            self._off[slot] = off
            self._len[slot] = length
            self._row[slot] = row
            self._dense = False
        if row >= self._next_row:
            self._next_row = row + 1

    def _kill(self, slot: int) -> None:
        self._alive[slot] = 0
        self._n_dead += 1
        self._live = None
        self._dense = False

    def _apply_del(self, doc_id: str) -> None:
        slot = self._map.pop(doc_id, None)
        if slot is not None:
            self._kill(slot)

    def _live_slots(self) -> np.ndarray:
        if self._live is None:
            self._live = np.flatnonzero(np.frombuffer(self._alive, dtype=np.uint8) if self._alive
                                        else np.zeros(0, np.uint8))
        return self._live

    def _live_rows(self) -> np.ndarray:
        rows = _to_numpy(self._row) if self._row else np.zeros(0, np.int64)
        return rows[self._live_slots()] if self._n_dead else rows

    def _slot_at(self, i: int) -> int:
        n = len(self._ids) - self._n_dead
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(f'DocumentArrayMemmap index {i} out of range for length {n}')
        return int(self._live_slots()[j]) if self._n_dead else j

    # -- loading ---------------------------------------------------------------------------
    def _load(self) -> None:
        """(Re)read everything from disk, as a fresh open would."""
        writable = self._lock_fd is not None
        for _ in range(20):
            meta = self._read_meta()
            gen = meta['generation']
            # Both files are opened before anything is read: once open, a prune in another
            # process can unlink them but not take them away from us.
            try:
                fd = os.open(os.path.join(self._path, f'records.{gen}.bin'),
                             os.O_RDWR | os.O_APPEND if writable else os.O_RDONLY)
            except FileNotFoundError:
                fd = None
            efile = None
            if fd is not None and meta['emb_dtype'] is not None:
                try:
                    efile = open(os.path.join(self._path, f'embeddings.{gen}.bin'),
                                 'r+b' if writable else 'rb', buffering=0)
                except FileNotFoundError:
                    os.close(fd)
                    fd = None
            if fd is not None:
                break
            if self._read_meta()['generation'] == gen:
                raise ValueError(f'{self._path} is damaged: {_META} names generation {gen} but its '
                                 f'records / embeddings file is missing')
            # else a prune switched generations under us: read the new one
        else:  # pragma: no cover - needs a writer pruning in a tight loop
            raise RuntimeError(f'{self._path} changed generation 20 times while being opened')
        self._close_files()
        self._rfd, self._efile, self._gen = fd, efile, gen
        self._set_dtype(meta)
        self._reset_index()
        self._load_index()
        self._replay(self._end)
        self._map_embeddings()
        self._version += 1
        self._remove_stale(newer_too=self._lock_fd is not None)

    def _set_dtype(self, meta: dict) -> None:
        self._emb_dtype = None if meta['emb_dtype'] is None else np.dtype(meta['emb_dtype'])
        self._emb_shape = None if meta['emb_shape'] is None else tuple(meta['emb_shape'])
        self._row_nbytes = 0 if self._emb_dtype is None else \
            self._emb_dtype.itemsize * int(np.prod(self._emb_shape, dtype=np.int64))

    def _map_embeddings(self) -> None:
        """(Re)map the whole embeddings file as it is now."""
        self._mm = self._mmv = None
        self._cap = 0
        if self._efile is None:
            return
        cap = os.fstat(self._efile.fileno()).st_size // self._row_nbytes
        if cap:
            mm = np.memmap(self._efile, dtype=self._emb_dtype, mode='r+' if self._lock_fd is not None else 'r',
                           shape=(cap,) + self._emb_shape)
            # _mmv: a plain ndarray view for internal reads (memmap's per-slice bookkeeping
            # costs more than the copy of a row).
            self._mm, self._mmv, self._cap = mm, mm.view(np.ndarray), cap
        if self._next_row > cap:
            logger.warning('%s: records point at embedding row %d but embeddings.%d.bin holds %d rows; '
                           'those documents cannot be read', self._path, self._next_row - 1, self._gen, cap)

    def _load_index(self) -> None:
        where = self._file('index')
        try:
            with open(where, 'rb') as fp:
                idx = pickle.load(fp)
        except FileNotFoundError:
            return
        except Exception as exc:  # a damaged snapshot only costs a longer replay
            logger.warning('%s: ignoring unreadable %s (%s); replaying the record log', self._path, where, exc)
            self._index_covered = -1
            return
        try:
            covered = idx['covered']
            size = os.fstat(self._rfd).st_size
            ok = (idx['format'] == _FORMAT and idx['generation'] == self._gen and covered <= size
                  and idx['tail_crc'] == self._tail_crc(covered))
            ids = idx['ids']
            off, length, row = array('q', idx['offsets']), array('q', idx['lengths']), array('q', idx['rows'])
            ok = ok and len(ids) == len(off) == len(length) == len(row)
        except Exception:
            ok = False
        if not ok:
            # Typically: the record file was truncated below what the snapshot covered.
            logger.warning('%s: %s does not match the record file; replaying the record log', self._path, where)
            self._index_covered = -1
            return
        self._ids, self._off, self._len, self._row = ids, off, length, row
        self._alive = bytearray(b'\x01') * len(ids)
        self._map = dict(zip(ids, range(len(ids))))
        self._next_row = idx['next_row']
        self._end = self._index_covered = covered
        self._dense = None

    def _tail_crc(self, covered: int) -> int:
        # Ties a snapshot to the exact bytes it covers, so a record file that was truncated
        # and written again is never read through a stale snapshot.
        start = max(0, covered - 4096)
        return zlib.crc32(os.pread(self._rfd, covered - start, start))

    def _replay(self, start: int) -> None:
        """Apply the valid records from byte ``start`` on; stop at the first short or bad one."""
        fd = self._rfd
        size = os.fstat(fd).st_size
        base, buf, i = start, b'', 0   # buf holds file bytes [base, base + len(buf))
        hdr, put = _HDR.size, _PUT.size
        while True:
            if len(buf) - i < hdr:
                if base + len(buf) >= size:
                    break
                buf = buf[i:] + os.pread(fd, _REPLAY_CHUNK, base + len(buf))
                base, i = base + i, 0
                if len(buf) < hdr:
                    break
            op, plen, crc = _HDR.unpack_from(buf, i)
            if op not in (_OP_PUT, _OP_DEL) or base + i + hdr + plen > size:
                break
            need = hdr + plen
            if len(buf) - i < need:
                buf = buf[i:] + os.pread(fd, max(_REPLAY_CHUNK, need), base + len(buf))
                base, i = base + i, 0
                if len(buf) < need:
                    break
            p = i + hdr
            payload = memoryview(buf)[p:p + plen]
            if zlib.crc32(payload) != crc:
                break
            if op == _OP_PUT:
                if plen < put:
                    break
                row, idlen, oldlen = _PUT.unpack_from(buf, p)
                q = p + put
                doc_id = buf[q:q + idlen].decode('utf-8', 'surrogatepass')
                old = buf[q + idlen:q + idlen + oldlen].decode('utf-8', 'surrogatepass') if oldlen else None
                self._apply_put(doc_id, old, base + i, need, row)
            else:
                self._apply_del(bytes(payload).decode('utf-8', 'surrogatepass'))
            i += need
        self._end = base + i
        if self._emb_dtype is None and self._next_row > 0:
            # Another process fixed the matrix layout after we read meta.json (the file
            # exists: it is created before meta.json names the layout).
            meta = self._read_meta()
            if meta['generation'] == self._gen and meta['emb_dtype'] is not None:
                self._set_dtype(meta)
                self._open_embeddings(create=False)

    # -- the writer ------------------------------------------------------------------------
    def _ensure_writer(self) -> None:
        self._check_open()
        if self._lock_fd is not None:
            return
        fd = os.open(os.path.join(self._path, _LOCK), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise RuntimeError(f'another process is writing to {self._path} (it holds {_LOCK}); a '
                                   f'DocumentArrayMemmap has one writer at a time: close it there first, '
                                   f'or only read here (reload() shows its changes)') from None
            raise
        self._lock_fd = fd
        try:
            meta = self._read_meta()
            size = os.fstat(self._rfd).st_size
            if meta['generation'] != self._gen or size < self._end:
                self._load()  # pruned or cut short since we read it: start over, now writable
            else:
                # Catch up with what an earlier writer appended since we opened, reopen for writing.
                wfd = os.open(self._file('records'), os.O_RDWR | os.O_APPEND)
                os.close(self._rfd)
                self._rfd = wfd
                if self._efile is not None:
                    self._open_embeddings(create=False)
                self._replay(self._end)
                self._map_embeddings()
            size = os.fstat(self._rfd).st_size
            stale = self._index_covered is not None and (self._index_covered < 0 or self._index_covered > self._end)
            if stale or size > self._end:
                # A snapshot that may cover bytes we are about to cut and overwrite must go
                # (the next flush writes a new one).
                try:
                    os.unlink(self._file('index'))
                except FileNotFoundError:
                    pass
                self._index_covered = None
            if size > self._end:
                logger.warning('%s: dropping a torn tail of %d bytes after the last complete record '
                               '(a writer stopped mid-append)', self._path, size - self._end)
                os.ftruncate(self._rfd, self._end)
            self._remove_stale(newer_too=True)
        except BaseException:
            self._release_lock()
            self._load()
            raise

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the fd drops the flock
            self._lock_fd = None

    def _set_layout(self, emb: np.ndarray) -> None:
        # The first embedding fixes the matrix; meta.json records it before any row is written.
        self._emb_dtype, self._emb_shape = emb.dtype, emb.shape
        self._row_nbytes = emb.nbytes
        try:
            self._grow(self._next_row + 1)
            self._write_meta(self._gen)
        except BaseException:  # no rows without a layout on disk to read them with
            self._emb_dtype = self._emb_shape = None
            self._row_nbytes = 0
            self._close_embeddings()
            raise

    def _open_embeddings(self, create: bool) -> None:
        if self._efile is not None:
            self._efile.close()  # maps made from it stay valid (mmap holds its own fd)
            self._efile = None
        flags = (os.O_RDWR | (os.O_CREAT if create else 0)) if self._lock_fd is not None else os.O_RDONLY
        fd = os.open(self._file('embeddings'), flags, 0o644)
        self._efile = open(fd, 'r+b' if self._lock_fd is not None else 'rb', buffering=0)

    def _grow(self, need: int) -> None:
        # Doubling keeps appends amortised O(1); views handed out keep their old map alive.
        if self._efile is None:
            self._open_embeddings(create=True)
        cap = max(need, 2 * self._cap, (1 << 20) // self._row_nbytes or 1)
        fd = self._efile.fileno()
        if os.fstat(fd).st_size < cap * self._row_nbytes:
            os.ftruncate(fd, cap * self._row_nbytes)
        self._map_embeddings()

    def _encode(self, doc: Document, old: str | None) -> tuple[str, int, bytes]:
        """(id, matrix row or -1, record bytes) of ``doc``; its embedding row is written now,
        before the record, so that a valid record always has its row."""
        state = doc._state()
        emb = state[_EMB]
        row = -1
        if emb is not None:
            if self._emb_dtype is None and _matrix_ok(emb):
                self._set_layout(emb)
            if emb.shape == self._emb_shape and emb.dtype == self._emb_dtype:
                row = self._next_row
                if row >= self._cap:
                    self._grow(row + 1)
                self._mmv[row] = emb
                self._next_row = row + 1
                state = (None,) + state[1:_EMB] + (None,) + state[_EMB + 1:]
            else:
                state = (None,) + state[1:]
        else:
            state = (None,) + state[1:]
        doc_id = doc._id
        idb = doc_id.encode('utf-8', 'surrogatepass')
        oldb = old.encode('utf-8', 'surrogatepass') if old is not None and old != doc_id else b''
        payload = b''.join((_PUT.pack(row, len(idb), len(oldb)), idb, oldb, pickle.dumps(state, protocol=5)))
        return doc_id, row, _HDR.pack(_OP_PUT, len(payload), zlib.crc32(payload)) + payload

    def _append_bytes(self, data: bytes) -> int:
        """Write ``data`` at the end of the record file in one ``os.write``; return where it
        starts. On failure the file is cut back, so it never keeps half a batch."""
        start = self._end
        try:
            _write_all(self._rfd, data)
        except BaseException:
            try:
                os.ftruncate(self._rfd, start)
            except OSError:  # pragma: no cover - the next writer drops the torn tail anyway
                pass
            raise
        self._end = start + len(data)
        return start

    def _put_one(self, doc: Document, old: str | None) -> None:
        if self._lock_fd is None:  # (a closed array has no lock either: it raises there)
            self._ensure_writer()
        doc_id, row, rec = self._encode(doc, old)
        self._apply_put(doc_id, old, self._append_bytes(rec), len(rec), row)

    def _extend(self, docs: Iterable[Any]) -> None:
        self._ensure_writer()
        batch: list[tuple[str, int, bytes]] = []
        nbytes = 0
        try:
            for doc in docs:
                if type(doc) is not Document:
                    _check_doc(doc, 'DocumentArrayMemmap.extend')
                item = self._encode(doc, None)
                batch.append(item)
                nbytes += len(item[2])
                if len(batch) >= _WRITE_DOCS or nbytes >= _WRITE_BYTES:
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
        off = self._append_bytes(b''.join(recs))
        offs, lens = [], []
        for rec in recs:
            offs.append(off)
            lens.append(len(rec))
            off += len(rec)
        m, s0, n = self._map, len(self._ids), len(ids)
        new = dict(zip(ids, range(s0, s0 + n)))
        if len(new) == n and m.keys().isdisjoint(new):
            # All new and distinct (the usual extend): add the batch in bulk.
            m.update(new)
            self._ids.extend(ids)
            self._off.extend(offs)
            self._len.extend(lens)
            self._row.extend(rows)
            self._alive.extend(b'\x01' * n)
            self._live = None
            if self._dense:
                self._dense = rows == tuple(range(s0, s0 + n))
            self._next_row = max(self._next_row, max(rows) + 1)
        else:
            for k in range(n):
                self._apply_put(ids[k], None, offs[k], lens[k], rows[k])

    def _delete_ids(self, ids: Sequence[str]) -> None:
        self._ensure_writer()
        recs = []
        for doc_id in ids:
            payload = doc_id.encode('utf-8', 'surrogatepass')
            recs.append(_HDR.pack(_OP_DEL, len(payload), zlib.crc32(payload)) + payload)
        self._append_bytes(b''.join(recs))
        for doc_id in ids:
            self._apply_del(doc_id)

    # -- public writing API ----------------------------------------------------------------
    def append(self, doc: Document) -> None:
        """Add one Document at the end (or replace the one with the same id, in place).

        Parameters
        ----------
        doc : Document

        Examples
        --------
        >>> dam.append(Document(text='hello'))
        """
        if type(doc) is not Document:
            _check_doc(doc, 'DocumentArrayMemmap.append')
        self._put_one(doc, None)

    def extend(self, docs: Iterable[Document]) -> None:
        """Add many Documents at the end, writing them in batches (documents whose id is
        already present replace it in place).

        Parameters
        ----------
        docs : iterable of Document

        Examples
        --------
        >>> dam.extend(Document(text=t) for t in ['a', 'b'])
        """
        if isinstance(docs, Document):
            raise TypeError('DocumentArrayMemmap.extend takes an iterable of Documents; use append for one')
        if docs is self:
            docs = list(self)
        self._extend(docs)

    def __setitem__(self, key: int | str, value: Document) -> None:
        """Store ``value`` at the position of ``key`` (an id or an int index).

        >>> d = dam['a']; d.text = 'new'; dam['a'] = d
        """
        _check_doc(value, 'DocumentArrayMemmap item assignment')
        self._ensure_writer()  # first: it catches up with other writers, positions may move
        if isinstance(key, str):
            if key not in self._map:
                raise KeyError(f'no document with id {key!r} in {self!r}')
            old = key
        elif isinstance(key, (int, np.integer)):
            old = self._ids[self._slot_at(int(key))]
        else:
            raise TypeError(f'DocumentArrayMemmap assignment takes an int index or str id, got {type(key).__name__}')
        if value.id != old and value.id in self._map:
            raise ValueError(f'cannot store document {value.id!r} at the position of {old!r}: that id is '
                             f'already at another position and ids are unique here; delete it first')
        self._put_one(value, old)

    def __delitem__(self, key: int | str | slice) -> None:
        """Delete by id, int index or slice (a DEL record is appended; ``prune()`` reclaims
        the space).

        >>> del dam['a']; del dam[0]
        """
        self._ensure_writer()  # first: it catches up with other writers, positions may move
        if isinstance(key, str):
            if key not in self._map:
                raise KeyError(f'no document with id {key!r} in {self!r}')
            ids = [key]
        elif isinstance(key, (int, np.integer)):
            ids = [self._ids[self._slot_at(int(key))]]
        elif isinstance(key, slice):
            ids = [self._ids[s] for s in self._slots_of(range(len(self))[key])]
        else:
            raise TypeError(f'DocumentArrayMemmap deletion takes an int index, str id or slice, '
                            f'got {type(key).__name__}')
        if ids:
            self._delete_ids(ids)

    def clear(self) -> None:
        """Remove every Document (switches to a new, empty generation of files).

        Examples
        --------
        >>> dam.clear(); len(dam)
        0
        """
        self._ensure_writer()
        self._switch_generation(keep=False)

    def prune(self) -> None:
        """Compact: rewrite the live documents, in order, into fresh files, dropping deleted
        and replaced records and making the embedding rows contiguous again (so that
        ``.embeddings`` is a zero-copy view). Readers that have the old files open keep
        seeing them until they ``reload()``.

        Examples
        --------
        >>> del dam[0]; dam.prune()
        """
        self._ensure_writer()
        self._switch_generation(keep=True)

    def _switch_generation(self, keep: bool) -> None:
        g = self._gen + 1
        files = [self._file(k, g) for k in ('records', 'embeddings', 'index')]
        for f in files:
            if os.path.exists(f):
                os.unlink(f)
        fd = os.open(files[0], os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        mm = None
        try:
            ids: list[str] = []
            off, length, rows = array('q'), array('q'), array('q')
            pos = k = 0
            if keep:
                live = self._live_slots().tolist() if self._n_dead else range(len(self._ids))
                live_rows = self._live_rows()
                n_rows = int((live_rows >= 0).sum())
                dtype, shape = self._emb_dtype, self._emb_shape
                if dtype is not None:  # meta.json naming a layout implies the file exists
                    with open(files[1], 'wb') as fp:
                        fp.truncate(n_rows * self._row_nbytes)
                if n_rows:
                    mm = np.memmap(files[1], dtype=dtype, mode='r+', shape=(n_rows,) + shape)
                for w in range(0, len(live), _READ_DOCS):
                    window = live[w:w + _READ_DOCS]
                    recs, old_rows = [], []
                    for slot, raw in zip(window, self._raw_records(window)):
                        row, id_end, start = self._verify(raw, slot)
                        new_row = -1
                        if row >= 0:
                            new_row = k
                            old_rows.append(row)
                            k += 1
                        payload = b''.join((_PUT.pack(new_row, id_end - _HEAD_SIZE, 0), raw[_HEAD_SIZE:id_end],
                                            raw[start:]))
                        rec = _HDR.pack(_OP_PUT, len(payload), zlib.crc32(payload)) + payload
                        recs.append(rec)
                        ids.append(self._ids[slot])
                        off.append(pos)
                        length.append(len(rec))
                        rows.append(new_row)
                        pos += len(rec)
                    if old_rows:
                        mm[k - len(old_rows):k] = self._mmv[old_rows]
                    _write_all(fd, b''.join(recs))
                if mm is not None:
                    mm.flush()
                os.fsync(fd)  # the old generation is deleted after the switch: the new one must be on disk
            else:
                dtype = shape = None
            blob = self._index_blob(g, pos, ids, off, length, rows, k, lambda c: zlib.crc32(
                os.pread(fd, c - max(0, c - 4096), max(0, c - 4096))))
            _atomic_write(files[2], blob, sync=True)
            old_layout = (self._emb_dtype, self._emb_shape)
            self._emb_dtype, self._emb_shape = dtype, shape
            try:
                self._write_meta(g, sync=True)  # the switch
            except BaseException:
                self._emb_dtype, self._emb_shape = old_layout
                raise
            _fsync_dir(self._path)
        except BaseException:
            os.close(fd)
            del mm
            for f in files:
                try:
                    os.unlink(f)
                except OSError:
                    pass
            raise
        del mm
        os.close(fd)
        self._load()  # as a fresh open of the new generation (also removes the old files)

    # -- flushing and closing --------------------------------------------------------------
    def _index_blob(self, gen: int, covered: int, ids: list, off: array, length: array, rows: array,
                    next_row: int, tail_crc: Any) -> bytes:
        return pickle.dumps({'format': _FORMAT, 'generation': gen, 'covered': covered,
                             'tail_crc': tail_crc(covered), 'next_row': next_row, 'ids': ids,
                             'offsets': off.tobytes(), 'lengths': length.tobytes(), 'rows': rows.tobytes()},
                            protocol=5)

    def flush(self, sync: bool = False) -> None:
        """Save the index, so that reopening needs no replay of the record log.

        Documents are on disk (in the OS page cache) as soon as they are appended, so they
        survive the process being killed with or without ``flush``; ``sync=True`` also
        fsyncs the records, the embedding matrix and the index, for an OS crash or power
        loss. A reader's flush does nothing.

        Parameters
        ----------
        sync : bool
            fsync / msync the files as well.

        Examples
        --------
        >>> dam.append(Document(text='x')); dam.flush()
        """
        self._check_open()
        if self._lock_fd is None:
            return
        if sync:
            if self._mm is not None:
                self._mm.flush()
            os.fsync(self._rfd)
        if self._index_covered == self._end:
            return
        if self._n_dead:
            live = self._live_slots()
            ids = [self._ids[s] for s in live.tolist()]
            off = array('q', _to_numpy(self._off)[live].tobytes())
            length = array('q', _to_numpy(self._len)[live].tobytes())
            rows = array('q', _to_numpy(self._row)[live].tobytes())
        else:
            ids, off, length, rows = self._ids, self._off, self._len, self._row
        blob = self._index_blob(self._gen, self._end, ids, off, length, rows, self._next_row, self._tail_crc)
        _atomic_write(self._file('index'), blob, sync)
        self._index_covered = self._end

    def reload(self) -> None:
        """Re-read the directory from disk, as a fresh open would: a reader sees what the
        writing process appended, deleted or pruned since.

        Examples
        --------
        >>> reader = DocumentArrayMemmap('./my-mmap'); reader.reload(); len(reader)
        3
        """
        self._check_open()
        self._load()

    def close(self) -> None:
        """Flush (when this is the writer) and release files, maps and the writer lock.
        Arrays handed out by ``.embeddings`` stay valid. Closing twice is fine.

        Examples
        --------
        >>> dam.close()
        """
        if self._closed:
            return
        try:
            if self._lock_fd is not None:
                self.flush()
        finally:
            self._closed = True
            self._version += 1
            self._close_files()
            self._release_lock()
            self._reset_index()

    def _close_files(self) -> None:
        if self._rfd is not None:
            os.close(self._rfd)
            self._rfd = None
        self._close_embeddings()

    def _close_embeddings(self) -> None:
        if self._efile is not None:
            self._efile.close()
            self._efile = None
        # Never close the mmap itself: views handed out would point at unmapped memory.
        self._mm = self._mmv = None
        self._cap = 0

    def __enter__(self) -> 'DocumentArrayMemmap':
        """``with DocumentArrayMemmap(path) as dam: ...`` closes (and flushes) on exit."""
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Garbage collection flushes too (best effort), so a forgotten close() costs only
        # a longer replay on the next open, never documents.
        try:
            self.close()
        except Exception as exc:  # never raise from a finaliser (often at interpreter exit)
            try:
                logger.warning('DocumentArrayMemmap at %s: flush on garbage collection failed: %s',
                               getattr(self, '_path', '?'), exc)
            except Exception:
                pass

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f'DocumentArrayMemmap at {self._path} is closed; open it again to use it')

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """The number of live documents.

        >>> len(dam)
        3
        """
        self._check_open()
        return len(self._ids) - self._n_dead

    def _has_id(self, doc_id: str) -> bool:
        self._check_open()
        return doc_id in self._map

    def _raw_records(self, slots: Sequence[int]) -> list[bytes]:
        offs = [self._off[s] for s in slots]
        lens = [self._len[s] for s in slots]
        if len(slots) > 1:
            lo, hi = min(offs), max(o + n for o, n in zip(offs, lens))
            # One read for the window when the records lie close together (the usual case:
            # append order); a scattered window (after many updates) is read record by record.
            if hi - lo <= 2 * sum(lens) + 65536:
                buf = os.pread(self._rfd, hi - lo, lo)
                return [buf[o - lo:o - lo + n] for o, n in zip(offs, lens)]
        return [os.pread(self._rfd, n, o) for o, n in zip(offs, lens)]

    def _verify(self, raw: bytes, slot: int) -> tuple[int, int, int]:
        """(matrix row, end of the id, start of the pickle) of the PUT record ``raw`` of
        ``slot``, after checking its crc and id: a record file changed behind our back must
        give an error, never another document's content."""
        if len(raw) >= _HEAD_SIZE:
            op, plen, crc, row, idlen, oldlen = _HEAD.unpack_from(raw)
            if op == _OP_PUT and plen == len(raw) - _HDR_SIZE and zlib.crc32(memoryview(raw)[_HDR_SIZE:]) == crc:
                q = _HEAD_SIZE + idlen
                if raw[_HEAD_SIZE:q].decode('utf-8', 'surrogatepass') == self._ids[slot]:
                    return row, q, q + oldlen
        raise RuntimeError(f'{self._path}: the record of document {self._ids[slot]!r} at byte {self._off[slot]} '
                           f'of records.{self._gen}.bin is damaged (was the file changed by something else?)')

    def _decode(self, raw: bytes, slot: int) -> tuple[Document, int]:
        row, _, start = self._verify(raw, slot)
        d = Document._from_state(pickle.loads(memoryview(raw)[start:]))
        d._id = self._ids[slot]
        return d, row

    def _check_row(self, row: int, doc: Document) -> None:
        if row >= self._cap:
            if self._emb_dtype is not None:
                self._map_embeddings()  # another process grew the matrix
            if row >= self._cap:
                raise RuntimeError(f'{self._path}: the embedding of document {doc.id!r} (row {row}) is '
                                   f'missing from embeddings.{self._gen}.bin')

    def _read_slots(self, slots: Sequence[int]) -> list[Document]:
        docs, with_row, rows = [], [], []
        for k, (slot, raw) in enumerate(zip(slots, self._raw_records(slots))):
            d, row = self._decode(raw, slot)
            docs.append(d)
            if row >= 0:
                self._check_row(row, d)
                with_row.append(k)
                rows.append(row)
        if rows:
            # One gather for the window; each document gets its own row of the copy.
            block = self._mmv[rows] if len(rows) > 1 else self._mmv[rows[0]:rows[0] + 1].copy()
            for k, emb in zip(with_row, block):
                docs[k]._embedding = emb
        return docs

    def _read_slot(self, slot: int) -> Document:
        d, row = self._decode(os.pread(self._rfd, self._len[slot], self._off[slot]), slot)
        if row >= 0:
            if row >= self._cap:
                self._check_row(row, d)
            d._embedding = self._mmv[row].copy()
        return d

    def _slots_of(self, positions: Iterable[int]) -> list[int]:
        if not self._n_dead:
            return list(positions)
        live = self._live_slots()
        return [int(live[p]) for p in positions]

    def _read_many(self, slots: Sequence[int]) -> DocumentArray:
        docs: list[Document] = []
        for w in range(0, len(slots), _READ_DOCS):
            docs.extend(self._read_slots(slots[w:w + _READ_DOCS]))
        return DocumentArray._from_list(docs)

    def __getitem__(self, key: int | str | slice | Sequence) -> Document | DocumentArray:
        """``dam[i]`` (the i-th live document), ``dam['id']``, ``dam[a:b]`` or
        ``dam[[...ints / ids / bools]]`` (-> DocumentArray). Each call reads from disk and
        returns copies.

        >>> dam[0].text, dam[-1].id in dam
        ('doc 0', True)
        """
        self._check_open()
        if isinstance(key, str):
            slot = self._map.get(key)
            if slot is None:
                raise KeyError(f'no document with id {key!r} in {self!r}')
            return self._read_slot(slot)
        if isinstance(key, (int, np.integer)):
            return self._read_slot(self._slot_at(int(key)))
        if isinstance(key, slice):
            return self._read_many(self._slots_of(range(len(self))[key]))
        if isinstance(key, (list, tuple, np.ndarray)):
            arr = np.asarray(key)
            if arr.dtype == bool:
                if len(arr) != len(self):
                    raise IndexError(f'boolean mask has length {len(arr)}, DocumentArrayMemmap has {len(self)}')
                arr = np.flatnonzero(arr)
            if arr.dtype.kind in 'iu' or arr.size == 0:
                return self._read_many([self._slot_at(int(i)) for i in arr.tolist()])
            if arr.dtype.kind == 'U':
                return DocumentArray._from_list([self[k] for k in arr.tolist()])
        raise TypeError(f'DocumentArrayMemmap indices are int, str (id), slice, or a list of ints / ids / bools; '
                        f'got {type(key).__name__}')

    def __iter__(self) -> Iterator[Document]:
        """Stream the live documents in order, a window at a time (constant memory).

        >>> for d in dam: print(d.text)
        """
        self._check_open()
        version, start = self._version, 0
        while True:
            if self._version != version:
                raise RuntimeError(f'DocumentArrayMemmap at {self._path} was pruned, cleared, reloaded or '
                                   f'closed during iteration')
            n = len(self._ids)
            if start >= n:
                return
            stop = min(start + _READ_DOCS, n)
            alive = self._alive
            slots = [s for s in range(start, stop) if alive[s]] if self._n_dead else range(start, stop)
            start = stop
            if slots:
                yield from self._read_slots(slots)

    @property
    def embeddings(self) -> np.ndarray | None:
        """The (N, ...) embedding matrix of the live documents.

        A read-only ``np.memmap`` view (no copy, no unpickling) while the live documents'
        rows are exactly the first N rows of the matrix (no deletes or updates since the
        last ``prune()``); a copy gathered from the matrix otherwise. Documents whose
        embedding has another shape / dtype than the first one stored keep it in their
        record: then the embeddings are stacked as DocumentArray does (None when no
        document has one; ValueError when only some have one or shapes differ).

        Examples
        --------
        >>> dam.embeddings.shape
        (3, 4)
        """
        self._check_open()
        n = len(self)
        if n == 0:
            return None
        if self._emb_dtype is not None:
            if self._dense is None:
                self._dense = not self._n_dead and np.array_equal(_to_numpy(self._row), np.arange(n))
            if self._dense and self._cap < n:
                self._map_embeddings()  # another process grew the matrix since we mapped it
            if self._dense and self._cap >= n:
                view = self._mm[:n]
                view.flags.writeable = False  # writing would bypass the records
                return view
            rows = self._live_rows()
            if (rows >= 0).all():
                if rows.max() >= self._cap:
                    self._map_embeddings()
                return self._mmv[rows]
        return _stack(self, 'embedding')

    def __repr__(self) -> str:
        """``<DocumentArrayMemmap path='/data/dam' length=3>``"""
        if self._closed:
            return f'<DocumentArrayMemmap path={self._path!r} closed>'
        return f'<DocumentArrayMemmap path={self._path!r} length={len(self)}>'
