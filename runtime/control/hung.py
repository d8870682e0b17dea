"""Getting back the capacity of instances whose handler hangs.

``post(timeout=...)`` fails a request that takes too long, but its instance is still busy
with it; with every replica stuck, every later request times out too. An instance that
still holds a timed-out request a grace period after the deadline is ended — and, since
the router restarts a dead instance while its executor has restarts left, replaced — but
only as many as there are restarts left: without a restart, ending it would lose the
replica for good, which is worse than waiting.

Example
-------
>>> hung = HungWorkers()
>>> hung.mark(worker, timeout, time.monotonic()); hung.end_due(time.monotonic(), transport)
"""
from __future__ import annotations

import logging
from typing import Any

from ..transport.base import Transport, Worker

__all__ = ['HungWorkers', 'MIN_HUNG_GRACE_S']

logger = logging.getLogger('runtime')

#: An instance that holds a timed-out request this long past its timeout (at least) is
#: ended, when its executor has restarts left, to get its capacity back.
MIN_HUNG_GRACE_S = 1.0


class HungWorkers:
    """Instances holding a timed-out request, and when each may be ended."""

    def __init__(self) -> None:
        self._due: dict[Worker, tuple[float, float]] = {}  # worker -> (when, the timeout it exceeded)
        self._ending: set[Worker] = set()  # ended, not yet seen dead

    def __bool__(self) -> bool:
        return bool(self._due)

    def __contains__(self, w: Worker) -> bool:
        return w in self._due

    def mark(self, w: Worker, timeout: float, now: float) -> None:
        """``w`` holds a request that just exceeded ``timeout``."""
        if w.dep.restarts < w.dep.max_restarts:
            self._due.setdefault(w, (now + max(MIN_HUNG_GRACE_S, timeout), timeout))

    def forget(self, w: Worker) -> None:
        """``w`` answered (it was only slow) or died."""
        self._due.pop(w, None)
        self._ending.discard(w)

    def end_due(self, now: float, transport: Transport) -> None:
        """End the instances past their grace, while their executor has restarts left."""
        for w, (when, timeout) in list(self._due.items()):
            if when >= now or not w.alive:
                continue
            del self._due[w]
            dep: Any = w.dep
            if dep.restarts + sum(x.dep is dep for x in self._ending) >= dep.max_restarts:
                continue  # no restart left for it: leave it be rather than lose the replica
            self._ending.add(w)
            logger.warning('ending %s: it held a request past post(timeout=%s) and its grace; it is restarted',
                           w.label(), timeout)
            transport.kill(w, f'by the Flow: it still held a request {timeout} s after post(timeout=...) '
                              f'expired and its grace passed (its handler hangs or is far too slow: fix it, or '
                              f'give post a larger timeout); it is restarted')
