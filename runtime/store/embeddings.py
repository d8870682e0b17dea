"""The embedding matrix ``embeddings.<g>.bin``: one ``np.memmap`` of ``(capacity, *shape)``.

Rows are handed out in order and never reused within a generation (an update writes a new
row): otherwise a log cut short could bring back a record whose row already holds another
document's embedding. Each PUT record carries the crc32 of its row, so a row is checked
whenever a document is read; ``.embeddings`` hands out the matrix itself (zero-copy, not
checked on every access), which ``verify()`` checks as a whole.
"""
from __future__ import annotations

import logging
import os
import zlib
from typing import Any

import numpy as np

from ..errors import CorruptStoreError
from .format import FILE_MODE

__all__ = ['EmbeddingStore', 'row_crc']

logger = logging.getLogger('runtime')


def row_crc(row: np.ndarray) -> int:
    """crc32 of a row's bytes (a C-contiguous row of the matrix, or a copy of one)."""
    return zlib.crc32(row.data if row.flags.c_contiguous else np.ascontiguousarray(row).data)


class EmbeddingStore:
    """The matrix file of one generation, mapped whole; remapped when it grows.

    Examples
    --------
    >>> es = EmbeddingStore('/data/dam/embeddings.0.bin', (np.dtype('<f4'), (4,)), writable=True)  # doctest: +SKIP
    >>> es.grow(1); crc = es.write(0, np.ones(4, np.float32))  # doctest: +SKIP
    """

    def __init__(self, path: str, layout: tuple[np.dtype, tuple], writable: bool, create: bool = False) -> None:
        self.path, self.writable = path, writable
        self.dtype, self.shape = layout
        self.row_nbytes = self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64))
        self.mm: np.memmap | None = None
        self.mmv: np.ndarray | None = None  # plain ndarray view: memmap's per-slice bookkeeping costs more
        self.cap = 0
        flags = (os.O_RDWR | (os.O_CREAT if create else 0)) if writable else os.O_RDONLY
        self.file: Any = None
        fd = os.open(path, flags, FILE_MODE)
        try:
            self.file = open(fd, 'r+b' if writable else 'rb', buffering=0)
            self.map()
        except BaseException:  # the caller never gets this object to close
            if self.file is None:
                os.close(fd)
            self.close()
            raise

    def close(self) -> None:
        if self.file is not None:
            self.file.close()  # maps made from it stay valid (mmap holds its own fd)
            self.file = None
        # Never close the mmap itself: views handed out would point at unmapped memory.
        self.mm = self.mmv = None
        self.cap = 0

    def map(self) -> None:
        """(Re)map the whole file as it is now."""
        self.mm = self.mmv = None
        self.cap = 0
        cap = os.fstat(self.file.fileno()).st_size // self.row_nbytes
        if cap:
            mm = np.memmap(self.file, dtype=self.dtype, mode='r+' if self.writable else 'r',
                           shape=(cap,) + self.shape)
            self.mm, self.mmv, self.cap = mm, mm.view(np.ndarray), cap

    def grow(self, need: int) -> None:
        """Make room for ``need`` rows; doubling keeps appends amortised O(1), and views
        handed out keep their old map alive."""
        cap = max(need, 2 * self.cap, (1 << 20) // self.row_nbytes or 1)
        fd = self.file.fileno()
        if os.fstat(fd).st_size < cap * self.row_nbytes:
            os.ftruncate(fd, cap * self.row_nbytes)
        self.map()

    def write(self, row: int, emb: np.ndarray) -> int:
        """Write ``emb`` (of the matrix's dtype and row shape) into ``row``; return the crc
        of its bytes."""
        if row >= self.cap:
            self.grow(row + 1)
        self.mmv[row] = emb
        try:
            return zlib.crc32(emb)  # the same bytes as the row's: same dtype, C order
        except (BufferError, ValueError):  # a non-contiguous view: checksum the row it was copied into
            return zlib.crc32(self.mmv[row])

    def ensure(self, row: int, doc_id: str) -> None:
        """Make sure ``row`` is mapped (another process may have grown the file)."""
        if row >= self.cap:
            self.map()
            if row >= self.cap:
                raise CorruptStoreError(self.path, row * self.row_nbytes,
                                        f'the embedding of document {doc_id!r} (row {row}) is missing: the '
                                        f'file holds {self.cap} rows')

    def damaged(self, row: int, doc_id: str) -> CorruptStoreError:
        return CorruptStoreError(self.path, row * self.row_nbytes,
                                 f'the embedding of document {doc_id!r} (row {row}) is damaged (checksum mismatch)')

    def read(self, row: int, crc: int, doc_id: str) -> np.ndarray:
        """A checked copy of ``row``."""
        if row >= self.cap:
            self.ensure(row, doc_id)
        emb = self.mmv[row].copy()
        if zlib.crc32(emb) != crc:
            raise self.damaged(row, doc_id)
        return emb

    def gather(self, rows: list[int], crcs: list[int], ids: list[str]) -> np.ndarray:
        """Checked copies of many rows, in one block."""
        top = max(rows)
        if top >= self.cap:
            self.ensure(top, ids[rows.index(top)])
        block = self.mmv[rows]
        crc32 = zlib.crc32
        for k, row in enumerate(block):
            if crc32(row) != crcs[k]:
                raise self.damaged(rows[k], ids[k])
        return block

    def check(self, row: int, crc: int, doc_id: str) -> None:
        """Raise CorruptStoreError unless ``row`` is there with checksum ``crc``."""
        self.ensure(row, doc_id)
        if zlib.crc32(self.mmv[row]) != crc:
            raise self.damaged(row, doc_id)
