"""Response: what callbacks and ``return_results`` hand back for each request."""
from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any

from .array import DocumentArray

__all__ = ['Response', 'Status']


class Status:
    """The outcome of a request: ``code`` is ``Status.SUCCESS`` (0) or ``Status.ERROR`` (3).

    On error, ``description`` is the message, ``exception`` carries ``name`` (type),
    ``message``, ``stacks`` (the remote traceback lines), ``executor`` (its name), and
    ``error`` is the exception object a post would raise.

    Example
    -------
    >>> def on_error(resp):
    ...     print(resp.status.exception.executor, resp.status.exception.name)
    """

    SUCCESS, ERROR = 0, 3
    __slots__ = ('code', 'description', 'exception', 'error')

    def __init__(self, code: int = 0, description: str = '', exception: Any = None,
                 error: BaseException | None = None) -> None:
        self.code, self.description, self.exception, self.error = code, description, exception, error

    @classmethod
    def from_error(cls, error: BaseException, executor: str, exc_type: str | None = None,
                   traceback: str = '') -> 'Status':
        exc = SimpleNamespace(name=exc_type or type(error).__name__, message=str(error), executor=executor,
                              args=list(error.args), stacks=traceback.splitlines(keepends=True))
        return cls(cls.ERROR, str(error), exc, error)

    @property
    def is_error(self) -> bool:
        return self.code == self.ERROR

    def __repr__(self) -> str:
        if self.code == self.SUCCESS:
            return '<Status SUCCESS>'
        return f'<Status ERROR {self.exception.executor}: {self.exception.name}: {self.description}>'


class Response:
    """One request's result.

    Attributes
    ----------
    request_id : str
    docs : DocumentArray
        The documents as the last executor left them (on error: as they entered the
        executor that failed). Their arrays are the caller's own copies.
    header : namespace with ``exec_endpoint``
    parameters : dict
        The parameters sent, plus ``'__results__': {executor name: dict}`` for handlers
        that returned a dict.
    groundtruths : DocumentArray
        The groundtruths posted with the documents (inputs of ``(doc, groundtruth)``
        pairs), as Jina 2's ``Request.groundtruths``; empty when none were.
    status : Status
    routes : list of dict
        One entry per executor visited: ``executor``, ``replica``, ``shard``, ``pid``,
        ``docs_in`` / ``docs_out``, ``shm_bytes`` (written to shared memory), and the wall
        times (``time.time()``) ``ready`` (could go to it), ``dispatched`` (sent to its
        process), ``received``, ``start`` / ``end`` (its handler), ``sent`` (back) and
        ``returned`` (in the router).

    Example
    -------
    >>> f.post('/', Document(), on_done=lambda r: print(r.request_id, len(r.docs)))
    """

    # ``header`` and ``parameters`` are built on first use: most callbacks read only the
    # documents, and a post of one document costs the parent only tens of microseconds in all.
    __slots__ = ('request_id', 'docs', 'status', 'routes', 'index', '_endpoint', '_header', '_parameters',
                 '_params_blob', '_results', '_truths')

    def __init__(self, request_id: str, docs: DocumentArray, endpoint: str, parameters: dict,
                 status: Status, routes: list, index: int = 0, groundtruths: DocumentArray | None = None) -> None:
        self.request_id, self.docs, self.status, self.routes, self.index = request_id, docs, status, routes, index
        self._endpoint = endpoint
        self._parameters, self._params_blob, self._results = parameters, None, None
        self._truths = groundtruths

    @classmethod
    def _from_blob(cls, request_id: str, docs: DocumentArray, endpoint: str, params_blob: bytes,
                   results: dict | None, status: Status, routes: list, index: int = 0,
                   groundtruths: DocumentArray | None = None) -> 'Response':
        """A Response whose ``parameters`` are unpickled from ``params_blob`` when first read
        (a fresh copy for this Response), with ``results`` as their ``'__results__'``.

        Example
        -------
        >>> r = Response._from_blob('id-1', DocumentArray(), '/', pickle.dumps({'k': 1}), None, Status(), [])
        >>> r.parameters
        {'k': 1}
        """
        resp = cls.__new__(cls)
        resp.request_id, resp.docs, resp.status, resp.routes, resp.index = request_id, docs, status, routes, index
        resp._endpoint = endpoint
        resp._parameters, resp._params_blob, resp._results = None, params_blob, results
        resp._truths = groundtruths
        return resp

    @property
    def header(self) -> SimpleNamespace:
        """``exec_endpoint``: the endpoint the request was posted to."""
        try:
            return self._header
        except AttributeError:
            header = self._header = SimpleNamespace(exec_endpoint=self._endpoint)
            return header

    @header.setter
    def header(self, value: Any) -> None:
        self._header = value

    @property
    def parameters(self) -> dict:
        """The parameters sent (this Response's own copy), plus ``'__results__'``."""
        if self._params_blob is not None:
            params = pickle.loads(self._params_blob)
            if self._results is not None:
                params['__results__'] = self._results
            self._parameters, self._params_blob, self._results = params, None, None
        return self._parameters

    @parameters.setter
    def parameters(self, value: dict) -> None:
        self._parameters, self._params_blob, self._results = value, None, None

    @property
    def groundtruths(self) -> DocumentArray:
        """The groundtruths posted with these documents; an empty DocumentArray (made when
        first read, as most responses carry none) when there were none.

        Example
        -------
        >>> f.post('/eval', [(Document(text='q'), Document(text='a'))], on_done=lambda r: print(r.groundtruths.texts))
        """
        truths = self._truths
        if truths is None:
            truths = self._truths = DocumentArray()
        return truths

    @groundtruths.setter
    def groundtruths(self, value: DocumentArray) -> None:
        self._truths = value

    @property
    def data(self) -> 'Response':
        """Jina 2 spelled it ``response.data.docs``; same object."""
        return self

    @property
    def is_error(self) -> bool:
        return self.status.code == Status.ERROR

    def dict(self) -> dict:
        """This response as plain JSON data, in the shape of Jina 2's REST answers
        (``requestId``, ``header``, ``parameters``, ``routes``, ``data.docs``; arrays as lists).

        Example
        -------
        >>> resp.dict()['data']['docs'][0]['text']  # doctest: +SKIP
        """
        from .serving.wire import response_to_json
        return response_to_json(self)

    def json(self) -> str:
        """``dict()`` as a JSON string."""
        import json
        return json.dumps(self.dict())

    def __repr__(self) -> str:
        hops = ' -> '.join(r['executor'] for r in self.routes) or '(none)'
        return (f'<Response request_id={self.request_id} endpoint={self.header.exec_endpoint!r} '
                f'docs={len(self.docs)} status={self.status!r} routes={hops}>')
