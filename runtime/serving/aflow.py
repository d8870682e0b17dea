"""The asyncio API: ``AsyncFlow`` (a Flow driven from coroutines) and ``AsyncPost``; ``aclient``
has ``AsyncClient``.

``AsyncFlow.post`` returns an ``AsyncPost``: ``async for resp in f.post(...)`` gets each
successful Response as it completes (Jina 2's shape), ``await f.post(...)`` gets them all as
a list. The Flow is started and driven in one thread of its own, and closed in another, so
the event loop never waits on the router and a close never waits behind a post; responses
cross to the loop through a queue bounded by the in-flight window, so a slow consumer holds
the post back instead of piling up results (unless another post waits for the thread: see
``AsyncFlow._push``).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading
from functools import partialmethod
from typing import Any, AsyncIterator, Callable, Generator

from ..control.post_args import check_callbacks, check_on, check_parameters, check_prefetch, check_request_size
from ..response import Response
from .client import settle

__all__ = ['AsyncFlow', 'AsyncPost', 'AsyncClient']

logger = logging.getLogger('runtime')

_FLOW_ATTRS = frozenset({'plot', 'num_executors', 'profile_summary', 'save_trace', 'save_config'})


class AsyncPost:
    """One post, to iterate (``async for resp in ...``: each successful Response) or to
    await (the list of them). Callbacks run on the event loop, as in ``Flow.post``: an
    ``on_error``, else the first failure is raised once iteration stops.

    Example
    -------
    >>> async for resp in f.post('/search', docs):
    ...     print(resp.docs[0].matches)
    >>> responses = await f.post('/index', docs)
    """

    def __init__(self, source: Callable[[], AsyncIterator[tuple[Response, int | None]]], on: str, callbacks: tuple,
                 continue_on_error: bool, progress_total: Any = False) -> None:
        # source yields (Response, the number of documents its request sent): what the
        # progress bar counts; None where the source shows no bar of its own (AsyncFlow's
        # Flow.post counts for itself).
        self._source, self._on = source, on
        self._on_done, self._on_error, self._on_always = callbacks
        self._continue = continue_on_error
        self._progress_total = progress_total  # False: no progress bar; None: total unknown
        self._used = False

    def __aiter__(self) -> AsyncIterator[Response]:
        if self._used:
            raise RuntimeError('this post was already consumed; call post() again')
        self._used = True
        return self._iterate()

    def __await__(self) -> Generator[Any, None, list]:
        return self._collect().__await__()

    async def _collect(self) -> list:
        return [resp async for resp in self]

    async def _iterate(self) -> AsyncIterator[Response]:
        progress = None
        if self._progress_total is not False:
            from ..control.progress import Progress
            progress = Progress(self._on, self._progress_total)
        source = self._source()
        error = None
        try:
            async for resp, ndocs in source:
                if progress is not None:
                    progress.update(ndocs, resp.is_error, len(resp.docs))
                error = settle(resp, self._on_done, self._on_error, self._on_always, self._continue)
                if error is not None:
                    break
                if not resp.is_error:
                    yield resp
        finally:
            await source.aclose()
            if progress is not None:
                progress.close()
        if error is not None:
            raise error


def _total(inputs: Any, show_progress: bool) -> Any:
    if not show_progress:
        return False
    return len(inputs) if hasattr(inputs, '__len__') and not isinstance(inputs, (str, bytes)) else None


class _Stopped(Exception):
    """Raised in the Flow's thread, from a hand-over, to end a post (see ``_Handover``)."""


class _Handover:
    """What one post's responses cross on their way from the Flow's thread to the loop.

    ``room`` is how many more may wait unread (it goes below zero while the post runs
    unbounded, see ``AsyncFlow._push``). ``gone``: the consumer left (a break, a cancel),
    so the post ends silently; ``closed``: ``close()`` stopped it, so its consumer gets
    FlowNotStartedError. Both are read and written under the AsyncFlow's condition.
    """

    __slots__ = ('room', 'gone', 'closed')

    def __init__(self, room: int) -> None:
        self.room, self.gone, self.closed = room, False, False

    @property
    def stopped(self) -> bool:
        return self.gone or self.closed


