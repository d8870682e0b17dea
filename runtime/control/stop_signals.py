"""SIGTERM and SIGHUP stop a running Flow as Ctrl-C does.

A systemd stop, ``timeout(1)`` or a closed terminal sends SIGTERM / SIGHUP, whose default
action kills the parent at once: the executors' processes, sockets and shared-memory files
would outlive it. While a Flow runs, these signals instead raise KeyboardInterrupt in the
main thread, so leaving ``with`` closes everything; the Flow then dies of the signal as
the default handler would have, so whoever sent it sees the exit status it expects.

Example
-------
>>> stop = StopSignals()
>>> stop.catch()             # when the Flow starts
>>> stop.restore()           # when it has closed
>>> stop.die_if_caught()     # nothing was caught: returns
"""
from __future__ import annotations

import os
import signal
import threading
from typing import Any

from ..procfs import takes_signal

__all__ = ['STOP_SIGNALS', 'StopSignals']

#: Signals that stop a Flow as Ctrl-C does (a systemd stop, timeout(1), a closed terminal).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """The handlers one Flow sets while it runs, and the signal they caught, if any.

    Only the main thread can set handlers: a Flow started elsewhere keeps the defaults
    (its workers still remove their own files). A handler the program set itself is left
    alone: the program has said what these signals mean to it.

    Attributes
    ----------
    caught : int or None
        The signal that stopped the Flow, if one did.

    Example
    -------
    >>> stop = StopSignals()
    >>> stop.catch()
    >>> try:
    ...     run_the_flow()
    ... finally:
    ...     close_the_flow()
    ...     stop.restore()
    ...     stop.die_if_caught()
    """

    def __init__(self) -> None:
        self.caught: int | None = None
        self._old: dict = {}  # signal -> the handler before ours, put back by restore()
        self.released = False  # restore() ran where it could not put the handlers back

    def catch(self) -> None:
        """Make SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread (where
        their handler is the default one, or a stale one of an earlier Flow)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def on_signal(signum: int, frame: Any) -> None:
            if self.released:
                # The Flow was closed from another thread, which cannot set handlers: this
                # one is stale. The default goes back, and the process dies of the signal.
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            self.caught = signum
            raise KeyboardInterrupt(f'stopped by {signal.Signals(signum).name}')

        on_signal.owner = self  # type: ignore[attr-defined]
        for signum in STOP_SIGNALS:
            old = signal.getsignal(signum)
            owner = getattr(old, 'owner', None)
            if isinstance(owner, StopSignals) and owner.released:
                old = owner._old.pop(signum)  # taken over: what that Flow would have put back
            elif callable(old) and takes_signal(os.getpid(), signum) is False:
                # A handler Python still lists but the process no longer has: C code put the
                # default back under it (ray.shutdown does, for its SIGTERM handler). The
                # signal would kill the process at once, its executors left behind.
                old = signal.SIG_DFL
            if old == signal.SIG_DFL:  # (None: a handler set from C, which cannot be put back)
                self._old[signum] = old
                signal.signal(signum, on_signal)
        self.released = False

    def restore(self) -> None:
        """Put back the handlers that ``catch`` replaced. Only the main thread can: from
        another, they stay, stale (a signal then does what the default would)."""
        if threading.current_thread() is not threading.main_thread():
            self.released = bool(self._old)
            return
        for signum, old in self._old.items():
            # Only where the handler is still this Flow's: one the program set while the Flow
            # ran (its own shutdown, or SIG_IGN) is what it wants from now on.
            if getattr(signal.getsignal(signum), 'owner', None) is self:
                signal.signal(signum, old)
        self._old = {}

    def die_if_caught(self) -> None:
        """After ``restore``: send this process the signal that was caught, so it dies of
        it as if it had never been caught (returns when none was)."""
        if self.caught is not None:
            os.kill(os.getpid(), self.caught)
