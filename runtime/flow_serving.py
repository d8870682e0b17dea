"""A Flow's gateway through Jina 2's properties: ``port_expose``, ``protocol`` and ``host``
read its settings and, set, change them; ``expose_endpoint`` adds an HTTP path.

Jina 2's own demos (``jina hello chatbot``) index inside ``with f:``, then switch the
running Flow to a REST gateway with ``f.protocol = 'http'; f.port_expose = P`` and call
``f.block()``: Jina 2 restarted its gateway with the new values. Here a setter on a running
Flow starts the HTTP gateway, or moves it to the new port or host, at once; on a Flow not
started it sets what ``with flow:`` starts (as ``Flow(port_expose=..., protocol='http')``).

A Flow keeps its checked settings in ``_serve`` (``serving.gateway.check_options``'s dict,
empty while it does not serve; options given without a port or protocol in
``_serve_later``), its running gateway in ``_gateway``, gateways it replaced that still
finish their requests in ``_retiring`` and its exposed paths in ``_exposed``; the functions
here change them together.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .flow import Flow

__all__ = ['GatewayOptions', 'start_gateway', 'change_serving']

logger = logging.getLogger('runtime')


def _runner(obj: Any) -> Flow:
    """The Flow that holds the gateway: ``obj`` itself, or the Flow an AsyncFlow runs."""
    return getattr(obj, '_flow', obj)


def start_gateway(flow: Flow) -> None:
    """Start a gateway with the Flow's settings (``flow._serve``) and make it the Flow's;
    raises (OSError naming the port) if it cannot listen, leaving the Flow's gateway as it was."""
    from .serving.gateway import Gateway
    gateway = Gateway(flow, **flow._serve, exposed=flow._exposed)
    gateway.start()
    flow._gateway = gateway


def _serves(gateway: Any, settings: dict) -> bool:
    """Whether a running ``gateway`` already serves as ``settings`` ask (port 0: any port)."""
    return (settings['port'] in (0, gateway.port) and gateway.host == settings['host']
            and gateway.max_body_bytes == settings['max_body_bytes'] and gateway.cors == settings.get('cors', False))


def change_serving(flow: Flow, **change: Any) -> None:
    """Set gateway options of ``flow`` (``check_options``' names: ``port``, ``protocol``,
    ``host``), checked as ``Flow(...)`` checks them. A Flow serves once it has a port or a
    protocol (options alone are kept for then). A running Flow serves with them at once:
    its gateway is started, or a new one replaces it (started before the old one stops
    listening, unless both want the same port); if that fails the Flow keeps its settings
    and serves as before. The old gateway finishes the requests it received: at once when
    no post runs, else in a thread of its own once the running post (a callback of which
    may be what moves the gateway) is over; the Flow's close waits for it. During a close
    the settings are only kept, for the next ``with flow:``.

    Example
    -------
    >>> with Flow().add(uses=Indexer) as f:
    ...     f.index(docs)
    ...     change_serving(f, protocol='http', port=12345)  # what f.port_expose = 12345 does
    """
    from .serving.gateway import check_options
    before = flow._serve
    if not before and not change.keys() & {'port', 'protocol'}:
        later = {**flow._serve_later, **change}
        checked = check_options(**later)  # (kept for when it serves: only what was given)
        flow._serve_later = {k: v for k, v in checked.items() if k in later}
        return
    settings = check_options(**{**flow._serve_later, **before, **change})
    if settings == before and (flow._rt is None or flow._gateway is not None):
        return
    if not flow._closing.acquire(blocking=False):  # (a close under way in another thread)
        flow._serve = settings
        return
    try:
        flow._serve = settings
        if flow._rt is None:
            return  # (`with flow:` starts it)
        old = flow._gateway
        if old is not None and _serves(old, settings):
            return
        if old is not None and settings['port'] == old.port:
            old.stop_listening()  # (it holds the port the new one wants)
        try:
            start_gateway(flow)
        except BaseException:
            flow._serve = before
            if old is not None and settings['port'] == old.port:
                try:
                    start_gateway(flow)  # (the old one stopped listening for the port: serve as before)
                except Exception:
                    flow._gateway = None
                    logger.warning('the gateway could not be started again with its previous settings',
                                   exc_info=True)
                else:
                    _retire(flow, old)
            raise
        if old is not None:
            old.stop_listening()
            _retire(flow, old)
    finally:
        flow._closing.release()


