"""The in-memory index of a store (id -> record offset, length and matrix row, in append
order) and its snapshot file ``index.<g>.pkl``.

The snapshot is a cache: opening loads it and replays only the records after it. A snapshot
that fails its checksum, or does not match the record file, is ignored with a warning and
the whole log is replayed instead: no document is lost or changed by a damaged snapshot.

One mismatch is evidence, not staleness: a record file shorter than the bytes a snapshot
records as fsynced (``synced_bytes``: how much of the file had been fsynced when the snapshot
was written; ``flush(sync=True)`` sets it to all it covers, later unsynced flushes carry it
forward). No crash can leave that (fsynced bytes survive a power loss), so the file was cut
short afterwards (a copy that ran out of space, an interrupted rsync, a ``truncate``): what
was durably written is gone, and opening raises CorruptStoreError instead of replaying what
is left as if the end were a torn tail. A file shorter than a snapshot covers but not
shorter than its synced bytes is what an unsynced flush and a power loss legitimately leave:
the snapshot is ignored as before (its synced bytes still count). Snapshots from before
``synced_bytes`` existed have a ``synced`` flag (True: all it covers was fsynced) or neither
(nothing known to be fsynced); the keys are additive, so meta.json's version is unchanged
and older code reads new snapshots.
"""
from __future__ import annotations

import logging
import os
import pickle
import struct
import zlib
from array import array
from bisect import bisect_right
from itertools import accumulate
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from ..errors import CorruptStoreError
from .format import FORMAT
from .log import READ_BYTES, READ_DOCS

if TYPE_CHECKING:
    from .log import RecordLog

__all__ = ['Index', 'load_snapshot', 'snapshot_bytes', 'snapshot_stamp', 'synced_bytes_of']

logger = logging.getLogger('runtime')

_MAGIC = b'SHMFLOW-DAM-INDEX\n'
_FRAME = struct.Struct('<IQ')  # crc32(body), len(body)


def to_numpy(buf: array | bytearray, dtype: type = np.int64) -> np.ndarray:
    """A numpy copy (an array.array that exports a buffer could not grow any more)."""
    return np.frombuffer(buf, dtype=dtype).copy() if len(buf) else np.zeros(0, dtype)


