"""The record log ``records.<g>.bin``: the store's source of truth.

Each record is framed by :func:`~runtime.store.format.record` (magic, op, length, crc of the
payload, crc of the header). PUT payload: ``<q row><I row crc><I id length><I replaced-id
length>`` + id + replaced id + ``pickle(Document._state())`` with the id (and, when the
matrix holds it, the embedding) left out. DEL payload: the id. LAYOUT payload: the matrix
layout as JSON (a copy of meta.json's, so that a damaged meta.json can be rebuilt).

A scan tells two things apart: a *torn tail* (a valid header whose payload runs past the end
of the file, or less than a header: a writer killed mid-write), which readers ignore and the
next writer cuts off, and *damage* anywhere else, which raises CorruptStoreError and is never
cut off unless the user asks for ``repair()``.
"""
from __future__ import annotations

import mmap
import os
import pickle
import struct
import zlib
from typing import Any, Callable, Sequence

from ..errors import CorruptStoreError
from .format import HDR, HDR_SIZE, HEAD, HEAD_SIZE, MAGIC, OP_DEL, OP_PUT, PUT, header_ok, record

__all__ = ['RecordLog', 'encode_put', 'encode_del', 'READ_DOCS', 'READ_BYTES']

# A window of records read in one go (iteration, bulk reads, prune, verify): at most this
# many records and this many bytes of them (a record larger than that is read alone), so
# that reading large documents holds a few MiB, as extend()'s write batches do.
READ_DOCS = 1024
READ_BYTES = 4 << 20

_PRE = struct.Struct('<2sBII')  # the header without its own crc
_U32 = struct.Struct('<I')
_crc32, _dumps = zlib.crc32, pickle.dumps


def encode_put(doc_id: str, old: str | None, row: int, row_crc: int, state: tuple) -> bytes:
    """A PUT record for ``doc_id`` (stored at the position of ``old`` when given).
    (:func:`~runtime.store.format.record`, inlined: this runs once per document written.)"""
    idb = doc_id.encode('utf-8', 'surrogatepass')
    oldb = old.encode('utf-8', 'surrogatepass') if old is not None and old != doc_id else b''
    payload = b''.join((PUT.pack(row, row_crc, len(idb), len(oldb)), idb, oldb, _dumps(state, protocol=5)))
    head = _PRE.pack(MAGIC, OP_PUT, len(payload), _crc32(payload))
    return b''.join((head, _U32.pack(_crc32(head)), payload))


def encode_del(doc_id: str) -> bytes:
    """A DEL record for ``doc_id``."""
    return record(OP_DEL, doc_id.encode('utf-8', 'surrogatepass'))


def _decode_id(raw: Any) -> str:
    return bytes(raw).decode('utf-8', 'surrogatepass')


