"""Requests and responses as JSON in Jina 2's REST shape, both ways: the HTTP wire.

A request body::

    {"data": [{"text": "hello"}, "a str is a text document", ...],
     "execEndpoint": "/search", "parameters": {"top_k": 3}, "targetExecutor": "indexer",
     "arrayFormat": "list" | "base64"}

(``targetPeapod`` is Jina 2's name of ``targetExecutor``; the fields of a whole Jina 2
request that its HTTP client sent along, ``requestId``, ``header``, ``routes``, ``status``,
are ignored, as Jina 2's gateway ignored them.)

A response: ``requestId``, ``header`` (``execEndpoint``, ``status`` with the executor's
exception; for a process that died, ``WorkerDiedError`` with ``worker``: replica, pid,
returncode), ``parameters``, ``routes``, ``data.docs``; a refusal: ``{"error": {"code",
"message"}}``. Responses carry arrays in the form the request's ``arrayFormat`` asks for
(lists by default: what curl users read; the ``Client`` asks for base64, which keeps dtypes
exact). The documents and values inside are converted and checked by ``jsoncodec``; nothing
from the network is unpickled. The JSON written is strict: no ``NaN`` / ``Infinity`` token.
"""
from __future__ import annotations

import json
import math
from typing import Any

from ..array import DocumentArray
from ..errors import ExecutorError, RemoteTraceback, WorkerDiedError
from ..response import Response, Status
from .jsoncodec import ARRAY_FORMATS, WireError, decode_value, doc_from_json, doc_to_json, encode_value, json_kind

# WireError and ARRAY_FORMATS are part of this module's API too: the gateway and the clients
# handle requests, not documents, and import both from here.
__all__ = ['WireError', 'ARRAY_FORMATS', 'Request', 'encode_request', 'decode_request', 'response_to_json',
           'encode_response', 'decode_response', 'error_body']

#: Request keys, each under its Jina 2 (camelCase) name and its Python name.
_REQUEST_KEYS = {'data': 'data', 'execEndpoint': 'endpoint', 'exec_endpoint': 'endpoint',
                 'parameters': 'parameters', 'targetExecutor': 'target', 'target_executor': 'target',
                 'targetPeapod': 'target', 'target_peapod': 'target',  # Jina 2.0's name of the target
                 'arrayFormat': 'arrays', 'array_format': 'arrays',
                 # shmflow's own: the seconds the request may take in the Flow (post(timeout=))
                 'timeout': 'timeout'}
#: What Jina 2's HTTP client sent besides the request (the whole Request, as a dict) and
#: Jina 2's gateway ignored: ignored here too. Any other unknown key is refused: Jina 2 dropped
#: it silently, so a misspelt "parameters" ran without them.
_IGNORED_REQUEST_KEYS = frozenset({'requestId', 'request_id', 'header', 'routes', 'status'})


# -- requests ---------------------------------------------------------------------------------
def encode_request(docs: DocumentArray | None, endpoint: str, parameters: dict | None = None,
                   target_executor: str | None = None, arrays: str = 'base64',
                   timeout: float | None = None) -> bytes:
    """The JSON body of one request (what the ``Client`` sends); ``timeout``: the seconds
    the request may take in the Flow, as ``post(timeout=...)`` there.

    >>> encode_request(DocumentArray([Document(id='a')]), '/search', arrays='list')
    b'{"execEndpoint":"/search","data":[{"id":"a"}],"arrayFormat":"list"}'
    """
    body: dict[str, Any] = {'execEndpoint': endpoint,
                            'data': [doc_to_json(d, arrays) for d in docs] if docs is not None else [],
                            'arrayFormat': arrays}
    if parameters:
        body['parameters'] = encode_value(parameters, arrays, 'parameters')
    if target_executor is not None:
        body['targetExecutor'] = target_executor
    if timeout is not None:
        body['timeout'] = timeout
    return json.dumps(body, separators=(',', ':'), allow_nan=False).encode()


class Request:
    """A request as the gateway parsed it: ``endpoint``, ``docs``, ``parameters``,
    ``target_executor``, ``arrays`` (the form the response wants its arrays in),
    ``timeout`` (seconds it may take in the Flow, or None).

    >>> decode_request(b'{"data": ["hi"]}', '/search').docs.texts
    ['hi']
    """

    __slots__ = ('endpoint', 'docs', 'parameters', 'target_executor', 'arrays', 'timeout')

    def __init__(self, endpoint: str, docs: DocumentArray, parameters: dict, target_executor: str | None,
                 arrays: str, timeout: float | None = None) -> None:
        self.endpoint, self.docs, self.parameters = endpoint, docs, parameters
        self.target_executor, self.arrays, self.timeout = target_executor, arrays, timeout


