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
import weakref
from typing import Any, Iterator

import cloudpickle
import zmq

from . import protocol as P
from .array import DocumentArray
from .codec import InputBuffers, Payload, decode, encode, held_elsewhere
from .errors import ExecutorError, ExecutorStartError, WorkerDiedError, describe_exit
from .inputs import describe
from .progress import Progress
from .response import Response, Status
from .shm import Arena, Mapper, sweep

logger = logging.getLogger('runtime')

DEFAULT_TIMEOUT_READY = 60.0
#: How long one poll waits while requests are in flight; a dead worker is noticed sooner
#: through its pidfd, which the same poll watches.
POLL_MS = 100


class _Deployment:
    """One ``add()``: an executor class, its arguments and its processes."""

    def __init__(self, name: str, cls: type, kwargs: dict, metas: dict, env: dict | None,
                 replicas: int, timeout_ready: float, spec: dict) -> None:
        self.name, self.cls, self.kwargs, self.metas, self.env = name, cls, kwargs, metas, env
        self.replicas, self.timeout_ready, self.spec = replicas, timeout_ready, spec
        self.workers: list[_Worker] = []
        self.endpoints: frozenset = frozenset()
        self.has_default = False

    def handles(self, endpoint: str) -> bool:
        return self.has_default or endpoint in self.endpoints

    def live_workers(self) -> list['_Worker']:
        return [w for w in self.workers if w.alive]


class _Worker:
    """The parent's handle on one executor process."""

    def __init__(self, dep: _Deployment, replica: int, identity: str, arena: str, proc: subprocess.Popen) -> None:
        self.dep, self.replica, self.identity, self.arena, self.proc = dep, replica, identity, arena, proc
        self.bident = identity.encode()
        self.pid = proc.pid
        self.pidfd = os.pidfd_open(proc.pid)
        self.alive = True
        self.ready = False
        self.outstanding = 0
        self.pending_frees: list[int] = []
        self.pins: collections.Counter = collections.Counter()  # slots it keeps, by (arena, slot)


class _Request:
    __slots__ = ('rid', 'post', 'index', 'ndocs', 'results', 'hop', 'payload', 'meta', 'slots', 'worker',
                 'routes')

    def __init__(self, rid: int, post: 'PostState', index: int, ndocs: int) -> None:
        self.rid, self.post, self.index, self.ndocs = rid, post, index, ndocs
        self.results: dict | None = None  # executor name -> the dict its handler returned
        self.hop = 0
        self.payload: Payload | None = None
        self.meta: Any = b''
        self.slots: list = []
        self.worker: _Worker | None = None
        self.routes: list = []


