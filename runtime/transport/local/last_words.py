"""What the executor processes say last while a local Flow closes (``LastWords``, a part
of ``LocalTransport``): the log records of their executors' ``close()``, then ``bye`` or
``close_error``, read while the processes exit (a process whose pipe is full would wait on
it, not exit), each last message answered so that the process may go.

Example
-------
>>> killed = transport._await_exits(workers, time.monotonic() + 5.0, heard)  # doctest: +SKIP
>>> errors = transport._last_words(stopped, heard)  # doctest: +SKIP
"""
from __future__ import annotations

import logging
import time

import zmq

from ...errors import ExecutorError
from . import protocol as P
from .worker_logs import relog

__all__ = ['LastWords', 'CLOSE_ERROR_WAIT_S']

logger = logging.getLogger('runtime')

#: At close, how long the error of an executor whose close() raised may take to arrive
#: (it was sent before its process exited; the I/O threads may still be passing it on).
CLOSE_ERROR_WAIT_S = 2.0


class LastWords:
    """``LocalTransport``'s reading of its socket while it closes (it has ``_sock`` and
    ``_workers``, identity -> ``LocalWorker``)."""

    _sock: zmq.Socket
    _workers: dict

    def _await_exits(self, workers: list, deadline: float, heard: dict) -> list:
        """Wait until ``workers`` have exited, or ``deadline``; those still running are
        returned. Their messages are read meanwhile (``_hear``): an executor that logs much
        in its ``close()`` fills its pipe, and would wait on it, not exit, if nobody read."""
        running = {w.pidfd: w for w in workers if w.proc.poll() is None}
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        for fd in running:
            poller.register(fd, zmq.POLLIN)
        while running:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for item, _ in poller.poll(left * 1000):
                if item is self._sock:
                    self._hear(heard)
                elif item in running:
                    poller.unregister(item)
                    running.pop(item).proc.wait()
        return list(running.values())

    def _hear(self, heard: dict) -> None:
        """Read what waits on the socket while the Flow closes: log records are logged,
        and each process's last message kept in ``heard`` (identity -> None for ``bye``,
        or the ExecutorError of a ``close()`` that raised); anything else is late."""
        while P.waiting(self._sock):
            frames = P.recv_frames(self._sock)
            w = self._workers.get(frames[0].bytes)
            if w is None or not w.greeted:
                continue
            try:
                items = P.unpack(frames[1:])
            except Exception:  # noqa: BLE001 - not our protocol: ignored, as in poll
                continue
            for header, _ in items:
                kind = P.kind(header)
                if kind == P.LOG:
                    relog(w.log_label(), w.pid, *P.read(header))
                elif kind in (P.BYE, P.CLOSE_ERROR):
                    if kind == P.BYE:
                        heard[w.identity] = None
                    else:
                        exc_type, message, tb = P.read(header)
                        heard[w.identity] = ExecutorError(w.dep.name, exc_type, f'{message} (in close())', tb,
                                                          w.replica)
                    try:  # (everything it sent came before: it may exit; see Worker.await_answer)
                        P.send_to(self._sock, w.identity, P.pack([(P.bye(), b'')]))
                    except zmq.ZMQError:  # (gone already: it had no more to say)
                        pass

    def _last_words(self, stopped: list, heard: dict) -> list:
        """(worker, ExecutorError) for each of the ``stopped`` processes (told STOP, exited
        by themselves) whose ``close()`` raised. Each ends with ``bye`` or ``close_error``,
        after the log records of its ``close()``; the last may still be in the I/O threads
        after its process exited: waited for a little."""
        missing = {w.identity for w in stopped if w.proc.returncode in (0, P.CLOSE_FAILED)} - heard.keys()
        deadline = time.monotonic() + CLOSE_ERROR_WAIT_S
        while missing and self._sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
            self._hear(heard)
            missing -= heard.keys()
        self._hear(heard)  # (what else arrived: records of processes killed or dead)
        errors = []
        for w in stopped:
            said = heard.get(w.identity, False)
            if isinstance(said, ExecutorError):
                errors.append((w, said))
            elif said is False and w.proc.returncode == P.CLOSE_FAILED:
                errors.append((w, ExecutorError(w.dep.name, 'Exception', 'its close() raised (the details were lost)',
                                                '', w.replica)))
            elif said is False and w.proc.returncode == 0:  # (its close() returned; only what it logged may be missing)
                logger.warning('executor %s closed, but what it logged while closing may be lost (its last message '
                               'did not arrive within %.0f s)', w.label(), CLOSE_ERROR_WAIT_S)
        return errors