def decode_request(body: bytes, endpoint: str | None = None) -> Request:
    """Parse and check a request body. ``endpoint`` is the one the URL names (``/index``
    ...), or None for ``/post``, where ``execEndpoint`` says it. Raises WireError.

    >>> decode_request(b'{"data": [{"text": "hi"}], "execEndpoint": "/index"}').endpoint
    '/index'
    """
    try:
        obj = json.loads(body)
    except RecursionError:
        raise WireError('the JSON is nested too deeply', 400) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f'the body is not valid JSON ({exc}); send a JSON object such as '
                        f'{{"data": [{{"text": "hello"}}], "execEndpoint": "/search"}}', 400) from None
    if not isinstance(obj, dict):
        raise WireError(f'the body must be a JSON object with "data", "execEndpoint", "parameters", got {json_kind(obj)}')
    given: dict[str, Any] = {}
    named: dict[str, str] = {}
    for key, value in obj.items():
        name = _REQUEST_KEYS.get(key)
        if name is None:
            if key in _IGNORED_REQUEST_KEYS:
                continue
            raise WireError(f'unknown field {key!r}; a request has data, execEndpoint, parameters, targetExecutor '
                            f'(or Jina 2\'s targetPeapod), arrayFormat and timeout')
        if name in given:
            raise WireError(f'{named[name]!r} and {key!r} name the same thing; give one')
        given[name], named[name] = value, key
    on = given.get('endpoint')
    if on is not None and not isinstance(on, str):
        raise WireError(f'execEndpoint must be a str such as "/search", got {json_kind(on)}')
    if endpoint is None:
        if on is None:
            raise WireError('POST /post needs "execEndpoint" (e.g. "/search"); or POST to /index, /search, '
                            '/update or /delete')
        endpoint = on
    elif on is not None and on != endpoint:
        raise WireError(f'execEndpoint {on!r} contradicts the URL, which posts to {endpoint!r}; use POST /post '
                        f'to name the endpoint in the body')
    params = given.get('parameters')
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise WireError(f'parameters must be an object, got {json_kind(params)}')
    params = decode_value(params, 'parameters')
    target = given.get('target')
    if target is not None and not isinstance(target, str):
        raise WireError(f'targetExecutor must be an executor name (or a regular expression), got {json_kind(target)}')
    arrays = given.get('arrays') or 'list'
    if arrays not in ARRAY_FORMATS:
        raise WireError(f'arrayFormat must be "list" or "base64", got {arrays!r}')
    data = given.get('data')
    if data is None:
        data = []
    if not isinstance(data, list):
        raise WireError(f'data must be a list of documents (objects, or str for text), got {json_kind(data)}')
    timeout = given.get('timeout')
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout <= 0):
        raise WireError(f'timeout must be a number of seconds > 0 (how long the request may take in the Flow), '
                        f'got {json_kind(timeout)} {timeout!r:.40}')
    docs = DocumentArray([doc_from_json(d, f'data[{i}]') for i, d in enumerate(data)])
    return Request(endpoint, docs, params, target, arrays, timeout)


# -- responses --------------------------------------------------------------------------------
def _status_to_json(status: Status) -> dict:
    out: dict[str, Any] = {'code': status.code, 'description': status.description}
    exc = status.exception
    if exc is not None:
        # ExecutorError keeps the handler's own message apart from its summary line.
        message = getattr(status.error, 'message', None)
        out['exception'] = {'name': exc.name, 'message': message if isinstance(message, str) else exc.message,
                            'executor': exc.executor,
                            'args': [a if _plain_arg(a) else repr(a) for a in exc.args],
                            'stacks': list(exc.stacks) or _cause_stacks(status.error)}
        if isinstance(status.error, WorkerDiedError):  # what the Client needs to raise the same error
            err = status.error
            out['exception']['worker'] = {'replica': err.replica, 'pid': err.pid, 'returncode': err.returncode,
                                          'reason': getattr(err, 'reason', ''), 'why': getattr(err, 'why', '')}
    return out


def _plain_arg(a: Any) -> bool:
    return a is None or isinstance(a, (str, int, bool)) or (isinstance(a, float) and math.isfinite(a))


