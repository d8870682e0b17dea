"""One post of an ``AsyncFlow`` or ``AsyncClient``: the ``AsyncPost`` the caller iterates or
awaits, and how its responses and an async generator's documents cross between the event
loop and the thread that runs the Flow (``Handover``, ``AsyncInputs``).

Example
-------
>>> async for resp in f.post('/index', docs):   # f: an AsyncFlow; the post is an AsyncPost
...     print(resp.docs)
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import threading
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Generator, Iterator

from ..control.inputs import atake, is_async_input
from ..response import Response
from .client import settle

if TYPE_CHECKING:
    from .aflow import AsyncFlow

__all__ = ['AsyncPost', 'AsyncInputs', 'Handover', 'Stopped', 'bar_total', 'in_thread',
           'input_cancelled', 'signals_seen', 'READ_POLL_S', 'SIGNAL_TICK_S']


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


def bar_total(inputs: Any, show_progress: bool) -> Any:
    """What ``AsyncPost``'s progress bar counts to: False (no bar), the input's length, or
    None (unknown: a generator).

    >>> bar_total([1, 2], True), bar_total(iter([1]), True), bar_total([1], False)
    (2, None, False)
    """
    if not show_progress:
        return False
    return len(inputs) if hasattr(inputs, '__len__') and not isinstance(inputs, (str, bytes)) else None


class Stopped(BaseException):
    """Raised in the Flow's thread, from a hand-over or an input read, to end a post (see
    ``Handover``). Not an Exception: ``Flow.post`` keeps an input's Exception to raise once
    the requests in flight settle, and this must end the post at once."""


class Handover:
    """What one post's responses cross on their way from the Flow's thread to the loop.

    ``room`` is how many more may wait unread (it goes below zero while a post nested in
    this one runs, see ``Turns.hand_over``). ``gone``: the consumer left (a break, a cancel),
    so the post ends silently; ``closed``: ``close()`` stopped it, so its consumer gets
    FlowNotStartedError. Both are read and written under the AsyncFlow's condition.
    ``answered``: responses handed over so far (in the Flow's thread only).
    """

    __slots__ = ('room', 'gone', 'closed', 'answered')

    def __init__(self, room: int) -> None:
        self.room, self.gone, self.closed = room, False, False
        self.answered = 0

    @property
    def stopped(self) -> bool:
        return self.gone or self.closed


#: How often the main thread's event loop wakes while it waits on the Flow's threads.
SIGNAL_TICK_S = 0.25


@contextlib.contextmanager
def signals_seen(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """While the caller's loop waits on the Flow's threads, wake it every
    ``SIGNAL_TICK_S``, if it runs in the main thread.

    Why: the kernel hands a process's Ctrl-C to any thread that does not block it, and
    CPython runs the Python handler (``asyncio.run`` cancels the main task with it) only
    once the main thread runs bytecode again. Delivered to the Flow's thread (a post
    waiting on a stuck handler), it never woke a loop waiting in select with nothing else
    to do: ``asyncio.run`` set no wakeup fd, and the program ignored Ctrl-C for good.

    Example
    -------
    >>> with signals_seen(asyncio.get_running_loop()):   # doctest: +SKIP
    ...     await asyncio.wrap_future(started)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handle = None

    def tick() -> None:
        nonlocal handle
        handle = loop.call_later(SIGNAL_TICK_S, tick)
    tick()
    try:
        yield
    finally:
        handle.cancel()


def in_thread(fn: Callable[[], Any], name: str) -> concurrent.futures.Future:
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


#: While an async generator input is awaited and requests of its post are out, the Flow's
#: thread looks for their replies this often (a read that ends wakes it at once).
READ_POLL_S = 0.005


def input_cancelled(task: asyncio.Task) -> RuntimeError:
    """The error a post raises when the task reading its async generator was cancelled
    from inside (something the generator awaited was cancelled), the CancelledError with
    the generator's traceback as its cause. An Exception, as what a generator raises is:
    raised once the requests already sent have settled.

    >>> input_cancelled(task)  # doctest: +SKIP
    RuntimeError('the async generator given as inputs was cancelled while it was being read ...')
    """
    try:
        task.result()
    except asyncio.CancelledError as exc:
        cause: BaseException | None = exc
    else:  # pragma: no cover - only called for a cancelled task
        cause = None
    error = RuntimeError('the async generator given as inputs was cancelled while it was being read: something it '
                         'awaited was cancelled (see the CancelledError above), or its event loop is ending; the '
                         'requests sent before it settled. To end the input there, catch asyncio.CancelledError '
                         'in the generator and return; to fail the post saying why, raise an exception of your own')
    error.__cause__ = cause
    return error


