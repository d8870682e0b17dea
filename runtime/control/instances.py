"""The executors' instances as the router sees them: started, restarted, stopped, and
chosen for each request.

The router keeps the requests; this keeps the instances (through a ``Transport``, so it
never touches a process either). Both of the router's choices of an instance -- for a
request arriving at an executor, and for one that waited in the router -- are ``choose``,
so the two cannot drift apart.

Example
-------
>>> instances = Instances(specs, LocalTransport(32 << 20), 'workspace', timeout_close=5.0)
>>> instances.start()
>>> w = instances.choose(instances.deployments[0], None)   # a Worker, WAIT or an error
>>> instances.close()
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

from ..errors import ExecutorStartError
from ..transport.base import Died, InitFailed, Ready, Transport, Worker
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
                dep.metas.setdefault('workspace', os.path.join(self.workspace, dep.metas['name']))
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
        dep.workers.append(w)
        dep.by_shard[shard].append(w)
        return w

    def _wait_ready(self) -> None:
        timeouts = [d.timeout_ready for d in self.deployments]
        limit = None if any(t is None or t < 0 for t in timeouts) else max(timeouts, default=0)
        deadline = None if limit is None else time.monotonic() + limit
        pending = lambda: [w for d in self.deployments for w in d.workers if not w.ready]  # noqa: E731
        while pending():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                w = pending()[0]
                why = w.pending_reason()
                raise ExecutorStartError(w.dep.name, f'not ready after timeout_ready={limit} s ('
                                         + (why or 'its __init__ may hang; raise timeout_ready if it is slow') + ')')
            for event in self.transport.poll(POLL_S if remaining is None else min(POLL_S, remaining)):
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
        (None) when the request must wait in the router -- a restart is under way, or
        every one of several instances holds ``MAX_OUTSTANDING``; or, when no instance is
        left, the error to fail the request with. A single instance is always given the
        request (its own queue is the only place it could wait).
        """
        pool = dep.candidates(shard)
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
