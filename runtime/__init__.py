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
"""
from .array import DocumentArray
from .document import Document
from .errors import (BadInputError, ExecutorError, ExecutorStartError, FlowNotStartedError,
                     RemoteTraceback, WorkerDiedError)
from .executor import BaseExecutor, Executor, requests
from .flow import Flow
from .generators import from_csv, from_files, from_lines, from_ndarray, from_ndjson
from .memmap import DocumentArrayMemmap
from .response import Response, Status

__all__ = [
    'Document', 'DocumentArray', 'DocumentArrayMemmap',
    'Flow', 'Executor', 'BaseExecutor', 'requests', 'Response', 'Status',
    'from_csv', 'from_files', 'from_lines', 'from_ndarray', 'from_ndjson',
    'ExecutorError', 'ExecutorStartError', 'WorkerDiedError', 'FlowNotStartedError',
    'BadInputError', 'RemoteTraceback',
]
__version__ = '0.1.0'
