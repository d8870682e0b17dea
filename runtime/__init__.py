"""shmflow: the Jina 2 Flow API as a multiprocessing runtime on one machine.

Every executor runs in its own process; ZeroMQ carries small headers between them and the
parent, and arrays travel through shared memory.

>>> from runtime import Document, DocumentArray, Executor, Flow, requests
>>> class Upper(Executor):
...     @requests
...     def upper(self, docs, **kwargs):
...         for d in docs:
...             d.text = d.text.upper()
>>> with Flow().add(uses=Upper) as f:  # doctest: +SKIP
...     f.post('/', DocumentArray([Document(text='hi')]), on_done=lambda r: print(r.docs.texts))
['HI']

The names are imported on first use, so that an executor process, which needs only the
data model and the transport, starts without loading the rest.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> module that defines it
_EXPORTS = {
    'Document': 'document', 'DocumentArray': 'array', 'DocumentArrayMemmap': 'memmap',
    'Flow': 'flow', 'Executor': 'executor', 'BaseExecutor': 'executor', 'requests': 'executor',
    '__default_endpoint__': 'executor',
    'Response': 'response', 'Status': 'response',
    'NamedScore': 'scores',
    'from_csv': 'generators', 'from_files': 'generators', 'from_lines': 'generators',
    'from_ndarray': 'generators', 'from_ndjson': 'generators',
    'ExecutorError': 'errors', 'ExecutorStartError': 'errors', 'WorkerDiedError': 'errors',
    'RequestTimeoutError': 'errors',
    'FlowNotStartedError': 'errors', 'BadInputError': 'errors', 'RemoteTraceback': 'errors',
    'CorruptStoreError': 'errors',
    'Client': 'serving.client', 'ServerError': 'serving.client', 'AsyncFlow': 'serving.aflow',
    'AsyncClient': 'serving.aflow',
}
__all__ = list(_EXPORTS)
__version__ = '0.1.0'


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    value = getattr(importlib.import_module(f'.{module}', __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .array import DocumentArray
    from .document import Document
    from .errors import (BadInputError, CorruptStoreError, ExecutorError, ExecutorStartError, FlowNotStartedError,
                         RemoteTraceback, RequestTimeoutError, WorkerDiedError)
    from .executor import BaseExecutor, Executor, __default_endpoint__, requests
    from .flow import Flow
    from .generators import from_csv, from_files, from_lines, from_ndarray, from_ndjson
    from .memmap import DocumentArrayMemmap
    from .response import Response, Status
    from .scores import NamedScore
    from .serving.aflow import AsyncClient, AsyncFlow
    from .serving.client import Client, ServerError
