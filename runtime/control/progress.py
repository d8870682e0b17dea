"""The progress bar of ``post(..., show_progress=True)``: the only thing the library prints.

While a bar is shown, log records that go to the bar's terminal are written above it, as
``tqdm.write`` does: a restart or timeout warning of the Flow does not land on the bar's line.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable, TextIO

__all__ = ['Progress']


class Progress:
    """Counts the post's *input* documents on a tqdm bar (stderr), done and failed apart,
    and ends with one summary line.

    The bar measures the input: an executor that keeps half the documents, or splits each
    into three, does not move it past or short of the total; the documents that came out
    are counted on their own and shown when they differ.

    Until ``close``, the logging handlers that write to the bar's terminal (a
    ``StreamHandler`` on ``sys.stderr`` or ``sys.stdout``, on any logger, or Python's
    last-resort handler) clear the bar before each record and redraw it after; ``close``
    puts them back as they were.

    Example
    -------
    >>> p = Progress('/index', total_docs=100)
    >>> p.update(10, failed=False, docs_out=10); p.close()  # doctest: +SKIP
    """

    def __init__(self, endpoint: str, total_docs: int | None = None, file: TextIO | None = None) -> None:
        self.file = file or sys.stderr
        self.requests = self.failed_requests = 0
        self.done = self.failed = self.out = 0
        from tqdm import tqdm  # here, not at import: a Flow that never shows progress never loads it
        self.t0 = time.perf_counter()
        self.bar = tqdm(total=total_docs, unit='doc', desc=endpoint, file=self.file, leave=False,
                        dynamic_ncols=True, mininterval=0.1)
        _log_above_bars.hold(self.file, tqdm)
        # A Progress dropped without close (its post never started running) must not leave
        # the handlers redirected for the rest of the process.
        self._let_go = weakref.finalize(self, _log_above_bars.let_go)

    def update(self, ndocs: int, failed: bool = False, docs_out: int | None = None) -> None:
        """One more request over: it held ``ndocs`` input documents and (if it succeeded)
        gave back ``docs_out``."""
        self.requests += 1
        if failed:
            self.failed_requests += 1
            self.failed += ndocs
        else:
            self.done += ndocs
            self.out += ndocs if docs_out is None else docs_out
        self.bar.update(ndocs)
        self.bar.set_postfix_str(self._counts(), refresh=False)

    def _counts(self) -> str:
        text = f'{self.requests} requests'
        if self.failed:
            text += f', {self.failed} docs failed'
        if self.out != self.done:
            text += f', {self.out} docs out'
        return text

    def close(self) -> None:
        """Remove the bar, give the logging handlers back and print the final line."""
        try:
            self.bar.close()
        finally:
            self._let_go()  # (runs once: a second close, or the finalizer later, does nothing)
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        line = f'{self.bar.desc}: {self.requests} requests, {self.done} docs done'
        if self.failed:
            line += f', {self.failed} docs failed ({self.failed_requests} requests)'
        if self.out != self.done:
            line += f', {self.out} docs out'
        # As a log record is: another post's bar (another thread) may still be shown.
        self.bar.write(f'{line} in {elapsed:.2f} s ({rate:,.0f} docs/s)', file=self.file)
        self.file.flush()


class _LogAboveBars:
    """Makes the logging handlers that write to a shown bar's stream write above the bars.

    Each such handler gets, as an instance attribute, an ``emit`` that runs its own inside
    ``tqdm.external_write_mode`` (what ``tqdm.write`` uses: clear the bars on that terminal,
    write, redraw them). The handler objects stay on their loggers, with their level,
    filters, formatter and stream; handlers on files or other streams are not touched.

    ``tqdm.contrib.logging.logging_redirect_tqdm`` does not fit: it replaces the console
    handlers of the loggers it is given by one of its own (without their level, so records
    they dropped get printed) and restores each logger's list as it saw it on entry, so two
    bars closed out of order (two threads, two async posts) leave its handler in place for
    good, and a handler added meanwhile is dropped. Here bars are counted instead: the
    first shown wraps, the last closed unwraps, whatever the order, under one lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bars = 0
        # id -> (handler, our emit, the instance attribute ``emit`` it had before, or None)
        self._wrapped: dict[int, tuple[logging.Handler, Callable, Callable | None]] = {}

    def hold(self, file: TextIO, tqdm_class: Any) -> None:
        """A bar on ``file`` is shown: wrap the handlers writing to its terminal (those a
        bar shown earlier wrapped stay wrapped; handlers added since are wrapped now)."""
        # sys.stdout and sys.stderr end on the same terminal: a record on either garbles
        # a bar on the other (tqdm clears both for the same reason).
        shared = [sys.stdout, sys.stderr] if any(file is s for s in (sys.stdout, sys.stderr)) else []
        streams = [file, *shared]
        with self._lock:
            self._bars += 1
            for h in _all_handlers():
                if id(h) in self._wrapped or not isinstance(h, logging.StreamHandler):
                    continue
                try:
                    stream = h.stream
                except Exception:  # noqa: BLE001 - a handler of odd make: it is left as it is
                    continue
                if any(stream is s for s in streams):
                    self._wrap(h, tqdm_class)

    def let_go(self) -> None:
        """A bar is closed: the last one gives every wrapped handler its own ``emit`` back."""
        with self._lock:
            if self._bars == 0:  # (a bar inherited through fork, closed in the child)
                return
            self._bars -= 1
            if self._bars == 0:
                self._unwrap_all()

    def _wrap(self, h: logging.StreamHandler, tqdm_class: Any) -> None:
        own_emit, had = h.emit, h.__dict__.get('emit')

        def emit(record: logging.LogRecord) -> None:
            # The handler's stream at the time of the record: setStream may have moved it.
            stream = getattr(h, 'stream', None)
            if stream is None:
                return own_emit(record)
            with tqdm_class.external_write_mode(file=stream):
                own_emit(record)

        h.emit = emit  # type: ignore[method-assign]
        self._wrapped[id(h)] = (h, emit, had)

    def _unwrap_all(self) -> None:
        for h, emit, had in self._wrapped.values():
            if h.__dict__.get('emit') is not emit:
                continue  # someone else set an emit on it meanwhile: theirs stays
            if had is None:
                del h.emit  # the class's emit shows again: the handler as it was
            else:
                h.emit = had  # type: ignore[method-assign]
        self._wrapped.clear()

    def after_fork_in_child(self) -> None:
        # The child shows none of its parent's bars (redrawing their copies would draw a
        # stale bar), and the lock may have been held by a thread that does not exist there.
        self._lock = threading.Lock()
        self._bars = 0
        self._unwrap_all()


def _all_handlers() -> list[logging.Handler]:
    """The handlers of every logger, and the last-resort one (which prints a warning when
    no logger on its way has a handler: what a script with no logging set up gets)."""
    loggers = [logging.root, *(lg for lg in list(logging.Logger.manager.loggerDict.values())
                               if isinstance(lg, logging.Logger))]
    handlers = [h for lg in loggers for h in list(lg.handlers)]
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    return handlers


_log_above_bars = _LogAboveBars()
os.register_at_fork(after_in_child=_log_above_bars.after_fork_in_child)
