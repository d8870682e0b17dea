"""Flow: a pipeline of executors, each in its own process, driven from the caller's thread.

The parent process is the router: every hop of every request goes executor -> parent ->
next executor over one ROUTER socket. Knowing where each request is lets the parent
balance replicas by exact outstanding counts, time each hop, fail exactly the requests
of a process that died, and free every shared-memory slot of a finished request.
"""
from __future__ import annotations

import collections
import copy
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
from functools import partialmethod
from typing import Any, Callable, Iterable, Iterator

import cloudpickle
import numpy as np
import zmq

from . import protocol as P
from .array import DocumentArray, DocumentSequence
from .codec import InputBuffers, Payload, decode, encode, held_elsewhere
from .document import Document
from .errors import (BadInputError, ExecutorError, ExecutorStartError, FlowNotStartedError,
                     WorkerDiedError)
from .executor import resolve_uses
from .progress import Progress
from .response import Response, Status
from .shm import Arena, Mapper, sweep

__all__ = ['Flow']

logger = logging.getLogger('runtime')

#: ``add()`` arguments; the same names given to ``Flow(...)`` are defaults for every executor.
ADD_ARGS = ('uses', 'uses_with', 'uses_metas', 'timeout_ready', 'env', 'replicas', 'needs')
#: Jina 2 arguments about its network gateway and pods, which a one-machine runtime has no
#: use for: accepted (so Jina 2 scripts run) and ignored.
_IGNORED_JINA_ARGS = frozenset({
    'protocol', 'port_expose', 'host', 'port_in', 'port_out', 'port_ctrl', 'restful', 'cors',
    'expose_public', 'log_config', 'quiet', 'quiet_error', 'identity', 'show_exc_info',
    'runtime_backend', 'runtime_cls', 'daemon', 'uses_before', 'uses_after', 'py_modules',
    'upload_files', 'zmq_identity', 'expose_endpoints', 'title', 'description', 'no_debug_endpoints',
    'static_routing_table', 'inspect', 'k8s_namespace', 'peas_hosts', 'read_only', 'dump_path',
    'hosts_in_connect', 'pull_latest', 'docker_kwargs', 'gpus', 'entrypoint', 'pea_role',
})
DEFAULT_PREFETCH = 16
DEFAULT_ARENA_SIZE = 32 << 20
DEFAULT_TIMEOUT_READY = 60.0
DEFAULT_TIMEOUT_CLOSE = 5.0
#: How long one poll waits while requests are in flight; a dead worker is noticed sooner
#: through its pidfd, which the same poll watches.
POLL_MS = 100
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)


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

    def __init__(self, rid: int, post: '_Post', index: int, ndocs: int) -> None:
        self.rid, self.post, self.index, self.ndocs = rid, post, index, ndocs
        self.results: dict | None = None  # executor name -> the dict its handler returned
        self.hop = 0
        self.payload: Payload | None = None
        self.meta: Any = b''
        self.slots: list = []
        self.worker: _Worker | None = None
        self.routes: list = []


class _Post:
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


def _check_callback(cb: Any, name: str) -> None:
    if cb is not None and not callable(cb):
        raise TypeError(f'{name} must be a function taking the Response (or None), got {type(cb).__name__}')


def _describe(obj: Any) -> str:
    text = repr(obj)
    return f'{type(obj).__name__} {text[:60] + "..." if len(text) > 60 else text}'


def _bad_input(obj: Any, where: str = 'inputs') -> BadInputError:
    hint = ''
    if isinstance(obj, np.ndarray):
        hint = ' (for arrays use runtime.generators.from_ndarray(array))'
    elif isinstance(obj, (str, bytes)):
        hint = ' (for text use Document(text=...); for files use runtime.generators.from_files)'
    elif isinstance(obj, dict):
        hint = ' (for a dict of fields use Document(the_dict))'
    return BadInputError(f'{where} got {_describe(obj)}; pass a Document, a DocumentArray, a '
                         f'DocumentArrayMemmap, an iterable or generator of Documents, a generator '
                         f'function, or None{hint}')


