"""``Client``: the ``Flow.post`` API against a Flow served by another process over HTTP.

Only the standard library (``http.client``) is used, so a script that queries a Flow needs
nothing beyond this package. Requests go one after another over one kept-alive connection.

What both clients share lives here too, so that ``AsyncClient`` (in ``aflow``) checks its
arguments, runs callbacks and words its errors exactly as ``Client`` does: ``post_options``,
``settle``, ``response_from`` and the connection errors (``not_listening`` ...). The checks
of each argument are ``Flow.post``'s own (``control.post_args``): a bad argument is refused
by the clients as by the Flow.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from functools import partialmethod
from typing import Any, Callable, Iterator, NamedTuple

from ..control.inputs import batches
from ..control.post import run_callback
from ..control.post_args import (check_callbacks, check_extra, check_on, check_parameters, check_prefetch,
                                 check_request_size, check_target_executor, check_timeout)
from ..errors import ExecutorError
from ..response import Response
from .wire import ARRAY_FORMATS, WireError, decode_response, encode_request

__all__ = ['Client', 'ServerError', 'PostOptions', 'post_options', 'settle', 'response_from',
           'not_listening', 'cut_off', 'no_answer', 'broken_answer', 'unreachable']

logger = logging.getLogger('runtime')


class ServerError(RuntimeError):
    """The gateway refused or failed a request outside any executor (a bad request, a body
    too large, the Flow closing). ``status`` is the HTTP code, ``message`` the server's words.

    Example
    -------
    >>> try:
    ...     client.post('/search', docs)
    ... except ServerError as e:
    ...     print(e.status, e.message)
    """

    def __init__(self, status: int, message: str, url: str = '') -> None:
        self.status, self.message, self.url = status, message, url
        super().__init__(f'the gateway at {url} answered {status}: {message}')

    def __reduce__(self):
        return type(self), (self.status, self.message, self.url)


class PostOptions(NamedTuple):
    """The checked arguments of one client post that shape its requests."""

    parameters: dict
    target_executor: str | None
    #: Seconds to wait for each answer (the post's ``timeout``, else the client's).
    timeout: float | None
    #: Requests in flight at most.
    prefetch: int


def post_options(client: Any, on: Any, request_size: Any, parameters: Any, target_executor: Any,
                 callbacks: tuple, timeout: Any, prefetch: Any, extra: dict, pipelines: bool) -> PostOptions:
    """Check the arguments of ``Client.post`` / ``AsyncClient.post`` (``client`` is the
    caller) with ``Flow.post``'s own checks, in its order, so that a bad argument is refused
    as ``Flow.post`` refuses it; every argument of ``Flow.post`` is taken or refused here,
    none dropped. ``callbacks``: ``(on_done, on_error, on_always)``. ``pipelines``: whether
    this client can have more than one request in flight.

    >>> post_options(Client(port=1), '/search', 10, None, None, (None, None, None), 5.0, None, {}, pipelines=False)
    PostOptions(parameters={}, target_executor=None, timeout=5.0, prefetch=1)
    """
    name = type(client).__name__
    if extra:
        target_executor = check_extra(f'{name}.post', extra, target_executor)
    check_target_executor(target_executor)  # here, not as the gateway's 422 after sending
    timeout = client.timeout if timeout is None else _check_timeout(timeout)
    check_on(on)
    check_request_size(request_size)
    if prefetch is None:
        prefetch = 1
    elif check_prefetch(prefetch) > 1 and not pipelines:  # this client's own rule
        raise ValueError(f'prefetch={prefetch}: {name} sends one request at a time (each after the answer to '
                         f'the last), so it can only honour prefetch=1; for requests in flight use '
                         f'AsyncClient(port={client.port}).post(..., prefetch={prefetch}), or send fewer, larger '
                         f'requests (request_size=...)')
    check_callbacks(*callbacks)
    return PostOptions(check_parameters(parameters), target_executor, timeout, prefetch)


# -- what both clients say when the connection fails (one wording, one place) ------------------
def not_listening(url: str, port: int) -> ConnectionError:
    """Nothing accepts connections at ``url``.

    >>> raise not_listening('http://127.0.0.1:1', 1)
    Traceback (most recent call last):
    ConnectionError: nothing listens on http://127.0.0.1:1: start the Flow there with ...
    """
    return ConnectionError(f'nothing listens on {url}: start the Flow there with Flow(port_expose={port}, '
                           f'protocol="http") and keep it open (f.block()), or check host and port')


def cut_off(url: str, exc: BaseException) -> ConnectionError:
    """The gateway closed the connection before it answered."""
    return ConnectionError(f'the gateway at {url} closed the connection without an answer '
                           f'({type(exc).__name__}); did the serving process stop?')


def no_answer(url: str, timeout: float | None) -> TimeoutError:
    """No answer within the timeout; the request may still run on the server."""
    return TimeoutError(f'no answer from {url} within {timeout} s (the request may still run there); give a '
                        f'larger timeout (post(timeout=...) or Client(timeout=...)), or send fewer documents per '
                        f'request (request_size=...)')


def broken_answer(url: str, exc: BaseException) -> ConnectionError:
    """An answer cut short or not HTTP."""
    return ConnectionError(f'the gateway at {url} sent a broken answer ({type(exc).__name__}: {exc}); did the '
                           f'serving process stop?')


def unreachable(url: str, exc: BaseException) -> ConnectionError:
    """Any other failure to connect (no route, unknown host ...)."""
    return ConnectionError(f'cannot reach {url}: {exc}')


def settle(resp: Response, on_done: Callable | None, on_error: Callable | None, on_always: Callable | None,
           continue_on_error: bool) -> BaseException | None:
    """Run the callbacks of one response as ``Flow.post`` does; returns the error to raise
    at the end when the request failed and nobody handles it. With ``continue_on_error``
    a callback that raises is logged and the post goes on (``run_callback``).

    >>> error = settle(resp, on_done=print, on_error=None, on_always=None, continue_on_error=False)  # doctest: +SKIP
    """
    error = None
    if resp.is_error:
        if on_error is not None:
            run_callback(on_error, 'on_error', resp, continue_on_error)
        elif continue_on_error:
            logger.error('request %s failed: %s', resp.request_id, resp.status.description)
        else:
            error = resp.status.error or ExecutorError(resp.status.exception.executor, resp.status.exception.name,
                                                       resp.status.description, '')
    elif on_done is not None:
        run_callback(on_done, 'on_done', resp, continue_on_error)
    if on_always is not None:
        run_callback(on_always, 'on_always', resp, continue_on_error)
    return error


class Client:
    """Talks to a Flow served with ``Flow(port_expose=..., protocol='http')``.

    Parameters
    ----------
    host : str
        Where the Flow runs (default 127.0.0.1).
    port : int
        Its ``port_expose`` (``port_expose=`` is accepted too).
    protocol : 'http'
        The only one served.
    timeout : float, optional
        Seconds to wait for each HTTP answer (default: as long as it takes).
    array_format : 'base64' or 'list'
        How arrays travel: base64 of the raw bytes (exact dtypes, compact) or JSON lists.
    asyncio : bool
        True returns an ``AsyncClient`` instead (Jina 2's switch).

    Example
    -------
    >>> c = Client(port=12345)
    >>> c.post('/search', Document(text='hello'), on_done=lambda r: print(r.docs[0].matches))
    """

    def __new__(cls, *args: Any, asyncio: bool = False, **kwargs: Any) -> Any:
        if asyncio and cls is Client:
            from .aflow import AsyncClient
            return AsyncClient(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, host: str = '127.0.0.1', port: int | None = None, protocol: str = 'http',
                 timeout: float | None = None, array_format: str = 'base64', asyncio: bool = False,
                 port_expose: int | None = None) -> None:
        self.host, self.port, self.timeout, self.array_format = _check_client_args(
            host, port, protocol, timeout, array_format, port_expose)
        self._conn: http.client.HTTPConnection | None = None
        # One exchange at a time on the kept-alive connection: a Client shared by threads
        # (a web app's module-level one) takes turns, as Flow.post's callers do.
        self._lock = threading.RLock()

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    # -- one HTTP exchange ---------------------------------------------------------------------
    def _exchange(self, method: str, path: str, body: bytes | None = None,
                  timeout: float | None = None) -> tuple[int, bytes]:
        """Send one request, return (status, body), waiting at most ``timeout`` seconds for
        each step (None: as long as it takes); reconnects once when a kept-alive connection
        turns out closed before anything was answered."""
        with self._lock:
            return self._exchange_locked(method, path, body, timeout)

    def _exchange_locked(self, method: str, path: str, body: bytes | None, timeout: float | None) -> tuple[int, bytes]:
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            conn = self._conn
            if reused and conn.timeout != timeout:  # this post's timeout, on the kept-alive socket too
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            answering = False  # past sending: the server may have run the request
            try:
                try:
                    conn.request(method, path, body=body,
                                 headers={'Content-Type': 'application/json', 'Accept': 'application/json'})
                except (BrokenPipeError, ConnectionResetError):
                    if not reused or attempt:
                        pass  # the server may have answered before it stopped reading (e.g. 413)
                    else:
                        raise
                answering = True
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, data
            except ConnectionRefusedError:
                self.close()
                raise not_listening(self.url, self.port) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                idle_closed = not answering or isinstance(exc, http.client.RemoteDisconnected)
                if reused and attempt == 0 and idle_closed:
                    # The server had closed the idle connection: the request never arrived.
                    # (A reset while answering may come after it ran: an /index is not sent twice.)
                    continue
                raise cut_off(self.url, exc) from None
            except socket.timeout:
                self.close()  # a late answer must not be read as the next request's
                raise no_answer(self.url, timeout) from None
            except http.client.HTTPException as exc:  # a broken answer (cut short, not HTTP)
                self.close()
                raise broken_answer(self.url, exc) from None
            except OSError as exc:
                self.close()
                raise unreachable(self.url, exc) from None
            except BaseException:
                # Ctrl-C (a notebook's interrupt) mid-exchange: the connection is half-way
                # through a request; the next post must start on a new one.
                self.close()
                raise
        raise AssertionError('unreachable')

    def _send(self, endpoint: str, docs: Any, opts: PostOptions, index: int) -> Response:
        body = encode_request(docs, endpoint, opts.parameters, opts.target_executor, self.array_format, opts.timeout)
        status, data = self._exchange('POST', '/post', body, opts.timeout)
        return response_from(status, data, self.url, index)

    def status(self) -> dict:
        """``GET /status`` of the gateway: ``status`` is ``'ok'`` while every executor can
        serve, ``'unavailable'`` once one cannot (``down`` then lists them, each
        ``{'executor', 'error'}``); ``requests`` has the counters.

        >>> Client(port=12345).status()['status']
        'ok'
        """
        status, data = self._exchange('GET', '/status', timeout=self.timeout)
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        # 503 with a status body is an answer too: the Flow runs, an executor in it is down.
        if status in (200, 503) and isinstance(body, dict) and 'status' in body:
            return body
        raise ServerError(status, data.decode(errors='replace')[:2000], self.url)

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> 'Client':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- the Flow.post API -------------------------------------------------------------------------
    def post(self, on: str, inputs: Any = None, on_done: Callable | None = None,
             on_error: Callable | None = None, on_always: Callable | None = None,
             parameters: dict | None = None, target_executor: str | None = None,
             request_size: int = 100, show_progress: bool = False, return_results: bool = False,
             continue_on_error: bool = False, *, results_in_order: bool = False, prefetch: int | None = None,
             timeout: float | None = None, **kwargs: Any) -> list | None:
        """Send ``inputs`` to the endpoint ``on`` of the served Flow, ``request_size``
        documents per request, one request at a time. The arguments of ``Flow.post`` (and
        Jina 2's ``target_peapod``); the callbacks run in this thread and get ``Response``
        objects. Any other argument is refused with a TypeError.

        Parameters
        ----------
        return_results : bool
            Return the list of Responses (else None), as ``Flow.post`` does.
        results_in_order : bool
            Taken for ``Flow.post``'s sake: one request at a time, the responses always come
            in input order.
        prefetch : int, optional
            Requests in flight: this client sends one at a time, so only 1 (or None) is
            taken; a larger value is refused (``AsyncClient`` honours it).
        timeout : float, optional
            Seconds to wait for each answer, for this post (default: the Client's
            ``timeout``); a slower one raises TimeoutError. The gateway is told it too: the
            Flow fails the request after that long, as ``Flow.post(timeout=...)`` does (a
            hung handler is ended there when its executor has restarts left), so the posts
            after it do not wait behind it.
        continue_on_error : bool
            Log (logger 'runtime', ERROR) and go on instead of stopping: a failed request
            without ``on_error``, and an exception a callback raises (with its traceback).

        Raises
        ------
        ExecutorError
            A handler raised and no ``on_error`` was given (the executor's name and its
            remote traceback come from the server).
        ServerError
            The gateway refused the request (bad input, body too large, Flow closing).
        ConnectionError
            Nothing listens at host:port, or the connection broke.
        TimeoutError
            No answer within ``timeout`` seconds.

        Example
        -------
        >>> Client(port=12345).post('/index', (Document(text=t) for t in texts), request_size=50)
        >>> Client(port=12345).search(Document(text='q'), return_results=True, timeout=5)[0].docs[0].matches
        """
        opts = post_options(self, on, request_size, parameters, target_executor,
                            (on_done, on_error, on_always), timeout, prefetch, kwargs, pipelines=False)
        results: list | None = [] if return_results else None
        progress = None
        if show_progress:
            from ..control.progress import Progress
            total = len(inputs) if hasattr(inputs, '__len__') and not isinstance(inputs, (str, bytes)) else None
            progress = Progress(on, total)
        try:
            for resp, ndocs in self._responses(on, inputs, opts, request_size):
                if progress is not None:
                    progress.update(ndocs, resp.is_error, len(resp.docs))
                error = settle(resp, on_done, on_error, on_always, continue_on_error)
                if error is not None:
                    raise error
                if results is not None:
                    results.append(resp)
        finally:
            if progress is not None:
                progress.close()
        return results

    def _responses(self, on: str, inputs: Any, opts: PostOptions,
                   request_size: int) -> Iterator[tuple[Response, int]]:
        """Each request's Response, and how many documents it sent: the progress bar counts
        the input (a failed request answers with the documents as they entered the failing
        step, and a filtering executor with fewer)."""
        for i, batch in enumerate(batches(inputs, request_size)):
            yield self._send(on, batch, opts, i), len(batch)

    index = partialmethod(post, '/index')
    search = partialmethod(post, '/search')
    update = partialmethod(post, '/update')
    delete = partialmethod(post, '/delete')

    def __repr__(self) -> str:
        return f'<Client {self.url}>'


def response_from(status: int, data: bytes, url: str, index: int = 0) -> Response:
    """A Response from the gateway's answer, or ServerError for a refusal.

    >>> response_from(422, b'{"error": {"code": 422, "message": "bad"}}', 'http://x')
    Traceback (most recent call last):
    ServerError: the gateway at http://x answered 422: bad
    """
    try:
        obj = json.loads(data)
    except ValueError:
        raise ServerError(status, data.decode(errors='replace')[:2000] or '(empty answer)', url) from None
    if isinstance(obj, dict) and 'header' in obj and status in (200, 500):
        try:
            return decode_response(obj, index)
        except WireError as exc:
            raise ServerError(502, str(exc), url) from None
    message = obj.get('error', {}).get('message') if isinstance(obj, dict) and isinstance(obj.get('error'), dict) \
        else None
    raise ServerError(status, message or str(obj)[:2000], url)


def http_url(host: str, port: int | None) -> str:
    """``http://host:port``, an IPv6 address in brackets (``http://[::1]:8080``)."""
    return f'http://[{host}]:{port}' if ':' in host and not host.startswith('[') else f'http://{host}:{port}'


def _check_client_args(host: Any, port: Any, protocol: Any, timeout: Any, array_format: Any,
                       port_expose: Any) -> tuple:
    if port is None:
        port = port_expose
    elif port_expose is not None and port_expose != port:
        raise ValueError(f'port={port!r} and port_expose={port_expose!r} differ; give one')
    if type(port) is not int or not 0 < port <= 65535:
        raise ValueError(f'Client needs the port the Flow serves on (its port_expose), an int from 1 to 65535; '
                         f'got {port!r}')
    if not isinstance(host, str) or not host:
        raise TypeError(f"host must be a host name or address such as '127.0.0.1', got {host!r}")
    if not isinstance(protocol, str) or protocol.lower() != 'http':
        raise ValueError(f"protocol={protocol!r} is not served; the protocols are: 'http'")
    timeout = _check_timeout(timeout)
    if array_format not in ARRAY_FORMATS:
        raise ValueError(f"array_format must be 'base64' (exact, compact) or 'list' (JSON lists), got {array_format!r}")
    return host, port, timeout, array_format


#: Sockets refuse longer timeouts (OverflowError); one this long means no limit (None).
_NO_LIMIT = 2.0 ** 31


def _check_timeout(timeout: Any) -> float | None:
    """``check_timeout``, and None (no limit) for a timeout sockets cannot take."""
    timeout = check_timeout(timeout)
    return None if timeout is None or timeout >= _NO_LIMIT else timeout
