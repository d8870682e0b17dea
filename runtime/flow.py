"""Flow: a pipeline of executors, each in its own OS process (or Ray actor), driven from
the caller's thread.

This module is the user-facing side of running: starting and stopping, posting
(``flow_build`` holds the building: ``add``, ``needs``, YAML, drawing); ``control.post_args`` checks what ``post`` is given,
``control.stop_signals`` makes SIGTERM stop a Flow as Ctrl-C does, ``control.post`` runs
one post's window, ``control.router`` moves requests, and a ``transport`` reaches the
executors.
"""
from __future__ import annotations

import copy
import logging
import os
import threading
from functools import partialmethod
from typing import Any, Callable

from .errors import ExecutorError, FlowNotStartedError
from .flow_build import FlowBuilder
from .flow_serving import start_gateway
from .control.inputs import batched, describe, runs_no_user_code
from .control.profiling import ProfileRecorder, ProfileSummary, write_trace
from .control.progress import Progress
from .control.post import Post
from .control.jina2_options import take_parallel
from .control.post_args import (POST_DEFAULTS, check_flag, check_post_args, check_post_defaults, check_prefetch,
                                 with_defaults)
from .control.router import Router
from .control.specs import ADD_ONLY, FLOW_DEFAULT_ARGS, reject_jina_only
from .control.stop_signals import STOP_SIGNALS, StopSignals  # noqa: F401  (STOP_SIGNALS: was defined here)

__all__ = ['Flow']

logger = logging.getLogger('runtime')

#: Where executors run: 'local' (processes on this machine) or 'ray' (actors on a Ray cluster).
BACKENDS = ('local', 'ray')
#: ``Flow(...)`` arguments of the gateway that serves a running Flow to other processes.
SERVE_ARGS = ('port_expose', 'port', 'protocol', 'host', 'max_body_bytes', 'cors')
#: Every keyword ``Flow()`` takes (for "did you mean" when it is given another).
_FLOW_ARGS = ('workspace', 'prefetch', 'arena_size', 'timeout_close', 'profile', 'backend', 'ray_address',
              'ray_init_kwargs', 'asyncio', *SERVE_ARGS, *POST_DEFAULTS, *FLOW_DEFAULT_ARGS)
#: Jina 2's client options that mean nothing for a Flow here -> what to do instead (those
#: that do mean something are the defaults of its posts: ``POST_DEFAULTS``).
DEFAULT_PREFETCH = 16
DEFAULT_ARENA_SIZE = 32 << 20
DEFAULT_TIMEOUT_CLOSE = 5.0


