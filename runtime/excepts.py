"""Jina 2's ``jina.excepts``: the errors runtime raises, by runtime's names and, where one
means what a Jina 2 error meant, by that name too: ``RuntimeFailToStart`` is
``ExecutorStartError`` (an executor could not start; ``with flow:`` raises it) and
``BadClientInput`` is ``BadInputError`` (``post`` got inputs it cannot send).

Example
-------
>>> from runtime.excepts import RuntimeFailToStart
>>> try:  # doctest: +SKIP
...     with Flow().add(uses=BrokenInit):
...         pass
... except RuntimeFailToStart as e:
...     print(e.executor)
"""
from .types._lazy import reexport

_ERRORS = ('ExecutorError', 'ExecutorStartError', 'WorkerDiedError', 'RequestTimeoutError', 'FlowNotStartedError',
           'BadInputError', 'CorruptStoreError', 'RemoteTraceback')

__getattr__, __dir__, __all__ = reexport(__name__, {
    **{name: 'runtime.errors' for name in _ERRORS},
    'ConfigError': 'runtime.config',
    'ServerError': 'runtime.serving.client',  # (what a Client raises for a gateway's 5xx)
    'RuntimeFailToStart': ('runtime.errors', 'ExecutorStartError'),
    'BadClientInput': ('runtime.errors', 'BadInputError'),
})
