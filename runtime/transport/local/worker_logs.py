"""An executor process's log records, sent to the Flow's process to be logged there.

Written to the worker's own stderr, an executor's ``self.logger.warning(...)`` landed on
the line of the parent's progress bar, and the script's logging configuration (a file
handler, a level, a filter) did not apply to it. So each record of the worker (its
message already formatted, with its traceback) travels as a ``log`` message on the
worker's socket, and the parent logs it again on the logger of the same name
(:func:`relog`), where the script's handlers, levels and the progress bar's redirection
apply. The worker's records are filtered at the parent's levels as they were when the
process started (``SHMFLOW_LOG_LEVEL`` overrides them).

Only the worker's main thread owns its socket (a ZeroMQ socket must not be used from two
threads at once, and that thread blocks in a poll on it): records of other threads wait
in a queue that the main thread sends with its next message or within its idle poll
(0.2 s). A queued record that still waits after ``STALE_S`` (the main thread is stuck in
a long handler) is written to stderr by the watcher thread, as is every record once the
socket is closed or the parent cannot take it: a record is never dropped.

Example
-------
>>> import logging
>>> relog('enc', 123, logging.WARNING, 'runtime.enc', 'index is empty', 0.0)  # doctest: +SKIP
"""
from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
from typing import Any, Callable

import zmq

from . import protocol as P

__all__ = ['ParentHandler', 'install', 'parent_levels', 'relog']

#: A record of another thread that waited this long for the main thread goes to stderr.
STALE_S = 1.0
#: Longer messages are cut (the parent holds each in memory and writes it to a terminal).
MAX_TEXT = 64 << 10


#: Loggers of the script whose own levels go to the workers, at most (the script's own
#: and its libraries': a program with more is unusual, and each costs a few bytes a start).
MAX_LEVELS = 1000
#: The names ``SHMFLOW_LOG_LEVEL`` takes (any case), besides a number.
LEVEL_NAMES = ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')


def parent_levels() -> dict[str, int]:
    """The levels a worker should filter at (``install``): this process's root level, and
    every logger's own level where the script set one (``logging.getLogger('mylib')
    .setLevel(DEBUG)``).

    >>> parent_levels()['']
    30
    """
    levels = {'': logging.getLogger().getEffectiveLevel()}
    for name, lg in list(logging.root.manager.loggerDict.items())[:MAX_LEVELS]:
        level = getattr(lg, 'level', 0)  # (a PlaceHolder has none)
        if level:
            levels[name] = level
    return levels


