"""The router: the parent's side of a running Flow.

One loop in the caller's thread waits on the ROUTER socket and on every executor
process's pidfd together (as concurrent.futures' manager waits on results and worker
sentinels), so a message and a death are seen by the same poll. Every hop of every request
goes executor -> router -> next executor: knowing where each request is lets it balance
replicas by exact outstanding counts, time each hop, fail exactly the requests of a process
that died, and free every shared-memory slot of a finished request.
"""
from __future__ import annotations

import collections
import itertools
import logging
import os
import pickle
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import weakref
from typing import Any, Iterator

import cloudpickle
import zmq

from ..transport.local import protocol as P
from ..array import DocumentArray
from ..transport.local.codec import InputBuffers, Payload, buffer_refs, decode, encode, held_elsewhere
from ..errors import (ExecutorError, ExecutorStartError, RemoteTraceback, RequestTimeoutError, WorkerDiedError,
                     describe_exit)
from .inputs import describe
from .merge import merge_by_id, merge_shards
from .progress import Progress
from ..response import Response, Status
from ..transport.local.shm import Arena, Mapper, sweep
from .topology import END, GATEWAY, Deployment, Plan

logger = logging.getLogger('runtime')

#: How long one poll waits while requests are in flight; a dead worker is noticed sooner
#: through its pidfd, which the same poll watches.
POLL_MS = 100


#: Requests a worker of a deployment with several processes holds at most: the rest wait
#: in the router, so a slow replica is not handed a deep queue while others sit idle, and
#: two keep each process busy while the next payload travels.
MAX_OUTSTANDING = 2
#: How often the router looks whether a caller let go of arrays it kept from callbacks.
KEPT_CHECK_S = 0.05


class _Worker:
    """The parent's handle on one executor process."""

    def __init__(self, dep: Deployment, replica: int, shard: int, identity: str, arena: str,
                 proc: subprocess.Popen) -> None:
        self.dep, self.replica, self.shard, self.identity, self.arena = dep, replica, shard, identity, arena
        self.proc = proc
        self.bident = identity.encode()
        self.pid = proc.pid
        self.pidfd = os.pidfd_open(proc.pid)
        self.alive = True
        self.ready = False
        self.outstanding = 0
        self.pending_frees: list[int] = []
        self.pins: collections.Counter = collections.Counter()  # slots it keeps, by (arena, slot)
        self.fatal = ''  # the traceback it sent before dying of an error outside a handler

    def died(self) -> WorkerDiedError:
        lines = [x for x in self.fatal.strip().splitlines() if x.strip()]
        err = WorkerDiedError(self.dep.name, self.replica, self.proc.returncode, self.pid,
                              lines[-1].strip() if lines else '')
        if self.fatal:
            err.__cause__ = RemoteTraceback(self.fatal)
        return err


class _Request:
    __slots__ = ('rid', 'post', 'index', 'results', 'slots', 'routes', 'at', 'parts',
                 'shard_parts', 'done', 'last', 'retries', 'deadline', 'submitted', 'forks')

    def __init__(self, rid: int, post: 'PostState', index: int) -> None:
        self.rid, self.post, self.index = rid, post, index
        self.results: dict | None = None  # executor name -> the dict its handler returned
        self.slots: list = []  # every shared-memory slot written for it, by (arena, slot)
        self.routes: list = []
        self.at: dict = {}  # worker -> (node, payload, meta): where it is being processed
        self.parts: dict = {}  # node -> [(payload, meta)] arrived from its needs so far
        self.shard_parts: dict = {}  # node -> [(payload, meta) or None] by shard
        self.done = False  # delivered (or abandoned): replies still due are only booked
        self.last: tuple = ((0, None, []), b'')  # the latest (payload, meta), for an error response
        self.retries = 0
        self.deadline = post.deadline_after and time.monotonic() + post.deadline_after
        self.submitted = time.time()
        self.forks: dict = {}  # split node -> the (payload, meta) it sent down its branches


