"""The HTTP gateway: serves a running Flow to other processes, JSON in Jina 2's REST shape.

``Flow(port_expose=12345, protocol='http')`` starts one when the Flow starts; ``f.block()``
serves until Ctrl-C or SIGTERM. Routes:

- ``POST /post`` with ``{"data": [...], "execEndpoint": "/search", "parameters": {...},
  "targetExecutor": ...}``; ``POST /index``, ``/search``, ``/update``, ``/delete`` (the
  endpoint is the URL's), and Jina 2's ``PUT /update`` and ``DELETE /delete``;
- ``GET /status``: 200 ``{"status": "ok", ...}`` and counters while every executor can
  serve; 503 ``{"status": "unavailable", "down": [...]}`` once one has no process left.

Why aiohttp: it is one pure-asyncio package (no ASGI server + framework pair to install,
unlike FastAPI + uvicorn, which Jina 2 used), it has a mature HTTP/1.1 server with
keep-alive, request size limits and graceful shutdown, and its client side gives
``AsyncClient`` for free. The server runs its own event loop in a thread of the Flow's
process; ``Flow.post`` (which blocks while it drives the router) runs in a thread pool, so
the event loop never waits on the router and takes any number of concurrent clients.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import threading
import time
import uuid
from typing import Any

from ..errors import BadInputError, FlowNotStartedError, WorkerDiedError
from ..response import Response, Status
from .deps import import_aiohttp
from .wire import WireError, decode_request, encode_response, error_body

__all__ = ['check_options', 'Gateway', 'block', 'down_executors', 'PROTOCOLS', 'DEFAULT_HOST', 'DEFAULT_MAX_BODY_BYTES']

logger = logging.getLogger('runtime')

PROTOCOLS = ('http',)
DEFAULT_HOST = '127.0.0.1'
DEFAULT_MAX_BODY_BYTES = 64 << 20
#: Threads that decode, post and encode; the posts themselves take turns (Flow.post runs one at a time).
_WORKERS = 4
ENDPOINTS = ('/index', '/search', '/update', '/delete')
#: Jina 2's methods of its CRUD routes, taken besides POST.
JINA2_METHODS = {'/update': 'PUT', '/delete': 'DELETE'}
ROUTES = ', '.join(['POST /post', *(f'POST {e}' for e in ENDPOINTS),
                    *(f'{m} {e}' for e, m in JINA2_METHODS.items()), 'GET /status'])


def check_options(port_expose: Any = None, port: Any = None, protocol: Any = 'http', host: Any = DEFAULT_HOST,
                  max_body_bytes: Any = DEFAULT_MAX_BODY_BYTES) -> dict:
    """Check the serving arguments of ``Flow(...)``; returns the keyword arguments of
    ``Gateway``. ``port`` is another name for ``port_expose``; 0 lets the system pick a
    free port (logged when the gateway starts).

    >>> check_options(port_expose=12345, protocol='HTTP')
    {'port': 12345, 'protocol': 'http', 'host': '127.0.0.1', 'max_body_bytes': 67108864}
    """
    if port_expose is not None and port is not None and port_expose != port:
        raise ValueError(f'port_expose={port_expose!r} and port={port!r} differ; they name the same thing, give one')
    chosen = port_expose if port_expose is not None else port
    if chosen is None:
        chosen = 0
    if type(chosen) is not int or not 0 <= chosen <= 65535:
        raise ValueError(f'port_expose must be a TCP port number (an int from 1 to 65535, or 0 for any free '
                         f'port), got {chosen!r}')
    if not isinstance(protocol, str) or protocol.lower() not in PROTOCOLS:
        extra = ''
        if isinstance(protocol, str) and protocol.lower() in ('grpc', 'websocket'):
            extra = f' ({protocol} is a Jina 2 protocol this runtime does not serve)'
        raise ValueError(f'protocol={protocol!r} is not served{extra}; the protocols are: '
                         f'{", ".join(repr(p) for p in PROTOCOLS)} (JSON over HTTP, Jina 2\'s REST shape)')
    if not isinstance(host, str) or not host:
        raise TypeError(f"host must be the address to listen on, e.g. '127.0.0.1' (default) or '0.0.0.0', got "
                        f'{host!r}')
    if type(max_body_bytes) is not int or max_body_bytes < 1024:
        raise ValueError(f'max_body_bytes must be an int of at least 1024 (bytes of one request body), got '
                         f'{max_body_bytes!r}')
    return {'port': chosen, 'protocol': protocol.lower(), 'host': host, 'max_body_bytes': max_body_bytes}


class Gateway:
    """An HTTP server on a started Flow, in a thread of its own.

    Parameters
    ----------
    flow : Flow
        A started Flow; requests are fed to it with ``flow.post``.
    port : int
        TCP port (0: any free one; ``gateway.port`` says which).
    host : str
        Address to bind: 127.0.0.1 (default) serves this machine only.
    max_body_bytes : int
        Larger request bodies are refused with 413.

    Example
    -------
    >>> gw = Gateway(flow, port=12345); gw.start()  # doctest: +SKIP
    >>> gw.close()  # doctest: +SKIP
    """

    def __init__(self, flow: Any, port: int = 0, host: str = DEFAULT_HOST, protocol: str = 'http',
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.flow, self.host, self.port, self.max_body_bytes = flow, host, port, max_body_bytes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # Flow.post drives the router from the calling thread and is not re-entrant: one
        # post at a time, whatever the number of HTTP clients.
        self.counts = {'served': 0, 'failed': 0, 'refused': 0, 'inflight': 0}
        self._counts_lock = threading.Lock()
        self._started_at = 0.0

    def _count(self, key: str, n: int = 1) -> None:
        with self._counts_lock:
            self.counts[key] += n

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        from .client import http_url
        return http_url(self.host, self.port)

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> 'Gateway':
        """Bind and serve; returns once the port accepts connections (raises if it cannot bind)."""
        import_aiohttp('the HTTP gateway (Flow(port_expose=..., protocol="http"))')
        self._pool = concurrent.futures.ThreadPoolExecutor(_WORKERS, thread_name_prefix='shmflow-gateway-post')
        ready: concurrent.futures.Future = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name='shmflow-gateway', daemon=True)
        self._thread.start()
        try:
            ready.result()
        except BaseException:
            self._thread.join()
            self._pool.shutdown(wait=False)
            raise
        self._started_at = time.monotonic()
        logger.info('serving %r on %s (%s)', self.flow, self.url, ROUTES)
        return self

    def _serve(self, ready: concurrent.futures.Future) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._bind())
        except BaseException as exc:
            if isinstance(exc, OSError):
                exc = OSError(exc.errno, f'the gateway cannot listen on {self.host}:{self.port}: {exc.strerror}; '
                                         f'pick another port_expose (or 0 for any free port)')
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _bind(self) -> None:
        from aiohttp import web
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[self._errors_as_json])
        app.router.add_post('/post', self._handle_post)
        for ep in ENDPOINTS:
            app.router.add_post(ep, self._handle_post)
        for ep, method in JINA2_METHODS.items():
            app.router.add_route(method, ep, self._handle_post)
        app.router.add_get('/status', self._handle_status)
        # shutdown_timeout: how long close() lets requests in progress finish.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    def close(self) -> None:
        """Stop listening, let the requests in progress finish, stop the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=30)
        except Exception:  # the server is going away either way; say why it was not clean
            logger.warning('the gateway on %s did not shut down cleanly', self.url, exc_info=True)
        # Posts already running finish before the Flow under them closes.
        self._pool.shutdown(wait=True, cancel_futures=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._loop = self._thread = None

    # -- handlers ----------------------------------------------------------------------------
    @staticmethod
    def _json(body: bytes, status: int = 200) -> Any:
        from aiohttp import web
        return web.Response(body=body, status=status, content_type='application/json')

    async def _handle_post(self, request: Any) -> Any:
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return self._refuse(413, f'the request body has {request.content_length} bytes, more than the '
                                     f'{self.max_body_bytes} this gateway takes (Flow(max_body_bytes=...)); '
                                     f'send fewer documents per request (request_size)')
        body = await request.read()  # raises 413 past client_max_size when the length was not announced
        endpoint = None if request.path == '/post' else request.path
        loop = asyncio.get_running_loop()
        self._count('inflight')
        try:
            status, payload = await loop.run_in_executor(self._pool, self._serve_one, body, endpoint)
        except RuntimeError:  # the pool was shut down: the Flow is closing
            status, payload = 503, error_body(503, 'the Flow is closing; no new requests are taken')
        finally:
            self._count('inflight', -1)
        return self._json(payload, status)

    def _serve_one(self, body: bytes, endpoint: str | None) -> tuple[int, bytes]:
        """Decode, post, encode: runs in the pool, never on the event loop."""
        try:
            req = decode_request(body, endpoint)
        except WireError as exc:
            self._count('refused')
            return exc.status, error_body(exc.status, str(exc))
        except Exception as exc:  # a decoding case the checks above missed: still an answer in JSON
            logger.error('the gateway could not decode a request', exc_info=True)
            self._count('refused')
            return 400, error_body(400, f'the request could not be read: {type(exc).__name__}: {exc}')
        got: list = []
        try:
            self.flow.post(req.endpoint, req.docs, on_done=got.append, on_error=got.append,
                           parameters=req.parameters, target_executor=req.target_executor,
                           request_size=max(1, len(req.docs)), show_progress=False, return_results=False)
            # (explicit: a Flow(show_progress=True) must not draw a bar per HTTP request, nor
            # a Flow(return_results=True) keep every answer the callbacks already took)
        except (BadInputError, TypeError, ValueError) as exc:
            self._count('refused')
            return 422, error_body(422, str(exc))
        except FlowNotStartedError as exc:
            # (its own words: 'the Flow was closed while this post was running' tells a
            # client that a part of an /index may have run, 'not started' that none did)
            return 503, error_body(503, str(exc))
        except WorkerDiedError as exc:
            # An executor with no process left (the router logged its death): the answer
            # Flow.post's callbacks get when an executor dies under a request, so the Client
            # raises the WorkerDiedError that Flow.post raises. No traceback of ours: it
            # would only show where the gateway called the Flow.
            got = [Response(uuid.uuid4().hex, req.docs, req.endpoint, req.parameters,
                            Status.from_error(exc, exc.executor), [])]
        except Exception as exc:
            logger.error('the gateway failed a request to %s', req.endpoint, exc_info=True)
            self._count('failed')
            return 500, error_body(500, f'the Flow failed the request: {type(exc).__name__}: {exc} (the traceback '
                                        f'is in the log of the serving process)')
        if len(got) != 1:
            self._count('failed')
            return 500, error_body(500, f'the Flow answered {len(got)} responses to one request')
        resp = got[0]
        try:
            payload = encode_response(resp, req.arrays, req.target_executor)
        except (TypeError, ValueError) as exc:
            # The executors ran: only what they left cannot be written. Say which field.
            self._count('failed')
            return 500, error_body(500, f'the request ran, but its response cannot be sent as JSON: {exc}')
        if resp.is_error:
            self._count('failed')
            return 500, payload
        self._count('served')
        return 200, payload

    async def _handle_status(self, request: Any) -> Any:
        import json

        from .. import __version__
        down = down_executors(self.flow)
        body = {'status': 'unavailable' if down else 'ok', 'protocol': 'http', 'version': __version__,
                'flow': repr(self.flow), 'uptime_s': round(time.monotonic() - self._started_at, 3),
                'requests': dict(self.counts)}
        if down:  # 503, so that a health probe that reads only the code notices
            body['down'] = down
        return self._json(json.dumps(body).encode(), 503 if down else 200)

    def _refuse(self, status: int, message: str) -> Any:
        self._count('refused')
        return self._json(error_body(status, message), status)

    @property
    def _errors_as_json(self) -> Any:
        """A middleware: aiohttp's own refusals (404, 405, 413) as JSON bodies with a message."""
        from aiohttp import web

        @web.middleware
        async def middleware(request: Any, handler: Any) -> Any:
            try:
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                message = exc.reason
                if exc.status == 404:
                    message = f'no route {request.method} {request.path}; routes: {ROUTES}'
                elif exc.status == 405:
                    message = f'{request.method} is not allowed on {request.path}'
                elif exc.status == 413:
                    message = (f'the request body is larger than the {self.max_body_bytes} bytes this gateway '
                               f'takes (Flow(max_body_bytes=...)); send fewer documents per request')
                return self._refuse(exc.status, message)
        return middleware


def down_executors(flow: Any) -> list[dict]:
    """The executors of a started Flow that cannot serve any more (a shard with no process
    left, even restarting), each ``{"executor": name, "error": why}``; [] when all can.

    >>> down_executors(flow)  # doctest: +SKIP
    [{'executor': 'dies', 'error': "the process of executor 'dies' (replica 0, pid 41) ended ..."}]
    """
    return [{'executor': name, 'error': str(error)} for name, error in flow._down_executors()]


def block(flow: Any) -> None:
    """Serve until SIGINT (Ctrl-C) or SIGTERM, then return; the previous handlers of both
    signals are restored. Must run in the main thread (where Python delivers signals).

    Example
    -------
    >>> with Flow(port_expose=12345, protocol='http').add(uses=MyIndexer) as f:
    ...     f.block()  # returns on Ctrl-C / SIGTERM; leaving `with` closes the Flow
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError('block() waits for Ctrl-C / SIGTERM, which Python delivers to the main thread only: '
                           'call it from the main thread (or wait on your own event and leave `with`)')
    stop = threading.Event()
    got: list[int] = []

    def on_signal(signum: int, frame: Any) -> None:
        got.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    gateway = getattr(flow, '_gateway', None)
    if gateway is None:
        logger.info('block(): %r has no gateway (give Flow(port_expose=..., protocol="http") to serve it); '
                    'waiting for Ctrl-C / SIGTERM', flow)
    try:
        # The timeout only keeps the wait short enough for signal handlers to run promptly.
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info('block(): %s received, stopping', signal.Signals(got[0]).name if got else 'stop')
