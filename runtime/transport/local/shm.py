"""Shared-memory arenas: where payload arrays travel between processes.

Each producing process owns one arena, a file under /dev/shm mapped once at start-up; a
payload array is written into a slot of it and named by (arena, offset, nbytes). Mapping a
fresh segment per request costs ~20x more than writing into an already mapped one (page
faults dominate), which is why slots are recycled rather than segments created.

We create the files ourselves (0600, O_EXCL) instead of using
``multiprocessing.shared_memory``: on Python 3.11 its resource tracker registers every
attach and unlinks or warns at the wrong time.

Only the owner writes its arena. Every other process maps it copy-on-write
(``MAP_PRIVATE``): reading is zero-copy, and a handler that changes an array it received
in place changes its own copy of those pages, not what an executor that kept the array, a
parallel branch or a retry of the request sees (each executor has its own documents, as in
Jina 2). Changes travel on because the encoder copies an array whose pages this process
wrote (``written``) instead of naming the received buffer again. A private page is stale
once the owner reuses the slot, so a process drops its private pages of a slot when it
takes the slot up for a new request (see ``Mapper``): a slot is reused only once no
process holds it, so nothing of this process still needs them then.
Slots are page-aligned, so that dropping one slot's pages never touches another's.
"""
from __future__ import annotations

import bisect
import ctypes
import errno
import glob
import mmap
import os
import weakref
from typing import Callable

import numpy as np

__all__ = ['Arena', 'Mapper', 'SHM_DIR', 'sweep', 'remove_arena', 'written']

SHM_DIR = '/dev/shm'
_PAGE = mmap.PAGESIZE
#: Slots start on a page of their own (see the module docstring); a page is also a
#: multiple of the cache line that keeps numpy's SIMD loops on their fast path.
_ALIGN = _PAGE
#: Array types a Mapper keeps (one per payload length seen; emptied when full).
_TYPES_MAX = 256


def _create_file(name: str, size: int, reserve: bool = False) -> int:
    fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, size)
        if reserve:
            # tmpfs gives pages only when they are first written; through a map, a full
            # /dev/shm is then SIGBUS, which kills the process. Taken now, it is ENOSPC here.
            os.posix_fallocate(fd, 0, size)
    except BaseException:
        os.close(fd)
        os.unlink(os.path.join(SHM_DIR, name))
        raise
    return fd


