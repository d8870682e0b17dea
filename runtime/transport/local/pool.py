"""The local transport: executor processes on this machine.

One ROUTER socket in the parent talks to a DEALER in every process; one poll waits on it
and on every process's pidfd together (as concurrent.futures' manager waits on results and
worker sentinels), so a message and a death are seen by the same wake-up. Payloads are
written once into the writer's shared-memory arena and mapped by every reader
(``SharedPayloads``, payloads.py); the ``SlotLedger`` decides when a slot is reused.

Nothing the parent sends may block: a process that reads slowly gets its messages queued
here (``_outbox``) until its pipe has room, while replies keep being read. A message that
cannot be delivered at all (the peer lost its connection) ends that process, so its
requests fail or are retried instead of vanishing.

Example
-------
>>> t = LocalTransport(arena_size=32 << 20)
>>> t.open(); w = t.spawn(dep, 0, 0); events = t.poll(0.1)
"""
from __future__ import annotations

import collections
import errno
import logging
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from typing import Any

import cloudpickle
import zmq

from ...errors import ExecutorError, ExecutorStartError, RemoteTraceback, WorkerDiedError
from ..base import Died, Failed, InitFailed, Ready, Reply, Transport, Worker, raise_close_errors
from ..handling import executor_config
from . import protocol as P
from . import zygote
from .payloads import SharedPayloads
from .received import buffer_refs
from .last_words import LastWords
from .ledger import SlotLedger
from .shm import Arena, Mapper, remove_arena, sweep
from .worker_logs import env_level, parent_levels, relog

__all__ = ['LocalTransport', 'LocalWorker']

logger = logging.getLogger('runtime')

#: A worker owed this many freed slots hears of them at once, even while busy.
FREES_BATCH = 64
#: How long a poll waits at most while messages wait for a slow reader's pipe.
BACKLOG_POLL_S = 0.005
#: How often a worker holding requests is sent an empty message, to notice a lost connection.
PROBE_S = 0.5
#: How often the arenas of dead processes are looked at, to remove those nothing refers to.
RECLAIM_S = 0.05


class LocalWorker(Worker):
    """One executor process."""

    def __init__(self, dep: Any, shard: int, replica: int, identity: bytes, secret: str, arena: str,
                 proc: subprocess.Popen | zygote.ForkedProcess) -> None:
        super().__init__(dep, shard, replica)
        self.identity, self.secret, self.arena, self.proc = identity, secret, arena, proc
        self.pid = proc.pid
        self.pidfd = os.pidfd_open(proc.pid)
        self.greeted = False  # it proved it is the process we started (its HELLO)
        self.pending_frees: list[int] = []
        self.pins: collections.Counter = collections.Counter()  # slots it keeps
        self.fatal = ''  # the traceback it sent before dying of an error outside a handler
        self.why = ''  # set when the Flow ended it (a lost connection, a hang)

    def log_label(self) -> str:
        """How its log records are prefixed: ``enc``, ``enc/replica-1``, ``idx/shard-0``."""
        label = self.dep.name
        if self.dep.shards > 1:
            label += f'/shard-{self.shard}'
        if self.dep.replicas > 1:
            label += f'/replica-{self.replica}'
        return label

    def died(self) -> WorkerDiedError:
        lines = [x for x in self.fatal.strip().splitlines() if x.strip()]
        err = WorkerDiedError(self.dep.name, self.replica, self.proc.returncode, self.pid,
                              lines[-1].strip() if lines else '', self.why,
                              self.shard if self.dep.shards > 1 else None)  # (which shard, when there are several)
        if self.fatal:
            err.__cause__ = RemoteTraceback(self.fatal)
        return err


