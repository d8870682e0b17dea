"""The executors' instances as the router sees them: started, restarted, stopped, and
chosen for each request.

The router keeps the requests; this keeps the instances (through a ``Transport``, so it
never touches a process either). Both of the router's choices of an instance -- for a
request arriving at an executor, and for one that waited in the router -- are ``choose``,
so the two cannot drift apart. It also ends the instances the Flow gives up on: a restart
not ready within its executor's ``timeout_ready``, and one whose handler hangs (see
``hung``); neither is handed a request meanwhile.

Example
-------
>>> instances = Instances(specs, LocalTransport(32 << 20), 'workspace', timeout_close=5.0)
>>> instances.start()
>>> w = instances.choose(instances.deployments[0], None)   # a Worker, WAIT or an error
>>> instances.end_overdue(time.monotonic())                # while requests are in flight
>>> instances.close()
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

from ..errors import ExecutorStartError
from ..transport.base import Died, InitFailed, Ready, Transport, Worker
from .hung import HungWorkers
from .topology import Deployment

__all__ = ['Instances', 'MAX_OUTSTANDING', 'POLL_S', 'WAIT']

logger = logging.getLogger('runtime')

#: How long one poll waits while requests are in flight; a death is an event of the same
#: poll, so it is seen at once anyway.
POLL_S = 0.1
#: Requests an instance of an executor with several instances holds at most: the rest wait
#: in the router, so a slow replica is not handed a deep queue while others sit idle, and
#: two keep each instance busy while the next payload travels.
MAX_OUTSTANDING = 2
#: What ``choose`` returns when the request must wait in the router.
WAIT = None


class Instances:
    """Every instance of every executor of one Flow.

    Parameters
    ----------
    specs : list of dict
        One per ``add()`` (see ``Flow.add``).
    transport : Transport
        How instances are started and reached.
    workspace : str
        Parent folder of the executors' default workspaces.
    timeout_close : float
        Seconds an instance gets to stop before it is killed.
    """

    def __init__(self, specs: list[dict], transport: Transport, workspace: str, timeout_close: float) -> None:
        self.specs, self.transport, self.workspace, self.timeout_close = specs, transport, workspace, timeout_close
        self.deployments: list[Deployment] = []
        self.started = False
        #: Instances holding a timed-out request, due to be ended (see ``hung``).
        self.hung = HungWorkers()
        #: Instances the Flow ended whose death has not been seen yet.
        self.ending: set[Worker] = set()
        self._ready_by: dict[Worker, float] = {}  # a starting instance -> when its timeout_ready runs out

    # -- start / stop ----------------------------------------------------------------------
    def start(self) -> None:
        """Start every executor's instances in parallel and wait until all are ready.

        Raises ExecutorStartError (naming the executor, with its remote traceback) if one
        fails; nothing is left running then.
        """
        t0 = time.perf_counter()
        self.transport.open()  # cleans up after itself if it fails
        self.started = True
        try:
            for i, spec in enumerate(self.specs):
                dep = Deployment(i, spec)
                # The root of its own folder where its metas give none (handling.executor_config).
                dep.workspace = self.workspace
                self.deployments.append(dep)
                for shard in range(dep.shards):
                    for r in range(dep.replicas):
                        self._spawn(dep, shard, r)
            self._wait_ready()
        except BaseException:
            self.close()
            raise
        nproc = sum(len(d.workers) for d in self.deployments)
        logger.info('Flow ready: %d executor(s) (%s), %d %s, in %.2f s', len(self.deployments),
                    ', '.join(d.name for d in self.deployments), nproc, self.transport.describe(),
                    time.perf_counter() - t0)

    def _spawn(self, dep: Deployment, shard: int, replica: int) -> Worker:
        w = self.transport.spawn(dep, shard, replica)
        if dep.timeout_ready is not None and dep.timeout_ready >= 0:
            # Counted from its own start: a restart gets the whole time too.
            self._ready_by[w] = time.monotonic() + dep.timeout_ready
        dep.workers.append(w)
        dep.by_shard[shard].append(w)
        return w

    def _wait_ready(self) -> None:
        """Each instance is held to its own executor's ``timeout_ready``: the first one
        past it fails the start, named (another executor's larger limit does not count)."""
        while True:
            pending = [w for d in self.deployments for w in d.workers if not w.ready]
            if not pending:
                return
            now = time.monotonic()
            first = min(pending, key=lambda w: self._ready_by.get(w, math.inf))
            remaining = self._ready_by.get(first, math.inf) - now
            if remaining <= 0:
                raise ExecutorStartError(first.dep.name, _not_ready(first))
            for event in self.transport.poll(min(POLL_S, remaining)):
                if isinstance(event, Ready):
                    self.on_ready(event)
                elif isinstance(event, InitFailed):
                    raise event.error
                elif isinstance(event, Died):
                    w = event.worker
                    raise ExecutorStartError(w.dep.name, f'its instance (replica {w.replica}) ended during start-up: '
                                             f'{event.error}') from event.error

    def on_ready(self, event: Ready) -> None:
        """An instance is ready: what its executor handles is known now."""
        w = event.worker
        w.ready = True
        self._ready_by.pop(w, None)
        w.dep.endpoints = event.endpoints
        w.dep.has_default = event.default
        w.dep.matrix_endpoints = event.matrix

    def restart(self, w: Worker) -> None:
        """``w`` died: start its successor if its executor has restarts left (a failure to
        start it is logged: the requests it held are then retried elsewhere or failed)."""
        dep = w.dep
        if dep.restarts >= dep.max_restarts:
            return
        dep.restarts += 1
        logger.warning('restarting executor %r (replica %d, shard %d): restart %d of %d', dep.name, w.replica,
                       w.shard, dep.restarts, dep.max_restarts)
        try:
            self._spawn(dep, w.shard, w.replica)
        except Exception:
            logger.exception('could not restart executor %r (replica %d, shard %d)', dep.name, w.replica, w.shard)
            return
        # Replaced: it is no candidate again, and every choice would scan it (a Flow
        # restarting an executor a thousand times kept a thousand). One without a successor
        # stays: its death is what requests for that shard fail with.
        dep.workers.remove(w)
        dep.by_shard[w.shard].remove(w)

    def on_died(self, w: Worker) -> None:
        """``w`` is gone: forget what was pending for it (its deadline, a hang, its end)."""
        self._ready_by.pop(w, None)
        self.hung.forget(w)
        self.ending.discard(w)

    def end(self, w: Worker, why: str) -> None:
        """End ``w`` (``why``: 'by the Flow: ...', for its requests' errors). It is given no
        request from now on; its ``Died`` event restarts it (restarts left) or fails what
        waits for it."""
        self.ending.add(w)
        self.transport.kill(w, why)

    def end_overdue(self, now: float, clock: float | None = None) -> list[Worker]:
        """End the restarts not ready within ``timeout_ready`` (requests waiting for one
        would otherwise wait forever) and the hung instances past their grace. ``now`` is
        ``time.monotonic()``; ``clock`` the time hung instances were marked on (the
        router's ``clock()``; ``now`` if not given).

        Returns the hung instances left running (their executor has no restart left for
        them): they are given requests again, so what waits for them must be handed on.
        """
        if self._ready_by:
            for w, by in list(self._ready_by.items()):
                if by <= now:
                    del self._ready_by[w]
                    if w.alive and not w.ready:
                        self.end(w, f'by the Flow: its restart was {_not_ready(w)}')
        return self.hung.end_due(now if clock is None else clock, self) if self.hung else []

    def close(self) -> None:
        """Stop every instance (each executor's ``close()`` runs in it; one that does not stop
        within ``timeout_close`` is killed) and release everything the transport holds."""
        if not self.started:
            return
        self.started = False
        self.transport.close([w for d in self.deployments for w in d.workers], self.timeout_close)

    # -- choosing ----------------------------------------------------------------------------
    def choose(self, dep: Deployment, shard: int | None) -> Worker | BaseException | None:
        """The instance (of ``shard``, or of any shard) that takes the next request.

        Returns the live, ready instance with the fewest outstanding requests; ``WAIT``
        (None) when the request must wait in the router -- a restart is under way, the
        only instances left hang and are due to be ended (a request queued behind a hung
        handler would die with it, never having run), or every one of several instances
        holds ``MAX_OUTSTANDING``; or, when no instance is left, the error to fail the
        request with. Otherwise a single instance is always given the request (its own
        queue is the only place it could wait).
        """
        pool = dep.candidates(shard)
        if self.hung or self.ending:
            held = [w for w in pool if w in self.hung or w in self.ending]
            if held:
                pool = [w for w in pool if w not in held]
                if not pool:
                    return WAIT  # each answers (it was only slow) or dies: either hands this on
        if not pool:
            if dep.starting(shard):
                return WAIT
            return dep.by_shard[shard or 0][-1].died()
        w = min(pool, key=_load)
        if len(pool) > 1 and w.outstanding >= MAX_OUTSTANDING:
            return WAIT
        return w


def _load(w: Any) -> int:
    return w.outstanding


def _not_ready(w: Worker) -> str:
    return (f'not ready after timeout_ready={w.dep.timeout_ready} s ('
            + (w.pending_reason() or 'its __init__ may hang; raise timeout_ready if it is slow') + ')')
