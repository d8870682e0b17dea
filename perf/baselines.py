"""Baselines the Flow is measured against, in the same invocation and with the same window.

Each is a three-process pipeline whose workers do what the Flow's benchmark executors do:
read every byte of the (request_size, dim) float32 array they are given (its sum) and pass
it on, so a pipeline that skipped delivering the payload would gain nothing. The parent
keeps at most ``window`` requests in flight.

- ``MPQueuePipeline``: ``multiprocessing.Queue`` between the processes
  (parent -> w1 -> w2 -> w3 -> parent); every hop pickles the array through a pipe.
- ``RawZmqPipeline(mode='shm')``: the floor of the design. PUSH/PULL over ``ipc://``
  from worker to worker; the parent writes each request's array into a slot of a
  shared-memory arena that every process mapped once at start, and only (request id,
  offset, rows, dim) travels (24 bytes). The parent touches each request twice.
- ``RawZmqPipeline(mode='shm', relay=True)``: the same, but every worker replies to the
  parent, which sends the header on to the next worker, as the Flow's router does: the
  parent touches each request once per executor plus once. The like-for-like floor.
- ``RawZmqPipeline(mode='pickle')``: worker-to-worker sockets with the array pickled into
  every message, as a naive hand-written pyzmq pipeline would.

The classes are context managers (start the processes once, ``run()`` several times);
``mp_queue_pipeline`` / ``raw_zmq_shm_pipeline`` / ``raw_zmq_pickle_pipeline`` are
one-shot wrappers returning docs/s. Workers are module-level functions started with the
``spawn`` method, so the module is safe to use from any platform and from threads.
"""
from __future__ import annotations

import mmap
import multiprocessing as mp
import os
import pickle
import queue
import secrets
import shutil
import struct
import tempfile
import time
from typing import Any

import numpy as np
import zmq

__all__ = ['MPQueuePipeline', 'RawZmqPipeline', 'mp_queue_pipeline', 'raw_zmq_shm_pipeline',
           'raw_zmq_pickle_pipeline', 'STAGES']

#: Worker processes in every pipeline (the workload of DESIGN.md has three executors).
STAGES = 3
#: No wait in a baseline is unbounded: a worker that died must not hang the benchmark.
RECV_TIMEOUT_S = 30.0
JOIN_TIMEOUT_S = 5.0
SHM_DIR = '/dev/shm'
_ALIGN = 64
#: (request id, slot, rows, dim); request id -1 tells the chain to stop.
_HEADER = struct.Struct('<qqii')
_STOP = -1


def _read(arr: np.ndarray) -> float:
    """What every baseline worker does with a request: read every byte (the sum), as the
    Flow benchmark's handler sums ``docs.embeddings``."""
    return float(arr.sum())


def _requests(n_docs: int, request_size: int) -> list[tuple[int, int]]:
    """(start, stop) row ranges of the requests."""
    return [(i, min(i + request_size, n_docs)) for i in range(0, n_docs, request_size)]


def _check_args(n_docs: int, request_size: int, window: int) -> None:
    for name, v in (('n_docs', n_docs), ('request_size', request_size), ('window', window)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f'{name} must be a positive int, got {v!r}')


def _stop_processes(procs: list) -> None:
    """Join each process briefly, then terminate, then kill: none outlives the pipeline."""
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(1.0)
        if p.is_alive():
            p.kill()
            p.join()


# -- multiprocessing.Queue -----------------------------------------------------------------
def _mpq_worker(qin: Any, qout: Any) -> None:
    while True:
        msg = qin.get()
        if msg is None:
            qout.put(None)
            return
        _read(msg[1])
        qout.put(msg)


