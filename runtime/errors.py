"""The errors a Flow raises; each type has one meaning a user can act on."""
from __future__ import annotations

import signal

__all__ = ['RemoteTraceback', 'ExecutorError', 'ExecutorStartError', 'WorkerDiedError',
           'RequestTimeoutError', 'FlowNotStartedError', 'BadInputError']


class RemoteTraceback(Exception):
    """The traceback of an exception raised in an executor's process, kept as the
    ``__cause__`` of the error the parent raises, so it prints under it."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return f'\n"""\n{self.tb.rstrip()}\n"""'


class ExecutorError(RuntimeError):
    """An executor's handler raised while processing a request.

    Attributes
    ----------
    executor : str
        The executor's name (``metas.name``).
    exc_type : str
        The qualified name of the exception type raised there.
    remote_traceback : str
        The traceback as formatted in the executor's process.

    Example
    -------
    >>> try:
    ...     f.post('/', docs)
    ... except ExecutorError as e:
    ...     print(e.executor, e.exc_type)
    """

    def __init__(self, executor: str, exc_type: str, message: str, remote_traceback: str,
                 replica: int = 0, endpoint: str = '') -> None:
        self.executor, self.exc_type, self.message = executor, exc_type, message
        self.remote_traceback, self.replica, self.endpoint = remote_traceback, replica, endpoint
        super().__init__(f'executor {executor!r} raised {exc_type}: {message}'
                         + (f' (endpoint {endpoint!r})' if endpoint else ''))
        self.__cause__ = RemoteTraceback(remote_traceback)

    def __reduce__(self):
        return (type(self), (self.executor, self.exc_type, self.message, self.remote_traceback,
                             self.replica, self.endpoint))


class ExecutorStartError(RuntimeError):
    """An executor could not start: its ``__init__`` raised, its class could not be
    loaded, or it did not report ready within ``timeout_ready``. Nothing is left running."""

    def __init__(self, executor: str, message: str, remote_traceback: str = '') -> None:
        self.executor, self.remote_traceback = executor, remote_traceback
        super().__init__(f'executor {executor!r} failed to start: {message}')
        if remote_traceback:
            self.__cause__ = RemoteTraceback(remote_traceback)


def describe_exit(code: int | None) -> str:
    """'exit code 3' or 'signal SIGKILL' with the usual cause, from a returncode."""
    if code is None:
        return 'still running'
    if code >= 0:
        return (f'exit code {code} (the process exited by itself: sys.exit or os._exit in the executor '
                f'or a library it uses, or an error outside any handler)')
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f'signal {-code}'
    causes = {
        'SIGKILL': 'killed from outside, often by the out-of-memory killer',
        'SIGSEGV': 'a crash in native code (a C extension or a corrupted buffer)',
        'SIGABRT': 'an abort in native code',
        'SIGTERM': 'terminated from outside',
        'SIGBUS': 'a bad memory access, e.g. /dev/shm full',
    }
    return f'signal {name}' + (f' ({causes[name]})' if name in causes else '')


class WorkerDiedError(RuntimeError):
    """An executor's process ended while it held requests (or before it was asked to stop).

    The message names the executor, the replica, the exit code or signal and the likely cause.
    """

    def __init__(self, executor: str, replica: int, returncode: int | None, pid: int | None = None,
                 reason: str = '', why: str = '', shard: int | None = None) -> None:
        self.executor, self.replica, self.returncode, self.pid = executor, replica, returncode, pid
        self.reason, self.why, self.shard = reason, why, shard
        which = f'replica {replica}, {"" if shard is None else f"shard {shard}, "}pid {pid}'
        if why:  # the Flow ended it, or saw it go (a lost connection, a dead node)
            how = None
        elif reason:  # it told the parent why before it died: that is the cause, not the exit code
            # (an error outside any handler, or a BaseException such as KeyboardInterrupt out
            # of one: the traceback tells where)
            how = f'after an uncaught {reason} (exit code {returncode}; traceback below)'
        else:
            how = f'with {describe_exit(returncode)}'
        if how is None:
            super().__init__(f'the process of executor {executor!r} ({which}) was ended {why}')
        else:
            super().__init__(f'the process of executor {executor!r} ({which}) ended '
                             f'unexpectedly {how}')

    def __reduce__(self):
        return type(self), (self.executor, self.replica, self.returncode, self.pid, self.reason, self.why, self.shard)


class RequestTimeoutError(TimeoutError):
    """A request took longer than ``post(..., timeout=...)``; the message names the executor
    (and process) that held it. ``executor`` is that executor's name."""

    executor = ''


class FlowNotStartedError(RuntimeError):
    """``post`` (or ``index`` / ``search`` / ...) was called outside ``with flow:``, or the
    Flow was closed from another thread while the post ran."""


class BadInputError(TypeError):
    """``post`` got inputs it cannot send; the message says what to pass instead."""


class CorruptStoreError(RuntimeError):
    """A file of a ``DocumentArrayMemmap`` directory is damaged (changed on disk since it
    was written). Nothing was returned from the damaged part and nothing was changed;
    ``DocumentArrayMemmap.repair(path)`` drops what is damaged, keeping a copy of it.

    Attributes
    ----------
    file : str
        The damaged file.
    offset : int
        The byte offset of the damage in that file (of the first damaged record or row).

    Example
    -------
    >>> try:
    ...     doc = dam['some-id']
    ... except CorruptStoreError as e:
    ...     print(e.file, e.offset)
    """

    def __init__(self, file: str, offset: int, problem: str, remedy: str = '') -> None:
        self.file, self.offset, self.problem, self.remedy = file, offset, problem, remedy
        super().__init__(f'{file}, byte {offset}: {problem}. Nothing was returned from it and nothing '
                         f'was changed; ' + (remedy or 'DocumentArrayMemmap.repair(<directory>) drops what is '
                                                       'damaged and keeps a copy of it'))

    def __reduce__(self):
        return type(self), (self.file, self.offset, self.problem, self.remedy)


__all__.append('CorruptStoreError')
