"""Arrays kept from requests that overflowed the arena hold no file descriptor each.

An in-memory indexer keeps the documents it receives (``self._docs.extend(docs)``), and a
callback may keep the documents of each response. Their arrays stay zero-copy views of the
sender's shared memory; once the kept ones fill the sender's arena, each array over
``codec.PACK_MAX`` travels in a segment file of its own, which the receiver maps for as
long as the array lives. Thousands of kept documents are thousands of maps: those must not
be thousands of open descriptors too (``ulimit -n`` is 1024 by default, and the process
then fails with EMFILE).

The Flows here use the smallest arena (64 KB: no 40 KB blob fits in it), so that every
blob takes that path without sending hundreds of megabytes.

Maps are limited too (``vm.max_map_count``, 65530 a process): once what a process keeps
holds a quarter of an arena, what it receives next is copied instead, so keeping something
of every request costs memory, never a map each (an indexer keeping every request died
after ~65k requests).
"""
from __future__ import annotations

import ctypes
import errno
import gc
import os
import uuid

import numpy as np
import pytest

from runtime import Document, DocumentArray, Executor, Flow, requests
from runtime.transport.local.shm import SHM_DIR, Arena, Mapper

ARENA = 1 << 16
N = 300
SIZE = 10_000  # float32: 40 KB a blob, over codec.PACK_MAX (16 KB)
#: Descriptors a process may open besides (sockets, pagemap, logs), whatever N is.
SLACK = 20


def _fds() -> int:
    return len(os.listdir('/proc/self/fd'))


def _docs(n: int, start: int = 0):
    for i in range(start, start + n):
        yield Document(id=str(i), blob=np.full(SIZE, i, dtype=np.float32))


class KeepAll(Executor):
    """Keeps every document indexed; ``/count`` reports how many, and its open descriptors."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._docs = DocumentArray()

    @requests(on='/index')
    def index(self, docs, **kwargs) -> None:
        self._docs.extend(docs)

    @requests(on='/count')
    def count(self, docs, **kwargs) -> None:
        ok = all(float(d.blob[0]) == int(d.id) and float(d.blob[-1]) == int(d.id) for d in self._docs)
        for d in docs:
            d.tags.update(n=len(self._docs), fds=_fds(), ok=ok)


class Double(Executor):
    """Makes a new blob for every document (the arrays the parent gets are its own)."""

    @requests
    def double(self, docs, **kwargs) -> None:
        for d in docs:
            d.blob = d.blob * 2


def _count(f: Flow) -> dict:
    return f.post('/count', DocumentArray([Document()]), return_results=True)[0].docs[0].tags


def test_executor_keeping_overflowed_arrays_holds_no_descriptor_each():
    with Flow(arena_size=ARENA).add(uses=KeepAll) as f:
        f.post('/index', _docs(10), request_size=10)
        before = _count(f)
        f.post('/index', _docs(N, 10), request_size=25)
        after = _count(f)
    assert after['n'] == N + 10 and after['ok'], after
    grown = after['fds'] - before['fds']
    assert grown < SLACK, f'the executor holds {grown} more descriptors after keeping {N} more documents'


def test_callback_keeping_overflowed_arrays_holds_no_descriptor_each():
    kept: list = []
    with Flow(arena_size=ARENA).add(uses=Double) as f:
        f.post('/', _docs(10), request_size=10)  # (whatever the first request opens, once)
        before = _fds()
        f.post('/', _docs(N), request_size=25, on_done=lambda r: kept.extend(r.docs))
        grown = _fds() - before
        assert len(kept) == N
        assert all((d.blob == 2 * int(d.id)).all() for d in kept)
    assert grown < SLACK, f'the parent holds {grown} more descriptors after keeping {N} documents'
    # The kept arrays stay readable after the Flow is closed, and their maps go with them.
    assert all(float(d.blob[-1]) == 2 * int(d.id) for d in kept)
    kept.clear()


def _maps() -> int:
    with open('/proc/self/maps', 'rb') as fp:
        return sum(1 for _ in fp)


class KeepEmbeddings(Executor):
    """An in-memory indexer that keeps each request's embeddings as they came (views)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.embs = []

    @requests(on='/index')
    def index(self, docs, **kwargs) -> None:
        self.embs.append(docs.embeddings)

    @requests(on='/count')
    def count(self, docs, **kwargs) -> None:
        rows = np.concatenate(self.embs)
        for d in docs:
            d.tags.update(n=len(rows), maps=_maps(), ok=bool((rows[:, 0] == np.arange(len(rows))).all()))


def _rows(n: int, start: int = 0, dim: int = 5_000):
    for i in range(start, start + n):
        yield Document(id=str(i), embedding=np.full(dim, i, dtype=np.float32))


def test_executor_keeping_every_request_holds_a_bounded_number_of_maps():
    # 1 MB arena, 100 KB requests: kept as views, the arena fills after ten requests and
    # every later one would come in a segment of its own, mapped for as long as it is kept.
    with Flow(arena_size=1 << 20).add(uses=KeepEmbeddings) as f:
        f.post('/index', _rows(50), request_size=5)
        before = _count(f)
        f.post('/index', _rows(1_000, 50), request_size=5)
        after = _count(f)
    assert after['n'] == 1_050 and after['ok'], after
    grown = after['maps'] - before['maps']
    assert grown < SLACK, f'the executor holds {grown} more memory maps after keeping 200 more requests'