def _cause_stacks(error: BaseException | None) -> list:
    """The remote traceback an error keeps as its cause (a process that died of an error
    outside any handler sent one), as stack lines."""
    cause = getattr(error, '__cause__', None)
    return cause.tb.splitlines(keepends=True) if isinstance(cause, RemoteTraceback) else []


def response_to_json(resp: Response, arrays: str = 'list', target_executor: str | None = None) -> dict:
    """A Response as plain JSON data in Jina 2's shape: ``requestId``, ``header``
    (``execEndpoint``, ``status``), ``parameters``, ``routes``, ``data.docs``.

    >>> response_to_json(resp)['data']['docs']  # doctest: +SKIP
    """
    status = _status_to_json(resp.status)
    return {'requestId': resp.request_id,
            'header': {'requestId': resp.request_id, 'execEndpoint': resp.header.exec_endpoint,
                       'targetExecutor': target_executor or '', 'status': status},
            'parameters': encode_value(resp.parameters, arrays, 'parameters'),
            'routes': encode_value(resp.routes, 'list', 'routes'),
            'data': {'docs': [doc_to_json(d, arrays) for d in resp.docs]}}


def encode_response(resp: Response, arrays: str = 'list', target_executor: str | None = None) -> bytes:
    """A Response as the JSON body the gateway answers with (see ``response_to_json``).

    >>> json.loads(encode_response(resp))['data']['docs']  # doctest: +SKIP
    """
    return json.dumps(response_to_json(resp, arrays, target_executor), separators=(',', ':'),
                      allow_nan=False).encode()


#: How deep chunks / matches may nest in an answer a Client reads (recursion stays bounded).
ANSWER_MAX_DEPTH = 64


def decode_response(obj: dict, index: int = 0) -> Response:
    """A Response from the gateway's JSON (the ``Client``'s side); an error status gets
    back its ``ExecutorError`` with the executor's name and remote traceback.

    >>> decode_response(json.loads(body)).status.is_error  # doctest: +SKIP
    """
    try:
        header = obj['header']
        # (what the Flow answered may nest deeper than a request may: the bound is looser)
        docs = DocumentArray([doc_from_json(d, f'data.docs[{i}]', max_depth=ANSWER_MAX_DEPTH)
                              for i, d in enumerate(obj['data']['docs'])])
        st = header.get('status') or {}
        if st.get('code', 0) == Status.ERROR:
            exc = st.get('exception') or {}
            name, executor = exc.get('name', 'Exception'), exc.get('executor', '')
            tb = ''.join(exc.get('stacks') or [])
            message = exc.get('message', st.get('description', ''))
            if name in _DIED_NAMES:
                error = _worker_died(executor, message, exc.get('worker'), tb)
            else:
                error = ExecutorError(executor, name, message, tb, endpoint=header.get('execEndpoint', ''))
            status = Status.from_error(error, executor, name, tb)
            status.description = st.get('description', status.description)
        else:
            status = Status()
        return Response(obj.get('requestId', ''), docs, header.get('execEndpoint', ''),
                        decode_value(obj.get('parameters') or {}, 'parameters'), status,
                        list(obj.get('routes') or []), index)
    except (KeyError, TypeError, AttributeError) as exc:
        raise WireError(f'the server answered JSON that is not a response ({type(exc).__name__}: {exc})', 502) \
            from None


#: The server's WorkerDiedError and its subclasses: the Client raises a WorkerDiedError, as
#: Flow.post does (RayWorkerDiedError needs Ray to import; it is a WorkerDiedError).
_DIED_NAMES = frozenset({'WorkerDiedError', 'RayWorkerDiedError'})


def _worker_died(executor: str, message: str, worker: Any, tb: str) -> WorkerDiedError:
    """The server's WorkerDiedError again: same type, attributes and message (the message
    as the server wrote it: a Ray actor's is worded its own way)."""
    worker = worker if isinstance(worker, dict) else {}

    def pick(key: str, kind: type, default: Any) -> Any:
        value = worker.get(key)
        return value if type(value) is kind else default

    err = WorkerDiedError(executor, pick('replica', int, 0), pick('returncode', int, None), pick('pid', int, None),
                          pick('reason', str, ''), pick('why', str, ''))
    err.args = (message,)
    if tb:
        err.__cause__ = RemoteTraceback(tb)
    return err


def error_body(status: int, message: str) -> bytes:
    """The JSON of a refused request: ``{"error": {"code": 422, "message": "..."}}``.

    >>> error_body(413, 'too large')
    b'{"error": {"code": 413, "message": "too large"}}'
    """
    return json.dumps({'error': {'code': status, 'message': message}}).encode()