class Arena:
    """A first-fit allocator over one shared-memory file owned by this process.

    Free space is a sorted list of holes, coalesced on free. Slots are mostly freed in the
    order they were taken, so there are few holes and the lowest ones are reused first,
    which keeps the touched pages few and warm; and a slot held for long (arrays an
    executor or a callback keeps) blocks only its own bytes, not the space behind it as a
    ring would. Payloads larger than ``max_slot``, or that find no hole, get a segment file
    of their own, unlinked on free (an encoder puts every buffer of a request that finds
    no hole into one segment: see ``alloc_in_arena`` and ``alloc_segment``).

    Example
    -------
    >>> a = Arena('shmflow-x-parent', 1 << 20)
    >>> off = a.alloc(4096); a.array(off, 4096)[:4] = 7; a.free(off); a.close()
    """

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self.max_slot = size // 2
        fd = _create_file(name, size)
        try:
            self._mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._buf = np.frombuffer(self._mm, dtype=np.uint8)
        self.address = self._buf.__array_interface__['data'][0]
        self._holes: list[list[int]] = [[0, size]]  # [offset, size], sorted by offset
        self._sizes: dict[int, int] = {}  # live slot offset -> its (aligned) size
        self._segments: dict[int, str] = {}  # negative offsets name dedicated segments
        self._next_segment = 0

    # -- allocation ------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        """Reserve ``nbytes``; returns the slot's offset (negative: a dedicated segment)."""
        off = self.alloc_in_arena(nbytes)
        return self.alloc_segment(nbytes) if off is None else off

    def alloc_in_arena(self, nbytes: int) -> int | None:
        """A slot of the arena itself for ``nbytes``, or None when no hole holds it (or it
        is larger than ``max_slot``).

        >>> a = Arena('shmflow-x-doc', 1 << 16)
        >>> a.alloc_in_arena(4096), a.alloc_in_arena(1 << 16); a.close()
        (0, None)
        """
        n = max(_ALIGN, (nbytes + _ALIGN - 1) & ~(_ALIGN - 1))
        if n <= self.max_slot:
            holes = self._holes
            for i, hole in enumerate(holes):
                if hole[1] >= n:
                    off = hole[0]
                    if hole[1] == n:
                        del holes[i]
                    else:
                        hole[0] += n
                        hole[1] -= n
                    self._sizes[off] = n
                    return off
        return None

    def alloc_segment(self, nbytes: int) -> int:
        """A segment file of its own for ``nbytes`` (its key is negative): for a payload
        larger than ``max_slot``, or the buffers of a request that the arena has no room
        for, all in one (an encoder places them one after the other; a receiver maps each
        segment, a system call and a map each, and a process may hold at most
        ``vm.max_map_count`` maps)."""
        self._next_segment += 1
        key = -self._next_segment
        name = f'{self.name}-s{self._next_segment}'
        os.close(_create_file(name, max(nbytes, 1), reserve=True))
        self._segments[key] = name
        return key

    def free(self, offset: int) -> None:
        """Give a slot back; unknown offsets are ignored (a slot is freed at most once)."""
        if offset < 0:
            name = self._segments.pop(offset, None)
            if name is not None:
                try:
                    os.unlink(os.path.join(SHM_DIR, name))
                except FileNotFoundError:
                    pass
            return
        n = self._sizes.pop(offset, None)
        if n is None:
            return
        holes = self._holes
        i = bisect.bisect_left(holes, [offset])
        if i > 0 and holes[i - 1][0] + holes[i - 1][1] == offset:  # joins the hole before it
            i -= 1
            holes[i][1] += n
        else:
            holes.insert(i, [offset, n])
        if i + 1 < len(holes) and holes[i][0] + holes[i][1] == holes[i + 1][0]:  # and the one after
            holes[i][1] += holes.pop(i + 1)[1]

    def segment_name(self, offset: int) -> str:
        """The file name of a dedicated segment (negative offset)."""
        return self._segments[offset]

    def write_segment(self, offset: int, parts: list) -> None:
        """Write ``parts``, (position, bytes-like) pairs, into the dedicated segment
        ``offset``: mapped once for all of them (a system call per part would cost more
        than the copies when they are many)."""
        fd = os.open(os.path.join(SHM_DIR, self._segments[offset]), os.O_RDWR)
        try:
            mm = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        try:
            with memoryview(mm) as whole:
                for pos, raw in parts:
                    whole[pos:pos + raw.nbytes] = raw
        finally:
            mm.close()

    def array(self, offset: int, nbytes: int) -> np.ndarray:
        """The slot as a writable uint8 array (offset >= 0)."""
        return self._buf[offset:offset + nbytes]

    @property
    def used(self) -> int:
        """Bytes held by live slots (for tests and profiling)."""
        return sum(self._sizes.values())

    @property
    def live(self) -> int:
        """Number of live slots and segments."""
        return len(self._sizes) + len(self._segments)

    def close(self) -> None:
        """Unmap and unlink the arena and every segment still allocated."""
        for off in list(self._segments):
            self.free(off)
        self._buf = None
        try:
            self._mm.close()
        except BufferError:
            pass  # arrays still view it; the mapping goes when they do, the file goes now
        try:
            os.unlink(os.path.join(SHM_DIR, self.name))
        except FileNotFoundError:
            pass


