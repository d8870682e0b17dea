"""An append-only log of checksummed records: the changes an index made since its last
commit, readable after the process was killed at any point.

A record is a header (magic, kind, CRC-32 and length of the payload) and the payload. A
kill in the middle of an append leaves a torn last record: ``records`` (one record in
memory at a time) and ``read`` (all of them) stop at the first record that is incomplete
or fails its checksum, and ``cut_torn_tail`` cuts it off, so what follows is never
appended after garbage.

Example
-------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), 'pending.log')
>>> append(path, 1, [b'{"ids": ["a"]}'])
>>> [(kind, bytes(payload)) for kind, payload in read(path)[0]]
[(1, b'{"ids": ["a"]}')]
"""
from __future__ import annotations

import logging
import os
import struct
import zlib
from typing import Iterator, Sequence

__all__ = ['append', 'records', 'read', 'cut_torn_tail']

logger = logging.getLogger(__name__)

_MAGIC = b'PLG1'
_HEAD = struct.Struct('<4sBIQ')  # magic, kind, crc32 of the payload, payload length


def append(path: str, kind: int, parts: Sequence[bytes]) -> None:
    """Append one record of ``kind`` (0-255) whose payload is ``parts`` joined.

    Example
    -------
    >>> append('/tmp/x.log', 2, [b'abc', b'def'])  # doctest: +SKIP
    """
    payload = b''.join(parts)
    record = _HEAD.pack(_MAGIC, kind, zlib.crc32(payload), len(payload)) + payload
    with open(path, 'ab') as fp:
        start = fp.tell()
        try:
            fp.write(record)
            fp.flush()
        except BaseException:
            # A failed append (disk full) must not stay as a torn record in the middle: the
            # records after it would never be read.
            fp.truncate(start)
            raise


def records(path: str) -> Iterator[tuple[int, memoryview, int]]:
    """``(kind, payload, end)`` for each whole record of the log at ``path`` in order (none if
    there is no file), ``end`` the offset where that record ends. One record is read at a
    time, so a reader that keeps only what it needs of each holds one request's worth.

    Example
    -------
    >>> for kind, payload, end in records('/tmp/x.log'):  # doctest: +SKIP
    ...     print(kind, len(payload), end)
    """
    try:
        fp = open(path, 'rb')
    except FileNotFoundError:
        return
    with fp:
        size_left = os.fstat(fp.fileno()).st_size
        pos = 0
        while size_left - pos >= _HEAD.size:
            magic, kind, crc, size = _HEAD.unpack(fp.read(_HEAD.size))
            # A damaged length must not make read() allocate it: past the end, it is torn.
            if magic != _MAGIC or size > size_left - pos - _HEAD.size:
                return
            payload = fp.read(size)
            if len(payload) != size or zlib.crc32(payload) != crc:
                return
            pos += _HEAD.size + size
            yield kind, memoryview(payload), pos


def read(path: str) -> tuple[list[tuple[int, memoryview]], int]:
    """``([(kind, payload), ...], end)``: the whole records of the log at ``path`` (none if
    there is no file), and the offset where the last whole one ends. Holds the whole log:
    iterate ``records`` to hold one record at a time.

    Example
    -------
    >>> records, end = read('/tmp/x.log')  # doctest: +SKIP
    """
    found, end = [], 0
    for kind, payload, end in records(path):
        found.append((kind, payload))
    return found, end


def cut_torn_tail(path: str, end: int) -> None:
    """Cut the log at ``path`` to ``end`` (from ``read``) if a torn record follows it.

    Example
    -------
    >>> cut_torn_tail('/tmp/x.log', read('/tmp/x.log')[1])  # doctest: +SKIP
    """
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return
    if size > end:
        logger.warning('%s: dropping %d bytes of a record torn by a crash (the request that wrote it '
                       'was not answered)', path, size - end)
        with open(path, 'r+b') as fp:
            fp.truncate(end)