def _cleanup(prefix: str, ipc_dir: str, procs: list, sock: Any = None, ctx: Any = None,
             held: bool = False) -> None:
    """The end of a Flow's transport: at ``close()``, or as the last resort when a started
    Flow is garbage-collected or the interpreter exits. ``held``: it holds the zygote.

    It holds the socket and its context, so that they are closed here, in this order: left
    to the cyclic garbage collector, the context could go first, and its ``term()`` would
    wait forever for the socket still open (a Flow dropped without ``close()``, in a
    notebook cell run again, hung the whole program at some later collection)."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    if sock is not None:
        sock.close(linger=0)
    if ctx is not None and not ctx.closed:
        ctx.term()
    sweep(prefix)
    shutil.rmtree(ipc_dir, ignore_errors=True)
    if held:
        zygote.release(blocking=False)


class LocalTransport(SharedPayloads, LastWords, Transport):
    """Executor processes on this machine, ZeroMQ between them, arrays in shared memory.

    Parameters
    ----------
    arena_size : int
        Bytes of each process's shared-memory arena.
    """

    name = 'local'

    def __init__(self, arena_size: int) -> None:
        self.arena_size = arena_size
        self._opened = False

    # -- lifecycle -----------------------------------------------------------------------------
    def open(self) -> None:
        env_level(os.environ.get('SHMFLOW_LOG_LEVEL'))  # (a bad one: said here, not by every executor)
        self.prefix = f'shmflow-{os.getpid()}-{secrets.token_hex(4)}'
        self._ipc_dir = tempfile.mkdtemp(prefix=self.prefix + '-')  # 0700: no other user can connect
        self._ctx = zmq.Context()
        try:
            self._sock = self._ctx.socket(zmq.ROUTER)
            self._sock.setsockopt(zmq.LINGER, 0)
            # A send to a peer that is gone raises instead of vanishing.
            self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self._endpoint = f'ipc://{self._ipc_dir}/router'
            self._sock.bind(self._endpoint)
            self._arena = Arena(f'{self.prefix}-p', self.arena_size)  # fails when /dev/shm is full
        except BaseException:
            self._ctx.destroy(linger=0)
            _cleanup(self.prefix, self._ipc_dir, [])
            raise
        self._mapper = Mapper()
        self._workers: dict[bytes, LocalWorker] = {}
        self._by_pidfd: dict[int, LocalWorker] = {}
        self._by_arena: dict[str, LocalWorker] = {}
        self._procs: list[subprocess.Popen | zygote.ForkedProcess] = []
        self._outbox: dict[LocalWorker, list] = {}
        self._poller: zmq.Poller | None = None
        self._death_poll: select.poll | None = None  # the pidfds alone, for deaths()
        self._generation = collections.Counter()
        # Arenas of dead processes: requests still going may read them, so each is removed
        # (and forgotten by every process) once nothing refers to it: restarts after
        # crashes do not make the Flow's shared memory grow.
        self._dead_arenas: set[str] = set()
        self._reclaim_seen = -1  # the ledger's version when the dead arenas were last looked at
        self._next_probe = self._next_reclaim = 0.0
        by_arena = self._by_arena

        def live_owner(arena: str) -> LocalWorker | None:
            # (not a bound method: the ledger would hold the transport in a cycle, which
            # only the cyclic garbage collector frees)
            w = by_arena.get(arena)
            return w if w is not None and w.alive else None

        self.ledger = SlotLedger(self._arena, live_owner)
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        self._env = dict(os.environ)
        self._env['PYTHONPATH'] = os.pathsep.join(filter(None, [pkg_root, self._env.get('PYTHONPATH')]))
        self._blobs: dict[int, bytes] = {}
        self._opened = True
        self._finalizer = weakref.finalize(self, _cleanup, self.prefix, self._ipc_dir, self._procs, self._sock,
                                           self._ctx, True)
        zygote.hold()

    def spawn(self, dep: Any, shard: int, replica: int) -> LocalWorker:
        """Start one process of ``dep``: it says HELLO, gets its CONFIG, says READY."""
        blob = self._blobs.get(dep.index)
        if blob is None:
            try:
                blob = self._blobs[dep.index] = cloudpickle.dumps(dep.cls)
            except Exception as exc:
                raise ExecutorStartError(dep.name, f'its class cannot be pickled to send to its process: {exc}') from exc
        env = self._env
        if dep.env:
            env = dict(env)
            env.update({str(k): str(v) for k, v in dep.env.items()})
        gen = self._generation[(dep.index, shard, replica)]
        self._generation[(dep.index, shard, replica)] += 1
        name = f'w{dep.index}s{shard}r{replica}g{gen}'
        # The identity and the secret go over stdin: argv and the environment can be read
        # by other processes, and a peer that knew them could take this worker's place.
        identity, secret = f'{name}-{secrets.token_hex(8)}', secrets.token_hex(16)
        arena = f'{self.prefix}-{name}'
        args = [self._endpoint, self.prefix, str(os.getpid()), str(self.arena_size)]
        proc = zygote.spawn_worker(env, args, identity, secret, self._env) if zygote.enabled(dep.env) else None
        if proc is None:
            # A fresh identity: should the fork server still fork the first one late, that
            # process is a stranger here and cannot take this one's place.
            identity, secret = f'{name}-{secrets.token_hex(8)}', secrets.token_hex(16)
            proc = subprocess.Popen([sys.executable, '-m', 'runtime.transport.local.worker', *args], env=env,
                                    stdin=subprocess.PIPE)
            proc.stdin.write(f'{identity} {secret}\n'.encode())
            proc.stdin.close()
        self._procs.append(proc)
        w = LocalWorker(dep, shard, replica, identity.encode(), secret, arena, proc)
        self._workers[w.identity] = w
        self._by_pidfd[w.pidfd] = w
        self._by_arena[arena] = w
        self._poller = self._death_poll = None
        return w

    def close(self, workers: list, timeout_close: float) -> None:
        if not self._opened:
            return
        self._opened = False
        try:
            self._outbox = {}
            # Those already gone (a death not booked yet: a shard that died with its sibling
            # just before) cannot hear STOP, and their exit code says nothing of a close().
            polled = select.poll()  # (not select.select: a pidfd may be numbered past 1023)
            for w in workers:
                if w.alive:
                    polled.register(w.pidfd, select.POLLIN)
            exited = {fd for fd, _ in polled.poll(0)}
            gone = {w for w in workers if w.alive and w.pidfd in exited}
            for w in workers:
                if w in gone:
                    continue
                if w.alive and not w.ready:
                    w.proc.kill()  # still in its __init__ (or never started): it cannot hear STOP
                elif w.alive:
                    self._queue(w, P.stop(w.pending_frees))
            stopping = [w for w in self._workers.values() if w.ready and w not in gone]  # (told STOP: close() runs)
            self.flush()
            heard: dict = {}  # identity -> what its last message said (see _hear)
            killed = self._await_exits(list(self._workers.values()), time.monotonic() + timeout_close, heard)
            for w in killed:
                logger.warning('executor %r (replica %d) did not stop within %.1f s; killing it',
                               w.dep.name, w.replica, timeout_close)
                w.proc.kill()
                w.proc.wait()
            errors = self._last_words([w for w in stopping if w not in killed], heard)
            # A process that crashed in its close() (or had died unnoticed while the Flow was
            # idle) never finished it: an index it saves may be incomplete. Said as loudly as
            # a close() that raised.
            errors += [(w, ExecutorError(w.dep.name, 'WorkerDiedError',
                                         f'{w.died()}; its close() did not run to its end (what it saves may be '
                                         f'incomplete)', '', w.replica))
                       for w in stopping if w not in killed and w.proc.returncode not in (0, P.CLOSE_FAILED)]
            errors += [(w, ExecutorError(w.dep.name, 'WorkerDiedError', f'{w.died()}; it died before the Flow closed, '
                                         f'so its close() did not run (what it saves may be incomplete)', '', w.replica))
                       for w in gone if w.ready]
        finally:
            for w in self._workers.values():  # (a dead one's went with its death)
                os.close(w.pidfd)
            self._sock.close(linger=0)
            self._ctx.term()
            self._mapper.close()
            self._arena.close()
            # (what the finalizer would do, but the fork server is let go of here, waiting for
            # its lock: only a garbage collection's finalizer may not wait)
            detached = self._finalizer.detach()  # (None: it ran already, and let go then)
            if detached is not None:
                _cleanup(*detached[2][:5])
                zygote.release()
        raise_close_errors(errors)

    def kill(self, worker: LocalWorker, why: str) -> None:
        if worker.alive and worker.proc.poll() is None:
            worker.why = why
            worker.proc.kill()  # its pidfd wakes the poll: a Died event follows

    # -- messages ------------------------------------------------------------------------------
    def send(self, worker: LocalWorker, rid: int, endpoint: str, params_blob: bytes, earlier: dict | None,
             payload: tuple, split: tuple | None = None) -> None:
        frees, worker.pending_frees = worker.pending_frees, []
        desc, meta = payload
        self._queue(worker, P.request(rid, endpoint, params_blob, earlier, desc, frees, split), meta)

    def _queue(self, w: LocalWorker, header: tuple, meta: Any = b'') -> None:
        """Queue a message for ``w``; ``flush`` sends each worker's queue as one message.

        Under load many requests head for the same worker at once: one ZeroMQ message for
        all of them costs the I/O threads and both Python loops one hop instead of many.
        """
        box = self._outbox.get(w)
        if box is None:
            self._outbox[w] = box = []
        box.append((header, meta))

    def flush(self) -> None:
        if not self._outbox:
            return
        outbox, self._outbox = self._outbox, {}
        for n, (w, items) in enumerate(outbox.items()):
            try:
                P.send_to(self._sock, w.identity, P.pack(items))
            except zmq.Again:
                # Its pipe is full (it reads slowly): keep the batch, in order, for the next
                # round; replies keep being read meanwhile, so neither side waits on the other.
                self._outbox.setdefault(w, []).extend(items)
            except zmq.ZMQError as exc:
                if w.alive and exc.errno == errno.EHOSTUNREACH:
                    # Not connected: it lost its connection (or is gone). What was in this
                    # message would vanish; ending the process fails or retries it instead.
                    self.kill(w, f'after it lost its connection to the Flow (a message to it could not be '
                                 f'delivered: {exc.strerror}; a process short of memory does this: check its '
                                 f'memory limit and the size of the requests); it is restarted if max_restarts '
                                 f'allows')
                elif w.alive:
                    # Keep what was not sent (this batch and the others') before raising.
                    for w2, items2 in list(outbox.items())[n:]:
                        self._outbox.setdefault(w2, []).extend(items2)
                    raise

    def deaths(self) -> list:
        if not self._by_pidfd:
            return []
        polled = self._death_poll
        if polled is None:  # rebuilt when the set of live processes changes (as _poller)
            polled = self._death_poll = select.poll()
            for fd in self._by_pidfd:
                polled.register(fd, select.POLLIN)
        return [self._on_death(self._by_pidfd[fd]) for fd, _ in polled.poll(0) if fd in self._by_pidfd]

    def has_events(self) -> bool:
        # (a death shows at the next poll: it need not be seen before the caller's next step)
        return P.waiting(self._sock)

    def poll(self, timeout_s: float) -> list:
        self.flush()
        if self._outbox:
            timeout_s = min(timeout_s, BACKLOG_POLL_S)
        poller = self._poller
        if poller is None:  # rebuilt only when the set of live processes changes
            poller = self._poller = zmq.Poller()
            poller.register(self._sock, zmq.POLLIN)
            for fd in self._by_pidfd:
                poller.register(fd, zmq.POLLIN)
        fds = poller.poll(timeout_s * 1000)
        events: list = []
        sock = self._sock
        # Asking the socket whether a message waits is cheaper than a recv that raises Again;
        # when the poll says so (the socket is registered first), there is no need to ask.
        ready = bool(fds) and fds[0][0] is sock
        while ready or P.waiting(sock):
            ready = False
            frames = P.recv_frames(sock)
            w = self._workers.get(frames[0].bytes)
            if w is None:
                logger.warning('ignored a message from an unknown peer on the Flow socket')
                continue
            try:
                items = P.unpack(frames[1:]) if w.greeted else [P.unpack_hello(frames[1:])]
            except Exception as exc:
                # Not our protocol: a stray or broken peer. Never let it stop the Flow.
                logger.warning('ignored a malformed message from a peer claiming to be %s: %s', w.label(), exc)
                continue
            for header, meta in items:
                self._on_message(w, header, meta, events)
        for fd, _ in fds:
            w = self._by_pidfd.get(fd) if isinstance(fd, int) else None
            if w is not None:
                events.append(self._on_death(w))
        self.ledger.check_kept()
        now = time.monotonic()
        if self._dead_arenas and now >= self._next_reclaim and self.ledger.version != self._reclaim_seen:
            self._next_reclaim = now + RECLAIM_S
            self._reclaim_seen = self.ledger.version
            self._reclaim()
        if now >= self._next_probe:
            # A worker that lost its connection is only seen when something is sent to it
            # (EHOSTUNREACH): while its requests are out and nothing else goes its way, an
            # empty message now and then finds out, so they fail instead of waiting forever.
            self._next_probe = now + PROBE_S
            for w in self._workers.values():
                if w.alive and w.greeted and w.outstanding and w not in self._outbox:
                    self._queue(w, P.free([]))
        # Idle workers get their freed slots now; busy ones with their next request.
        for w in self._workers.values():
            if w.pending_frees and w.alive and (w.outstanding == 0 or len(w.pending_frees) >= FREES_BATCH):
                frees, w.pending_frees = w.pending_frees, []
                self._queue(w, P.free(frees))
        return events

    def _on_message(self, w: LocalWorker, header: tuple, meta: Any, events: list) -> None:
        kind = P.kind(header)
        if not w.greeted:
            if kind == P.HELLO and P.read(header)[1] == w.secret:
                w.greeted = True
                cfg = executor_config(w.dep, w.shard, w.replica)
                cfg['log_levels'] = parent_levels()
                self._queue(w, P.config(cfg), self._blobs[w.dep.index])
            else:
                logger.warning('ignored a %r message from a peer claiming to be %s without its secret',
                               kind, w.label())
            return
        if kind == P.OK:
            rid, desc, allocs, results, times, pins, releases = P.read(header)
            ledger = self.ledger
            if pins or releases:
                ledger.pin(w.pins, pins)
                ledger.unpin(w.pins, releases)
            moved = 0
            if allocs:
                ledger.written(rid, [(w.arena, a) for a in allocs])
                moved = sum(r[3] for r in buffer_refs(desc) if r[0] == w.arena)
            events.append(Reply(w, rid, (desc, meta), desc[0], results, times, moved))
        elif kind == P.ERR:
            rid, exc_type, message, tb, times, pins, releases = P.read(header)
            self.ledger.pin(w.pins, pins)
            self.ledger.unpin(w.pins, releases)
            events.append(Failed(w, rid, exc_type, message, tb, times))
        elif kind == P.RELEASE:
            self.ledger.unpin(w.pins, P.read(header)[0])
        elif kind == P.READY:
            endpoints, default, matrix = P.read(header)
            events.append(Ready(w, frozenset(endpoints), default, frozenset(matrix)))
        elif kind == P.INIT_ERROR:
            exc_type, message, tb = P.read(header)
            w.fatal = tb
            events.append(InitFailed(w, ExecutorStartError(w.dep.name, f'{exc_type}: {message}', tb)))
        elif kind == P.LOG:
            relog(w.log_label(), w.pid, *P.read(header))
        elif kind == P.FATAL:
            w.fatal = P.read(header)[0]

    def _on_death(self, w: LocalWorker) -> Died:
        w.proc.wait()
        w.alive = False
        del self._by_pidfd[w.pidfd]
        del self._workers[w.identity]  # a peer that takes its identity now is a stranger
        # Closed now: a long run's restarts would otherwise hold one descriptor each (at
        # about a thousand, libzmq aborts the process: 'Too many open files').
        os.close(w.pidfd)
        self._poller = self._death_poll = None
        self._outbox.pop(w, None)
        self.ledger.holder_gone(w.pins)
        w.pending_frees = []
        self._dead_arenas.add(w.arena)
        self._reclaim_seen = -1
        return Died(w, w.died())

    def _reclaim(self) -> None:
        """Remove the arenas of dead processes that no request and no pin refers to any
        more, here and in every live process."""
        free = self._dead_arenas - self.ledger.arenas_in_use()
        if not free:
            return
        self._dead_arenas -= free
        for arena in free:
            self._mapper.forget(arena)
            try:
                remove_arena(arena)
            except OSError as exc:  # (the Flow's close sweeps it again)
                logger.warning('could not remove the shared memory of a dead executor process (%s): %s', arena, exc)
        for w in self._workers.values():
            if w.alive and w.ready:  # (one not ready yet has mapped nothing)
                self._queue(w, P.forget(sorted(free)))