class Mapper:
    """Maps other processes' arenas (once each) and segments, copy-on-write.

    A view is a ctypes char array over the map, not a memoryview or a numpy slice, on
    purpose: numpy keeps such an exporter as the ``base`` of every array built from it
    (it collapses ndarray bases and re-derives memoryviews), so the view's reference count
    tells whether any array over that buffer is still alive.

    Only a view can write a page, so only pages a view went out for may hold private
    copies of this process. Whoever took up the views says so when it is done with them
    (``mark``), unless it found them unwritten; when marked pages are taken up again (by a
    new slot: the owner may have split or merged its slots since), those of them in the
    range taken up are dropped (``written`` asks the kernel, a system call, which is why
    pages known to be clean are not asked about), and the rest stay marked.
    """

    def __init__(self) -> None:
        self._maps: dict[str, tuple[mmap.mmap, int]] = {}
        # ctypes array types by length. ctypes keeps none alive: once the views of a length
        # are gone, a garbage collection frees the type, and making it again costs ~30 us
        # (a hundred times a view).
        self._types: dict[int, type] = {}
        # arena -> sorted, disjoint [start, end) byte ranges (whole pages) that may be written
        self._marked: dict[str, list[tuple[int, int]]] = {}

    def _map(self, name: str) -> tuple[mmap.mmap, int]:
        entry = self._maps.get(name)
        if entry is None:
            entry = self._maps[name] = _map_file(name)
        return entry

    def _take_up(self, arena: str, start: int, end: int, mm: mmap.mmap, base: int) -> None:
        """Bytes ``[start, end)`` of ``arena`` are used for a new request: drop what this
        process wrote there for an earlier one. (Only there: the pages of a slot are its
        own, and a page another slot still holds must keep what this process wrote.)"""
        marks = self._marked.get(arena)
        if not marks:
            return
        lo, hi = _pages(start, end)
        i = bisect.bisect_left(marks, (lo,))
        if i > 0 and marks[i - 1][1] > lo:
            i -= 1
        j = i
        while j < len(marks) and marks[j][0] < hi:
            j += 1
        if i == j:
            return
        rest = []
        if marks[i][0] < lo:
            rest.append((marks[i][0], lo))
        if marks[j - 1][1] > hi:
            rest.append((hi, marks[j - 1][1]))
        marks[i:j] = rest
        if not marks:
            del self._marked[arena]
        _drop_private(mm, base, lo, hi - lo)

    def view(self, arena: str, slot: int, inner: int, nbytes: int,
             segments: dict | None = None) -> tuple[ctypes.Array, int]:
        """Bytes ``[inner, inner + nbytes)`` of a slot of ``arena`` (slot < 0: of the
        dedicated segment ``f'{arena}-s{-slot}'``), taken up for a new request (see the
        class docstring), and their address in this process.

        ``segments`` (a dict the caller keeps while it opens one payload) maps each
        dedicated segment once for all the buffers of the payload that lie in it: a
        request may place thousands of buffers in one segment, and each map is a system
        call."""
        if slot < 0:
            # Not kept here: the mapping lives as long as the arrays over it, then goes.
            name = f'{arena}-s{-slot}'
            entry = None if segments is None else segments.get(name)
            if entry is None:
                entry = _map_segment(name, self._array_type)
                if segments is not None:
                    segments[name] = entry
            mm, base = entry
            start = inner
        else:
            mm, base = self._maps.get(arena) or self._map(arena)
            start = slot + inner
            if self._marked:
                self._take_up(arena, start, start + nbytes, mm, base)
        array_type = self._types.get(nbytes) or self._array_type(nbytes)
        return array_type.from_buffer(mm, start), base + start

    def _array_type(self, nbytes: int) -> type:
        """``ctypes.c_char * nbytes``, made once (see ``_types``)."""
        array_type = self._types.get(nbytes)
        if array_type is None:
            if len(self._types) >= _TYPES_MAX:
                self._types.clear()
            array_type = self._types[nbytes] = ctypes.c_char * nbytes
        return array_type

    def copy(self, arena: str, slot: int, inner: int, nbytes: int, segments: dict | None = None) -> bytearray:
        """A copy of what ``view`` would show (no view made: for a few KB, making one
        costs more than copying); ``segments`` as for ``view``."""
        if slot < 0:
            return bytearray(self.view(arena, slot, inner, nbytes, segments)[0])
        mm, base = self._maps.get(arena) or self._map(arena)
        start = slot + inner
        if self._marked:
            self._take_up(arena, start, start + nbytes, mm, base)
        with memoryview(mm) as whole:
            return bytearray(whole[start:start + nbytes])

    def refresh(self, arena: str, slot: int, inner: int, nbytes: int) -> None:
        """Take up bytes of a slot again, for a new request, through a view made earlier
        (as ``view`` takes up a slot)."""
        if slot >= 0 and self._marked:
            entry = self._maps.get(arena)
            if entry is not None:
                self._take_up(arena, slot + inner, slot + inner + nbytes, entry[0], entry[1])

    def drop(self, arena: str, start: int, end: int) -> None:
        """Nothing of this process uses bytes ``[start, end)`` of ``arena`` any more (a slot's
        own range): drop what it wrote there now, rather than mark it."""
        entry = self._maps.get(arena)
        if entry is not None and start >= 0:
            lo, hi = _pages(start, end)
            _drop_private(entry[0], entry[1], lo, hi - lo)

    def mark(self, arena: str, start: int, end: int) -> None:
        """Views of bytes ``[start, end)`` of ``arena`` went out and may have been written."""
        if start < 0:
            return  # (a dedicated segment: mapped anew for each use)
        lo, hi = _pages(start, end)
        marks = self._marked.setdefault(arena, [])
        i = bisect.bisect_left(marks, (lo,))
        if i > 0 and marks[i - 1][1] >= lo:  # joins the range before it
            i -= 1
            lo, hi = marks[i][0], max(hi, marks[i][1])
        j = i
        while j < len(marks) and marks[j][0] <= hi:  # and those it reaches
            hi = max(hi, marks[j][1])
            j += 1
        marks[i:j] = [(lo, hi)]

    def forget(self, arena: str) -> None:
        """Drop the map of ``arena`` (a dead process's): its memory goes once no array
        views it and its file is removed."""
        self._maps.pop(arena, None)
        self._marked.pop(arena, None)

    def close(self) -> None:
        """Drop every map; the memory goes once no array views it."""
        self._maps.clear()
        self._types.clear()
        self._marked.clear()