def _in_thread(fn: Callable[[], Any], name: str) -> concurrent.futures.Future:
    """Run ``fn`` in a new (non-daemon) thread; its future can be awaited but not cancelled:
    a close must run to its end even when whoever waits for it is cancelled."""
    fut: concurrent.futures.Future = concurrent.futures.Future()
    fut.set_running_or_notify_cancel()

    def run() -> None:
        try:
            fut.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the future
            fut.set_exception(exc)
    threading.Thread(target=run, name=name).start()
    return fut


class AsyncFlow:
    """A Flow for asyncio programs: the same arguments and ``add()`` as ``Flow``; start
    and posts run in a thread of their own, close in another.

    Example
    -------
    >>> async with AsyncFlow().add(uses=Encoder) as f:
    ...     async for resp in f.post('/index', docs, request_size=10):
    ...         print(len(resp.docs))
    ...     everything = await f.search(queries)
    """

    def __init__(self, **kwargs: Any) -> None:
        from ..flow import Flow
        self._flow = Flow(**kwargs)
        self._init_state()

    def _init_state(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # set while started
        self._started: concurrent.futures.Future | None = None  # Flow.start in that pool
        self._closing: concurrent.futures.Future | None = None  # a close that may still run
        self._cond = threading.Condition()  # guards the hand-overs and _queued
        self._live: set[_Handover] = set()  # of the posts queued or running now
        self._queued = 0  # posts waiting for the Flow's thread

    @classmethod
    def _wrap(cls, flow: Any) -> 'AsyncFlow':
        new = cls.__new__(cls)
        new._flow = flow
        new._init_state()
        return new

    def add(self, *args: Any, **kwargs: Any) -> 'AsyncFlow':
        """A new AsyncFlow with one more executor (the arguments of ``Flow.add``)."""
        return AsyncFlow._wrap(self._flow.add(*args, **kwargs))

    @property
    def flow(self) -> Any:
        """The ``Flow`` underneath."""
        return self._flow

    def __getattr__(self, name: str) -> Any:
        if name in _FLOW_ATTRS:
            return getattr(self._flow, name)
        raise AttributeError(f'AsyncFlow has no attribute {name!r}')

    # -- life cycle -------------------------------------------------------------------------
    async def start(self) -> 'AsyncFlow':
        """Start the executors (in the Flow's thread; the loop keeps running meanwhile).

        Cancelled (``asyncio.wait_for``, Ctrl-C), the start goes on in its thread (it cannot
        be interrupted) and what it started is then closed: nothing is left running, and
        ``start()`` may be called again.

        Example
        -------
        >>> f = await AsyncFlow().add(uses=Encoder).start()
        >>> await f.close()
        """
        if self._pool is not None:
            raise RuntimeError('this AsyncFlow is already started; use one `async with` block at a time')
        # One thread starts the Flow and runs every post: posts from concurrent coroutines
        # take turns, as Flow.post's from several threads do.
        pool = self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='shmflow-asyncflow')
        previous, self._closing = self._closing, None
        self._started = started = pool.submit(self._start_after, previous)
        try:
            await asyncio.wrap_future(started)
        except BaseException:
            if self._pool is pool:
                self._pool = None
                self._closing = _in_thread(lambda: self._shut(pool, started, now=False), 'shmflow-asyncflow-close')
            raise
        if self._pool is not pool:
            from ..errors import FlowNotStartedError
            raise FlowNotStartedError('close() was called while this AsyncFlow started: it is closed')
        return self

    def _start_after(self, previous: concurrent.futures.Future | None) -> None:
        """Flow.start, once a close still under way (of an earlier start) has finished."""
        if previous is not None:
            concurrent.futures.wait([previous])
            if not previous.cancelled() and previous.exception() is not None:
                # Whoever closed did not wait for the end (cancelled): told here, not lost.
                logger.warning('closing the earlier run of this AsyncFlow failed: %s', previous.exception())
        self._flow.start()

    async def close(self) -> None:
        """Stop every process. A post still running is stopped, and its consumer gets
        FlowNotStartedError: at once where the post waits to hand a response over, else
        within ``timeout_close`` (Flow.close's rule for a post of another thread). Posts
        not begun yet raise FlowNotStartedError too.

        The Flow is closed in a thread of its own, so neither a stuck handler nor a post
        nobody reads any more holds the close. Cancelled, the close still runs to its end
        (a later ``start()`` waits for it).

        Example
        -------
        >>> f = await AsyncFlow().add(uses=Encoder).start()
        >>> await f.close()
        """
        await self._close(now=False)

    async def _close(self, now: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            self._stop_live()
            started = self._started
            self._closing = _in_thread(lambda: self._shut(pool, started, now), 'shmflow-asyncflow-close')
        await self._wait_closed()

    def _stop_live(self) -> None:
        """Mark every post queued or running as stopped by close(); a push waiting for
        room wakes and ends its post."""
        with self._cond:
            for handover in self._live:
                handover.closed = True
            self._cond.notify_all()

    def _shut(self, pool: concurrent.futures.ThreadPoolExecutor, started: concurrent.futures.Future | None,
              now: bool) -> None:
        """Close the Flow (in a thread other than the posts'), once its start is done."""
        try:
            if started is not None:
                concurrent.futures.wait([started])  # Flow.start cannot be interrupted
            if now:
                # Left by cancellation or Ctrl-C: as Flow.__exit__ does then, the running
                # post is stopped at its next poll, not given timeout_close.
                self._flow._stop_posts('the AsyncFlow was left by cancellation or Ctrl-C')
            self._flow.close()
        finally:
            pool.shutdown(wait=False)  # (the thread ends once the post it runs has stopped)

    async def _wait_closed(self) -> None:
        """Wait for the close under way, if any; raise what it raised, once."""
        fut = self._closing
        if fut is None:
            return
        try:
            await asyncio.wrap_future(fut)
        finally:
            if fut.done() and self._closing is fut:
                self._closing = None

    async def __aenter__(self) -> 'AsyncFlow':
        return await self.start()

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        await self._close(now=exc_type is not None and not issubclass(exc_type, Exception))

    async def block(self) -> None:
        """Wait until SIGINT or SIGTERM (for a Flow that serves with ``port_expose``).

        >>> async with AsyncFlow(port_expose=12345, protocol='http').add(uses=Indexer) as f:
        ...     await f.block()
        """
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        sigs = (signal.SIGINT, signal.SIGTERM)
        for sig in sigs:
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in sigs:
                loop.remove_signal_handler(sig)

    # -- posting ----------------------------------------------------------------------------
    def post(self, on: str, inputs: Any = None, on_done: Callable | None = None,
             on_error: Callable | None = None, on_always: Callable | None = None,
             parameters: dict | None = None, target_executor: str | None = None,
             request_size: int = 100, show_progress: bool = False, return_results: bool = False,
             continue_on_error: bool = False, **kwargs: Any) -> AsyncPost:
        """The arguments of ``Flow.post``; returns an ``AsyncPost`` to iterate or await.
        ``return_results`` is taken for ``Flow.post``'s sake: ``await`` gets the list of
        Responses, ``async for`` gets them one by one, whatever its value.

        Posts take turns on the Flow's thread. One may be awaited inside ``async for`` over
        another (as ``Flow.post`` may be called from a callback): the outer one then runs to
        its end first, its responses kept until they are read.

        Example
        -------
        >>> async for resp in f.post('/index', (Document(text=t) for t in texts), request_size=50):
        ...     print(resp.docs.texts)
        """
        if self._pool is None:
            from ..errors import FlowNotStartedError
            raise FlowNotStartedError('post() needs a started AsyncFlow: call it inside `async with flow:`')
        # Checked at the call, not only once the post is iterated (Flow.post, in the Flow's
        # thread, checks everything again, the rest of kwargs included); prefetch because the
        # window is made of it here.
        check_on(on)
        check_request_size(request_size)
        check_callbacks(on_done, on_error, on_always)
        parameters = check_parameters(parameters)
        prefetch = kwargs.get('prefetch')
        window = getattr(self._flow, '_prefetch', 16) if prefetch is None else check_prefetch(prefetch)
        # The progress bar is the Flow's own (in its thread): only its post knows how many
        # input documents each request held, which is what the bar counts.
        post_kwargs = dict(kwargs, parameters=parameters, target_executor=target_executor, request_size=request_size,
                           show_progress=show_progress)

        def source() -> AsyncIterator[tuple[Response, None]]:
            return self._responses(on, inputs, post_kwargs, window)
        return AsyncPost(source, on, (on_done, on_error, on_always), continue_on_error)

    index = partialmethod(post, '/index')
    search = partialmethod(post, '/search')
    update = partialmethod(post, '/update')
    delete = partialmethod(post, '/delete')

    async def _responses(self, on: str, inputs: Any, kwargs: dict,
                         window: int) -> AsyncIterator[tuple[Response, None]]:
        """Every Response of one ``Flow.post`` run in the Flow's thread, as it completes
        (with None: the Flow's post counts the progress itself)."""
        pool = self._pool
        if pool is None:
            from ..errors import FlowNotStartedError
            raise FlowNotStartedError('the AsyncFlow was closed before the post started')
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        handover = _Handover(window)

        def push(resp: Response) -> None:
            self._push(handover)
            loop.call_soon_threadsafe(queue.put_nowait, ('resp', resp))

        def run() -> None:
            item = self._run_post(handover, lambda: self._flow.post(on, inputs, on_done=push, on_error=push, **kwargs))
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        with self._cond:  # (held: run() counts itself out of _queued only once counted in)
            pool.submit(run)
            self._live.add(handover)
            self._queued += 1
            self._cond.notify_all()  # a post running now stops waiting for room (see _push)
        try:
            while True:
                kind, value = await queue.get()
                if kind == 'resp':
                    with self._cond:
                        handover.room += 1
                        self._cond.notify_all()
                    yield value, None
                elif kind == 'exc':
                    raise value
                else:
                    return
        finally:
            self._live.discard(handover)
            with self._cond:
                handover.gone = True
                self._cond.notify_all()  # a push waiting for room wakes, and ends the post

    def _push(self, handover: _Handover) -> None:
        """In the Flow's thread, before a response is handed over: wait until there is room
        for it, or raise _Stopped if the post is to end.

        While another post waits for the thread, this one does not wait for room: that
        post's consumer may be this one's (a post awaited inside ``async for`` over this
        one), which reads nothing more until it is served. This post then runs to its end,
        its unread responses piling up, and the waiting one runs next.
        """
        with self._cond:
            self._cond.wait_for(lambda: handover.room > 0 or handover.stopped or self._queued > 0)
            if handover.stopped:
                raise _Stopped()
            handover.room -= 1

    def _run_post(self, handover: _Handover, post: Callable[[], Any]) -> tuple:
        """In the Flow's thread: run the post, and say how it ended, as the item the
        consumer takes last: ('end', None) or ('exc', the exception to raise)."""
        from ..errors import FlowNotStartedError
        with self._cond:
            self._queued -= 1
            closed, gone = handover.closed, handover.gone
        if gone:
            return 'end', None
        if closed:
            return 'exc', FlowNotStartedError('the AsyncFlow was closed before this post started')
        try:
            post()
        except _Stopped:
            with self._cond:
                gone = handover.gone
            if not gone:  # close() stopped it: a consumer still reading must not take it as complete
                return 'exc', FlowNotStartedError('the AsyncFlow was closed while this post was running; the '
                                                  'requests still in flight were abandoned')
        except BaseException as exc:  # handed to the coroutine, which raises it
            return 'exc', exc
        return 'end', None

    def __repr__(self) -> str:
        return f'<AsyncFlow {self._flow!r}>'


from .aclient import AsyncClient  # noqa: E402  (its module imports AsyncPost from this one)