class Index:
    """Per slot (append order): record offset, record length, matrix row, alive flag, id.

    ``array.array`` appends at list speed and converts to numpy with one memcpy.

    Examples
    --------
    >>> ix = Index(); ix.put('a', None, 0, 40, 0); len(ix), ix.map['a']
    (1, 0)
    """

    def __init__(self) -> None:
        self.off = array('q')
        self.len = array('q')
        self.row = array('q')
        self.alive = bytearray()
        self.ids: list[str] = []
        self.map: dict[str, int] = {}
        self.n_dead = 0
        self._live: np.ndarray | None = None   # cached np.flatnonzero(alive)
        self.dense: bool | None = True         # live rows are exactly 0..n-1 (None: unknown)
        self.next_row = 0

    def __len__(self) -> int:
        return len(self.ids) - self.n_dead

    def put(self, doc_id: str, old: str | None, off: int, length: int, row: int) -> None:
        """Apply a PUT record: ``doc_id`` at the position of ``old`` (or its own, or new)."""
        m = self.map
        slot = None
        if old is not None and old != doc_id:
            slot = m.pop(old, None)
            if slot is not None:  # stored at another document's position: take its slot
                other = m.get(doc_id)
                if other is not None:
                    self.kill(other)
                self.ids[slot] = doc_id
                m[doc_id] = slot
        if slot is None:
            slot = m.get(doc_id)
        if slot is None:
            slot = len(self.ids)
            m[doc_id] = slot
            self.ids.append(doc_id)
            self.off.append(off)
            self.len.append(length)
            self.row.append(row)
            self.alive.append(1)
            self._live = None
            if self.dense:
                self.dense = row == slot
        else:
            self.off[slot] = off
            self.len[slot] = length
            self.row[slot] = row
            self.dense = False
        if row >= self.next_row:
            self.next_row = row + 1

    def put_new(self, ids: tuple, offs: list, lens: list, rows: tuple) -> None:
        """Apply a batch of PUTs (an extend) in bulk when every id is new and distinct."""
        m, s0, n = self.map, len(self.ids), len(ids)
        new = dict(zip(ids, range(s0, s0 + n)))
        if len(new) != n or not m.keys().isdisjoint(new):
            for k in range(n):
                self.put(ids[k], None, offs[k], lens[k], rows[k])
            return
        m.update(new)
        self.ids.extend(ids)
        self.off.extend(offs)
        self.len.extend(lens)
        self.row.extend(rows)
        self.alive.extend(b'\x01' * n)
        self._live = None
        if self.dense:
            self.dense = rows == tuple(range(s0, s0 + n))
        self.next_row = max(self.next_row, max(rows) + 1)

    def kill(self, slot: int) -> None:
        self.alive[slot] = 0
        self.n_dead += 1
        self._live = None
        self.dense = False

    def delete(self, doc_id: str) -> None:
        """Apply a DEL record."""
        slot = self.map.pop(doc_id, None)
        if slot is not None:
            self.kill(slot)

    def live_slots(self) -> np.ndarray:
        if self._live is None:
            self._live = np.flatnonzero(np.frombuffer(self.alive, dtype=np.uint8) if self.alive
                                        else np.zeros(0, np.uint8))
        return self._live

    def live_rows(self) -> np.ndarray:
        rows = to_numpy(self.row)
        return rows[self.live_slots()] if self.n_dead else rows

    def is_dense(self) -> bool:
        """Whether the live documents' rows are exactly 0..n-1 (``.embeddings`` is a view)."""
        if self.dense is None:
            self.dense = not self.n_dead and np.array_equal(to_numpy(self.row), np.arange(len(self.ids)))
        return self.dense

    def slot_at(self, i: int) -> int:
        n = len(self.ids) - self.n_dead
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise IndexError(f'DocumentArrayMemmap index {i} out of range for length {n}')
        return int(self.live_slots()[j]) if self.n_dead else j

    def slots_of(self, positions: range | list) -> list[int]:
        if not self.n_dead:
            return list(positions)
        live = self.live_slots()
        return [int(live[p]) for p in positions]

    def window_len(self, slots: Sequence[int], max_docs: int = READ_DOCS, max_bytes: int = READ_BYTES,
                   per_doc: int = 0) -> int:
        """How many of the leading ``slots`` to read as one window: at most ``max_docs``,
        whose records, with ``per_doc`` more bytes each (the embedding row read beside each
        record), add up to at most ``max_bytes``; at least one (a document larger than
        ``max_bytes`` is read alone). Costs one sum of lengths for a window of small records.

        Examples
        --------
        >>> ix = Index(); ix.put('a', None, 0, 10, -1); ix.put('b', None, 10, 10, -1)
        >>> ix.window_len(range(2)), ix.window_len([0, 1], max_bytes=15), ix.window_len([0, 1], 9, 25, per_doc=6)
        (2, 1, 1)
        """
        if per_doc:
            max_docs = min(max_docs, max(1, max_bytes // (per_doc + 1)))
        if len(slots) > max_docs:
            slots = slots[:max_docs]
        lens = self.len
        # (a contiguous range, as iteration of a store without deletions reads, slices the
        # lengths in C; a list of slots picks them one by one)
        sizes = (lens[slots.start:slots.stop] if isinstance(slots, range) and slots.step == 1
                 else [lens[s] for s in slots])
        if sum(sizes) + per_doc * len(slots) <= max_bytes:
            return len(slots)
        return max(1, bisect_right(list(accumulate(n + per_doc for n in sizes)), max_bytes))

    def windows(self, slots: Sequence[int], max_docs: int = READ_DOCS, max_bytes: int = READ_BYTES,
                per_doc: int = 0) -> Iterator[Sequence[int]]:
        """``slots`` (a list or range) cut into consecutive windows of :meth:`window_len`
        slots each, every slot once and in order.

        Examples
        --------
        >>> ix = Index(); ix.put('a', None, 0, 10, -1); ix.put('b', None, 10, 10, -1)
        >>> [list(w) for w in ix.windows(range(2), max_bytes=15)]
        [[0], [1]]
        """
        i, n = 0, len(slots)
        while i < n:
            w = slots[i:i + max_docs]
            k = self.window_len(w, max_docs, max_bytes, per_doc)
            yield w[:k] if k < len(w) else w
            i += k

    def live_columns(self) -> tuple[list, array, array, array]:
        """(ids, offsets, lengths, rows) of the live slots, for a snapshot."""
        if not self.n_dead:
            return self.ids, self.off, self.len, self.row
        live = self.live_slots()
        pick = lambda a: array('q', to_numpy(a)[live].tobytes())  # noqa: E731
        return [self.ids[s] for s in live.tolist()], pick(self.off), pick(self.len), pick(self.row)


def snapshot_bytes(gen: int, covered: int, tail_crc: int, next_row: int,
                   columns: tuple[list, array, array, array], synced_bytes: int = 0) -> bytes:
    """The content of ``index.<g>.pkl``: a checksummed frame around a pickle.
    ``synced_bytes`` (at most ``covered``) is how many bytes of the record file are known to
    have been fsynced: a record file found shorter than that is an error (see the module
    docstring), so never pass more than was fsynced.

    Examples
    --------
    >>> blob = snapshot_bytes(0, 0, 0, 0, ([], array('q'), array('q'), array('q')), synced_bytes=0)
    >>> blob.startswith(b'SHMFLOW-DAM-INDEX')
    True
    """
    ids, off, length, rows = columns
    # ``synced`` is what the version before ``synced_bytes`` reads: True only when it is all.
    body = pickle.dumps({'format': FORMAT, 'generation': gen, 'covered': covered, 'tail_crc': tail_crc,
                         'synced_bytes': synced_bytes, 'synced': synced_bytes >= covered, 'next_row': next_row,
                         'ids': ids, 'offsets': off.tobytes(), 'lengths': length.tobytes(),
                         'rows': rows.tobytes()}, protocol=5)
    return _MAGIC + _FRAME.pack(zlib.crc32(body), len(body)) + body


def _parse(raw: bytes, gen: int) -> dict:
    """The fields of a snapshot of generation ``gen``, the columns as arrays and
    ``synced_bytes`` filled in for older snapshots; ValueError when it is damaged or of
    another generation."""
    n = len(_MAGIC) + _FRAME.size
    if raw[:len(_MAGIC)] != _MAGIC:
        raise ValueError('not an index snapshot')
    crc, length = _FRAME.unpack_from(raw, len(_MAGIC))
    body = memoryview(raw)[n:]
    if length != len(body) or zlib.crc32(body) != crc:
        raise ValueError('checksum mismatch')
    # The crc only tells damage from intact bytes; it does not prove who wrote them. The
    # store trusts its folder (0700, files 0600), as the records, which are pickles too.
    idx = pickle.loads(body)
    covered, ids = idx['covered'], idx['ids']
    for key in ('offsets', 'lengths', 'rows'):
        idx[key] = array('q', idx[key])
    synced = idx.get('synced_bytes')
    if synced is None:  # an older snapshot: all it covers when flagged synced, else nothing known
        synced = idx['synced_bytes'] = covered if idx.get('synced') is True else 0
    if not (idx['format'] == FORMAT and idx['generation'] == gen and type(covered) is int and covered >= 0
            and type(synced) is int and 0 <= synced <= covered
            and len(ids) == len(idx['offsets']) == len(idx['lengths']) == len(idx['rows'])):
        raise ValueError('does not match the record file')
    return idx


def synced_bytes_of(where: str, gen: int) -> int:
    """How many bytes of generation ``gen``'s record file the snapshot ``where`` records as
    fsynced; 0 when there is no usable snapshot there.

    >>> synced_bytes_of('/data/dam/index.0.pkl', 0)  # doctest: +SKIP
    4096
    """
    try:
        with open(where, 'rb') as fp:
            return _parse(fp.read(), gen)['synced_bytes']
    except Exception:  # (damaged or missing: a cache, like the rest of it)
        return 0


def snapshot_stamp(where: str | int) -> tuple | None:
    """What tells one snapshot file (a path or an open fd) from the next (each is written
    anew and renamed into place: a new inode); None when there is none.

    >>> snapshot_stamp('/nonexistent/index.0.pkl') is None
    True
    """
    try:
        st = os.stat(where)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _cut_short(idx: dict, where: str, log: 'RecordLog', size: int) -> tuple[CorruptStoreError, list[str]]:
    """The error for a record file of ``size`` bytes that a snapshot proves was cut, and
    the ids of the documents the snapshot lists whose latest record was cut off."""
    ends = to_numpy(idx['offsets']) + to_numpy(idx['lengths'])
    lost = [idx['ids'][s] for s in np.flatnonzero(ends > size).tolist()]
    some = ', '.join(repr(i) for i in lost[:3]) + (', ...' if len(lost) > 3 else '')
    covered, synced = idx['covered'], idx['synced_bytes']
    problem = (f'the file is {size} bytes long, but the index snapshot {where} covers {covered} bytes of it, '
               f'the first {synced} of which were synced to disk: the file was cut short after they were '
               f'written (a copy that ran out of space, an interrupted rsync, a truncate), which no crash '
               f'leaves. The records after byte {size} are gone, and with them every change written after '
               f'it (documents added, changed or deleted)'
               + (f'; {len(lost)} of the {len(idx["ids"])} documents the snapshot lists were last written '
                  f'there ({some})' if lost else ''))
    return CorruptStoreError(log.path, size, problem,
                             f'restore the file (it held at least {synced} bytes) from a backup or the source '
                             f'of the copy and open it again, or call DocumentArrayMemmap.repair(<directory>) '
                             f'to keep what is left (its dropped-<n>/report.json lists the documents lost or '
                             f'set back to an earlier version; those whose deletion was cut off stay '
                             f'deleted)'), lost


def load_snapshot(raw: bytes, where: str, gen: int, log: 'RecordLog',
                  salvage: list | None = None) -> tuple[Index | None, int, int]:
    """(index, covered bytes, synced bytes) from the bytes ``raw`` of the snapshot ``where``
    of ``log``. The index is None (with a warning) when the snapshot is damaged or stale;
    its synced bytes (0 when it is damaged) hold even then: they were fsynced.

    A record file shorter than the synced bytes raises CorruptStoreError; with a ``salvage``
    list (``repair``, which replays the whole log) ``('cut', (error, the ids the snapshot
    lists, the ids of those whose latest record was cut off))`` is appended to it instead.
    With ``salvage`` the index is always None.
    """
    try:
        idx = _parse(raw, gen)
    except Exception as exc:
        if salvage is None:
            logger.warning('%s: ignoring the index snapshot (%s); replaying the record log', where, exc)
        return None, -1, 0
    covered, synced = idx['covered'], idx['synced_bytes']
    size = log.size()  # after ``raw`` was read: a writer only appends before it snapshots
    if size < synced:
        cut, lost = _cut_short(idx, where, log, size)
        if salvage is None:
            raise cut
        salvage.append(('cut', (cut, idx['ids'], lost)))
        return None, -1, 0
    if salvage is not None:
        return None, -1, synced
    why = None
    if covered > size:
        why = (f'it covers {covered} bytes but the record file holds {size}, and only the first {synced} '
               f'were synced: a power loss after an unsynced flush leaves that')
    elif idx['tail_crc'] != log.tail_crc(covered):
        why = 'the record file was changed since'
    if why is not None:
        logger.warning('%s: ignoring the index snapshot (%s); replaying the record log', where, why)
        return None, -1, synced
    ix = Index()
    ids = idx['ids']
    ix.ids, ix.off, ix.len, ix.row = ids, idx['offsets'], idx['lengths'], idx['rows']
    ix.alive = bytearray(b'\x01') * len(ids)
    ix.map = dict(zip(ids, range(len(ids))))
    ix.next_row = int(idx['next_row'])
    ix.dense = None
    return ix, covered, synced