def _map_file(name: str) -> tuple[mmap.mmap, int]:
    # (An arena: mapped once, for the life of the process. Python's mmap holds a duplicate
    # of the descriptor as long as it lives: a handful in all.)
    fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)  # copy-on-write: see the module docstring
    finally:
        os.close(fd)
    return mm, ctypes.addressof(ctypes.c_char.from_buffer(mm))


# Dedicated segments are mapped through libc instead of Python's mmap, which keeps a
# duplicate of the file descriptor for as long as the map lives, i.e. as long as any
# array over it: an executor (or a callback) that keeps the arrays of thousands of
# requests that overflowed its arena would hold a descriptor each, and run out of them
# (EMFILE at ``ulimit -n``, 1024 by default). A map needs no descriptor once made.
_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_munmap = _libc.munmap
_munmap.restype = ctypes.c_int
_munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_MAP_FAILED = ctypes.c_void_p(-1).value


def _map_segment(name: str, array_type: Callable[[int], type]) -> tuple[ctypes.Array, int]:
    """Map dedicated segment ``name`` copy-on-write (``MAP_PRIVATE``, as ``ACCESS_COPY``:
    see the module docstring) without keeping a file descriptor; returns a ctypes char
    array over the whole map, and its address. The map goes (``munmap``) when that array
    does: views made with ``from_buffer`` keep it alive, so the memory lives exactly as
    long as the arrays over it. ``array_type(n)`` gives ``ctypes.c_char * n``."""
    fd = os.open(os.path.join(SHM_DIR, name), os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        addr = _mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE, fd, 0)
        err = ctypes.get_errno()
    finally:
        os.close(fd)  # (the map stays valid without it)
    if addr is None or addr == _MAP_FAILED:
        hint = ''
        if err == errno.ENOMEM:
            maps, limit = _count_maps(), _read_int('/proc/sys/vm/max_map_count')
            if maps and limit and maps >= 0.9 * limit:  # (memory to spare: the maps ran out)
                hint = (f'; this process holds {maps} memory maps and Linux allows {limit} '
                        f'(vm.max_map_count): raise that limit with sysctl, or keep copies '
                        f'(np.array(...)) of the arrays you keep from each request')
        raise OSError(err, f'cannot map shared-memory segment {name} ({size} bytes): {os.strerror(err)}{hint}')
    try:
        owner = array_type(size).from_address(addr)
        ref = weakref.ref(owner, _unmap)
        _segment_maps[id(ref)] = (ref, addr, size)
    except BaseException:
        _munmap(addr, size)
        raise
    return owner, addr