class AsyncInputs:
    """An async generator's (or async iterable's) documents, for a post that runs in the
    Flow's thread: iterated there, each request's worth is read on the event loop (in a
    task, with ``atake``) and handed back. The next read is asked for only when the post
    reads its input, so the window paces an async generator as it paces a synchronous one;
    the Flow's thread waits for a read, never the loop, and meanwhile hands on the replies
    to requests already sent (a stream's documents may come slowly, or only once earlier
    answers are back). ``aclose`` (on the loop, once the post is over) stops a read under
    way and closes the generator.

    Attributes touched on the loop only: ``_it``, ``_task``, ``_closed``. ``_source`` is set
    before the first read is asked for (in ``__init__``, or by ``reading`` in the Flow's
    thread).
    """

    def __init__(self, flow: 'AsyncFlow', handover: Handover, size: int, source: Any = None) -> None:
        self._flow, self._handover, self._size = flow, handover, size
        self._loop = asyncio.get_running_loop()
        # The reads run in the poster's context (contextvars: a request id, a tracing span).
        self._context = contextvars.copy_context()
        self._source = source
        self._it: AsyncIterator | None = None
        self._task: asyncio.Task | None = None
        self._closed = False
        self._sent = 0  # requests read so far (Flow's thread): all sent once the next is asked for

    # -- in the Flow's thread --------------------------------------------------------------
    def reading(self, make: Callable[[], Any]) -> Callable[[], Any]:
        """``make`` (a function given as inputs) as Flow.post calls it: what it returns,
        unless that is an async generator, which this then reads."""
        def call() -> Any:
            made = make()
            if not is_async_input(made):
                return made
            self._source = made
            return self
        return call

    def __iter__(self) -> Iterator[Any]:
        while True:
            docs, more = self._ask()
            self._sent += bool(docs)
            yield from docs
            if not more:
                return

    def _ask(self) -> tuple[list, bool]:
        """The next request's worth of documents (or the generator's exception), read on
        the loop; Stopped as soon as the post is stopped (a close, its consumer gone),
        which the loop may be busy doing: it must not wait for a read. Meanwhile the posts
        queued run (the generator may await one: see ``Turns.wait``)."""
        turns, handover, router = self._flow._turns, self._handover, self._flow._flow._rt
        # Responses handed over while a post ran nested in this one may have used up its
        # room: no more input is read until the consumer makes some (see Turns.hand_over).
        turns.until(handover, lambda: handover.room > 0)
        box: concurrent.futures.Future = concurrent.futures.Future()

        def wake(_: Any) -> None:
            with turns.cond:
                turns.cond.notify_all()
        box.add_done_callback(wake)
        try:
            self._loop.call_soon_threadsafe(self._read, box)
        except RuntimeError:  # the loop is closed: nobody reads this post any more
            raise Stopped() from None
        # (pumped meanwhile: the wait is not the caller's time, see caller_clock)
        with contextlib.nullcontext() if router is None else router.caller.serviced():
            while True:
                out = self._sent > handover.answered  # (each request gets exactly one response)
                turns.wait(handover, box.done, READ_POLL_S if out else None)
                if router is None or router.closing:
                    raise Stopped()
                if box.done():
                    return box.result()
                # The post itself pumps only once its input is read: its replies are handed
                # on here meanwhile, as a nested post's pumping does for the post it is nested
                # in, and its requests time out here as they do in its own loop.
                router.pump(0)
                router.expire()  # (every post this thread holds: they wait, and cannot)

    # -- on the loop -----------------------------------------------------------------------
    def _read(self, box: concurrent.futures.Future) -> None:
        if self._closed:
            box.cancel()  # (the post is over: its thread has stopped waiting)
            return
        task = self._task = self._loop.create_task(self._take(), context=self._context)

        def done(t: asyncio.Task) -> None:
            if box.done():
                return
            if t.cancelled():
                if self._closed:
                    box.cancel()  # (by aclose: the post is over, its thread no longer waits)
                else:
                    box.set_exception(input_cancelled(t))
            elif t.exception() is not None:
                box.set_exception(t.exception())
            else:
                box.set_result(t.result())
        task.add_done_callback(done)

    async def _take(self) -> tuple[list, bool]:
        if self._it is None:
            self._it = self._source.__aiter__()
        return await atake(self._it, self._size)

    async def aclose(self) -> None:
        """Stop a read under way (cancelled where the generator awaits) and close the generator."""
        self._closed = True
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        it = self._it
        if it is None and inspect.isasyncgen(self._source):
            it = self._source  # (never read: closed all the same, as the caller may check)
        aclose = getattr(it, 'aclose', None)
        if aclose is not None:
            await aclose()