class PostState:
    """The state of one ``post`` call."""

    def __init__(self, endpoint: str, plan: Plan, on_done, on_error, on_always, return_results: bool,
                 results_in_order: bool, progress: Progress | None) -> None:
        self.endpoint, self.plan = endpoint, plan
        self.on_done, self.on_error, self.on_always = on_done, on_error, on_always
        self.results: list | None = [] if return_results else None
        self.in_order = results_in_order
        self.pending: dict[int, Response] = {}
        self.next_index = 0
        self.progress = progress
        self.inflight = 0
        self.error: BaseException | None = None
        self.abandoned = False
        self.params_blob = b''
        self.params: dict | None = None  # unpickled once, for reduce hooks
        self.deadline_after: float | None = None  # post(timeout=...)
        self.continue_on_error = False
        self.number = 0  # for profiles: which post of the Flow this is


def _cleanup(prefix: str, ipc_dir: str, procs: list) -> None:
    """Last resort when a started Flow is garbage-collected or the interpreter exits."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    sweep(prefix)
    shutil.rmtree(ipc_dir, ignore_errors=True)


class Router:
    """Starts the executor processes of a Flow's specs, routes requests, stops them.

    Example
    -------
    >>> rt = Router(specs, workspace='workspace', arena_size=32 << 20, timeout_close=5.0)
    >>> rt.start(); ...; rt.close()
    """

    def __init__(self, specs: list[dict], workspace: str, arena_size: int, timeout_close: float) -> None:
        self.specs, self.workspace = specs, workspace
        self.arena_size, self.timeout_close = arena_size, timeout_close
        self.deployments: list[Deployment] = []
        self.started = False
        self.profile = None  # a ProfileRecorder while profiling

    def start(self) -> None:
        """Start every executor's processes in parallel and wait until all are ready.

        Raises ExecutorStartError (naming the executor, with its remote traceback) if one
        fails; nothing is left running then.
        """
        t0 = time.perf_counter()
        self.prefix = f'shmflow-{os.getpid()}-{secrets.token_hex(4)}'
        self._ipc_dir = tempfile.mkdtemp(prefix=self.prefix + '-')  # 0700: no other user can connect
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._endpoint = f'ipc://{self._ipc_dir}/router'
        self._sock.bind(self._endpoint)
        self._arena = Arena(f'{self.prefix}-p', self.arena_size)
        self._mapper = Mapper()
        self._requests: dict[int, _Request] = {}
        self._workers: dict[bytes, _Worker] = {}
        self._by_pidfd: dict[int, _Worker] = {}
        self._arena_owner: dict[str, _Worker] = {}
        self._pins: collections.Counter = collections.Counter()
        self._done_slots: set = set()  # slots of finished requests that a worker still keeps
        self._kept: list = []  # (ref, view) of final payloads a caller still holds arrays of
        self._next_kept_check = 0.0
        self._procs: list[subprocess.Popen] = []
        self._outbox: dict[_Worker, list] = {}
        self._poller: zmq.Poller | None = None
        self._rids = itertools.count()
        self.started = True
        self._finalizer = weakref.finalize(self, _cleanup, self.prefix, self._ipc_dir, self._procs)
        try:
            self._spawn_all()
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        nproc = sum(len(d.workers) for d in self.deployments)
        logger.info('Flow ready: %d executor(s) (%s), %d process(es), in %.2f s', len(self.deployments),
                    ', '.join(d.name for d in self.deployments), nproc, time.perf_counter() - t0)

    def close(self) -> None:
        """Stop every process and remove every socket and shared-memory file of this Flow.

        Each executor's ``close()`` runs in its process; a process that does not stop
        within ``timeout_close`` seconds is killed.
        """
        if not self.started:
            return
        self.started = False
        try:
            self._outbox = {}
            for w in list(self._workers.values()):
                if w.alive and not w.ready:
                    w.proc.kill()  # still in its __init__ (or never started): it cannot hear STOP
                elif w.alive:
                    self._send(w, (P.STOP, w.pending_frees))
            self._flush()
            deadline = time.monotonic() + self.timeout_close
            for w in self._workers.values():
                try:
                    w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    logger.warning('executor %r (replica %d) did not stop within %.1f s; killing it',
                                   w.dep.name, w.replica, self.timeout_close)
                    w.proc.kill()
                    w.proc.wait()
        finally:
            for w in self._workers.values():
                os.close(w.pidfd)
            self._sock.close(linger=0)
            self._ctx.term()
            self._mapper.close()
            self._arena.close()
            self._finalizer()  # sweeps the prefix and the socket directory

    def _spawn_all(self) -> None:
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # above runtime/
        self._env = dict(os.environ)
        self._env['PYTHONPATH'] = os.pathsep.join(filter(None, [pkg_root, self._env.get('PYTHONPATH')]))
        self.deployments = []
        for i, spec in enumerate(self.specs):
            dep = Deployment(i, spec)
            dep.metas.setdefault('workspace', os.path.join(self.workspace, dep.metas['name']))
            try:
                dep.blob = cloudpickle.dumps(dep.cls)
            except Exception as exc:
                raise ExecutorStartError(dep.name, f'its class cannot be pickled to send to its process: {exc}') from exc
            self.deployments.append(dep)
            for shard in range(dep.shards):
                for r in range(dep.replicas):
                    self._spawn(dep, shard, r)

    def _spawn(self, dep: Deployment, shard: int, replica: int) -> _Worker:
        """Start one process of ``dep``; it reports HELLO, gets its CONFIG, says READY."""
        env = self._env
        if dep.env:
            env = dict(env)
            env.update({str(k): str(v) for k, v in dep.env.items()})
        identity = f'w{dep.index}s{shard}r{replica}g{dep.restarts}'
        arena = f'{self.prefix}-{identity}'
        proc = subprocess.Popen(
            [sys.executable, '-m', 'runtime.transport.local.worker', self._endpoint, identity, self.prefix,
             str(os.getpid()), str(self.arena_size)], env=env, stdin=subprocess.DEVNULL)
        self._procs.append(proc)
        w = _Worker(dep, replica, shard, identity, arena, proc)
        dep.workers.append(w)
        dep.by_shard[shard].append(w)
        self._workers[w.bident] = w
        self._by_pidfd[w.pidfd] = w
        self._arena_owner[arena] = w
        self._poller = None
        return w

    def _wait_ready(self) -> None:
        timeouts = [d.timeout_ready for d in self.deployments]
        limit = None if any(t is None or t < 0 for t in timeouts) else max(timeouts, default=0)
        deadline = None if limit is None else time.monotonic() + limit
        while not all(w.ready for w in self._workers.values()):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                w = next(w for w in self._workers.values() if not w.ready)
                raise ExecutorStartError(w.dep.name, f'not ready after timeout_ready={limit} s '
                                                     f'(its __init__ may hang; raise timeout_ready if it is slow)')
            for kind, w, header, _ in self._poll(POLL_MS if remaining is None else min(POLL_MS, remaining * 1000)):
                if kind == 'died':
                    error = ExecutorStartError(w.dep.name, f'its process (replica {w.replica}) ended during '
                                                           f'start-up with {describe_exit(w.proc.returncode)}',
                                               w.fatal)
                    raise error
                failure = self._handshake(w, header)
                if failure is not None:
                    raise failure

    def _handshake(self, w: _Worker, header: tuple) -> ExecutorStartError | None:
        """Answer a start-up message of ``w``; returns the error if its __init__ failed."""
        kind = header[0]
        if kind == P.HELLO:
            dep = w.dep
            cfg = {'name': dep.metas['name'], 'replica_id': w.replica, 'shard_id': w.shard,
                   'replicas': dep.replicas, 'shards': dep.shards, 'metas': dep.metas, 'kwargs': dep.kwargs,
                   'sys_path': list(sys.path)}
            self._send(w, (P.CONFIG, cfg), dep.blob)
        elif kind == P.READY:
            info = header[1]
            w.ready = True
            w.dep.endpoints = frozenset(info['endpoints'])
            w.dep.has_default = info['default']
        elif kind == P.INIT_ERROR:
            _, exc_type, message, tb = header
            w.fatal = tb
            return ExecutorStartError(w.dep.name, f'{exc_type}: {message}', tb)
        elif kind == P.FATAL:
            w.fatal = header[1]
        return None

    def _send(self, w: _Worker, header: tuple, meta: Any = b'') -> None:
        """Queue a message for ``w``; ``_flush`` sends each worker's queue as one message.

        Under load many requests head for the same worker at once: one ZeroMQ message for
        all of them costs the I/O threads and both Python loops one hop instead of many.
        """
        box = self._outbox.get(w)
        if box is None:
            self._outbox[w] = box = []
        box.append((header, meta))

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for w, items in outbox.items():
            try:
                self._sock.send_multipart([w.bident, *P.pack(items)], copy=False)
            except zmq.ZMQError as exc:  # not connected any more: its death is noticed by its pidfd
                logger.debug('could not send to %s: %s', w.identity, exc)

    def _poll(self, timeout_ms: float) -> Iterator[tuple]:
        """Yield ('msg', worker, header, meta) and ('died', worker, None, None) events."""
        self._flush()
        poller = self._poller
        if poller is None:  # rebuilt only when the set of live processes changes
            poller = self._poller = zmq.Poller()
            poller.register(self._sock, zmq.POLLIN)
            for fd in self._by_pidfd:
                poller.register(fd, zmq.POLLIN)
        events = poller.poll(timeout_ms)
        sock = self._sock
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            w = self._workers.get(frames[0].bytes)
            if w is not None:
                for header, meta in P.unpack(frames[1:]):
                    yield 'msg', w, header, meta
        for fd, _ in events:
            w = self._by_pidfd.get(fd) if isinstance(fd, int) else None
            if w is not None:
                w.proc.wait()
                w.alive = False
                del self._by_pidfd[fd]
                self._poller = None
                yield 'died', w, None, None

    def plan(self, endpoint: str, target: str | None) -> Plan:
        """The plan of a post to ``endpoint``; raises if an executor it needs is dead."""
        if target is not None:
            if not isinstance(target, str):
                raise TypeError(f'target_executor must be an executor name or a regex str, got {describe(target)}')
            try:
                pattern = re.compile(target)
            except re.error as exc:
                raise ValueError(f'target_executor {target!r} is not a valid regular expression: {exc}') from None
            targeted = [bool(pattern.fullmatch(d.name)) for d in self.deployments]
            if not any(targeted):
                raise ValueError(f'target_executor {target!r} matches no executor; executors: '
                                 f'{[d.name for d in self.deployments]}')
        else:
            targeted = [True] * len(self.deployments)
        active = [t and d.handles(endpoint) for t, d in zip(targeted, self.deployments)]
        for d, on in zip(self.deployments, active):
            dead = d.dead_shard() if on else None
            if dead is not None:
                raise WorkerDiedError(d.name, dead.replica, dead.proc.returncode, dead.pid)
        return Plan(self.deployments, endpoint, active)

    def submit(self, post: PostState, docs: DocumentArray, index: int) -> None:
        """Encode one request's documents and send them on their way."""
        rid = next(self._rids)
        req = _Request(rid, post, index)
        payload, meta, allocs = encode(docs, self._arena)
        req.slots = [(self._arena.name, s) for s in allocs]
        req.last = (payload, meta)
        self._requests[rid] = req
        post.inflight += 1
        if GATEWAY in post.plan.forks:
            req.forks[GATEWAY] = (payload, meta)
        for node in post.plan.start:
            self._arrive(req, node, payload, meta)

    def _arrive(self, req: _Request, node: int, payload: Payload, meta: Any) -> None:
        """One of ``node``'s needs has delivered; once all have, ``node`` takes the request."""
        plan = req.post.plan
        need = plan.end_preds if node == END else plan.npred[node]
        if need > 1:
            parts = req.parts.setdefault(node, [])
            parts.append((payload, meta))
            if len(parts) < need:
                return
            del req.parts[node]
            try:
                payload, meta = self._join(req, parts, None, req.forks.get(plan.split[node]))
            except Exception as exc:
                return self._fail(req, ExecutorError(plan.nodes[node].name if node != END else 'gateway',
                                                     type(exc).__qualname__, f'joining branches: {exc}',
                                                     traceback.format_exc()))
        if node == END:
            return self._finish(req, payload, meta)
        if not plan.active[node]:
            if node in plan.forks:
                req.forks[node] = (payload, meta)
            for nxt in plan.succ[node]:
                self._arrive(req, nxt, payload, meta)
            return
        dep = plan.nodes[node]
        if plan.fan[node]:
            req.shard_parts[node] = [None] * dep.shards
            for shard in range(dep.shards):
                self._assign(req, dep, shard, payload, meta)
        else:
            self._assign(req, dep, None, payload, meta)

    def _assign(self, req: _Request, dep: Deployment, shard: int | None, payload: Payload, meta: Any,
                ready: float | None = None) -> None:
        """Send to the live process (of ``shard``, or of any shard) with the fewest
        requests; when every one of several holds MAX_OUTSTANDING, wait in the router."""
        ready = ready or time.time()  # when it could have gone: waiting in the router counts as queueing
        pool = dep.candidates(shard)
        if not pool:
            if dep.starting(shard):  # a restart is under way: wait for it
                dep.waiting.append((req, shard, payload, meta, ready))
                return
            return self._fail(req, dep.by_shard[shard or 0][-1].died())
        w = min(pool, key=_load)
        if len(pool) > 1 and w.outstanding >= MAX_OUTSTANDING:
            dep.waiting.append((req, shard, payload, meta, ready))
            return
        self._send_req(req, w, payload, meta, ready)

    def _send_req(self, req: _Request, w: _Worker, payload: Payload, meta: Any, ready: float) -> None:
        req.at[w] = (w.dep.index, payload, meta, ready, time.time())
        w.outstanding += 1
        frees, w.pending_frees = w.pending_frees, []
        self._send(w, (P.REQ, req.rid, req.post.endpoint, req.post.params_blob, req.results, payload, frees), meta)

    def _next_waiting(self, dep: Deployment) -> None:
        """A process of ``dep`` has room again: hand it the oldest waiting request."""
        while dep.waiting:
            req, shard, payload, meta, ready = dep.waiting[0]
            if req.done:
                dep.waiting.popleft()
                continue
            pool = dep.candidates(shard)
            if not pool:
                if dep.starting(shard):
                    return
                dep.waiting.popleft()
                self._fail(req, dep.by_shard[shard or 0][-1].died())
                continue
            w = min(pool, key=_load)
            if w.outstanding >= MAX_OUTSTANDING:
                return
            dep.waiting.popleft()
            self._send_req(req, w, payload, meta, ready)

    def _join(self, req: _Request, parts: list, dep: Deployment | None,
              fork: tuple | None = None) -> tuple[Payload, Any]:
        """Merge the payloads of parallel branches (``dep`` given: its shards) into one
        payload in the router's arena; arrays that do not change are named, not copied."""
        post = req.post
        buffers, decoded = [], []
        for payload, meta in parts:
            b = InputBuffers(payload, self._mapper)
            buffers.append(b)
            decoded.append(decode(payload, meta, b))
        if dep is None:
            before = None
            if fork is not None:
                b = InputBuffers(fork[0], self._mapper)
                buffers.append(b)
                before = decode(fork[0], fork[1], b)
            merged = merge_by_id(decoded, before)
        else:
            if post.params is None:
                post.params = pickle.loads(post.params_blob)
            params = dict(post.params)
            own = params.get(dep.metas['name'])
            if isinstance(own, dict):
                params.update(own)
            merged = dep.reduce(decoded, params) if dep.reduce is not None else merge_shards(decoded, params)
            if not isinstance(merged, DocumentArray):
                raise TypeError(f'{dep.cls.__name__}.reduce returned {type(merged).__name__}; return a DocumentArray')
        payload, meta, allocs = encode(merged, self._arena, _Ranges(buffers))
        req.slots.extend((self._arena.name, s) for s in allocs)
        return payload, meta

    def pump(self, timeout_ms: float) -> None:
        """Wait up to ``timeout_ms`` for replies and deaths, and move requests on."""
        for kind, w, header, meta in self._poll(timeout_ms):
            if kind == 'died':
                self._worker_died(w)
                continue
            tag = header[0]
            if tag == P.OK:
                _, rid, payload, allocs, results, times, pins, releases, t_send = header
                self._account(w, pins, releases)
                written = sum(r[3] for r in buffer_refs(payload) if r[0] == w.arena) if allocs else 0
                req = self._settle(w, rid, allocs, times, t_send, written, payload[0])
                if req is not None:
                    if results is not None:
                        if req.results is None:
                            req.results = {}
                        if req.post.plan.fan[w.dep.index]:  # one dict per shard, by shard id
                            req.results.setdefault(w.dep.name, [None] * w.dep.shards)[w.shard] = results
                        else:
                            req.results[w.dep.name] = results
                    self._done_at(req, w, payload, meta)
                self._next_waiting(w.dep)
            elif tag == P.ERR:
                _, rid, exc_type, message, tb, times, pins, releases, t_send = header
                self._account(w, pins, releases)
                req = self._settle(w, rid, [], times, t_send, 0, None, keep_input=True)
                if req is not None:
                    self._fail(req, ExecutorError(w.dep.name, exc_type, message, tb, w.replica, req.post.endpoint),
                               exc_type, tb)
                self._next_waiting(w.dep)
            elif tag == P.RELEASE:
                self._account(w, [], header[1])
            else:  # a restarted process starting up, or last words before dying
                failure = self._handshake(w, header)
                if failure is not None:
                    logger.error('%s', failure)
                elif w.ready and tag == P.READY:
                    logger.info('executor %r (replica %d, shard %d) restarted', w.dep.name, w.replica, w.shard)
                    self._next_waiting(w.dep)
        if self._kept and time.monotonic() >= self._next_kept_check:
            # A caller that keeps every response's arrays makes this list long: look at it
            # a few times a second, not on every wake-up.
            self._next_kept_check = time.monotonic() + KEPT_CHECK_S
            self._check_kept()
        # Idle workers get their freed slots now; busy ones with their next request.
        for w in self._workers.values():
            if w.pending_frees and w.alive and (w.outstanding == 0 or len(w.pending_frees) >= 64):
                frees, w.pending_frees = w.pending_frees, []
                self._send(w, (P.FREE, frees))

    def _done_at(self, req: _Request, w: _Worker, payload: Payload, meta: Any) -> None:
        """``w`` answered: pass its output on (a shard's waits for its sibling shards)."""
        plan = req.post.plan
        node = w.dep.index
        req.last = (payload, meta)
        if plan.fan[node]:
            parts = req.shard_parts[node]
            parts[w.shard] = (payload, meta)
            if any(p is None for p in parts):
                return
            del req.shard_parts[node]
            try:
                payload, meta = self._join(req, parts, w.dep)
            except Exception as exc:
                return self._fail(req, ExecutorError(w.dep.name, type(exc).__qualname__, f'reducing shards: {exc}',
                                                     traceback.format_exc()))
        if node in plan.forks:
            req.forks[node] = (payload, meta)
        for nxt in plan.succ[node]:
            self._arrive(req, nxt, payload, meta)

    def _account(self, w: _Worker, pins: list, releases: list) -> None:
        """Book the request buffers ``w`` started or stopped keeping."""
        for key in pins:
            key = tuple(key)
            self._pins[key] += 1
            w.pins[key] += 1
        for key in releases:
            key = tuple(key)
            w.pins[key] -= 1
            if w.pins[key] <= 0:
                del w.pins[key]
            self._unpin(key)

    def _unpin(self, key: tuple) -> None:
        self._pins[key] -= 1
        if self._pins[key] <= 0:
            del self._pins[key]
            if key in self._done_slots:
                self._done_slots.discard(key)
                self._free_slot(key)

    def _settle(self, w: _Worker, rid: int, allocs: list, times: tuple, t_send: float, written: int,
                docs_out: int | None, keep_input: bool = False) -> _Request | None:
        """Book a reply from ``w``; returns the request while it is still going."""
        w.outstanding -= 1
        req = self._requests.get(rid)
        slots = [(w.arena, a) for a in allocs]
        if req is None:  # cannot happen while the tables are right; never leak a slot
            for key in slots:
                self._release_slot(key)
            return None
        req.slots.extend(slots)
        node, payload, meta, ready, dispatched = req.at.pop(w)
        if keep_input:
            req.last = (payload, meta)
        if req.done or req.post.abandoned:
            req.done = True
            self._retire(req)
            return None
        # Wall times (time.time()) of one hop: ready to go to this executor, sent to its
        # process, received there, handler start and end, sent back, back in the router.
        req.routes.append({'executor': w.dep.name, 'replica': w.replica, 'shard': w.shard, 'pid': w.pid,
                           'ready': ready, 'dispatched': dispatched, 'received': times[0], 'start': times[1],
                           'end': times[2], 'sent': t_send, 'returned': time.time(), 'shm_bytes': written,
                           'docs_in': payload[0], 'docs_out': docs_out})
        return req

    def _retire(self, req: _Request) -> None:
        """Free the request's slots once no process holds it any more."""
        if req.at or req.rid not in self._requests:
            return
        del self._requests[req.rid]
        for key in req.slots:
            self._release_slot(key)
        req.slots = []

    def _release_slot(self, key: tuple) -> None:
        if key in self._pins:
            self._done_slots.add(key)
        else:
            self._free_slot(key)

    def _free_slot(self, key: tuple) -> None:
        arena, slot = key
        if arena == self._arena.name:
            self._arena.free(slot)
        else:
            w = self._arena_owner.get(arena)
            if w is not None and w.alive:
                w.pending_frees.append(slot)

    def _fail(self, req: _Request, error: BaseException, exc_type: str | None = None, tb: str = '') -> None:
        """Deliver ``req`` as failed, with the documents as they entered the failing step;
        branches still running finish unheard."""
        if not req.done:
            payload, meta = req.last
            self._finish(req, payload, meta, error, exc_type, tb)

    def _finish(self, req: _Request, payload: Payload, meta: Any, error: BaseException | None = None,
                exc_type: str | None = None, tb: str = '') -> None:
        """Hand the request's Response to the post's callbacks.

        With callbacks the documents' arrays are views of the shared memory, not copies: a
        slot is freed once no array over it is alive, which for a callback that does not
        keep them is right after it returns (the same reference check as the workers').
        ``return_results`` keeps everything, so it gets copies and the slots go at once.
        """
        post = req.post
        req.done = True
        post.inflight -= 1
        zero_copy = post.results is None
        try:
            buffers = InputBuffers(payload, self._mapper, copy=not zero_copy)
            docs = decode(payload, meta, buffers)
        except (OSError, ValueError, pickle.UnpicklingError) as exc:  # the payload's owner died with it
            buffers, docs = None, DocumentArray()
            logger.debug('request %s: documents lost with their process: %s', req.rid, exc)
        held = [(ref[0], ref[1]) for ref in buffers.refs] if zero_copy and buffers is not None else []
        for key in held:  # hold the slots while the callbacks may look at them
            self._pins[key] += 1
        self._retire(req)
        if error is None:
            status = Status()
        else:
            status = Status.from_error(error, getattr(error, 'executor', ''), exc_type, tb)
        params = pickle.loads(post.params_blob)
        if req.results is not None:
            params['__results__'] = req.results
        resp = Response(f'{self.prefix}-{req.rid}', docs, post.endpoint, params, status, req.routes, req.index)
        if self.profile is not None:
            self.profile.add(resp.request_id, post.number, post.endpoint, req.submitted, time.time(), payload[0],
                             error is None, req.routes)
        del docs
        try:
            if post.in_order:
                post.pending[req.index] = resp
                del resp
                while post.next_index in post.pending:
                    self._deliver(post, post.pending.pop(post.next_index))
                    post.next_index += 1
            else:
                self._deliver(post, resp)
                del resp
        finally:
            if held:
                kept = set(buffers.kept())
                for ref, view in zip(buffers.refs, buffers.views):
                    if ref in kept:
                        self._kept.append((ref, view))
                    else:
                        self._unpin((ref[0], ref[1]))

    def _check_kept(self) -> None:
        """Free the slots of final payloads whose arrays the caller has let go of."""
        still = []
        for entry in self._kept:
            if held_elsewhere(entry, 1):
                still.append(entry)
            else:
                self._unpin((entry[0][0], entry[0][1]))
        self._kept = still

    def _deliver(self, post: PostState, resp: Response) -> None:
        if post.progress is not None:
            post.progress.update(len(resp.docs))
        if resp.status.code == Status.ERROR:
            if post.on_error is not None:
                post.on_error(resp)
            elif post.continue_on_error:
                logger.error('request %s failed: %s', resp.request_id, resp.status.description)
            elif post.error is None:
                post.error = resp.status.error
        elif post.on_done is not None:
            post.on_done(resp)
        if post.on_always is not None:
            post.on_always(resp)
        if post.results is not None:
            post.results.append(resp)

    def _worker_died(self, w: _Worker) -> None:
        dep = w.dep
        logger.error('executor %r (replica %d, shard %d, pid %d) died with %s', dep.name, w.replica, w.shard,
                     w.pid, describe_exit(w.proc.returncode))
        for key in list(w.pins):  # what it kept is let go with it
            for _ in range(w.pins.pop(key)):
                self._unpin(key)
        w.pending_frees = []
        if dep.restarts < dep.max_restarts:
            dep.restarts += 1
            logger.warning('restarting executor %r (replica %d, shard %d): restart %d of %d', dep.name, w.replica,
                           w.shard, dep.restarts, dep.max_restarts)
            self._spawn(dep, w.shard, w.replica)
        error = w.died()
        for req in [r for r in self._requests.values() if w in r.at]:
            node, payload, meta, *_ = req.at.pop(w)
            w.outstanding -= 1
            if req.done or req.post.abandoned:
                req.done = True
                self._retire(req)
            elif req.retries < dep.max_retries:
                req.retries += 1  # may run twice: the process may have died after the handler
                self._assign(req, dep, w.shard if req.post.plan.fan[node] else None, payload, meta)
            else:
                req.last = (payload, meta)
                self._fail(req, error)
        self._next_waiting(dep)  # what waited for it goes to a sibling, or fails

    def expire(self, post: PostState) -> None:
        """Fail the requests of ``post`` older than its timeout, naming who holds them."""
        now = time.monotonic()
        for req in [r for r in self._requests.values() if r.post is post and not r.done and r.deadline < now]:
            holders = [f'{w.dep.name!r} (replica {w.replica}, shard {w.shard}, pid {w.pid})' for w in req.at]
            holders += [f'{d.name!r} (waiting for a free process)' for d in self.deployments
                        if any(item[0] is req for item in d.waiting)]
            error = RequestTimeoutError(f'request {self.prefix}-{req.rid} took longer than timeout='
                                        f'{post.deadline_after} s; held by {", ".join(holders) or "the router"}')
            error.executor = req.at and next(iter(req.at)).dep.name or ''
            self._fail(req, error)


def _load(w: _Worker) -> int:
    return w.outstanding


class _Ranges:
    """Several InputBuffers seen as one, for naming arrays that lie in any of them."""

    def __init__(self, buffers: list) -> None:
        self.ranges = [r for b in buffers for r in b.ranges]

    def find(self, addr: int, nbytes: int):
        for start, end, ref in self.ranges:
            if start <= addr and addr + nbytes <= end:
                return (ref[0], ref[1], ref[2] + (addr - start), nbytes)
        return None