def _count_maps() -> int:
    """The memory maps this process holds (0 if unknown)."""
    try:
        with open('/proc/self/maps', 'rb') as fp:
            return sum(1 for _ in fp)
    except OSError:
        return 0


def _read_int(path: str) -> int:
    try:
        with open(path) as fp:
            return int(fp.read())
    except (OSError, ValueError):
        return 0


#: The map of each segment array alive: its weak reference (kept here, else its callback
#: would not run), address and length. (A weakref with a callback, not weakref.finalize:
#: a third of the cost, and nothing unmaps at exit what arrays still view.)
_segment_maps: dict[int, tuple[weakref.ref, int, int]] = {}


def _unmap(ref: weakref.ref) -> None:
    _, addr, size = _segment_maps.pop(id(ref))
    _munmap(addr, size)


# -- which pages this process wrote -------------------------------------------------------------
# /proc/self/pagemap has 8 bytes per page of this process; the top byte's bits tell that a
# page is present (0x80), swapped (0x40), or a page of the file rather than a private copy
# (0x20). Opened once per process (a forked child reopens it: the path names the opener).
_PRIVATE = bytes(1 if (b & 0xA0) == 0x80 or b & 0x40 else 0 for b in range(256))
_pagemap_fd: int | None = None


def _pagemap() -> int:
    global _pagemap_fd
    if _pagemap_fd is None:
        try:
            _pagemap_fd = os.open('/proc/self/pagemap', os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            _pagemap_fd = -1
    return _pagemap_fd


def _forget_pagemap() -> None:
    global _pagemap_fd
    _pagemap_fd = None  # (the parent's descriptor stays the parent's business)


os.register_at_fork(after_in_child=_forget_pagemap)


def written(addr: int, nbytes: int) -> bool:
    """Whether this process wrote any page of ``[addr, addr + nbytes)`` of a copy-on-write
    map (it then holds a private copy of that page). True when that cannot be known (no
    ``/proc/self/pagemap``): the caller then copies, which is always right.

    >>> written(0, 0)
    False
    """
    if nbytes <= 0:
        return False
    fd = _pagemap()
    if fd < 0:
        return True
    first = addr // _PAGE
    count = (addr + nbytes - 1) // _PAGE - first + 1
    try:
        return b'\x01' in os.pread(fd, 8 * count, 8 * first)[7::8].translate(_PRIVATE)
    except OSError:
        return True


def _pages(start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` widened to whole pages."""
    return start - start % _PAGE, -(-end // _PAGE) * _PAGE


def _drop_private(mm: mmap.mmap, base: int, start: int, nbytes: int) -> None:
    # (start is page-aligned, as madvise wants)
    if written(base + start, nbytes):
        mm.madvise(mmap.MADV_DONTNEED, start, nbytes)  # the pages of the file again


def remove_arena(name: str) -> None:
    """Unlink the file of arena ``name`` and of its dedicated segments (``{name}-s{n}``):
    what a process that died left, once nothing refers to it. Exact names: another
    process's arena may share ``name`` as a prefix."""
    paths = [os.path.join(SHM_DIR, name), *glob.glob(os.path.join(SHM_DIR, glob.escape(name) + '-s*'))]
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def sweep(prefix: str) -> list[str]:
    """Unlink every shared-memory file whose name starts with ``prefix``; returns them."""
    removed = []
    for path in glob.glob(os.path.join(SHM_DIR, glob.escape(prefix) + '*')):
        try:
            os.unlink(path)
            removed.append(os.path.basename(path))
        except FileNotFoundError:
            pass
    return removed
