"""The on-disk format of a DocumentArrayMemmap directory: names, record layout, checksums,
``meta.json`` and the embedding layout, and how files are created (0600, atomically).

Everything read from disk passes through a check here before it is used: a damaged file
raises :class:`~runtime.errors.CorruptStoreError` naming the file and the byte offset,
never a raw ``KeyError`` / ``struct.error`` or a crash (an ``emb_dtype`` of ``"O"`` would
make numpy read raw bytes as object pointers).
"""
from __future__ import annotations

import json
import os
import re
import struct
import zlib
from typing import Any

import numpy as np

from ..errors import CorruptStoreError

FORMAT = 'shmflow-dam'
VERSION = 2
META = 'meta.json'
LOCK = 'writer.lock'
FILE_MODE = 0o600   # stored text is private to its owner, as shm files are
DIR_MODE = 0o700

#: Record header: magic, op, payload length, crc32(payload), crc32(the 11 bytes before it).
#: The header's own crc tells a torn tail (a valid header whose payload runs past the end
#: of the file: a writer killed mid-write) from a damaged length (header crc wrong: damage).
MAGIC = b'\xd4\x4d'
HDR = struct.Struct('<2sBIII')
HDR_SIZE = HDR.size
#: PUT payload prefix: matrix row (-1: embedding inline), crc32 of the row's bytes,
#: id length, replaced-id length; then the id, the replaced id and the pickled state.
PUT = struct.Struct('<qIII')
HEAD = struct.Struct('<2sBIIIqIII')  # a PUT record's header and prefix together
HEAD_SIZE = HEAD.size
OP_PUT, OP_DEL, OP_LAYOUT = 1, 2, 3
OPS = (OP_PUT, OP_DEL, OP_LAYOUT)
#: Limits on what a layout read from disk may claim, so that a damaged one cannot ask for
#: absurd allocations.
MAX_NDIM, MAX_ROW_BYTES = 32, 1 << 31

GEN_FILE = re.compile(r'(records|embeddings|index)\.(\d+)\.(bin|pkl)(\.\d+\.tmp)?')
META_TMP = re.compile(re.escape(META) + r'\.\d+\.tmp')


def file_name(kind: str, gen: int) -> str:
    """``records.<g>.bin``, ``embeddings.<g>.bin`` or ``index.<g>.pkl``."""
    return f'{kind}.{gen}.{"pkl" if kind == "index" else "bin"}'


def record(op: int, payload: bytes) -> bytes:
    """One framed record."""
    head = MAGIC + struct.pack('<BII', op, len(payload), zlib.crc32(payload))
    return head + struct.pack('<I', zlib.crc32(head)) + payload


def header_ok(buf: Any, i: int = 0) -> bool:
    """Whether the 15 bytes at ``i`` are an intact record header."""
    return (buf[i:i + 2] == MAGIC and buf[i + 2] in OPS
            and zlib.crc32(buf[i:i + HDR_SIZE - 4]) == struct.unpack_from('<I', buf, i + HDR_SIZE - 4)[0])


def open_new(path: str, flags: int = os.O_WRONLY) -> int:
    """``os.open`` that creates ``path`` 0600 if missing."""
    return os.open(path, flags | os.O_CREAT, FILE_MODE)


def atomic_write(path: str, data: bytes, sync: bool = False) -> None:
    """Replace ``path`` by ``data``: a reader sees the old or the new file, never half."""
    tmp = f'{path}.{os.getpid()}.tmp'
    fd = open_new(tmp, os.O_WRONLY | os.O_TRUNC)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def fsync_dir(path: str) -> None:
    """A rename is durable only once its directory is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (one call on ordinary file systems)."""
    n = os.write(fd, data)
    if n < len(data):
        view = memoryview(data)
        while n < len(data):
            n += os.write(fd, view[n:])


