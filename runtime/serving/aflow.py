"""The asyncio API: ``AsyncFlow`` (a Flow driven from coroutines) and ``AsyncClient``.

``AsyncFlow.post`` returns an ``AsyncPost``: ``async for resp in f.post(...)`` gets each
successful Response as it completes (Jina 2's shape), ``await f.post(...)`` gets them all as
a list. The Flow itself is started, driven and closed in one thread of its own, so the event
loop never waits on the router; responses cross to the loop through a queue bounded by the
in-flight window, so a slow consumer holds the post back instead of piling up results.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import signal
import threading
from functools import partialmethod
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, Iterator

from ..control.inputs import batches
from ..control.post_args import check_callbacks, check_on, check_parameters, check_prefetch, check_request_size
from ..response import Response
from .client import (PostOptions, _check_client_args, broken_answer, cut_off, no_answer, not_listening, post_options,
                     response_from, settle, unreachable)
from .deps import import_aiohttp
from .wire import encode_request

__all__ = ['AsyncFlow', 'AsyncClient', 'AsyncPost']

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
    """Raised in the Flow's thread to end a post whose consumer went away."""


class AsyncFlow:
    """A Flow for asyncio programs: the same arguments and ``add()`` as ``Flow``; start,
    close and posts run in a thread of their own.

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
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._live: set = set()  # (stopped, room) of the posts running now

    @classmethod
    def _wrap(cls, flow: Any) -> 'AsyncFlow':
        new = cls.__new__(cls)
        new._flow, new._pool, new._live = flow, None, set()
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
        """Start the executors (in the Flow's thread; the loop keeps running meanwhile)."""
        if self._pool is not None:
            raise RuntimeError('this AsyncFlow is already started; use one `async with` block at a time')
        # One thread does everything with the Flow: its sockets stay with that thread and
        # posts from concurrent coroutines take turns.
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix='shmflow-asyncflow')
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._flow.start)
        except BaseException:
            self._pool.shutdown(wait=False)
            self._pool = None
            raise
        return self

    async def close(self) -> None:
        """Stop every process. Posts still running are stopped first: one whose responses
        nobody reads any more would otherwise hold the Flow's thread (it waits for room
        to hand them over) and the close queued behind it would never run."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for stopped, room in list(self._live):
            stopped.set()
            room.release()  # a push waiting for room wakes, sees the stop, and ends its post
        try:
            await asyncio.get_running_loop().run_in_executor(pool, self._flow.close)
        finally:
            # Not wait=True: if this coroutine is cancelled while the Flow closes, blocking
            # here would block the event loop; the thread finishes the close by itself.
            pool.shutdown(wait=False)

    async def __aenter__(self) -> 'AsyncFlow':
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

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
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        room = threading.Semaphore(window)
        stopped = threading.Event()
        live = (stopped, room)
        self._live.add(live)

        def push(resp: Response) -> None:
            room.acquire()
            if stopped.is_set():
                raise _Stopped()
            loop.call_soon_threadsafe(queue.put_nowait, ('resp', resp))

        def run() -> None:
            item: tuple = ('end', None)
            try:
                self._flow.post(on, inputs, on_done=push, on_error=push, **kwargs)
            except _Stopped:
                pass
            except BaseException as exc:  # handed to the coroutine, which raises it
                item = ('exc', exc)
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        if self._pool is None:
            from ..errors import FlowNotStartedError
            raise FlowNotStartedError('the AsyncFlow was closed before the post started')
        loop.run_in_executor(self._pool, run)
        try:
            while True:
                kind, value = await queue.get()
                if kind == 'resp':
                    room.release()
                    yield value, None
                elif kind == 'exc':
                    raise value
                else:
                    return
        finally:
            self._live.discard(live)
            stopped.set()
            room.release()  # wakes a push waiting for room, which then stops the post

    def __repr__(self) -> str:
        return f'<AsyncFlow {self._flow!r}>'


class AsyncClient:
    """``Client`` for asyncio programs (aiohttp): ``post`` returns an ``AsyncPost``, and
    can keep several requests in flight (``prefetch``).

    Parameters
    ----------
    host, port, protocol, timeout, array_format, port_expose
        As ``Client``.
    asyncio : True
        Taken for ``Client(asyncio=True)``'s sake; False is refused (that is ``Client``).

    Example
    -------
    >>> c = AsyncClient(port=12345)
    >>> async for resp in c.post('/search', Document(text='hello')):
    ...     print(resp.docs[0].matches)
    """

    def __init__(self, host: str = '127.0.0.1', port: int | None = None, protocol: str = 'http',
                 timeout: float | None = None, array_format: str = 'base64', port_expose: int | None = None,
                 asyncio: bool = True) -> None:
        if not asyncio:
            raise ValueError('AsyncClient(asyncio=False): the synchronous client is Client(...)')
        import_aiohttp('AsyncClient')
        self.host, self.port, self.timeout, self.array_format = _check_client_args(
            host, port, protocol, timeout, array_format, port_expose)

    @property
    def url(self) -> str:
        return f'http://{self.host}:{self.port}'

    async def __aenter__(self) -> 'AsyncClient':
        return self

    async def __aexit__(self, *exc: Any) -> None:
        pass  # each post opens and closes its own connections

    def post(self, on: str, inputs: Any = None, on_done: Callable | None = None,
             on_error: Callable | None = None, on_always: Callable | None = None,
             parameters: dict | None = None, target_executor: str | None = None,
             request_size: int = 100, show_progress: bool = False, return_results: bool = False,
             continue_on_error: bool = False, *, results_in_order: bool = False, prefetch: int | None = None,
             timeout: float | None = None, **kwargs: Any) -> AsyncPost:
        """The arguments of ``Client.post``; returns an ``AsyncPost`` to iterate or await.
        Any other argument is refused with a TypeError.

        Parameters
        ----------
        return_results : bool
            Taken for ``Flow.post``'s sake; what comes back is chosen by how the post is
            used: ``await`` gets the list of Responses, ``async for`` gets them one by one
            (memory stays flat).
        prefetch : int, optional
            Requests in flight at most (default 1: each sent once the last is answered).
            The gateway runs requests one after another, so more in flight overlaps only
            the encoding and the network with the serving.
        results_in_order : bool
            With ``prefetch`` > 1: hand the responses on in input order instead of as they
            come (one at a time they always come in order).
        timeout : float, optional
            Seconds to wait for each answer, for this post (default: the client's
            ``timeout``); a slower one raises TimeoutError.

        Example
        -------
        >>> responses = await AsyncClient(port=12345).index(docs, request_size=50, prefetch=4)
        """
        opts = post_options(self, on, request_size, parameters, target_executor,
                            (on_done, on_error, on_always), timeout, prefetch, kwargs, pipelines=True)

        def source() -> AsyncIterator[Response]:
            return self._responses(on, inputs, opts, request_size, bool(results_in_order))
        return AsyncPost(source, on, (on_done, on_error, on_always), continue_on_error, _total(inputs, show_progress))

    index = partialmethod(post, '/index')
    search = partialmethod(post, '/search')
    update = partialmethod(post, '/update')
    delete = partialmethod(post, '/delete')

    async def _responses(self, on: str, inputs: Any, opts: PostOptions, request_size: int,
                         in_order: bool) -> AsyncIterator[tuple[Response, int]]:
        """Each request's Response, and how many documents it sent (what progress counts)."""
        aiohttp = import_aiohttp('AsyncClient')
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=opts.timeout)) as session:
            async def one(i: int, batch: Any) -> tuple[Response, int]:
                body = encode_request(batch, on, opts.parameters, opts.target_executor, self.array_format)
                status, data = await self._exchange(aiohttp, session, body, opts.timeout)
                return response_from(status, data, self.url, i), len(batch)

            calls = (one(i, batch) for i, batch in enumerate(batches(inputs, request_size)))
            # aclosing: leaving early cancels the requests in flight before the session closes.
            async with contextlib.aclosing(_in_flight(calls, opts.prefetch, in_order)) as responses:
                async for answer in responses:
                    yield answer

    async def _exchange(self, aiohttp: Any, session: Any, body: bytes, timeout: float | None) -> tuple[int, bytes]:
        """POST one body, return (status, body); failures worded as ``Client`` words them."""
        headers = {'Content-Type': 'application/json', 'Accept': 'application/json'}
        try:
            async with session.post(f'{self.url}/post', data=body, headers=headers) as r:
                return r.status, await r.read()
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                raise not_listening(self.url, self.port) from None
            raise unreachable(self.url, exc.os_error) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise cut_off(self.url, exc) from None
        except asyncio.TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            raise no_answer(self.url, timeout) from None
        except aiohttp.ClientError as exc:  # an answer cut short or not HTTP
            raise broken_answer(self.url, exc) from None

    def __repr__(self) -> str:
        return f'<AsyncClient {self.url}>'


async def _in_flight(calls: Iterator[Awaitable], window: int, in_order: bool) -> AsyncIterator[Any]:
    """The results of ``calls``, at most ``window`` of them running at once: in the order
    of ``calls`` when ``in_order`` (or ``window`` is 1), else as they finish. The next call
    is started only when a result is taken, so a slow consumer holds the sending back."""
    running: collections.deque = collections.deque()
    try:
        for call in calls:
            running.append(asyncio.ensure_future(call))
            if len(running) >= window:
                yield await _take(running, in_order)
        while running:
            yield await _take(running, in_order)
    finally:
        # Left early (an error, a break, a callback that raised): the rest are not wanted.
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


async def _take(running: collections.deque, in_order: bool) -> Any:
    """Remove and return (or raise) the result of the first task, or of whichever finishes first."""
    if in_order or len(running) == 1:
        task = running[0]
    else:
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        task = next(t for t in running if t.done())  # the earliest sent of those done
    running.remove(task)
    return await task