class PostState:
    """The state of one ``post`` call."""

    def __init__(self, endpoint: str, route: list, on_done, on_error, on_always, return_results: bool,
                 results_in_order: bool, progress: Progress | None) -> None:
        self.endpoint, self.route = endpoint, route
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
        self.deployments: list[_Deployment] = []
        self.started = False

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
        self._procs: list[subprocess.Popen] = []
        self._outbox: dict[_Worker, tuple[list, list]] = {}
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
                if w.alive:
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
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        base_env = dict(os.environ)
        base_env['PYTHONPATH'] = os.pathsep.join(filter(None, [pkg_root, base_env.get('PYTHONPATH')]))
        workspace = self.workspace
        self.deployments = []
        for i, spec in enumerate(self.specs):
            dep = _Deployment(spec['resolved_name'], spec['cls'], spec['kwargs'], spec['metas'],
                              spec.get('env'), spec['replicas'], spec.get('timeout_ready', DEFAULT_TIMEOUT_READY), spec)
            dep.metas.setdefault('workspace', os.path.join(workspace, dep.metas['name']))
            try:
                dep.blob = cloudpickle.dumps(dep.cls)
            except Exception as exc:
                raise ExecutorStartError(dep.name, f'its class cannot be pickled to send to its process: {exc}') from exc
            self.deployments.append(dep)
            env = base_env
            if dep.env:
                env = dict(base_env)
                env.update({str(k): str(v) for k, v in dep.env.items()})
            for r in range(dep.replicas):
                identity = f'w{i}r{r}'
                arena = f'{self.prefix}-{identity}'
                proc = subprocess.Popen(
                    [sys.executable, '-m', 'runtime.worker', self._endpoint, identity, self.prefix,
                     str(os.getpid()), str(self.arena_size)], env=env, stdin=subprocess.DEVNULL)
                self._procs.append(proc)
                w = _Worker(dep, r, identity, arena, proc)
                dep.workers.append(w)
                self._workers[w.bident] = w
                self._by_pidfd[w.pidfd] = w
                self._arena_owner[arena] = w

    def _wait_ready(self) -> None:
        timeouts = [d.timeout_ready for d in self.deployments]
        limit = None if any(t is None or t < 0 for t in timeouts) else max(timeouts, default=0)
        deadline = None if limit is None else time.monotonic() + limit
        waiting = {w.bident for w in self._workers.values()}
        while waiting:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                w = self._workers[sorted(waiting)[0]]
                raise ExecutorStartError(w.dep.name, f'not ready after timeout_ready={limit} s '
                                                     f'(its __init__ may hang; raise timeout_ready if it is slow)')
            for kind, w, header, _ in self._poll(POLL_MS if remaining is None else min(POLL_MS, remaining * 1000)):
                if kind == 'died':
                    raise ExecutorStartError(w.dep.name, f'its process (replica {w.replica}) ended during start-up '
                                                         f'with {describe_exit(w.proc.returncode)}')
                if header[0] == P.HELLO:
                    dep = w.dep
                    cfg = {'name': dep.metas['name'], 'replica_id': w.replica, 'shard_id': 0,
                           'replicas': dep.replicas, 'shards': 1, 'metas': dep.metas, 'kwargs': dep.kwargs,
                           'sys_path': list(sys.path)}
                    self._send(w, (P.CONFIG, cfg), dep.blob)
                elif header[0] == P.READY:
                    info = header[1]
                    w.ready = True
                    w.dep.endpoints = frozenset(info['endpoints'])
                    w.dep.has_default = info['default']
                    waiting.discard(w.bident)
                elif header[0] == P.INIT_ERROR:
                    _, exc_type, message, tb = header
                    raise ExecutorStartError(w.dep.name, f'{exc_type}: {message}', tb)

    def _send(self, w: _Worker, header: tuple, meta: Any = b'') -> None:
        """Queue a message for ``w``; ``_flush`` sends each worker's queue as one message.

        Under load many requests head for the same worker at once: one ZeroMQ message for
        all of them costs the I/O threads and both Python loops one hop instead of many.
        """
        box = self._outbox.get(w)
        if box is None:
            self._outbox[w] = box = ([], [])
        box[0].append(header)
        box[1].append(meta)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for w, (headers, metas) in outbox.items():
            try:
                self._sock.send_multipart([w.bident, pickle.dumps(headers, protocol=5), *metas], copy=False)
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
                for header, meta in zip(pickle.loads(frames[1].buffer), frames[2:]):
                    yield 'msg', w, header, meta
        for fd, _ in events:
            w = self._by_pidfd.get(fd) if isinstance(fd, int) else None
            if w is not None:
                w.proc.wait()
                w.alive = False
                del self._by_pidfd[fd]
                self._poller = None
                yield 'died', w, None, None

    def route(self, endpoint: str, target: str | None) -> list[_Deployment]:
        if target is not None:
            if not isinstance(target, str):
                raise TypeError(f'target_executor must be an executor name or a regex str, got {describe(target)}')
            try:
                pattern = re.compile(target)
            except re.error as exc:
                raise ValueError(f'target_executor {target!r} is not a valid regular expression: {exc}') from None
            matching = [d for d in self.deployments if pattern.fullmatch(d.name)]
            if not matching:
                raise ValueError(f'target_executor {target!r} matches no executor; executors: '
                                 f'{[d.name for d in self.deployments]}')
        else:
            matching = self.deployments
        route = [d for d in matching if d.handles(endpoint)]
        for d in route:
            if not d.live_workers():
                raise WorkerDiedError(d.name, 0, d.workers[0].proc.returncode, d.workers[0].pid)
        return route

    def submit(self, post: PostState, docs: DocumentArray, index: int) -> None:
        rid = next(self._rids)
        req = _Request(rid, post, index, len(docs))
        req.payload, req.meta, allocs = encode(docs, self._arena)
        req.slots = [(self._arena.name, s) for s in allocs]
        self._requests[rid] = req
        post.inflight += 1
        self._dispatch(req)

    def _dispatch(self, req: _Request) -> None:
        route = req.post.route
        if req.hop < len(route):
            dep = route[req.hop]
            w = min(dep.live_workers(), key=lambda x: x.outstanding, default=None)
            if w is None:
                dead = dep.workers[0]
                return self._finish(req, WorkerDiedError(dep.name, dead.replica, dead.proc.returncode, dead.pid))
            req.worker = w
            w.outstanding += 1
            frees, w.pending_frees = w.pending_frees, []
            self._send(w, (P.REQ, req.rid, req.post.endpoint, req.post.params_blob, req.results, req.payload, frees),
                       req.meta)
        else:
            self._finish(req)

    def pump(self, timeout_ms: float) -> None:
        for kind, w, header, meta in self._poll(timeout_ms):
            if kind == 'died':
                self._worker_died(w)
                continue
            tag = header[0]
            if tag == P.OK:
                _, rid, payload, allocs, results, times, pins, releases, t_send = header
                self._account(w, pins, releases)
                req = self._settle(w, rid, allocs, times, t_send)
                if req is None:
                    continue
                if results is not None:
                    if req.results is None:
                        req.results = {}
                    req.results[w.dep.name] = results
                req.payload, req.meta = payload, meta
                req.hop += 1
                self._dispatch(req)
            elif tag == P.ERR:
                _, rid, exc_type, message, tb, times, pins, releases, t_send = header
                self._account(w, pins, releases)
                req = self._settle(w, rid, [], times, t_send)
                if req is not None:
                    err = ExecutorError(w.dep.name, exc_type, message, tb, w.replica, req.post.endpoint)
                    self._finish(req, err, exc_type, tb)
            elif tag == P.RELEASE:
                self._account(w, [], header[1])
        if self._kept:
            self._check_kept()
        # Idle workers get their freed slots now; busy ones with their next request.
        for w in self._workers.values():
            if w.pending_frees and w.alive and (w.outstanding == 0 or len(w.pending_frees) >= 64):
                frees, w.pending_frees = w.pending_frees, []
                self._send(w, (P.FREE, frees))

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

    def _settle(self, w: _Worker, rid: int, allocs: list, times: tuple, t_send: float) -> _Request | None:
        """Book a reply from ``w``; returns the request unless it was abandoned."""
        w.outstanding -= 1
        req = self._requests.get(rid)
        slots = [(w.arena, a) for a in allocs]
        if req is None or req.post.abandoned:
            for key in slots:
                self._release_slot(key)
            if req is not None:
                self._drop(req)
            return None
        req.slots.extend(slots)
        req.routes.append({'executor': w.dep.name, 'replica': w.replica, 'pid': w.pid, 'received': times[0],
                           'start': times[1], 'end': times[2], 'sent': t_send})
        return req

    def _drop(self, req: _Request) -> None:
        self._requests.pop(req.rid, None)
        for key in req.slots:
            self._release_slot(key)
        req.slots = []
        req.post.inflight -= 1

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

    def _finish(self, req: _Request, error: BaseException | None = None, exc_type: str | None = None,
                tb: str = '') -> None:
        """Hand the request's Response to the post's callbacks.

        With callbacks the documents' arrays are views of the shared memory, not copies: a
        slot is freed once no array over it is alive, which for a callback that does not
        keep them is right after it returns (the same reference check as the workers').
        ``return_results`` keeps everything, so it gets copies and the slots go at once.
        """
        post = req.post
        zero_copy = post.results is None
        try:
            buffers = InputBuffers(req.payload, self._mapper, copy=not zero_copy)
            docs = decode(req.payload, req.meta, buffers)
        except (OSError, ValueError, pickle.UnpicklingError) as exc:  # the payload's owner died with it
            buffers, docs = None, DocumentArray()
            logger.debug('request %s: documents lost with their process: %s', req.rid, exc)
        held = [(ref[0], ref[1]) for ref in buffers.refs] if zero_copy and buffers is not None else []
        for key in held:  # hold the slots while the callbacks may look at them
            self._pins[key] += 1
        self._drop(req)
        if error is None:
            status = Status()
        else:
            status = Status.from_error(error, getattr(error, 'executor', ''), exc_type, tb)
        params = pickle.loads(post.params_blob)
        if req.results is not None:
            params['__results__'] = req.results
        resp = Response(f'{self.prefix}-{req.rid}', docs, post.endpoint, params, status, req.routes, req.index)
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
            elif post.error is None:
                post.error = resp.status.error
        elif post.on_done is not None:
            post.on_done(resp)
        if post.on_always is not None:
            post.on_always(resp)
        if post.results is not None:
            post.results.append(resp)

    def _worker_died(self, w: _Worker) -> None:
        code = w.proc.returncode
        logger.error('executor %r (replica %d, pid %d) died with returncode %s', w.dep.name, w.replica, w.pid, code)
        for key in list(w.pins):  # what it kept is let go with it
            for _ in range(w.pins.pop(key)):
                self._unpin(key)
        w.pending_frees = []
        for req in [r for r in self._requests.values() if r.worker is w and r.post is not None]:
            if req.hop < len(req.post.route) and req.post.route[req.hop] is w.dep:
                w.outstanding -= 1
                if req.post.abandoned:
                    self._drop(req)
                else:
                    self._finish(req, WorkerDiedError(w.dep.name, w.replica, code, w.pid))

