"""The asyncio API: ``AsyncFlow`` (a Flow driven from coroutines) and ``AsyncPost``; ``aclient``
has ``AsyncClient``.

``AsyncFlow.post`` returns an ``AsyncPost``: ``async for resp in f.post(...)`` gets each
successful Response as it completes (Jina 2's shape), ``await f.post(...)`` gets them all as
a list. The Flow is started and driven in one thread of its own, and closed in another, so
the event loop never waits on the router and a close never waits behind a post; responses
cross to the loop through a queue bounded by the in-flight window, so a slow consumer holds
the post back instead of piling up results; while a post waits so, the posts queued behind
it run nested in its thread (``Turns``). An async generator input crosses the other way:
the Flow's thread asks the loop for each request's documents (``AsyncInputs``).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
from functools import partialmethod
from typing import Any, AsyncIterator, Callable

from ..array import DocumentSequence
from ..control.inputs import is_async_input
from ..control.post_args import (check_callbacks, check_on, check_parameters, check_prefetch, check_request_size,
                                 with_defaults)
from ..flow_build import FlowBuilder
from ..response import Response
from .apost import AsyncInputs, AsyncPost, Handover, Stopped, in_thread, signals_seen
from .aturns import Turns

__all__ = ['AsyncFlow', 'AsyncPost', 'AsyncClient']

logger = logging.getLogger('runtime')

#: What an AsyncFlow reads from its running Flow as is (the building half is FlowBuilder's).
_FLOW_ATTRS = frozenset({'profile_summary', 'save_trace'})


class AsyncFlow(FlowBuilder):
    """A Flow for asyncio programs: the same arguments and building methods as ``Flow``
    (``add``, ``needs``, ``needs_all``, ``plot``, ``load_config``, ...: each gives an
    AsyncFlow); start and posts run in a thread of their own, close in another.

    ``post`` also takes an async generator (or a function that returns one), read on the
    event loop as the post needs documents.

    ``async with`` starts and closes it while the event loop keeps running; a plain ``with``
    (Jina 2's form) does the same synchronously, in or out of a coroutine, holding the loop
    meanwhile.

    Example
    -------
    >>> async with AsyncFlow().add(uses=Encoder) as f:
    ...     async for resp in f.post('/index', docs, request_size=10):
    ...         print(len(resp.docs))
    ...     everything = await f.search(queries)
    """

    def __init__(self, *, asyncio: bool = True, **kwargs: Any) -> None:
        # (asyncio: taken for Flow(asyncio=True)'s sake, as AsyncClient takes it)
        if not asyncio:
            raise ValueError('AsyncFlow(asyncio=False): the synchronous one is Flow(...)')
        from ..flow import Flow
        self._flow = Flow(**kwargs)
        self._init_state()

    def _init_state(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None  # set while started
        self._started: concurrent.futures.Future | None = None  # Flow.start in that pool
        self._closing: concurrent.futures.Future | None = None  # a close that may still run
        self._turns = Turns()  # the posts queued or running, and the condition of their hand-overs

    @classmethod
    def _wrap(cls, flow: Any) -> 'AsyncFlow':
        new = cls.__new__(cls)
        new._flow = flow
        new._init_state()
        return new

    # -- building (FlowBuilder's methods, on the Flow underneath) ----------------------------
    @property
    def _specs(self) -> list[dict]:
        return self._flow._specs

    @property
    def _defaults(self) -> dict:
        return self._flow._defaults

    def _with_specs(self, specs: list[dict]) -> 'AsyncFlow':
        return type(self)._wrap(self._flow._with_specs(specs))

    @classmethod
    def load_config(cls, source: Any, **kwargs: Any) -> 'AsyncFlow':
        """``Flow.load_config``, giving an AsyncFlow (whether its ``with:`` says
        ``asyncio: true`` or not).

        Example
        -------
        >>> f = AsyncFlow.load_config('flow.yml')
        """
        from ..flow import Flow
        flow = Flow.load_config(source, **kwargs)
        # (asyncio: true made it an AsyncFlow already, through Flow.__new__)
        return flow if isinstance(flow, AsyncFlow) else cls._wrap(flow)

    def save_config(self, path: Any) -> None:
        """``Flow.save_config`` of the Flow underneath, with ``asyncio: true`` in its
        ``with:``, as Jina 2's ``Flow(asyncio=True)`` wrote it: ``Flow.load_config`` of the
        file gives an AsyncFlow again. ``path``: a file name or a file open for writing.

        Example
        -------
        >>> AsyncFlow().add(uses=Encoder).save_config('flow.yml')
        >>> type(Flow.load_config('flow.yml')).__name__
        'AsyncFlow'
        """
        import io

        import yaml
        buf = io.StringIO()
        self._flow.save_config(buf)
        data = yaml.safe_load(buf.getvalue())  # (plain data: save_config refuses anything else)
        executors = data.pop('executors')  # ('with' where save_config puts it: before them)
        data['with'] = {**(data.get('with') or {}), 'asyncio': True}
        data['executors'] = executors
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
        if hasattr(path, 'write'):
            path.write(text)
        else:
            with open(path, 'w', encoding='utf-8') as fp:
                fp.write(text)

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
        pool, started = self._begin_start()
        try:
            with signals_seen(asyncio.get_running_loop()):
                await asyncio.wrap_future(started)
        except BaseException:
            self._abandon_start(pool, started)
            raise
        return self._started_by(pool)

    def _begin_start(self) -> tuple[concurrent.futures.ThreadPoolExecutor, concurrent.futures.Future]:
        """Submit Flow.start to a new thread of the Flow's; (that thread's pool, its future)."""
        if self._pool is not None:
            raise RuntimeError('this AsyncFlow is already started; use one `async with` block at a time')
        # One thread starts the Flow and runs every post: posts from concurrent coroutines
        # take turns, as Flow.post's from several threads do.
        pool = self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='shmflow-asyncflow')
        previous, self._closing = self._closing, None
        self._started = started = pool.submit(self._start_after, previous)
        return pool, started

    def _abandon_start(self, pool: concurrent.futures.ThreadPoolExecutor,
                       started: concurrent.futures.Future) -> None:
        """The start failed or its waiter left: close what it started, once it is done."""
        if self._pool is pool:
            self._pool = None
            self._closing = in_thread(lambda: self._shut(pool, started, now=False), 'shmflow-asyncflow-close')

    def _started_by(self, pool: concurrent.futures.ThreadPoolExecutor) -> 'AsyncFlow':
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
        self._begin_close(now)
        await self._wait_closed()

    def _begin_close(self, now: bool) -> None:
        """Stop the posts and close the Flow in a thread of its own (if started)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._turns.stop_all()  # a push waiting for room wakes and ends its post
            started = self._started
            self._closing = in_thread(lambda: self._shut(pool, started, now), 'shmflow-asyncflow-close')

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
            with signals_seen(asyncio.get_running_loop()):
                await asyncio.wrap_future(fut)
        finally:
            if fut.done() and self._closing is fut:
                self._closing = None

    async def __aenter__(self) -> 'AsyncFlow':
        return await self.start()

    async def __aexit__(self, exc_type: Any, *exc: Any) -> None:
        await self._close(now=exc_type is not None and not issubclass(exc_type, Exception))

    def __enter__(self) -> 'AsyncFlow':
        """Start synchronously, as Jina 2's AsyncFlow (a Flow) did in a plain ``with``.

        The calling thread waits for the executors; inside a coroutine that holds the event
        loop meanwhile (``async with`` does not). Posts, closes and reads of async
        generator inputs do not need the caller's loop to be free, so nothing waits on it.

        Example
        -------
        >>> async def main():
        ...     with AsyncFlow().add(uses=Encoder) as f:
        ...         async for resp in f.post('/', async_docs):
        ...             print(resp.docs)
        """
        pool, started = self._begin_start()
        try:
            started.result()
        except BaseException:
            self._abandon_start(pool, started)
            raise
        return self._started_by(pool)

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self._begin_close(now=exc_type is not None and not issubclass(exc_type, Exception))
        fut = self._closing
        if fut is None:
            return
        try:
            fut.result()  # (interrupted, the close runs on to its end: a later start waits for it)
        finally:
            if fut.done() and self._closing is fut:
                self._closing = None

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
             request_size: int | None = None, show_progress: bool | None = None, return_results: bool | None = None,
             continue_on_error: bool | None = None, **kwargs: Any) -> AsyncPost:
        """The arguments of ``Flow.post``; returns an ``AsyncPost`` to iterate or await.
        ``return_results`` is taken for ``Flow.post``'s sake: ``await`` gets the list of
        Responses, ``async for`` gets them one by one, whatever its value. Where the call
        does not say, ``request_size``, ``show_progress`` and ``continue_on_error`` are the
        AsyncFlow's (``AsyncFlow(request_size=10)``), as for ``Flow.post``.

        ``inputs`` may also be an async generator or iterable, or a function that returns
        one: it is read on the event loop, a request's worth each time the post has room for
        one (the window paces it as it paces a generator), an exception it raises comes out
        of the post as a generator's would, and it is closed (``aclose``) when the post ends.

        Posts take turns on the Flow's thread. While one waits there (its consumer has a
        window of responses unread, or its async generator has not yielded yet), the posts
        queued behind it run nested, each to its end (as ``Flow.post`` may be called from a
        callback), then it goes on: so a post may be awaited inside ``async for`` over
        another, or by the async generator another reads.

        Example
        -------
        >>> async for resp in f.post('/index', (Document(text=t) for t in texts), request_size=50):
        ...     print(resp.docs.texts)
        >>> async def rows():
        ...     async for line in stream:
        ...         yield Document(text=line)
        >>> async for resp in f.post('/index', rows, request_size=50):
        ...     print(len(resp.docs))
        """
        if self._pool is None:
            from ..errors import FlowNotStartedError
            raise FlowNotStartedError('post() needs a started AsyncFlow: call it inside `async with flow:` (or '
                                      '`with flow:`)')
        # Checked at the call, not only once the post is iterated (Flow.post, in the Flow's
        # thread, checks everything again, the rest of kwargs included); prefetch because the
        # window is made of it here.
        check_on(on)
        request_size, show_progress, _, continue_on_error = with_defaults(
            self._flow.post_defaults, request_size, show_progress, None, continue_on_error)
        check_request_size(request_size)
        check_callbacks(on_done, on_error, on_always)
        parameters = check_parameters(parameters)
        prefetch = kwargs.get('prefetch')
        window = getattr(self._flow, '_prefetch', 16) if prefetch is None else check_prefetch(prefetch)
        # The progress bar is the Flow's own (in its thread): only its post knows how many
        # input documents each request held, which is what the bar counts.
        post_kwargs = dict(kwargs, parameters=parameters, target_executor=target_executor, request_size=request_size,
                           show_progress=show_progress, return_results=False)  # (the AsyncPost collects them)

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
        handover = Handover(window)
        reader, inputs = self._async_inputs(inputs, handover, kwargs['request_size'])

        def push(resp: Response) -> None:
            handing = self._turns.hand_over(handover)  # (waits for room, serving the posts queued)
            handover.answered += 1
            if handing:
                loop.call_soon_threadsafe(queue.put_nowait, ('resp', resp))

        def run() -> None:
            item = self._run_post(handover, lambda: self._flow.post(on, inputs, on_done=push, on_error=push, **kwargs))
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        self._turns.add(handover, run, pool)
        try:
            with signals_seen(loop):
                while True:
                    kind, value = await queue.get()
                    if kind == 'resp':
                        with self._turns.cond:
                            handover.room += 1
                            self._turns.cond.notify_all()
                        yield value, None
                    elif kind == 'exc':
                        raise value
                    else:
                        return
        finally:
            self._turns.leave(handover)  # a push waiting for room (or a read) wakes, and ends the post
            if reader is not None:
                await reader.aclose()

    def _async_inputs(self, inputs: Any, handover: Handover, size: int) -> tuple[AsyncInputs | None, Any]:
        """(the reader of an async generator input, or None; what to give Flow.post). A
        function is wrapped, as what it returns is known only once Flow.post calls it."""
        if is_async_input(inputs):
            reader = AsyncInputs(self, handover, size, inputs)
            return reader, reader
        if callable(inputs) and not isinstance(inputs, DocumentSequence):
            reader = AsyncInputs(self, handover, size)
            return reader, reader.reading(inputs)
        return None, inputs

    def _run_post(self, handover: Handover, post: Callable[[], Any]) -> tuple:
        """In the Flow's thread: run the post, and say how it ended, as the item the
        consumer takes last: ('end', None) or ('exc', the exception to raise)."""
        from ..errors import FlowNotStartedError
        with self._turns.cond:
            closed, gone = handover.closed, handover.gone
        if gone:
            return 'end', None
        if closed:
            return 'exc', FlowNotStartedError('the AsyncFlow was closed before this post started')
        try:
            post()
        except Stopped:
            with self._turns.cond:
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