def _retire(flow: Flow, gateway: Any) -> None:
    """Let ``gateway`` (listening no more) finish the requests it received and end. Its
    requests' posts wait for the post running now, if any (its callback, or an AsyncFlow's
    loop, may be the caller): then it ends in a thread of its own, which the Flow's close joins."""
    if flow._lock.acquire(blocking=False):
        try:
            if not flow._posting:
                gateway.close()
                return
        finally:
            flow._lock.release()

    def finish() -> None:
        gateway.wait_idle()  # (close() gives requests in flight only a few seconds)
        gateway.close()
    t = threading.Thread(target=finish, name='shmflow-gateway-retired', daemon=True)
    t.start()
    # (those already ended need no join: a Flow moved many times keeps only live ones)
    flow._retiring = [x for x in flow._retiring if x.is_alive()] + [t]


class GatewayOptions:
    """Jina 2's gateway properties of a Flow (and an AsyncFlow): ``port_expose``,
    ``protocol``, ``host``, and ``expose_endpoint``.

    Example
    -------
    >>> f = Flow().add(uses=Indexer)
    >>> with f:
    ...     f.index(docs)
    ...     f.protocol = 'http'       # starts the HTTP gateway (on a free port)
    ...     f.port_expose = 12345     # moves it to 12345
    ...     f.block()                 # serves until Ctrl-C / SIGTERM
    """

    @property
    def port_expose(self) -> int | None:
        """The gateway's port: while it runs, the port it listens on; else the one given
        (0: any free port when it starts), or None where the Flow does not serve (as Jina 2's
        ``port_expose`` was None until given). Setting it starts the HTTP gateway, or moves it
        to that port, on a running Flow; on one not started, it is the port ``with`` serves on.

        Example
        -------
        >>> f = Flow().add(uses=Indexer)
        >>> f.port_expose = 12345
        >>> f.port_expose, f.protocol
        (12345, 'http')
        """
        flow = _runner(self)
        gateway = flow._gateway
        return gateway.port if gateway is not None else flow._serve.get('port')

    @port_expose.setter
    def port_expose(self, value: int) -> None:
        change_serving(_runner(self), port=value)

    @property
    def protocol(self) -> str | None:
        """``'http'`` when the Flow serves (or will, once started), else None: Jina 2 answered
        its default, gRPC, which no gateway here serves. Setting ``'http'`` serves the Flow
        (on a free port until ``port_expose`` says which); ``'grpc'`` and ``'websocket'`` are
        refused, as ``Flow(protocol=...)`` refuses them.

        Example
        -------
        >>> Flow().protocol is None, Flow(port_expose=12345).protocol
        (True, 'http')
        """
        return _runner(self)._serve.get('protocol')

    @protocol.setter
    def protocol(self, value: str) -> None:
        change_serving(_runner(self), protocol=value)

    @property
    def host(self) -> str:
        """The address the gateway listens on (default ``'127.0.0.1'``: this machine only;
        ``'0.0.0.0'`` every interface). Setting it serves the Flow there, as ``port_expose``.

        Example
        -------
        >>> Flow().host
        '127.0.0.1'
        """
        from .serving.gateway import DEFAULT_HOST
        flow = _runner(self)
        return flow._serve.get('host') or flow._serve_later.get('host', DEFAULT_HOST)

    @host.setter
    def host(self, value: str) -> None:
        change_serving(_runner(self), host=value)

    def expose_endpoint(self, exec_endpoint: str, **kwargs: Any) -> None:
        """Serve the executors' endpoint ``exec_endpoint`` at an HTTP path of the gateway of
        its own (Jina 2's): a request to it takes the body ``/post`` takes (``data``,
        ``parameters``, ...; no body: no documents) and posts it to ``exec_endpoint``.

        It applies to the gateway at once, running or not. The gateway's own routes
        (``POST /post``, ``/index``, ``/search``, ..., ``GET /status``) serve every endpoint
        already: this is for a client that wants a path (or a method, e.g. GET) per endpoint.

        Parameters
        ----------
        exec_endpoint : str
            The endpoint the executors bind with ``@requests(on=...)``.
        path : str
            The HTTP path (default: ``exec_endpoint``).
        methods : list of str
            The HTTP methods it takes (default ``['POST']``).
        status_code : int
            The HTTP status of a success (default 200).

        Jina 2's FastAPI arguments (``summary``, ``tags``, ``response_model``, ...) shaped
        its OpenAPI docs, which this gateway does not serve: they are refused.

        Example
        -------
        >>> f = Flow(port_expose=12345, protocol='http').add(uses=Indexer)
        >>> f.expose_endpoint('/foo', path='/bar', methods=['GET', 'POST'])
        >>> with f:
        ...     f.block()   # GET or POST http://127.0.0.1:12345/bar posts to '/foo'
        """
        from .serving.gateway import exposed_route
        path, route = exposed_route(exec_endpoint, **kwargs)
        _runner(self)._exposed[path] = route