class MPQueuePipeline:
    """parent -> q0 -> w1 -> q1 -> w2 -> q2 -> w3 -> q3 -> parent, every message
    ``(request id, ndarray)`` pickled through the queue.

    Example
    -------
    >>> with MPQueuePipeline() as p:  # doctest: +SKIP
    ...     p.run(np.zeros((1000, 8), np.float32), request_size=100, window=16)
    """

    def __init__(self, stages: int = STAGES) -> None:
        self.stages = stages
        self._procs: list = []
        self._queues: list = []

    def __enter__(self) -> 'MPQueuePipeline':
        ctx = mp.get_context('spawn')
        self._queues = [ctx.Queue() for _ in range(self.stages + 1)]
        try:
            for k in range(self.stages):
                p = ctx.Process(target=_mpq_worker, args=(self._queues[k], self._queues[k + 1]),
                                name=f'perf-mpq-{k}', daemon=True)
                p.start()
                self._procs.append(p)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _get(self) -> Any:
        deadline = time.monotonic() + RECV_TIMEOUT_S
        while True:
            try:
                return self._queues[-1].get(timeout=0.5)
            except queue.Empty:
                dead = [p for p in self._procs if not p.is_alive()]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError(f'mp.Queue pipeline stalled (dead workers: '
                                       f'{[(p.name, p.exitcode) for p in dead]})') from None

    def run(self, data: np.ndarray, request_size: int, window: int) -> float:
        """Send ``data`` through in requests of ``request_size`` rows, at most ``window``
        in flight; returns docs/s."""
        n_docs = len(data)
        _check_args(n_docs, request_size, window)
        reqs = _requests(n_docs, request_size)
        q0 = self._queues[0]
        sent = done = docs = 0
        t0 = time.perf_counter()
        while done < len(reqs):
            while sent < len(reqs) and sent - done < window:
                a, b = reqs[sent]
                q0.put((sent, data[a:b]))
                sent += 1
            _, arr = self._get()
            docs += len(arr)
            done += 1
        seconds = time.perf_counter() - t0
        if docs != n_docs:
            raise RuntimeError(f'mp.Queue pipeline returned {docs} of {n_docs} documents')
        return docs / seconds

    def close(self) -> None:
        """Stop the workers (a sentinel runs down the chain), then close the queues."""
        if self._queues and self._procs:
            try:
                self._queues[0].put(None)
                self._get()
            except Exception:
                pass  # _stop_processes terminates whatever did not stop
        _stop_processes(self._procs)
        self._procs = []
        for q in self._queues:
            q.close()
            q.cancel_join_thread()  # data left in a dead worker's pipe must not block exit
        self._queues = []


# -- raw pyzmq -----------------------------------------------------------------------------
def _zmq_worker(mode: str, in_addr: str, out_addr: str, arena_path: str | None, arena_size: int) -> None:
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    push = ctx.socket(zmq.PUSH)
    for s in (pull, push):
        s.setsockopt(zmq.LINGER, 0)
    pull.bind(in_addr)
    push.connect(out_addr)
    mm = buf = None
    if arena_path is not None:
        # Mapped once for the life of the worker: per-request mapping costs ~20x more.
        fd = os.open(arena_path, os.O_RDWR)
        try:
            mm = mmap.mmap(fd, arena_size)
        finally:
            os.close(fd)
        buf = np.frombuffer(mm, dtype=np.uint8)
    try:
        while True:
            if not pull.poll(int(RECV_TIMEOUT_S * 1000)):
                if os.getppid() == 1:  # parent gone: do not linger
                    return
                continue
            msg = pull.recv(copy=False)
            if mode == 'shm':
                rid, offset, rows, dim = _HEADER.unpack(msg.buffer)
                if rid != _STOP:
                    arr = buf[offset:offset + rows * dim * 4].view(np.float32).reshape(rows, dim)
                    _read(arr)
                    del arr
                push.send(msg, copy=False)  # the 24-byte header goes on unchanged
                if rid == _STOP:
                    return
            else:
                rid, arr = pickle.loads(msg.buffer)
                if rid == _STOP:
                    push.send(msg, copy=False)
                    return
                _read(arr)
                push.send(pickle.dumps((rid, arr), protocol=5))
    finally:
        buf = None
        if mm is not None:
            mm.close()
        pull.close(0)
        push.close(0)
        ctx.term()