class RecordLog:
    """One open record file (read-only, or append-only for the writer).

    Examples
    --------
    >>> log = RecordLog('/data/dam/records.0.bin', writable=True)  # doctest: +SKIP
    >>> log.append(encode_del('x'), log.size())  # doctest: +SKIP
    """

    def __init__(self, path: str, writable: bool) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND if writable else os.O_RDONLY)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def tail_crc(self, covered: int) -> int:
        """crc of the 4 KiB before byte ``covered``: ties an index snapshot to the exact bytes
        it covers, so a record file cut and written again is never read through a stale one."""
        start = max(0, covered - 4096)
        return zlib.crc32(os.pread(self.fd, covered - start, start))

    # -- writing -----------------------------------------------------------------------------
    def append(self, data: bytes, start: int) -> None:
        """Write ``data`` at the end (byte ``start``) in one ``os.write``; on failure cut the
        file back, so it never keeps half a batch."""
        try:
            n = os.write(self.fd, data)
            if n < len(data):  # odd file systems or a full disk: keep going, then let it raise
                view = memoryview(data)
                while n < len(data):
                    n += os.write(self.fd, view[n:])
        except BaseException:
            try:
                os.ftruncate(self.fd, start)
            except OSError:  # pragma: no cover - the next writer drops the torn tail anyway
                pass
            raise

    def truncate(self, end: int) -> None:
        os.ftruncate(self.fd, end)

    # -- reading one record ------------------------------------------------------------------
    def read(self, offs: Sequence[int], lens: Sequence[int]) -> list[bytes]:
        """The raw records at ``offs`` / ``lens``: one read for a window of records that lie
        close together (the usual case: append order), else one read each. All of them are
        held at once: callers pass a window from :meth:`Index.windows
        <runtime.store.index.Index.windows>` (at most ``READ_DOCS`` records and ``READ_BYTES``
        bytes)."""
        if len(offs) > 1:
            lo, hi = min(offs), max(o + n for o, n in zip(offs, lens))
            if hi - lo <= 2 * sum(lens) + 65536:
                buf = os.pread(self.fd, hi - lo, lo)
                return [buf[o - lo:o - lo + n] for o, n in zip(offs, lens)]
        return [os.pread(self.fd, n, o) for o, n in zip(offs, lens)]

    def parse_put(self, raw: bytes, off: int, doc_id: str) -> tuple[int, int, int, int]:
        """(row, row crc, end of the id, start of the pickle) of the PUT record ``raw`` read at
        ``off``, after checking its payload crc and that it is ``doc_id``'s: a changed file
        gives an error, never another document's content. (The header's own crc is left to
        scans: here the length is known from the index and the payload crc covers the rest.)"""
        if len(raw) >= HEAD_SIZE:
            _, op, plen, crc, _, row, row_crc, idlen, oldlen = HEAD.unpack_from(raw)
            if op == OP_PUT and plen == len(raw) - HDR_SIZE and row >= -1 and zlib.crc32(raw[HDR_SIZE:]) == crc:
                q = HEAD_SIZE + idlen
                if q + oldlen <= len(raw) and raw[HEAD_SIZE:q] == doc_id.encode('utf-8', 'surrogatepass'):
                    return row, row_crc, q, q + oldlen
        raise CorruptStoreError(self.path, off, f'the record of document {doc_id!r} is damaged')

    # -- scanning ----------------------------------------------------------------------------
    def scan(self, start: int, on_put: Callable[[str, str | None, int, int, int], None],
             on_del: Callable[[str], None], on_layout: Callable[[bytes, int], None],
             salvage: list | None = None, stop: int | None = None) -> tuple[int, int]:
        """Apply the records from byte ``start`` on (up to byte ``stop``, a record boundary,
        when given); return (end of the last valid record, file size). Stops at a torn tail.
        Damage raises CorruptStoreError, or with a ``salvage`` list, is skipped: each damaged
        (start, end) range is appended to it and the scan resumes at the next valid record."""
        size = self.size() if stop is None else min(stop, self.size())
        if size <= start:
            return start, size
        with mmap.mmap(self.fd, size, prot=mmap.PROT_READ) as mm, memoryview(mm) as buf:
            i = end = start
            while i < size:
                bad = self._check_at(buf, i, size)
                if bad == 'torn':
                    break
                if bad is None:
                    i = self._apply(buf, i, on_put, on_del, on_layout)
                    end = i
                    continue
                if salvage is None:
                    raise CorruptStoreError(self.path, i, f'{bad}; {size - i} bytes from here on are not '
                                                          f'readable')
                nxt = self._resync(buf, mm, i + 1, size)
                salvage.append((i, nxt))
                i = end = nxt
        return end, size

    @staticmethod
    def _check_at(buf: memoryview, i: int, size: int) -> str | None:
        """None for a valid record at ``i``, 'torn' for a torn tail, else what is damaged."""
        if size - i < HDR_SIZE:
            return 'torn'
        if not header_ok(buf, i):
            return 'a record header is damaged'
        _, op, plen, crc, _ = HDR.unpack_from(buf, i)
        if i + HDR_SIZE + plen > size:
            return 'torn'
        if zlib.crc32(buf[i + HDR_SIZE:i + HDR_SIZE + plen]) != crc:
            return 'a record is damaged (checksum mismatch)'
        if op == OP_PUT:
            if plen < PUT.size:
                return 'a record is damaged (too short)'
            row, _, idlen, oldlen = PUT.unpack_from(buf, i + HDR_SIZE)
            if row < -1 or PUT.size + idlen + oldlen > plen:
                return 'a record is damaged (bad lengths)'
        return None

    def _resync(self, buf: memoryview, mm: mmap.mmap, i: int, size: int) -> int:
        # The next offset where an intact record starts, or the end of the file.
        while True:
            i = mm.find(MAGIC, i)
            if i < 0:
                return size
            if self._check_at(buf, i, size) is None:
                return i
            i += 1

    @staticmethod
    def _apply(buf: memoryview, i: int, on_put: Callable, on_del: Callable, on_layout: Callable) -> int:
        _, op, plen, _, _ = HDR.unpack_from(buf, i)
        p, need = i + HDR_SIZE, HDR_SIZE + plen
        if op == OP_PUT:
            row, _, idlen, oldlen = PUT.unpack_from(buf, p)
            q = p + PUT.size
            old = _decode_id(buf[q + idlen:q + idlen + oldlen]) if oldlen else None
            on_put(_decode_id(buf[q:q + idlen]), old, i, need, row)
        elif op == OP_DEL:
            on_del(_decode_id(buf[p:p + plen]))
        else:
            on_layout(bytes(buf[p:p + plen]), i)
        return i + need

    def records(self, start: int = 0) -> list[tuple[int, bytes]]:
        """(offset, raw record) of every intact record from ``start`` on, skipping damage
        (for ``verify`` and ``repair``)."""
        out: list[tuple[int, bytes]] = []
        size = self.size()
        if size <= start:
            return out
        with mmap.mmap(self.fd, size, prot=mmap.PROT_READ) as mm, memoryview(mm) as buf:
            i = start
            while i < size:
                bad = self._check_at(buf, i, size)
                if bad == 'torn':
                    break
                if bad is not None:
                    i = self._resync(buf, mm, i + 1, size)
                    continue
                n = HDR_SIZE + HDR.unpack_from(buf, i)[2]
                out.append((i, bytes(buf[i:i + n])))
                i += n
        return out