def env_level(value: str | None) -> int | None:
    """``SHMFLOW_LOG_LEVEL`` as a level: a name in any case or a number; None when unset or
    empty. ValueError, saying what it takes, for anything else.

    >>> env_level('debug'), env_level('15'), env_level('')
    (10, 15, None)
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.upper() in LEVEL_NAMES:
        return logging.getLevelName(text.upper())
    if text.isdigit():
        return int(text)
    raise ValueError(f'SHMFLOW_LOG_LEVEL={value!r} is not a logging level: give one of {", ".join(LEVEL_NAMES)} '
                     f'(any case) or a number, or leave it unset for the levels of the script')


class ParentHandler(logging.Handler):
    """The worker's root handler: sends each record to the parent (see the module's
    docstring); ``fallback`` writes those that cannot go."""

    def __init__(self, send: Callable[[tuple], None], fallback: logging.Handler) -> None:
        super().__init__()
        self._send, self.fallback = send, fallback
        self._main = threading.get_ident()
        # A process forked by the executor (a multiprocessing pool, a data loader) inherits
        # this handler, but not the socket's I/O thread: its records go to stderr.
        self._pid = os.getpid()
        self._queue: collections.deque = collections.deque()  # (monotonic time, record)
        self._sending = False
        self.open = True

    def emit(self, record: logging.LogRecord) -> None:
        if not self.open or os.getpid() != self._pid:
            self.fallback.handle(record)
        elif threading.get_ident() != self._main:
            self._queue.append((time.monotonic(), record))
        elif self._sending:  # (a record logged while one is being sent)
            self.fallback.handle(record)
        else:
            self.flush_queue()
            self._put(record)

    def waiting(self) -> bool:
        """Whether records of other threads wait to be sent."""
        return bool(self._queue)

    def flush_queue(self) -> None:
        """Send what other threads logged (main thread only): what waits now, not what they
        log meanwhile (a thread logging faster than records go out would keep the main
        thread here for good)."""
        for _ in range(len(self._queue)):
            try:
                _, record = self._queue.popleft()
            except IndexError:  # (the watcher took it)
                return
            self._put(record)

    def _put(self, record: logging.LogRecord) -> None:
        if not self.open:
            self.fallback.handle(record)
            return
        try:
            text = record.getMessage()
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                text = f'{text}\n{record.exc_text}'
            if record.stack_info:
                text = f'{text}\n{record.stack_info}'
            text = text.rstrip()  # (a warning's text ends with a newline)
            if len(text) > MAX_TEXT:
                text = text[:MAX_TEXT] + f' [... {len(text) - MAX_TEXT} characters cut]'
        except Exception:  # noqa: BLE001 - a bad format string: logging's own report
            self.handleError(record)
            return
        self._sending = True
        try:
            self._send(P.log(record.levelno, record.name, text, record.created))
        except (zmq.ZMQError, OSError):
            # The parent's pipe is full (it is slow to read) or gone: a log line must not
            # block or fail the handler that wrote it.
            self.fallback.handle(record)
        finally:
            self._sending = False

    def write_stale(self, max_wait_s: float = STALE_S) -> None:
        """Write to stderr the queued records that waited longer than ``max_wait_s`` (any
        thread: the watcher's, while the main thread is stuck in a handler)."""
        limit = time.monotonic() - max_wait_s
        while self._queue and self._queue[0][0] <= limit:
            try:
                _, record = self._queue.popleft()
            except IndexError:
                return
            self.fallback.handle(record)

    def shut(self) -> None:
        """Before the socket closes (main thread): send what is queued, then write every
        later record to stderr."""
        self.flush_queue()
        self.open = False
        self.write_stale(-1.0)  # (what another thread queued meanwhile)


def install(send: Callable[[tuple], None], levels: dict[str, int] | None, label: str = '') -> ParentHandler:
    """Make the worker's root logger send its records to the parent instead of stderr
    (the handlers ``logging.basicConfig`` put there become the fallback, whose lines name
    the executor: ``label``), at the parent's ``levels`` unless ``SHMFLOW_LOG_LEVEL`` is
    set; warnings go the same way."""
    root = logging.getLogger()
    fallback = logging.StreamHandler(sys.stderr)
    fallback.setFormatter(logging.Formatter(f'%(levelname)s:%(name)s:{label}: %(message)s' if label
                                            else logging.BASIC_FORMAT))
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = ParentHandler(send, fallback)
    root.addHandler(handler)
    try:
        own = env_level(os.environ.get('SHMFLOW_LOG_LEVEL'))
    except ValueError:  # (add(env=...) gave it to this executor only; the Flow checks its own)
        own = None
        logging.getLogger('runtime').warning('%s: %s', label, sys.exc_info()[1])
    if own is None and levels:
        for name, level in levels.items():
            (logging.getLogger(name) if name else root).setLevel(level)
    logging.captureWarnings(True)
    return handler


def relog(label: str, pid: int, levelno: Any, name: Any, text: Any, created: Any) -> None:
    """Log again, in the parent, a record an executor process sent: on the logger of the
    same name, its message prefixed with ``label`` (the executor's name), so that the
    script's handlers and levels apply to it."""
    if not (isinstance(levelno, int) and isinstance(name, str) and isinstance(text, str)):
        return  # (not from our worker code: the peer proved its secret, so this is a bug's)
    lg = logging.getLogger(name)
    if not lg.isEnabledFor(levelno):
        return
    record = lg.makeRecord(name, levelno, '(executor process)', 0, '%s: %s', (label, text), None)
    if isinstance(created, float):
        record.created = created
        record.msecs = (created - int(created)) * 1000
    record.process, record.processName = pid, label
    lg.handle(record)