class RawZmqPipeline:
    """Worker processes behind PUSH/PULL ``ipc://`` sockets.

    ``mode='shm'`` (the floor): the parent copies each request's array into a slot of a
    pre-mapped, pre-faulted /dev/shm arena (0600, ``window`` slots) and sends
    ``(request id, offset, rows, dim)``; workers view the slot with numpy, sum it and
    forward the header; the parent recycles the slot when the header comes back.
    ``mode='pickle'``: every hop pickles the array (protocol 5, in band) into the message.
    ``relay=False``: the workers form a chain (parent -> w1 -> w2 -> w3 -> parent).
    ``relay=True`` (``'shm'`` only): every worker replies to the parent, which looks the
    request up in its table and sends the header on to the next worker, as the Flow's
    router does.

    Example
    -------
    >>> with RawZmqPipeline('shm', window=16, max_request_bytes=100 * 768 * 4) as p:  # doctest: +SKIP
    ...     p.run(np.zeros((10_000, 768), np.float32), request_size=100)
    """

    def __init__(self, mode: str = 'shm', window: int = 16, max_request_bytes: int = 100 * 768 * 4,
                 stages: int = STAGES, relay: bool = False) -> None:
        if mode not in ('shm', 'pickle'):
            raise ValueError(f"mode must be 'shm' or 'pickle', got {mode!r}")
        if relay and mode != 'shm':
            raise ValueError("relay=True needs mode='shm' (the parent relays 24-byte headers)")
        self.mode, self.window, self.stages, self.relay = mode, window, stages, relay
        self.slot_bytes = max(_ALIGN, (max_request_bytes + _ALIGN - 1) & ~(_ALIGN - 1))
        self._procs: list = []
        self._ctx: zmq.Context | None = None
        self._pushes: list = []  # chain: one socket to the first worker; relay: one per worker
        self._pull = None
        self._dir: str | None = None
        self._arena_path: str | None = None
        self._mm: mmap.mmap | None = None
        self._buf: np.ndarray | None = None

    def __enter__(self) -> 'RawZmqPipeline':
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def name(self) -> str:
        """What the pipeline is, for error messages."""
        return f'{self.mode}{", relayed" if self.relay else ""}'

    def _start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix='perf-zmq-')  # 0700: only we can connect
        addrs = [f'ipc://{self._dir}/s{k}' for k in range(self.stages + 1)]
        arena_size = 0
        if self.mode == 'shm':
            arena_size = self.slot_bytes * self.window
            self._arena_path = os.path.join(SHM_DIR, f'perf-floor-{os.getpid()}-{secrets.token_hex(4)}')
            fd = os.open(self._arena_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, arena_size)
                self._mm = mmap.mmap(fd, arena_size)
            finally:
                os.close(fd)
            self._buf = np.frombuffer(self._mm, dtype=np.uint8)
            self._buf[:] = 0  # fault every page in now, not during the timed run
        self._ctx = zmq.Context()
        self._pull = self._ctx.socket(zmq.PULL)
        self._pull.setsockopt(zmq.LINGER, 0)
        self._pull.bind(addrs[-1])
        for k in range(self.stages if self.relay else 1):
            push = self._ctx.socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            push.connect(addrs[k])
            self._pushes.append(push)
        ctx = mp.get_context('spawn')
        for k in range(self.stages):
            out_addr = addrs[-1] if self.relay else addrs[k + 1]
            p = ctx.Process(target=_zmq_worker, name=f'perf-zmq-{self.mode}-{k}', daemon=True,
                            args=(self.mode, addrs[k], out_addr, self._arena_path, arena_size))
            p.start()
            self._procs.append(p)

    def _recv(self) -> zmq.Frame:
        deadline = time.monotonic() + RECV_TIMEOUT_S
        while not self._pull.poll(500):
            dead = [p for p in self._procs if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f'raw pyzmq pipeline ({self.name}) stalled (dead workers: '
                                   f'{[(p.name, p.exitcode) for p in dead]})')
        return self._pull.recv(copy=False)

    def _check_data(self, data: np.ndarray, request_size: int) -> None:
        _check_args(len(data), request_size, self.window)
        if data.dtype != np.float32 or data.ndim != 2:
            raise ValueError(f'data must be a 2-d float32 array, got {data.dtype} {data.shape}')
        if self.mode == 'shm' and request_size * data.shape[1] * 4 > self.slot_bytes:
            raise ValueError(f'a request of {request_size} x {data.shape[1]} float32 does not fit a '
                             f'{self.slot_bytes}-byte slot; raise max_request_bytes')

    def run(self, data: np.ndarray, request_size: int) -> float:
        """Send ``data`` (float32, 2-d) through in requests of ``request_size`` rows, at
        most ``window`` in flight; returns docs/s."""
        n_docs = len(data)
        self._check_data(data, request_size)
        dim = data.shape[1]
        reqs = _requests(n_docs, request_size)
        free = list(range(self.window))
        pushes, buf, slot_bytes, shm = self._pushes, self._buf, self.slot_bytes, self.mode == 'shm'
        first, last_hop = pushes[0], self.stages - 1
        hops = [0] * len(reqs)  # relay: the stage each request is at (the router's request table)
        sent = done = docs = 0
        t0 = time.perf_counter()
        while done < len(reqs):
            while sent < len(reqs) and sent - done < self.window:
                a, b = reqs[sent]
                if shm:
                    slot = free.pop()
                    off = slot * slot_bytes
                    # The one copy of the payload: into the pre-mapped slot.
                    buf[off:off + (b - a) * dim * 4].view(np.float32).reshape(b - a, dim)[:] = data[a:b]
                    first.send(_HEADER.pack(sent, off, b - a, dim), copy=True)
                else:
                    first.send(pickle.dumps((sent, data[a:b]), protocol=5))
                sent += 1
            msg = self._recv()
            if shm:
                rid, off, rows, _ = _HEADER.unpack(msg.buffer)
                if self.relay and hops[rid] < last_hop:
                    hops[rid] += 1
                    pushes[hops[rid]].send(msg, copy=False)
                    continue
                free.append(off // slot_bytes)
            else:
                _, arr = pickle.loads(msg.buffer)
                rows = len(arr)
            docs += rows
            done += 1
        seconds = time.perf_counter() - t0
        if docs != n_docs:
            raise RuntimeError(f'raw pyzmq pipeline ({self.name}) returned {docs} of {n_docs} documents')
        return docs / seconds

    def round_trips(self, data: np.ndarray, min_seconds: float, min_count: int = 1) -> list[float]:
        """Seconds of each one-row request sent alone (nothing else in flight), cycling
        through the rows of ``data``, until ``min_seconds`` have passed and at least
        ``min_count`` requests were timed: the floor under one post of one document.

        >>> with RawZmqPipeline('shm', 1, 768 * 4, stages=1) as p:  # doctest: +SKIP
        ...     walls = p.round_trips(np.ones((10, 768), np.float32), 0.1)
        """
        if self.mode != 'shm':
            raise ValueError("round_trips measures the floor: it needs mode='shm'")
        self._check_data(data, 1)
        dim, n = data.shape[1], len(data)
        slot = self._buf[:dim * 4].view(np.float32)
        pushes, last_hop = self._pushes, self.stages - 1
        walls: list[float] = []
        t_end = time.perf_counter() + min_seconds
        while True:
            i = len(walls)
            t0 = time.perf_counter()
            slot[:] = data[i % n]
            pushes[0].send(_HEADER.pack(i, 0, 1, dim), copy=True)
            for hop in range(last_hop if self.relay else 0):
                pushes[hop + 1].send(self._recv(), copy=False)
            self._recv()
            t1 = time.perf_counter()
            walls.append(t1 - t0)
            if t1 >= t_end and len(walls) >= min_count:
                return walls

    def close(self) -> None:
        """Stop the workers, then remove every process, socket file and the arena file."""
        try:
            if self._pushes and self._procs and all(p.is_alive() for p in self._procs):
                stop = (_HEADER.pack(_STOP, 0, 0, 0) if self.mode == 'shm'
                        else pickle.dumps((_STOP, None), protocol=5))
                for push in self._pushes:  # chain: runs down it; relay: each worker answers
                    push.send(stop)
                try:
                    for _ in self._pushes:
                        self._recv()
                except RuntimeError:
                    pass
        finally:
            _stop_processes(self._procs)
            self._procs = []
            for s in (*self._pushes, self._pull):
                if s is not None:
                    s.close(0)
            self._pushes, self._pull = [], None
            if self._ctx is not None:
                self._ctx.term()
                self._ctx = None
            if self._arena_path is not None:
                try:
                    os.unlink(self._arena_path)
                except FileNotFoundError:
                    pass
                self._arena_path = None
            self._buf = None
            if self._mm is not None:
                try:
                    self._mm.close()
                except BufferError:
                    pass  # a traceback still holds a view of it: unmapped when that goes
                self._mm = None
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None


# -- one-shot wrappers ---------------------------------------------------------------------
def _data(n_docs: int, dim: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n_docs, dim), dtype=np.float32)