class Flow(FlowBuilder):
    """A pipeline of executors, each in its own OS process.

    Parameters
    ----------
    workspace : str, optional
        The folder the executors' own folders are made in, where their ``metas.workspace``
        (or ``add(workspace=...)``) gives none (default ``./workspace``): each executor's
        ``self.workspace`` is ``<workspace>/<metas.name>``, created when it first asks for it.
    prefetch : int
        Requests in flight at most per ``post`` (default 16): memory is bounded by it, not
        by the input length. While they are all out, a post given documents (a list or a
        DocumentArray, not a generator) encodes up to ``min(2, prefetch // 8)`` more
        requests, sent as soon as the window has room (a callback's changes to documents
        not sent yet may come too late for them).
    arena_size : int
        Bytes of each process's shared-memory arena (default 32 MiB); a payload larger than
        half of it travels in a segment of its own.
    timeout_close : float
        Seconds a process gets to stop before it is killed.
    profile : bool or str
        Keep every request's timings: ``profile_summary()`` then says where the time went,
        each post logs its summary (logger 'runtime', INFO), and with a path the whole run
        is written there as a Chrome trace when the Flow closes (also ``save_trace``).
    request_size, show_progress, return_results, continue_on_error
        Jina 2's client options: the defaults of every ``post`` (``index``, ``search``,
        ...) of this Flow, which a post's own argument overrides (``post_defaults`` holds
        them). Checked here as ``post`` checks them.
    asyncio : bool
        True returns an ``AsyncFlow`` with the other arguments instead (Jina 2's switch).
    port_expose, protocol, host, cors, max_body_bytes
        Serve the running Flow over HTTP (``serving.gateway``); ``f.port_expose``,
        ``f.protocol`` and ``f.host`` read them, and set, serve a running Flow at once.
    **kwargs
        Any ``add()`` argument (``uses``, ``uses_with``, ``timeout_ready``, ``env``,
        ``replicas``, ...): the default for every executor; but ``uses_requests``, which
        names methods of one class, goes to the ``add()`` of its executor.

    Example
    -------
    >>> f = Flow().add(uses=MyEncoder).add(uses=MyIndexer)
    >>> with f:
    ...     f.index(DocumentArray([Document(text='hello')]), on_done=print)
    >>> with Flow(return_results=True).add(uses=MyEncoder) as f:
    ...     resp = f.post('/index', DocumentArray([Document(text='hello')]))
    >>> resp[0].docs
    """

    def __new__(cls, *args: Any, asyncio: bool = False, **kwargs: Any) -> Any:
        # Jina 2's Flow(asyncio=True) turned itself into an AsyncFlow; here the AsyncFlow
        # (which runs a Flow of its own) is made instead, and __init__ is not called for it.
        if check_flag(asyncio, 'asyncio'):
            if cls is not Flow:
                raise TypeError(f'{cls.__name__}(asyncio=True): an AsyncFlow runs a plain Flow, not '
                                f'{cls.__name__}; create {cls.__name__}(...) without asyncio, or AsyncFlow(...)')
            from .serving.aflow import AsyncFlow
            return AsyncFlow(**kwargs)
        return super().__new__(cls)

    def __init__(self, *, workspace: str | None = None, prefetch: int = DEFAULT_PREFETCH,
                 arena_size: int = DEFAULT_ARENA_SIZE, timeout_close: float = DEFAULT_TIMEOUT_CLOSE,
                 profile: bool | str = False, backend: str = 'local', ray_address: str | None = None,
                 ray_init_kwargs: dict | None = None, asyncio: bool = False, **kwargs: Any) -> None:
        # (asyncio: taken by __new__; only False gets here)
        if backend not in BACKENDS:
            raise ValueError(f"backend must be 'local' (processes on this machine) or 'ray' (actors on a Ray "
                             f"cluster), got {backend!r}")
        if backend == 'local' and (ray_address is not None or ray_init_kwargs is not None):
            raise ValueError("ray_address / ray_init_kwargs need Flow(backend='ray', ...)")
        if ray_init_kwargs is not None and not isinstance(ray_init_kwargs, dict):
            raise TypeError(f'ray_init_kwargs must be a dict of ray.init() arguments, got {describe(ray_init_kwargs)}')
        self._backend, self._ray_address, self._ray_init_kwargs = backend, ray_address, ray_init_kwargs
        self._lock = threading.RLock()
        self._closing = threading.RLock()  # held by a close() under way
        self._posting = 0  # posts running (nested ones from callbacks count too)
        self._stop_now = False  # stopped by Ctrl-C / SIGTERM: close() waits for no post
        self._stop_signals = StopSignals()
        serve = {k: kwargs.pop(k) for k in SERVE_ARGS if k in kwargs}
        self._serve_later: dict = {}  # (see flow_serving)
        if serve:
            from .serving.gateway import check_options
            checked = check_options(**serve)  # raises, naming the option, for what it cannot serve
            if serve.keys() & {'port_expose', 'port', 'protocol'}:
                serve = checked
            else:  # (cors=False, a host, ...: options for when it serves, not a request to serve)
                serve, self._serve_later = {}, {k: v for k, v in checked.items() if k in serve}
        self._serve = serve
        self._gateway = None
        self._retiring: list = []  # threads of replaced gateways finishing their requests
        self._exposed: dict = {}  # {HTTP path: ExposedRoute} (expose_endpoint)
        self._post_defaults = check_post_defaults({k: kwargs.pop(k) for k in POST_DEFAULTS if k in kwargs})
        take_parallel('Flow', kwargs)  # (Jina 2's name of shards)
        defaults = {k: kwargs.pop(k) for k in FLOW_DEFAULT_ARGS if k in kwargs}
        for k in kwargs:
            if k in ADD_ONLY:
                raise TypeError(f'Flow({k}=...) is not a default for every executor: it {ADD_ONLY[k]}; pass it '
                                f'to add() for the executor it binds: Flow().add(uses=MyExecutor, {k}={{...}})')
        reject_jina_only('Flow', kwargs, f'workspace, prefetch, arena_size, timeout_close, profile, backend, '
                                         f'ray_address, ray_init_kwargs, asyncio, {", ".join(SERVE_ARGS)}, the '
                                         f'defaults of posts {", ".join(POST_DEFAULTS)} and the add() arguments '
                                         f'{", ".join(FLOW_DEFAULT_ARGS)}', _FLOW_ARGS)
        prefetch = check_prefetch(prefetch)
        if not isinstance(arena_size, int) or arena_size < (1 << 16):
            raise ValueError(f'arena_size must be an int of at least 65536 bytes, got {arena_size!r}')
        if (not isinstance(timeout_close, (int, float)) or isinstance(timeout_close, bool)
                or not timeout_close >= 0):
            raise ValueError(f'timeout_close must be a number of seconds >= 0, got {timeout_close!r}')
        if workspace is not None and not isinstance(workspace, (str, os.PathLike)):
            raise TypeError(f'workspace must be a folder path (str), got {describe(workspace)}')
        self._workspace = workspace
        self._prefetch = prefetch
        self._arena_size = arena_size
        self._timeout_close = timeout_close
        self._defaults = defaults
        if not isinstance(profile, (bool, str, os.PathLike)):
            raise TypeError(f'profile takes True, False or the path of a trace file to write, got {describe(profile)}')
        self._profile_opt = profile
        self._profile: ProfileRecorder | None = None
        self._specs: list[dict] = []
        self._rt: Router | None = None

    def _with_specs(self, specs: list[dict]) -> 'Flow':
        new = copy.copy(self)
        new._specs = specs
        new._rt = None
        new._gateway, new._exposed = None, dict(self._exposed)
        new._stop_signals = StopSignals()  # each Flow its own: starting one must not touch another's
        new._lock, new._closing, new._posting = threading.RLock(), threading.RLock(), 0
        new._retiring = []
        return new

    # -- start / stop ----------------------------------------------------------------------
    def __enter__(self) -> 'Flow':
        return self.start()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):  # Ctrl-C, SIGTERM, exit
            self._stop_now = True
        try:
            self.close()
        except ExecutorError:
            if exc_type is None:
                raise
            # (an error already leaves the block: it goes on, this one is told in the log)
            logger.exception('while leaving the Flow after %s', exc_type.__name__)

    def start(self) -> 'Flow':
        """Start every executor's processes in parallel and wait until all are ready.

        Raises ExecutorStartError (naming the executor, with its remote traceback) if one
        fails; nothing is left running then.
        """
        if self._rt is not None:
            raise RuntimeError('this Flow is already started; use one `with flow:` block at a time')
        self._stop_now = False  # (a Flow left by Ctrl-C once may be started again)
        rt = Router(self._specs, self._transport(), os.path.abspath(self._workspace or 'workspace'),
                    self._timeout_close)
        if self._profile_opt:
            self._profile = rt.profile = ProfileRecorder()
        # SIGTERM / SIGHUP raise KeyboardInterrupt from here on, so that leaving `with`
        # removes every process and file (see control.stop_signals).
        self._stop_signals.catch()
        try:
            rt.start()
        except BaseException:
            self._stop_signals.restore()
            # Stopped by SIGTERM / SIGHUP while starting: nothing is left running (start
            # cleans up), so die of it now, as the default handler would have.
            self._stop_signals.die_if_caught()
            raise
        self._rt = rt
        if self._serve:
            try:
                start_gateway(self)
            except BaseException:
                self._gateway = None
                self.close()
                raise
        return self

    def _transport(self) -> Any:
        if self._backend == 'ray':
            from .transport.ray import RayTransport
            return RayTransport(self._ray_address, self._ray_init_kwargs)
        from .transport.local.pool import LocalTransport
        return LocalTransport(self._arena_size)

    def block(self) -> None:
        """Serve until Ctrl-C or SIGTERM, then return (leaving ``with`` closes the Flow).

        Example
        -------
        >>> with Flow(port_expose=12345, protocol='http').add(uses=MyIndexer) as f:
        ...     f.block()
        """
        if self._rt is None:
            raise FlowNotStartedError('block() needs a started Flow: call it inside `with flow:`')
        from .serving.gateway import block
        block(self)
        self._stop_now = True  # (it returns on Ctrl-C / SIGTERM only)

    def close(self) -> None:
        """Stop every process and remove every socket and shared-memory file of this Flow.

        Each executor's ``close()`` runs in its process; a process that does not stop
        within ``timeout_close`` seconds is killed. An executor's ``close()`` that raised
        (an index that could not be saved) raises ExecutorError here, naming it, once
        everything is stopped and removed.
        """
        if self._lock.acquire(blocking=False):  # (held by another thread: not one of our callbacks)
            try:
                if self._posting:
                    raise RuntimeError('close() was called from a callback of a post that is still running, '
                                       'which would pull the executors from under it; raise an exception in the '
                                       'callback to stop the post (it propagates from post()), then close the '
                                       'Flow (leave `with`)')
            finally:
                self._lock.release()
        # One close at a time: a second one (leaving `with` while another thread closes)
        # returns once everything is removed, not while the first is still removing it.
        with self._closing:
            self._close()

    def _close(self) -> None:
        # A post running in another thread (the gateway's, or the caller's own) may finish
        # within timeout_close; past that, or at once after Ctrl-C / SIGTERM (its handler
        # may hang: a stop must not wait for it), it is stopped at its next poll.
        stopping = self._stop_now or self._stop_signals.caught is not None
        if stopping:
            self._stop_posts('the Flow was stopped (Ctrl-C / SIGTERM)')
        gateway, self._gateway = self._gateway, None
        retiring, self._retiring = self._retiring, []
        if gateway is not None or retiring:
            # No new requests; those in flight get timeout_close, then their posts are
            # stopped (the gateway waits for its threads, which wait for those posts; so
            # do the gateways it replaced that still finish theirs).
            timer = threading.Timer(self._timeout_close, self._stop_posts, ('the Flow was closed',))
            timer.daemon = True
            timer.start()
            try:
                if gateway is not None:
                    gateway.close()
                for t in retiring:
                    t.join()
            finally:
                timer.cancel()
        locked = self._lock.acquire(timeout=0 if stopping else self._timeout_close)
        if not locked:
            self._stop_posts('the Flow was closed')
            # A post stops at its next poll, but one blocked in the caller's own code (an
            # input generator waiting for the thread that is closing, a callback feeding a
            # full queue) never gets there: it is given timeout_close, then closed under.
            # Back from that code, it raises FlowNotStartedError (see Post.run).
            locked = self._lock.acquire(timeout=self._timeout_close)
            if not locked:
                logger.warning('closing the Flow although a post in another thread has not stopped within '
                               'timeout_close=%g s: it is blocked in its own code (its input generator or a '
                               'callback); it raises FlowNotStartedError when that returns', self._timeout_close)
        try:
            rt, self._rt = self._rt, None
        finally:
            if locked:
                self._lock.release()
        if rt is not None:
            try:
                rt.close()
                if self._profile is not None:
                    if self._profile.records and logger.isEnabledFor(logging.INFO):
                        logger.info('profile of the whole run:\n%s', self._profile.summary().table())
                    if isinstance(self._profile_opt, (str, os.PathLike)):
                        # (a run stopped by SIGTERM keeps its trace; one with no request
                        # finished writes an empty one, not leave an older run's in place)
                        self.save_trace(self._profile_opt)
            finally:
                self._stop_signals.restore()
                self._stop_signals.die_if_caught()

    def _down_executors(self) -> list[tuple[str, BaseException]]:
        """(name, the error a post would raise) of each executor with a shard that has no
        process left, even restarting (what ``post`` checks before it starts); for health
        checks (the gateway's /status). Safe from another thread: it books deaths only when
        no post runs (a running post books them itself), then reads."""
        self._while_idle(Router.notice_deaths)  # (one killed while idle: else seen only by the next post)
        rt = self._rt
        down = []
        for dep in (rt.deployments if rt is not None else ()):
            worker = dep.dead_shard()
            if worker is not None:
                down.append((dep.name, worker.died()))
        return down

    def _stop_posts(self, why: str) -> None:
        rt = self._rt
        if rt is not None and rt.closing is None:
            rt.closing = why

    # -- profiling -------------------------------------------------------------------------
    def profile_summary(self, last_post: bool = False) -> ProfileSummary:
        """Where the time went (needs ``Flow(profile=True)``): per executor and process
        requests, docs, busy %, handler and queue-wait percentiles, shared-memory bytes,
        and end-to-end docs/s and latency. For the whole run so far, or the last post.

        Example
        -------
        >>> with Flow(profile=True).add(uses=Encoder) as f:
        ...     f.index(docs)
        ...     stats = f.profile_summary()
        >>> stats.executor('Encoder').handler_ms['p95'], stats.docs_per_s
        """
        if self._profile is None:
            raise RuntimeError('profiling is off: create the Flow with Flow(profile=True) '
                               "(or profile='trace.json' to also write a Chrome trace)")
        self._book_late()
        return self._profile.summary(self._profile.posts if last_post else None)

    def _book_late(self) -> None:
        # An answer that came back after its request ended (a timeout) is booked when the
        # router reads it: while no post runs, nothing does, so read what is back now.
        self._while_idle(lambda rt: rt.pump(0))

    def _while_idle(self, action: Callable[[Router], Any]) -> None:
        """``action(router)`` if the Flow runs and no post does (a running post books deaths
        and answers itself); nothing if another thread holds the Flow."""
        if self._lock.acquire(blocking=False):
            try:
                if self._rt is not None and not self._posting:
                    action(self._rt)
            finally:
                self._lock.release()

    def save_trace(self, path: str) -> None:
        """Write the run so far as a Chrome trace (open it in https://ui.perfetto.dev or
        chrome://tracing): one track per process, one slice per handler call, and an arrow
        into each from the hop whose answer made it ready (a join's from its last input).
        Needs ``Flow(profile=...)``."""
        if self._profile is None:
            raise RuntimeError('profiling is off: create the Flow with Flow(profile=True)')
        self._book_late()
        write_trace(path, self._profile.records)

    # -- posting ---------------------------------------------------------------------------
    @property
    def post_defaults(self) -> dict:
        """What a post of this Flow does where its own arguments do not say:
        ``request_size``, ``show_progress``, ``return_results``, ``continue_on_error``
        (``Flow(...)``'s, else 100, False, False, False). A copy: changing it changes nothing.

        Example
        -------
        >>> Flow(return_results=True).post_defaults['return_results']
        True
        """
        return dict(self._post_defaults)

    def post(self, on: str, inputs: Any = None, on_done: Callable | None = None,
             on_error: Callable | None = None, on_always: Callable | None = None,
             parameters: dict | None = None, target_executor: str | None = None,
             request_size: int | None = None, show_progress: bool | None = None,
             return_results: bool | None = None, results_in_order: bool = False, prefetch: int | None = None,
             timeout: float | None = None, continue_on_error: bool | None = None, **kwargs: Any) -> list | None:
        """Send ``inputs`` to the endpoint ``on`` in requests of ``request_size`` documents.

        Parameters
        ----------
        on : str
            The endpoint, e.g. ``'/index'``; executors without a handler for it (and no
            default ``@requests``) pass the documents on.
        inputs : Document, DocumentArray, DocumentArrayMemmap, iterable / generator of
            Documents, a generator function, or None. None, or an empty list / tuple /
            DocumentArray, sends one request with no documents; a generator that yields
            nothing sends none (as Jina 2).
        on_done, on_error, on_always : callable(Response)
            Run in this thread: ``on_done`` for each successful request, ``on_error`` for
            each failed one, ``on_always`` after either. An exception they raise stops the
            post and propagates (unless ``continue_on_error``).
        parameters : dict
            Sent to every executor; ``parameters[<executor name>]`` (a dict) is merged
            over the rest for that executor only. Values keep their Python types.
        target_executor : str
            A name or regular expression: only matching executors handle the request.
        request_size : int
            Documents per request (default: the Flow's, else 100).
        show_progress : bool
            A progress bar on stderr (default: the Flow's, else False).
        return_results : bool
            Return the list of Responses (memory then grows with the input); default:
            the Flow's (``Flow(return_results=True)``), else False.
        results_in_order : bool
            Deliver callbacks and results in input order instead of completion order.
        prefetch : int
            Requests in flight at most (default: the Flow's ``prefetch``).
        timeout : float
            Seconds a request may take; a slower one fails with RequestTimeoutError naming
            the executor that holds it (its process is not interrupted). The time the
            script's own callbacks and input generator take is not counted.
        continue_on_error : bool
            Log (logger 'runtime', ERROR) and go on instead of stopping: a failed request
            without ``on_error`` is logged instead of raised at the end, and an exception a
            callback raises is logged with its traceback, naming the callback and the
            request (Jina 2: "a Request that causes callback error will be logged only
            without blocking the further requests"). Default: the Flow's, else False.

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
        Exception
            What the input raised (a generator that fails part-way): it stops the reading
            and is raised, with its own type and traceback, once the requests already sent
            have settled and their callbacks ran.

        Example
        -------
        >>> with Flow().add(uses=MyExecutor) as f:
        ...     f.post('/', (Document() for _ in range(100)), request_size=10, on_done=print)
        """
        rt = self._rt
        if rt is None:
            raise FlowNotStartedError('post() needs a started Flow: call it inside `with flow:` '
                                      '(or after flow.start())')
        request_size, show_progress, return_results, continue_on_error = with_defaults(  # (Flow(...)'s)
            self._post_defaults, request_size, show_progress, return_results, continue_on_error)
        # Positional: a one-document post costs tens of microseconds, and this call is the
        # only price of keeping the checks in their own module.
        target_executor, window, params_blob = check_post_args(
            on, on_done, on_error, on_always, parameters, target_executor, request_size, prefetch, timeout,
            kwargs, self._prefetch)
        with self._lock:  # posts from several threads run one after the other, each whole
            rt = self._rt
            if rt is None:
                raise FlowNotStartedError('post() needs a started Flow: the Flow was closed')
            rt.notice_deaths()
            plan = rt.plan(on, target_executor)
            progress = None
            if show_progress:
                total = None
                if hasattr(inputs, '__len__') and not isinstance(inputs, (str, bytes)):
                    total = len(inputs)
                progress = Progress(on, total)
            profile = self._profile
            post = Post(rt, on, plan, params_blob, window, on_done, on_error, on_always, return_results,
                        results_in_order, progress, timeout, continue_on_error,
                        profile.new_post() if profile is not None else 0, rt.id_prefix)
            self._posting += 1
            try:
                return post.run(batched(inputs, request_size), read_ahead=runs_no_user_code(inputs))
            finally:
                self._posting -= 1
                # (a post that raised is profiled too: where its time went is what one asks then)
                if profile is not None and logger.isEnabledFor(logging.INFO):
                    logger.info('profile of post %d (%s):\n%s', post.number, on,
                                profile.summary(post.number).table())

    index = partialmethod(post, '/index')
    search = partialmethod(post, '/search')
    update = partialmethod(post, '/update')
    delete = partialmethod(post, '/delete')

    def __repr__(self) -> str:
        names = ' -> '.join(s['resolved_name'] for s in self._specs) or '(empty)'
        return f'<Flow {names}{" started" if self._rt is not None else ""}>'