# -- the embedding layout ------------------------------------------------------------------------
def matrix_ok(emb: np.ndarray) -> bool:
    """Whether ``emb`` can be a row of the matrix: a plain numeric dtype (it survives the
    trip through ``dtype.str``), ndim >= 1 (rows of a 1-d matrix would come back as numpy
    scalars) and not empty."""
    return (emb.dtype.kind in 'biufc' and not emb.dtype.fields and 1 <= emb.ndim <= MAX_NDIM
            and 0 < emb.nbytes <= MAX_ROW_BYTES)


def parse_layout(dtype: Any, shape: Any, where: str) -> tuple[np.dtype, tuple] | None:
    """The (dtype, row shape) named on disk, validated; None for no layout yet."""
    if dtype is None and shape is None:
        return None
    bad = CorruptStoreError(where, 0, f'names an invalid embedding layout (dtype {dtype!r}, shape {shape!r})')
    if not isinstance(dtype, str) or not isinstance(shape, list) or not 1 <= len(shape) <= MAX_NDIM:
        raise bad
    if not all(type(s) is int and s > 0 for s in shape):
        raise bad
    try:
        dt = np.dtype(dtype)
    except Exception:
        raise bad from None
    if dt.kind not in 'biufc' or dt.fields or dt.subdtype or dt.str != dtype:
        raise bad
    if dt.itemsize * int(np.prod(shape, dtype=np.int64)) > MAX_ROW_BYTES:
        raise bad
    return dt, tuple(shape)


def layout_payload(dtype: np.dtype, shape: tuple) -> bytes:
    """The payload of the LAYOUT record, which repeats meta.json's layout in the log."""
    return json.dumps({'emb_dtype': dtype.str, 'emb_shape': list(shape)}).encode()


# -- meta.json -----------------------------------------------------------------------------------
def meta_bytes(gen: int, layout: tuple | None) -> bytes:
    """The content of meta.json, with a crc over the other fields."""
    meta = {'format': FORMAT, 'version': VERSION, 'generation': gen,
            'emb_dtype': None if layout is None else layout[0].str,
            'emb_shape': None if layout is None else list(layout[1])}
    meta['crc'] = zlib.crc32(json.dumps(meta, sort_keys=True).encode())
    return json.dumps(meta).encode()


def has_store_files(path: str) -> bool:
    """Whether ``path`` holds files a store writes (then a bad meta.json is damage, not a
    foreign directory)."""
    try:
        return any(GEN_FILE.fullmatch(name) for name in os.listdir(path))
    except OSError:
        return False


def parse_meta(raw: bytes, path: str) -> tuple[int, tuple | None]:
    """(generation, layout) from meta.json's bytes; ValueError for a directory that is not
    a store (or another version), CorruptStoreError for a damaged meta.json."""
    where = os.path.join(path, META)
    ours = has_store_files(path)

    def foreign(why: str) -> Exception:
        if ours:
            return CorruptStoreError(where, 0, f'is damaged ({why}); the record files are there')
        return ValueError(f'{path} is not a DocumentArrayMemmap directory: its {META} {why}; nothing '
                          f'there is overwritten. Pass a new or empty directory')
    try:
        meta = json.loads(raw)
    except ValueError:
        raise foreign('is not JSON') from None
    if not isinstance(meta, dict):
        raise foreign('is not a JSON object')
    crc = meta.pop('crc', None)
    if crc is not None and crc != zlib.crc32(json.dumps(meta, sort_keys=True).encode()):
        raise CorruptStoreError(where, 0, 'is damaged (its checksum does not match its content)')
    if meta.get('format') != FORMAT:
        raise foreign('belongs to something else')
    if meta.get('version') != VERSION:
        raise ValueError(f'{path} was written by DocumentArrayMemmap format version {meta.get("version")!r}; '
                         f'this version reads only version {VERSION}: copy the documents over with the '
                         f'version that wrote it (e.g. save() them, then load and extend here)')
    if crc is None:
        raise CorruptStoreError(where, 0, 'is damaged (its checksum is missing)')
    gen = meta.get('generation')
    if type(gen) is not int or gen < 0:
        raise CorruptStoreError(where, 0, f'is damaged (generation {gen!r})')
    return gen, parse_layout(meta.get('emb_dtype'), meta.get('emb_shape'), where)