def mp_queue_pipeline(n_docs: int = 10_000, request_size: int = 100, dim: int = 768, window: int = 16,
                      reps: int = 3) -> float:
    """docs/s of the multiprocessing.Queue pipeline: median of ``reps`` runs after one
    warm-up run, processes started once.

    >>> mp_queue_pipeline(1000, 100, 8, 16, reps=1) > 0  # doctest: +SKIP
    True
    """
    data = _data(n_docs, dim)
    with MPQueuePipeline() as p:
        p.run(data, request_size, window)
        return float(np.median([p.run(data, request_size, window) for _ in range(reps)]))


def raw_zmq_shm_pipeline(n_docs: int = 10_000, request_size: int = 100, dim: int = 768, window: int = 16,
                         reps: int = 3, relay: bool = False) -> float:
    """docs/s of the floor (PUSH/PULL headers, payload in a pre-mapped arena; with
    ``relay=True`` the parent relays every hop); median of ``reps`` runs after one
    warm-up run."""
    data = _data(n_docs, dim)
    with RawZmqPipeline('shm', window, request_size * dim * 4, relay=relay) as p:
        p.run(data, request_size)
        return float(np.median([p.run(data, request_size) for _ in range(reps)]))


def raw_zmq_pickle_pipeline(n_docs: int = 10_000, request_size: int = 100, dim: int = 768, window: int = 16,
                            reps: int = 3) -> float:
    """docs/s of raw pyzmq with the array pickled into each message; median of ``reps``."""
    data = _data(n_docs, dim)
    with RawZmqPipeline('pickle', window) as p:
        p.run(data, request_size)
        return float(np.median([p.run(data, request_size) for _ in range(reps)]))
