"""Getting back the capacity of instances whose handler hangs.

``post(timeout=...)`` fails a request that takes too long, but its instance is still busy
with it; with every replica stuck, every later request times out too. An instance that
still holds a timed-out request a grace period after the deadline is ended — and, since
the router restarts a dead instance while its executor has restarts left, replaced — but
only as many as there are restarts left: without a restart, ending it would lose the
replica for good, which is worse than waiting. Until it answers or is ended, such an
instance is given no new request (``Instances.choose``): queued behind a hung handler, the
request would only die with it, never having run.

Example
-------
>>> hung = HungWorkers()
>>> hung.mark(worker, timeout, time.monotonic()); hung.end_due(time.monotonic(), instances)
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..transport.base import Worker

if TYPE_CHECKING:  # pragma: no cover
    from .instances import Instances

__all__ = ['HungWorkers', 'MIN_HUNG_GRACE_S']

logger = logging.getLogger('runtime')

#: An instance that holds a timed-out request this long past its timeout (at least) is
#: ended, when its executor has restarts left, to get its capacity back.
MIN_HUNG_GRACE_S = 1.0


class HungWorkers:
    """Instances holding a timed-out request, and when each may be ended (``w in hung``:
    it is due to be)."""

    def __init__(self) -> None:
        self._due: dict[Worker, tuple[float, float]] = {}  # worker -> (when, the timeout it exceeded)

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

    def end_due(self, now: float, instances: 'Instances') -> list[Worker]:
        """End the instances past their grace, while their executor has restarts left;
        returns those left running for want of one (they take requests again)."""
        left = []
        for w, (when, timeout) in list(self._due.items()):
            if when >= now or not w.alive:
                continue
            del self._due[w]
            dep: Any = w.dep
            # Every instance the Flow is ending (hung, or a restart not ready in time) takes
            # a restart when its death is seen.
            if dep.restarts + sum(x.dep is dep for x in instances.ending) >= dep.max_restarts:
                left.append(w)  # no restart left for it: leave it be rather than lose the replica
                continue
            logger.warning('ending %s: it held a request past post(timeout=%s) and its grace; it is restarted',
                           w.label(), timeout)
            instances.end(w, f'by the Flow: it still held a request {timeout} s after post(timeout=...) '
                             f'expired and its grace passed (its handler hangs or is far too slow: fix it, or '
                             f'give post a larger timeout); it is restarted')
        return left