def test_callback_keeping_every_result_holds_a_bounded_number_of_maps():
    kept: list = []
    with Flow(arena_size=1 << 20).add(uses=Double) as f:
        f.post('/', _docs(10), request_size=1, on_done=lambda r: kept.append(r.docs[0].blob))
        before = _maps()
        f.post('/', _docs(N, 10), request_size=1, on_done=lambda r: kept.append(r.docs[0].blob))
        grown = _maps() - before
    assert len(kept) == N + 10 and all(float(b[-1]) == 2 * i for i, b in enumerate(kept))
    assert grown < SLACK, f'the parent holds {grown} more memory maps after keeping {N} more results'


def _mapped(name: str) -> bool:
    with open('/proc/self/maps') as maps:
        return any(line.rstrip().split(' ', 5)[-1].lstrip().startswith(f'/dev/shm/{name}') for line in maps)


def test_segment_map_lives_as_long_as_the_arrays_over_it_and_is_copy_on_write():
    arena, mapper = Arena(f'shmflow-{os.getpid()}-test-{uuid.uuid4().hex[:8]}', ARENA), Mapper()
    try:
        slot = arena.alloc_segment(SIZE * 4)
        arena.write_segment(slot, [(0, memoryview(np.arange(SIZE, dtype=np.float32)).cast('B'))])
        name = arena.segment_name(slot)
        before = _fds()
        view, addr = mapper.view(arena.name, slot, 0, SIZE * 4)
        blob = np.frombuffer(view, dtype=np.float32)
        assert blob.__array_interface__['data'][0] == addr
        assert _fds() == before and _mapped(name)
        copied = mapper.copy(arena.name, slot, 0, SIZE * 4)
        assert bytes(copied) == blob.tobytes()
        del view
        gc.collect()
        blob[0] = -1  # this process's copy of the page only
        assert _mapped(name) and blob[0] == -1 and blob[-1] == SIZE - 1
        again = np.frombuffer(mapper.view(arena.name, slot, 0, SIZE * 4)[0], dtype=np.float32)
        assert again[0] == 0, 'a write through one map reached the shared file'
        del blob, again
        assert not _mapped(name), 'the segment stayed mapped after the arrays over it were gone'
    finally:
        mapper.close()
        arena.close()


def test_segment_that_cannot_be_mapped_raises_oserror_with_errno():
    name = f'shmflow-{os.getpid()}-test-{uuid.uuid4().hex[:8]}'
    path = os.path.join(SHM_DIR, f'{name}-s1')
    open(path, 'wb').close()  # empty: mmap refuses a length of 0
    mapper = Mapper()
    try:
        with pytest.raises(OSError) as info:
            mapper.view(name, -1, 0, 1)
        assert info.value.errno == errno.EINVAL and f'{name}-s1' in str(info.value)
    finally:
        mapper.close()
        os.unlink(path)


class MapFailsOnce(Executor):
    """Its process's second request cannot be mapped (as when the maps run out)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        from runtime.transport.local import worker
        real, calls = worker.InputBuffers, []

        def buffers(*args, **kw):
            calls.append(1)
            if len(calls) == 2:
                raise OSError(errno.ENOMEM, 'cannot map shared-memory segment x (1 bytes): Cannot allocate memory')
            return real(*args, **kw)
        worker.InputBuffers = buffers

    @requests
    def work(self, docs, **kwargs) -> None:
        for d in docs:
            d.tags['pid'] = os.getpid()


def test_a_request_that_cannot_be_mapped_fails_alone_and_the_executor_goes_on():
    outcomes = []
    with Flow().add(uses=MapFailsOnce, name='mapper') as f:
        for _ in range(3):
            f.post('/', _docs(1), on_done=lambda r: outcomes.append(r.docs[0].tags['pid']),
                   on_error=lambda r: outcomes.append(r.status.description), continue_on_error=True)
    assert outcomes[0] == outcomes[2] and not isinstance(outcomes[0], str)  # the same process, before and after
    assert "'mapper'" in outcomes[1] and 'could not be mapped' in outcomes[1] and 'Cannot allocate' in outcomes[1]


def test_a_segment_not_mapped_for_want_of_maps_says_which_limit(monkeypatch):
    from runtime.transport.local import shm

    def no_map(*args):
        ctypes.set_errno(errno.ENOMEM)
        return shm._MAP_FAILED
    name = f'shmflow-{os.getpid()}-test-{uuid.uuid4().hex[:8]}'
    path = os.path.join(SHM_DIR, f'{name}-s1')
    with open(path, 'wb') as fp:
        fp.write(b'x' * 4096)
    monkeypatch.setattr(shm, '_mmap', no_map)
    monkeypatch.setattr(shm, '_count_maps', lambda: 65_500)
    mapper = Mapper()
    try:
        with pytest.raises(OSError) as info:
            mapper.view(name, -1, 0, 1)
        assert info.value.errno == errno.ENOMEM and 'vm.max_map_count' in str(info.value), str(info.value)
    finally:
        mapper.close()
        os.unlink(path)