def _checked(items: Iterable, start: int = 0) -> Iterator[Document]:
    for i, d in enumerate(items, start):
        if not isinstance(d, Document):
            raise _bad_input(d, f'inputs item #{i}')
        yield d


def _batches(inputs: Any, size: int) -> Iterator[DocumentArray]:
    """Split any accepted input form into DocumentArrays of ``size`` documents.

    Inputs that hold no document at all (None, an empty list or DocumentArray, a generator
    that yields nothing) still make one request with no documents, so that a
    parameters-only request reaches the executors whatever form it takes.
    Lists are checked whole before anything is sent, so a bad item never leaves a post
    half-sent; generators are checked as they are consumed.
    """
    empty = True
    for batch in _split(inputs, size):
        empty = False
        yield batch
    if empty:
        yield DocumentArray()


def _split(inputs: Any, size: int) -> Iterator[DocumentArray]:
    if inputs is None:
        return
    if isinstance(inputs, Document):
        inputs = [inputs]
    elif callable(inputs) and not isinstance(inputs, DocumentSequence):
        inputs = inputs()
    if isinstance(inputs, DocumentArray):
        docs = inputs._docs
        emb = inputs._emb if inputs._emb is not None and inputs.embeddings is inputs._emb else None
        for i in range(0, len(docs), size):
            batch = DocumentArray._from_list(docs[i:i + size])
            if emb is not None:  # keep it columnar: the batch's matrix is a slice, not a stack
                batch._emb, batch._emb_rows = emb[i:i + size], inputs._emb_rows[i:i + size]
            yield batch
        return
    if isinstance(inputs, (str, bytes, dict, np.ndarray, int, float, complex, bool)) \
            or not isinstance(inputs, Iterable):
        raise _bad_input(inputs)
    if isinstance(inputs, (list, tuple)):
        for i, d in enumerate(inputs):
            if not isinstance(d, Document):
                raise _bad_input(d, f'inputs item #{i}')
        it: Iterator = iter(inputs)
    elif isinstance(inputs, DocumentSequence):
        it = iter(inputs)
    else:
        it = _checked(inputs)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield DocumentArray._from_list(chunk)


