"""``AsyncClient``: the HTTP ``Client`` for asyncio programs (aiohttp), with several requests
in flight; what it returns is an ``AsyncPost``, as ``AsyncFlow.post`` does.

Example
-------
>>> async with AsyncClient(port=12345) as c:
...     async for resp in c.post('/search', Document(text='hello')):
...         print(resp.docs[0].matches)
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
from functools import partialmethod
from typing import Any, AsyncIterator, Awaitable, Callable

from ..control.inputs import abatches
from ..response import Response
from .apost import AsyncPost, bar_total
from .client import (PostOptions, _check_client_args, broken_answer, cut_off, http_url, no_answer, not_listening,
                     post_options, response_from, unreachable)
from .deps import import_aiohttp
from .wire import encode_request

__all__ = ['AsyncClient']


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
        return http_url(self.host, self.port)

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
        return AsyncPost(source, on, (on_done, on_error, on_always), continue_on_error, bar_total(inputs, show_progress))

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
                body = encode_request(batch, on, opts.parameters, opts.target_executor, self.array_format,
                                      opts.timeout)
                status, data = await self._exchange(aiohttp, session, body, opts.timeout)
                return response_from(status, data, self.url, i), len(batch)

            async def calls() -> AsyncIterator[Awaitable]:
                # (read only as the window has room: an async generator input is paced by it)
                async with contextlib.aclosing(abatches(inputs, request_size)) as batches:
                    i = 0
                    async for batch in batches:
                        yield one(i, batch)
                        i += 1

            # aclosing: leaving early cancels the requests in flight before the session
            # closes, then closes the inputs (an async generator's aclose).
            async with contextlib.aclosing(calls()) as requests, \
                    contextlib.aclosing(_in_flight(requests, opts.prefetch, in_order)) as responses:
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


async def _in_flight(calls: AsyncIterator[Awaitable], window: int, in_order: bool) -> AsyncIterator[Any]:
    """The results of ``calls``, at most ``window`` of them running at once: in the order
    of ``calls`` when ``in_order`` (or ``window`` is 1), else as they finish. The next call
    is taken only when a result is taken, so a slow consumer holds the sending back. An
    Exception from ``calls`` (the input broke) is raised once the calls already running are
    answered, as ``Flow.post`` does: what the callbacks saw is what reached the server."""
    running: collections.deque = collections.deque()
    broken: Exception | None = None
    it = calls.__aiter__()
    try:
        while True:
            try:
                call = await it.__anext__()
            except StopAsyncIteration:
                break
            except Exception as exc:  # noqa: BLE001 - raised below, after the answers
                broken = exc
                break
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
    if broken is not None:
        raise broken


async def _take(running: collections.deque, in_order: bool) -> Any:
    """Remove and return (or raise) the result of the first task, or of whichever finishes first."""
    if in_order or len(running) == 1:
        task = running[0]
    else:
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        task = next(t for t in running if t.done())  # the earliest sent of those done
    running.remove(task)
    return await task
