"""The HTTP gateway: serves a running Flow to other processes, JSON in Jina 2's REST shape.

``Flow(port_expose=12345, protocol='http')`` starts one when the Flow starts; ``f.block()``
serves until Ctrl-C or SIGTERM. Routes:

- ``POST /post`` with ``{"data": [...], "execEndpoint": "/search", "parameters": {...},
  "targetExecutor": ...}``; ``POST /index``, ``/search``, ``/update``, ``/delete`` (the
  endpoint is the URL's), and Jina 2's ``PUT /update`` and ``DELETE /delete``;
- ``GET /status``: 200 ``{"status": "ok", ...}`` and counters while every executor can
  serve; 503 ``{"status": "unavailable", "down": [...]}`` once one has no process left;
- the paths ``Flow.expose_endpoint`` adds (Jina 2's), each posting to its endpoint.

``Flow(cors=True)`` lets web pages of any origin call it (Jina 2's ``cors``).

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
from typing import Any, NamedTuple

from ..errors import BadInputError, FlowNotStartedError, WorkerDiedError
from ..response import Response, Status
from .deps import import_aiohttp
from .wire import WireError, decode_request, encode_response, error_body

__all__ = ['check_options', 'Gateway', 'block', 'down_executors', 'ExposedRoute', 'exposed_route', 'PROTOCOLS',
           'DEFAULT_HOST', 'DEFAULT_MAX_BODY_BYTES']

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
#: The gateway's own routes (an exposed path may add methods to the CRUD ones, not replace them).
_FIXED = {'/post': ('POST',), '/status': ('GET', 'HEAD'),
          **{e: ('POST', *((JINA2_METHODS[e],) if e in JINA2_METHODS else ())) for e in ENDPOINTS}}
_METHODS = ('GET', 'POST', 'PUT', 'DELETE', 'PATCH')
#: ``expose_endpoint`` arguments of Jina 2 that shaped FastAPI's OpenAPI docs or response
#: model, which this gateway does not have -> why they are refused.
_FASTAPI_ONLY = {
    **{k: "describes the route in Jina 2's Swagger / OpenAPI docs, which this gateway does not serve"
       for k in ('summary', 'description', 'tags', 'response_description', 'deprecated', 'operation_id',
                 'include_in_schema', 'name')},
    **{k: "shaped the response with FastAPI's response model; here the response is Jina 2's standard JSON "
          "(data, parameters, header, status)"
       for k in ('response_model', 'response_model_by_alias', 'response_model_exclude_unset',
                 'response_model_exclude_defaults', 'response_model_exclude_none')},
}


class ExposedRoute(NamedTuple):
    """An HTTP path ``Flow.expose_endpoint`` added: the executors' endpoint it posts to,
    the HTTP methods it takes and the status of a success."""
    endpoint: str
    methods: tuple
    status_code: int


def exposed_route(exec_endpoint: Any, path: Any = None, methods: Any = ('POST',), status_code: Any = 200,
                  **kwargs: Any) -> tuple[str, ExposedRoute]:
    """Check ``Flow.expose_endpoint``'s arguments; return ``(path, route)``.

    Example
    -------
    >>> exposed_route('/search', path='/find', methods=['get', 'POST'])
    ('/find', ExposedRoute(endpoint='/search', methods=('GET', 'POST'), status_code=200))
    """
    from ..control.specs import unexpected_argument
    for k in kwargs:
        if k in _FASTAPI_ONLY:
            raise TypeError(f'expose_endpoint({k}=...) {_FASTAPI_ONLY[k]}; remove it')
        raise unexpected_argument('expose_endpoint', k, ('path', 'methods', 'status_code'),
                                  'exec_endpoint, path, methods, status_code')
    if not isinstance(exec_endpoint, str) or not exec_endpoint:
        raise TypeError(f'expose_endpoint() takes the executors\' endpoint, a str such as "/foo", got '
                        f'{exec_endpoint!r}')
    path = exec_endpoint if path is None else path
    if not isinstance(path, str) or not path.startswith('/'):
        raise ValueError(f'expose_endpoint(path=...) must be an HTTP path starting with "/", got {path!r}')
    if path in ('/post', '/status') or (path in _FIXED and path != exec_endpoint):
        raise ValueError(f'{path} is a route of the gateway itself ({ROUTES}); expose {exec_endpoint!r} on '
                         f'another path')
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, (list, tuple)) or not methods:
        raise TypeError(f'expose_endpoint(methods=...) takes a list of HTTP methods such as ["GET", "POST"], got '
                        f'{methods!r}')
    upper = tuple(dict.fromkeys(m.upper() if isinstance(m, str) else m for m in methods))
    bad = [m for m in upper if m not in _METHODS]
    if bad:
        raise ValueError(f'expose_endpoint(methods=...) takes {", ".join(_METHODS)}, got {bad}')
    if type(status_code) is not int or not 200 <= status_code < 300:
        raise ValueError(f'expose_endpoint(status_code=...) is the HTTP status of a success, an int from 200 to '
                         f'299, got {status_code!r}')
    if path in _FIXED and status_code != 200 and set(upper) & set(_FIXED[path]):
        raise ValueError(f'{"/".join(_FIXED[path])} {path} is a route of the gateway itself, which answers 200; '
                         f'expose {exec_endpoint!r} on another path for status_code={status_code}')
    return path, ExposedRoute(exec_endpoint, upper, status_code)


def check_options(port_expose: Any = None, port: Any = None, protocol: Any = 'http', host: Any = DEFAULT_HOST,
                  max_body_bytes: Any = DEFAULT_MAX_BODY_BYTES, cors: Any = False) -> dict:
    """Check the serving arguments of ``Flow(...)``; returns the keyword arguments of
    ``Gateway``. ``port`` is another name for ``port_expose``; 0 lets the system pick a
    free port (logged when the gateway starts). ``cors=True`` lets web pages of any origin
    call the gateway (Jina 2's CORS middleware); it is in the result only then.

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
    if not isinstance(cors, bool):
        raise TypeError(f'cors must be True (web pages of any origin may call the gateway) or False, got {cors!r}')
    return {'port': chosen, 'protocol': protocol.lower(), 'host': host, 'max_body_bytes': max_body_bytes,
            **({'cors': True} if cors else {})}


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
    cors : bool
        Answer CORS preflights and let pages of any origin read the answers.
    exposed : dict
        ``{path: ExposedRoute}`` (``Flow.expose_endpoint``'s), read at each request: the
        Flow may add to it while the gateway runs.

    Example
    -------
    >>> gw = Gateway(flow, port=12345); gw.start()  # doctest: +SKIP
    >>> gw.close()  # doctest: +SKIP
    """

    def __init__(self, flow: Any, port: int = 0, host: str = DEFAULT_HOST, protocol: str = 'http',
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, cors: bool = False,
                 exposed: dict | None = None) -> None:
        self.flow, self.host, self.port, self.max_body_bytes = flow, host, port, max_body_bytes
        self.cors = cors
        self.exposed: dict[str, ExposedRoute] = {} if exposed is None else exposed
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        # Flow.post drives the router from the calling thread and is not re-entrant: one
        # post at a time, whatever the number of HTTP clients.
        self.counts = {'served': 0, 'failed': 0, 'refused': 0, 'inflight': 0}
        self._counts_lock = threading.Lock()
        self._idle = threading.Condition(self._counts_lock)  # notified when no request is in flight
        self._started_at = 0.0

    def _count(self, key: str, n: int = 1) -> None:
        with self._counts_lock:
            self.counts[key] += n
            if key == 'inflight' and not self.counts['inflight']:
                self._idle.notify_all()

    def wait_idle(self) -> None:
        """Return once no request is in flight (after ``stop_listening``: once those it
        received are answered, which may wait for a post running in the Flow)."""
        with self._idle:
            self._idle.wait_for(lambda: not self.counts['inflight'])

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
        logger.info('serving %r on %s (%s)', self.flow, self.url, self.routes())
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

    def routes(self) -> str:
        """The routes served, for messages: the fixed ones and the exposed paths."""
        exposed = [f'{m} {p}' for p, r in list(self.exposed.items()) for m in r.methods]
        return ', '.join([ROUTES, *exposed])

    async def _bind(self) -> None:
        from aiohttp import web
        # (CORS outermost: refusals get its headers too, or a page cannot read them)
        middlewares = [self._cors, self._errors_as_json] if self.cors else [self._errors_as_json]
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=middlewares)
        app.router.add_post('/post', self._handle_post)
        for ep in ENDPOINTS:
            app.router.add_post(ep, self._handle_post)
        for ep, method in JINA2_METHODS.items():
            app.router.add_route(method, ep, self._handle_post)
        app.router.add_get('/status', self._handle_status)
        # Last: what no route above takes (the exposed paths, looked up at each request, so
        # that expose_endpoint on a running Flow serves at once; and the 404 / 405 answers).
        app.router.add_route('*', '/{tail:.*}', self._handle_other)
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

    def stop_listening(self) -> None:
        """Close the listening socket now (the port is free again); requests already
        received go on, until ``close``."""
        loop, runner = self._loop, self._runner
        if loop is None or runner is None:
            return

        async def stop_sites() -> None:
            for site in list(runner.sites):
                await site.stop()
        try:
            asyncio.run_coroutine_threadsafe(stop_sites(), loop).result(timeout=30)
        except Exception:  # (close() will say what is wrong)
            logger.debug('the gateway on %s could not stop listening', self.url, exc_info=True)

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

    async def _handle_other(self, request: Any) -> Any:
        from aiohttp import web
        route = self.exposed.get(request.path)
        if route is not None and request.method in route.methods:
            return await self._handle_post(request, route.endpoint, route.status_code)
        allowed = set(route.methods if route is not None else ()) | set(_FIXED.get(request.path, ()))
        if allowed:
            raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
        raise web.HTTPNotFound()

    async def _handle_post(self, request: Any, endpoint: str | None = None, ok_status: int = 200) -> Any:
        """Post the request's body to ``endpoint`` (default: the URL's; /post's names its own)."""
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return self._refuse(413, f'the request body has {request.content_length} bytes, more than the '
                                     f'{self.max_body_bytes} this gateway takes (Flow(max_body_bytes=...)); '
                                     f'send fewer documents per request (request_size)')
        try:
            body = await request.read()  # raises 413 past client_max_size when the length was not announced
        except ConnectionResetError:  # (the client went away mid-upload: nobody to answer)
            return self._json(error_body(400, 'the client closed the connection before its body arrived'), 400)
        if endpoint is not None:
            body = body or b'{}'  # (an exposed path, e.g. a GET, may come without a body, as in Jina 2)
        elif request.path != '/post':
            endpoint = request.path
        loop = asyncio.get_running_loop()
        self._count('inflight')
        try:
            status, payload = await loop.run_in_executor(self._pool, self._serve_one, body, endpoint)
        except RuntimeError:  # the pool was shut down: the Flow is closing
            status, payload = 503, error_body(503, 'the Flow is closing; no new requests are taken')
        finally:
            self._count('inflight', -1)
        return self._json(payload, ok_status if status == 200 else status)

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
            # (the client's timeout: a hung handler fails this request and, with max_restarts,
            # is ended, as in-process; without one, the posts queued behind it would wait for good)
            self.flow.post(req.endpoint, req.docs, on_done=got.append, on_error=got.append,
                           parameters=req.parameters, target_executor=req.target_executor,
                           request_size=max(1, len(req.docs)), show_progress=False, return_results=False,
                           timeout=req.timeout)
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
                    message = f'no route {request.method} {request.path}; routes: {self.routes()}'
                elif exc.status == 405:
                    message = f'{request.method} is not allowed on {request.path}'
                elif exc.status == 413:
                    message = (f'the request body is larger than the {self.max_body_bytes} bytes this gateway '
                               f'takes (Flow(max_body_bytes=...)); send fewer documents per request')
                answer = self._refuse(exc.status, message)
                if exc.status == 405 and 'Allow' in exc.headers:
                    answer.headers['Allow'] = exc.headers['Allow']  # (HTTP requires it on a 405)
                return answer
        return middleware

    @property
    def _cors(self) -> Any:
        """A middleware: CORS for pages of any origin, as Jina 2's (FastAPI's CORSMiddleware
        with every origin, method and header allowed, and credentials)."""
        from aiohttp import web

        @web.middleware
        async def middleware(request: Any, handler: Any) -> Any:
            origin = request.headers.get('Origin')
            preflight = (request.method == 'OPTIONS' and origin is not None
                         and 'Access-Control-Request-Method' in request.headers)
            if preflight:
                resp = web.Response(status=200)
                resp.headers['Access-Control-Allow-Methods'] = ', '.join(_METHODS)
                resp.headers['Access-Control-Allow-Headers'] = request.headers.get(
                    'Access-Control-Request-Headers', '*')
                resp.headers['Access-Control-Max-Age'] = '600'
            else:
                resp = await handler(request)
            if origin is not None:
                # (an echoed origin, not '*': browsers refuse '*' with credentials)
                resp.headers['Access-Control-Allow-Origin'] = origin
                resp.headers['Access-Control-Allow-Credentials'] = 'true'
                resp.headers['Vary'] = 'Origin'
            return resp
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
        logger.info('block(): %r has no gateway (give Flow(port_expose=..., protocol="http"), or set '
                    'f.port_expose = ... on the running Flow, to serve it); waiting for Ctrl-C / SIGTERM', flow)
    try:
        # The timeout only keeps the wait short enough for signal handlers to run promptly.
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info('block(): %s received, stopping', signal.Signals(got[0]).name if got else 'stop')