def _cleanup(prefix: str, ipc_dir: str, procs: list) -> None:
    """Last resort when a started Flow is garbage-collected or the interpreter exits."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    sweep(prefix)
    shutil.rmtree(ipc_dir, ignore_errors=True)


class Flow:
    """A pipeline of executors, each in its own OS process.

    Parameters
    ----------
    workspace : str, optional
        Parent directory of the executors' ``metas.workspace`` (default ``./workspace``;
        each executor gets ``<workspace>/<name>``, created when it first asks for it).
    prefetch : int
        Requests in flight at most per ``post`` (default 16): memory is bounded by it, not
        by the input length.
    arena_size : int
        Bytes of each process's shared-memory arena (default 32 MiB); a payload larger than
        half of it travels in a segment of its own.
    timeout_close : float
        Seconds a process gets to stop before it is killed.
    **kwargs
        Any ``add()`` argument (``uses``, ``uses_with``, ``timeout_ready``, ``env``,
        ``replicas``, ...): the default for every executor.

    Example
    -------
    >>> f = Flow().add(uses=MyEncoder).add(uses=MyIndexer)
    >>> with f:
    ...     f.index(DocumentArray([Document(text='hello')]), on_done=print)
    """

    def __init__(self, *, workspace: str | None = None, prefetch: int = DEFAULT_PREFETCH,
                 arena_size: int = DEFAULT_ARENA_SIZE, timeout_close: float = DEFAULT_TIMEOUT_CLOSE,
                 **kwargs: Any) -> None:
        defaults = {}
        for k, v in kwargs.items():
            if k in ADD_ARGS:
                defaults[k] = v
            elif k in _IGNORED_JINA_ARGS:
                logger.debug('Flow(%s=...) is a Jina 2 network option; shmflow runs on one machine and ignores it', k)
            else:
                raise TypeError(f'Flow() got an unexpected argument {k!r}; it takes workspace, prefetch, '
                                f'arena_size, timeout_close and the add() arguments {", ".join(ADD_ARGS)}')
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 1:
            raise ValueError(f'prefetch must be a positive int (requests in flight), got {prefetch!r}')
        if not isinstance(arena_size, int) or arena_size < (1 << 16):
            raise ValueError(f'arena_size must be an int of at least 65536 bytes, got {arena_size!r}')
        self._workspace = workspace
        self._prefetch = prefetch
        self._arena_size = arena_size
        self._timeout_close = timeout_close
        self._defaults = defaults
        self._specs: list[dict] = []
        self._started = False
        self._deployments: list[_Deployment] = []

    # -- building --------------------------------------------------------------------------
    def add(self, name: str | None = None, uses: Any = None, uses_with: dict | None = None,
            uses_metas: dict | None = None, timeout_ready: float | None = None, env: dict | None = None,
            replicas: int = 1, needs: str | list | None = None, **kwargs: Any) -> 'Flow':
        """A new Flow with one more executor at the end (this Flow is unchanged, as in Jina 2).

        Parameters
        ----------
        name : str, optional
            Unique name; defaults to ``metas.name`` from ``uses`` / ``uses_metas``, else the
            class name (numbered if it repeats).
        uses : Executor subclass, class name, ``{'jtype': ..., 'with': ..., 'metas': ...}`` or None
            None: documents pass through.
        uses_with : dict
            Keyword arguments of the executor's ``__init__``.
        uses_metas : dict
            ``metas`` fields, e.g. ``{'name': 'enc', 'workspace': '/data/enc'}``.
        timeout_ready : float
            Seconds to wait for this executor to start (default 60; -1 waits forever).
        env : dict
            Environment variables of the executor's process.
        replicas : int
            Processes running this executor; requests go to the one with the fewest
            outstanding.

        Example
        -------
        >>> f = Flow().add(name='enc', uses=Encoder, uses_with={'dim': 128}, replicas=2)
        """
        for k in kwargs:
            if k not in _IGNORED_JINA_ARGS:
                raise TypeError(f'add() got an unexpected argument {k!r}; it takes name, {", ".join(ADD_ARGS)}')
        given = {'uses': uses, 'uses_with': uses_with, 'uses_metas': uses_metas, 'timeout_ready': timeout_ready,
                 'env': env, 'replicas': None if replicas == 1 else replicas, 'needs': needs}
        spec = dict(self._defaults)
        spec.update({k: v for k, v in given.items() if v is not None})
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f'name must be a non-empty str, got {name!r}')
        spec['name'] = name
        reps = spec.get('replicas', 1)
        if not isinstance(reps, int) or isinstance(reps, bool) or reps < 1:
            raise ValueError(f'replicas must be a positive int, got {reps!r}')
        if spec.get('env') is not None and not isinstance(spec['env'], dict):
            raise TypeError(f'env must be a dict of str -> str, got {type(spec["env"]).__name__}')
        cls, init_kwargs, metas = resolve_uses(spec.get('uses'), spec.get('uses_with'), spec.get('uses_metas'))
        taken = {s['resolved_name'] for s in self._specs}
        resolved = name or metas.get('name')
        if resolved is not None and resolved in taken:
            raise ValueError(f'an executor named {resolved!r} is already in this Flow; give each add() a unique name')
        if resolved is None:
            base = cls.__name__
            resolved = base
            for i in itertools.count(1):
                if resolved not in taken:
                    break
                resolved = f'{base}{i}'
        metas.setdefault('name', resolved)
        needs_ = spec.get('needs')
        if needs_ is not None:
            wanted = [needs_] if isinstance(needs_, str) else list(needs_)
            known = taken | {'gateway'}
            unknown = [n for n in wanted if n not in known]
            if unknown:
                raise ValueError(f'needs={needs_!r} names {unknown}, which is not an executor added before '
                                 f'this one; known: {sorted(known)}')
            last = self._specs[-1]['resolved_name'] if self._specs else 'gateway'
            if wanted != [last]:
                raise NotImplementedError('needs= other than the previous executor (a DAG) is not supported '
                                          'yet; executors run as a chain in the order added')
        spec.update(resolved_name=resolved, cls=cls, kwargs=init_kwargs, metas=metas, replicas=reps)
        new = copy.copy(self)
        new._specs = self._specs + [spec]
        new._deployments = []
        return new

    @property
    def num_executors(self) -> int:
        """How many executors were added."""
        return len(self._specs)

    # -- start / stop ----------------------------------------------------------------------
    def __enter__(self) -> 'Flow':
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> 'Flow':
        """Start every executor's processes in parallel and wait until all are ready.

        Raises ExecutorStartError (naming the executor, with its remote traceback) if one
        fails; nothing is left running then.
        """
        if self._started:
            raise RuntimeError('this Flow is already started; use one `with flow:` block at a time')
        t0 = time.perf_counter()
        self._prefix = f'shmflow-{os.getpid()}-{secrets.token_hex(4)}'
        self._ipc_dir = tempfile.mkdtemp(prefix=self._prefix + '-')  # 0700: no other user can connect
        self._ctx = zmq.Context()
        self._router = self._ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._endpoint = f'ipc://{self._ipc_dir}/router'
        self._router.bind(self._endpoint)
        self._arena = Arena(f'{self._prefix}-p', self._arena_size)
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
        self._started = True
        self._finalizer = weakref.finalize(self, _cleanup, self._prefix, self._ipc_dir, self._procs)
        try:
            self._spawn_all()
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        nproc = sum(len(d.workers) for d in self._deployments)
        logger.info('Flow ready: %d executor(s) (%s), %d process(es), in %.2f s', len(self._deployments),
                    ', '.join(d.name for d in self._deployments), nproc, time.perf_counter() - t0)
        return self

    def _spawn_all(self) -> None:
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        base_env = dict(os.environ)
        base_env['PYTHONPATH'] = os.pathsep.join(filter(None, [pkg_root, base_env.get('PYTHONPATH')]))
        workspace = os.path.abspath(self._workspace or 'workspace')
        self._deployments = []
        for i, spec in enumerate(self._specs):
            dep = _Deployment(spec['resolved_name'], spec['cls'], spec['kwargs'], spec['metas'],
                              spec.get('env'), spec['replicas'], spec.get('timeout_ready', DEFAULT_TIMEOUT_READY), spec)
            dep.metas.setdefault('workspace', os.path.join(workspace, dep.metas['name']))
            try:
                dep.blob = cloudpickle.dumps(dep.cls)
            except Exception as exc:
                raise ExecutorStartError(dep.name, f'its class cannot be pickled to send to its process: {exc}') from exc
            self._deployments.append(dep)
            env = base_env
            if dep.env:
                env = dict(base_env)
                env.update({str(k): str(v) for k, v in dep.env.items()})
            for r in range(dep.replicas):
                identity = f'w{i}r{r}'
                arena = f'{self._prefix}-{identity}'
                proc = subprocess.Popen(
                    [sys.executable, '-m', 'runtime.worker', self._endpoint, identity, self._prefix,
                     str(os.getpid()), str(self._arena_size)], env=env, stdin=subprocess.DEVNULL)
                self._procs.append(proc)
                w = _Worker(dep, r, identity, arena, proc)
                dep.workers.append(w)
                self._workers[w.bident] = w
                self._by_pidfd[w.pidfd] = w
                self._arena_owner[arena] = w

    def _wait_ready(self) -> None:
        timeouts = [d.timeout_ready for d in self._deployments]
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
                                                         f'with {WorkerDiedError(w.dep.name, w.replica, w.proc.returncode).args[0].split(" with ")[-1]}')
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

    def close(self) -> None:
        """Stop every process and remove every socket and shared-memory file of this Flow.

        Each executor's ``close()`` runs in its process; a process that does not stop
        within ``timeout_close`` seconds is killed.
        """
        if not self._started:
            return
        self._started = False
        try:
            self._outbox = {}
            for w in list(self._workers.values()):
                if w.alive:
                    self._send(w, (P.STOP, w.pending_frees))
            self._flush()
            deadline = time.monotonic() + self._timeout_close
            for w in self._workers.values():
                try:
                    w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    logger.warning('executor %r (replica %d) did not stop within %.1f s; killing it',
                                   w.dep.name, w.replica, self._timeout_close)
                    w.proc.kill()
                    w.proc.wait()
        finally:
            for w in self._workers.values():
                os.close(w.pidfd)
            self._router.close(linger=0)
            self._ctx.term()
            self._mapper.close()
            self._arena.close()
            self._finalizer()  # sweeps the prefix and the socket directory

    # -- messaging -------------------------------------------------------------------------
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
                self._router.send_multipart([w.bident, pickle.dumps(headers, protocol=5), *metas], copy=False)
            except zmq.ZMQError as exc:  # not connected any more: its death is noticed by its pidfd
                logger.debug('could not send to %s: %s', w.identity, exc)

    def _poll(self, timeout_ms: float) -> Iterator[tuple]:
        """Yield ('msg', worker, header, meta) and ('died', worker, None, None) events."""
        self._flush()
        poller = self._poller
        if poller is None:  # rebuilt only when the set of live processes changes
            poller = self._poller = zmq.Poller()
            poller.register(self._router, zmq.POLLIN)
            for fd in self._by_pidfd:
                poller.register(fd, zmq.POLLIN)
        events = poller.poll(timeout_ms)
        router = self._router
        # Drain without raising zmq.Again at the end (an exception per wake-up adds up).
        while router.get(_EVENTS) & _POLLIN:
            frames = router.recv_multipart(copy=False)
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

    # -- posting ---------------------------------------------------------------------------
    def post(self, on: str, inputs: Any = None, on_done: Callable | None = None,
             on_error: Callable | None = None, on_always: Callable | None = None,
             parameters: dict | None = None, target_executor: str | None = None,
             request_size: int = 100, show_progress: bool = False, return_results: bool = False,
             results_in_order: bool = False, prefetch: int | None = None, **kwargs: Any) -> list | None:
        """Send ``inputs`` to the endpoint ``on`` in requests of ``request_size`` documents.

        Parameters
        ----------
        on : str
            The endpoint, e.g. ``'/index'``; executors without a handler for it (and no
            default ``@requests``) pass the documents on.
        inputs : Document, DocumentArray, DocumentArrayMemmap, iterable / generator of
            Documents, a generator function, or None (one request with no documents).
        on_done, on_error, on_always : callable(Response)
            Run in this thread: ``on_done`` for each successful request, ``on_error`` for
            each failed one, ``on_always`` after either. An exception they raise stops the
            post and propagates.
        parameters : dict
            Sent to every executor; ``parameters[<executor name>]`` (a dict) is merged
            over the rest for that executor only. Values keep their Python types.
        target_executor : str
            A name or regular expression: only matching executors handle the request.
        request_size : int
            Documents per request.
        show_progress : bool
            A progress bar on stderr.
        return_results : bool
            Return the list of Responses (memory then grows with the input).
        results_in_order : bool
            Deliver callbacks and results in input order instead of completion order.
        prefetch : int
            Requests in flight at most (default: the Flow's ``prefetch``).

        Returns
        -------
        list of Response if ``return_results`` else None.

        Raises
        ------
        ExecutorError
            A handler raised and no ``on_error`` was given (raised after the requests in
            flight have settled; the remote traceback is its ``__cause__``).
        WorkerDiedError
            An executor's process died and no ``on_error`` was given.

        Example
        -------
        >>> with Flow().add(uses=MyExecutor) as f:
        ...     f.post('/', (Document() for _ in range(100)), request_size=10, on_done=print)
        """
        if not self._started:
            raise FlowNotStartedError('post() needs a started Flow: call it inside `with flow:` '
                                      '(or after flow.start())')
        for k in kwargs:
            if k not in ('continue_on_error', 'timeout'):  # accepted, handled by later issues
                raise TypeError(f'post() got an unexpected argument {k!r}')
        if not isinstance(on, str):
            raise TypeError(f'on must be an endpoint str such as "/index", got {_describe(on)}')
        if not isinstance(request_size, int) or isinstance(request_size, bool) or request_size < 1:
            raise ValueError(f'request_size must be a positive int (documents per request), got {request_size!r}')
        window = self._prefetch if prefetch is None else prefetch
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f'prefetch must be a positive int (requests in flight), got {window!r}')
        for cb, cb_name in ((on_done, 'on_done'), (on_error, 'on_error'), (on_always, 'on_always')):
            _check_callback(cb, cb_name)
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise TypeError(f'parameters must be a dict, got {_describe(parameters)}')
        try:
            # Pickled once per post; every request unpickles its own copy, so no request (and
            # not the caller's dict) sees what a handler did to another's parameters.
            params_blob = pickle.dumps(parameters, protocol=5)
        except Exception as exc:
            raise TypeError(f'parameters must hold picklable values (numbers, str, lists, dicts, '
                            f'arrays...): {exc}') from exc
        route = self._route(on, target_executor)
        batches = _batches(inputs, request_size)
        total = None
        if show_progress and hasattr(inputs, '__len__') and not isinstance(inputs, (str, bytes)):
            total = len(inputs)
        progress = Progress(on, total) if show_progress else None
        post = _Post(on, route, on_done, on_error, on_always, return_results, results_in_order, progress)
        post.params_blob = params_blob
        index = 0
        exhausted = False
        try:
            while True:
                while not exhausted and post.error is None and post.inflight < window:
                    batch = next(batches, None)
                    if batch is None:
                        exhausted = True
                        break
                    self._submit(post, batch, index)
                    index += 1
                if post.inflight == 0 and (exhausted or post.error is not None):
                    break
                self._pump(POLL_MS)
        except BaseException:
            post.abandoned = True
            raise
        finally:
            if progress is not None:
                progress.close()
        if post.error is not None:
            raise post.error
        if post.results is not None and results_in_order:
            post.results.sort(key=lambda r: r.index)
        return post.results

    index = partialmethod(post, '/index')
    search = partialmethod(post, '/search')
    update = partialmethod(post, '/update')
    delete = partialmethod(post, '/delete')

    def _route(self, endpoint: str, target: str | None) -> list[_Deployment]:
        if target is not None:
            if not isinstance(target, str):
                raise TypeError(f'target_executor must be an executor name or a regex str, got {_describe(target)}')
            try:
                pattern = re.compile(target)
            except re.error as exc:
                raise ValueError(f'target_executor {target!r} is not a valid regular expression: {exc}') from None
            matching = [d for d in self._deployments if pattern.fullmatch(d.name)]
            if not matching:
                raise ValueError(f'target_executor {target!r} matches no executor; executors: '
                                 f'{[d.name for d in self._deployments]}')
        else:
            matching = self._deployments
        route = [d for d in matching if d.handles(endpoint)]
        for d in route:
            if not d.live_workers():
                raise WorkerDiedError(d.name, 0, d.workers[0].proc.returncode, d.workers[0].pid)
        return route

    def _submit(self, post: _Post, docs: DocumentArray, index: int) -> None:
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

    def _pump(self, timeout_ms: float) -> None:
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
        resp = Response(f'{self._prefix}-{req.rid}', docs, post.endpoint, params, status, req.routes, req.index)
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

    def _deliver(self, post: _Post, resp: Response) -> None:
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

    # -- display ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        names = ' -> '.join(s['resolved_name'] for s in self._specs) or '(empty)'
        return f'<Flow {names}{" started" if self._started else ""}>'
