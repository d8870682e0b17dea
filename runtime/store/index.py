"""The in-memory index of a store (id -> record offset, length and matrix row, in append
order) and its snapshot file ``index.<g>.pkl``.

The snapshot is a cache: opening loads it and replays only the records after it. A snapshot
that fails its checksum, or does not match the record file, is ignored with a warning and
the whole log is replayed instead: no document is lost or changed by a damaged snapshot.

One mismatch is evidence, not staleness: a *synced* snapshot (``synced`` True: written, and
fsynced, after the records it covers were fsynced) that covers more bytes than the record
file holds. No crash can leave that (fsynced bytes survive a power loss), so the file was
cut short afterwards (a copy that ran out of space, an interrupted rsync, a ``truncate``):
documents that were durably written are gone, and opening raises CorruptStoreError instead
of replaying what is left as if the end were a torn tail. An unsynced snapshot covering more
than exists is what ``flush(sync=False)`` and a power loss legitimately leave: ignored as
before. Snapshots written before ``synced`` existed lack the key and count as unsynced (the
key is additive, so meta.json's version is unchanged and older code reads new snapshots).
"""
from __future__ import annotations

import logging
import pickle
import struct
import zlib
from array import array
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CorruptStoreError
from .format import FORMAT

if TYPE_CHECKING:
    from .log import RecordLog

__all__ = ['Index', 'load_snapshot', 'snapshot_bytes']

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

    def live_columns(self) -> tuple[list, array, array, array]:
        """(ids, offsets, lengths, rows) of the live slots, for a snapshot."""
        if not self.n_dead:
            return self.ids, self.off, self.len, self.row
        live = self.live_slots()
        pick = lambda a: array('q', to_numpy(a)[live].tobytes())  # noqa: E731
        return [self.ids[s] for s in live.tolist()], pick(self.off), pick(self.len), pick(self.row)


def snapshot_bytes(gen: int, covered: int, tail_crc: int, next_row: int,
                   columns: tuple[list, array, array, array], synced: bool = False) -> bytes:
    """The content of ``index.<g>.pkl``: a checksummed frame around a pickle. Pass
    ``synced=True`` only when the ``covered`` bytes of the record file were fsynced before
    and the snapshot will be fsynced too: it turns a record file shorter than ``covered``
    into an error (see the module docstring).

    Examples
    --------
    >>> blob = snapshot_bytes(0, 0, 0, 0, ([], array('q'), array('q'), array('q')), synced=True)
    >>> blob.startswith(b'SHMFLOW-DAM-INDEX')
    True
    """
    ids, off, length, rows = columns
    body = pickle.dumps({'format': FORMAT, 'generation': gen, 'covered': covered, 'tail_crc': tail_crc,
                         'synced': synced, 'next_row': next_row, 'ids': ids, 'offsets': off.tobytes(),
                         'lengths': length.tobytes(), 'rows': rows.tobytes()}, protocol=5)
    return _MAGIC + _FRAME.pack(zlib.crc32(body), len(body)) + body


def _parse(raw: bytes, gen: int) -> dict:
    """The fields of a snapshot of generation ``gen``, the columns as arrays; ValueError
    when it is damaged or of another generation."""
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
    if not (idx['format'] == FORMAT and idx['generation'] == gen and type(covered) is int and covered >= 0
            and len(ids) == len(idx['offsets']) == len(idx['lengths']) == len(idx['rows'])):
        raise ValueError('does not match the record file')
    return idx


def _cut_short(idx: dict, where: str, log: 'RecordLog', size: int) -> tuple[CorruptStoreError, list[str]]:
    """The error for a record file of ``size`` bytes that a synced snapshot proves was cut,
    and the ids of the documents whose latest record was cut off."""
    ends = to_numpy(idx['offsets']) + to_numpy(idx['lengths'])
    lost = [idx['ids'][s] for s in np.flatnonzero(ends > size).tolist()]
    some = ', '.join(repr(i) for i in lost[:3]) + (', ...' if len(lost) > 3 else '')
    problem = (f'the file is {size} bytes long, but the index snapshot {where}, written after the records it '
               f'covers were synced to disk, covers {idx["covered"]} bytes of it: the file was cut short '
               f'after it was written (a copy that ran out of space, an interrupted rsync, a truncate), which '
               f'no crash leaves; the records of {len(lost)} of the {len(idx["ids"])} documents it lists '
               f'are past the end' + (f' ({some})' if lost else ''))
    return CorruptStoreError(log.path, size, problem,
                             f'restore the file (it should be at least {idx["covered"]} bytes) from a backup or '
                             f'the source of the copy and open it again, or call DocumentArrayMemmap.repair('
                             f'<directory>) to keep the documents that are left (its dropped-<n>/report.json '
                             f'lists the ids that are not)'), lost


def load_snapshot(raw: bytes, where: str, gen: int, log: 'RecordLog', salvage: list | None = None) -> tuple | None:
    """(index, covered bytes, whether it is synced) from the bytes ``raw`` of the snapshot
    ``where`` of ``log``, or None (with a warning) when it is damaged or stale.

    A synced snapshot that covers more than ``log`` holds raises CorruptStoreError; with a
    ``salvage`` list (``repair``, which replays the whole log) ``('cut', (error, ids of the
    documents cut off))`` is appended to it instead, and None is returned whatever the
    snapshot holds.
    """
    try:
        idx = _parse(raw, gen)
        covered = idx['covered']
        size = log.size()  # after ``raw`` was read: a writer only appends before it snapshots
        if covered > size:
            if idx.get('synced') is True:  # (absent in snapshots from before the flag: unsynced)
                cut, lost = _cut_short(idx, where, log, size)
                if salvage is None:
                    raise cut
                salvage.append(('cut', (cut, lost)))
                return None
            raise ValueError(f'it covers {covered} bytes but the record file holds {size}, which a power '
                             f'loss after an unsynced flush leaves')
        if salvage is not None:
            return None
        if idx['tail_crc'] != log.tail_crc(covered):
            raise ValueError('the record file was changed since')
    except CorruptStoreError:
        raise
    except Exception as exc:
        if salvage is None:
            logger.warning('%s: ignoring the index snapshot (%s); replaying the record log', where, exc)
        return None
    ix = Index()
    ids = idx['ids']
    ix.ids, ix.off, ix.len, ix.row = ids, idx['offsets'], idx['lengths'], idx['rows']
    ix.alive = bytearray(b'\x01') * len(ids)
    ix.map = dict(zip(ids, range(len(ids))))
    ix.next_row = int(idx['next_row'])
    ix.dense = None
    return ix, covered, idx.get('synced') is True
