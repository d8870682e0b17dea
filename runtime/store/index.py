"""The in-memory index of a store (id -> record offset, length and matrix row, in append
order) and its snapshot file ``index.<g>.pkl``.

The snapshot is a cache: opening loads it and replays only the records after it. A snapshot
that fails its checksum, or does not match the record file, is ignored with a warning and
the whole log is replayed instead: no document is lost or changed by a damaged snapshot.
"""
from __future__ import annotations

import logging
import pickle
import struct
import zlib
from array import array
from typing import Callable

import numpy as np

from .format import FORMAT

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
                   columns: tuple[list, array, array, array]) -> bytes:
    """The content of ``index.<g>.pkl``: a checksummed frame around a pickle."""
    ids, off, length, rows = columns
    body = pickle.dumps({'format': FORMAT, 'generation': gen, 'covered': covered, 'tail_crc': tail_crc,
                         'next_row': next_row, 'ids': ids, 'offsets': off.tobytes(),
                         'lengths': length.tobytes(), 'rows': rows.tobytes()}, protocol=5)
    return _MAGIC + _FRAME.pack(zlib.crc32(body), len(body)) + body


def load_snapshot(raw: bytes, where: str, gen: int, size: int, tail_crc: Callable[[int], int]) -> tuple | None:
    """(index, covered bytes) from a snapshot's bytes, or None (with a warning) when it is
    damaged or stale; ``size`` is the record file's and ``tail_crc(n)`` the crc of the 4 KiB
    before byte ``n`` of it."""
    n = len(_MAGIC) + _FRAME.size
    try:
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
        off, length, row = array('q', idx['offsets']), array('q', idx['lengths']), array('q', idx['rows'])
        if not (idx['format'] == FORMAT and idx['generation'] == gen and type(covered) is int
                and 0 <= covered <= size and len(ids) == len(off) == len(length) == len(row)):
            raise ValueError('does not match the record file')
        if idx['tail_crc'] != tail_crc(covered):
            raise ValueError('the record file was changed since')
    except Exception as exc:
        logger.warning('%s: ignoring the index snapshot (%s); replaying the record log', where, exc)
        return None
    ix = Index()
    ix.ids, ix.off, ix.len, ix.row = ids, off, length, row
    ix.alive = bytearray(b'\x01') * len(ids)
    ix.map = dict(zip(ids, range(len(ids))))
    ix.next_row = int(idx['next_row'])
    ix.dense = None
    return ix, covered
