"""What the router needs from a transport, and the events a transport reports.

The router (``runtime.control.router``) knows where every request is and where it goes
next; a transport knows how to reach an executor instance and how documents travel. The
router never touches a socket, a process or a buffer; a transport never looks inside the
request graph. Two transports implement this interface: ``local`` (OS processes, ZeroMQ,
shared-memory arenas) and ``ray`` (Ray actors, the object store).

A *payload* is a transport's own, opaque handle on one request's documents (for the
local transport: where the pickle and the arrays lie; for Ray: an object reference). The
router only passes payloads around, and asks the transport to make new ones (inputs,
joins) and to open the last one for the caller.

Example
-------
>>> t = LocalTransport(arena_size=32 << 20)
>>> t.open(); w = t.spawn(dep, shard=0, replica=0)
>>> for event in t.poll(0.1): ...          # Ready(w, ...), then Reply / Failed / Died
>>> t.send(w, rid, '/index', params_blob, None, t.put(rid, docs))
"""
from __future__ import annotations

import abc
import logging
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from ..array import DocumentArray
    from ..control.topology import Deployment
    from ..errors import ExecutorError, ExecutorStartError, WorkerDiedError

__all__ = ['Worker', 'Ready', 'Reply', 'Failed', 'Died', 'InitFailed', 'Transport', 'raise_close_errors']

logger = logging.getLogger('runtime')

Payload = Any


class Worker:
    """The router's handle on one executor instance (a process, an actor).

    The router keeps ``outstanding`` (requests sent, not answered) and reads ``alive`` /
    ``ready``; a transport subclasses it to keep its own handles (a process, a socket
    identity, an actor) and sets ``pid`` and ``node`` for routes and profiles.
    """

    def __init__(self, dep: 'Deployment', shard: int, replica: int) -> None:
        self.dep, self.shard, self.replica = dep, shard, replica
        self.alive = True
        self.ready = False
        self.outstanding = 0
        self.pid: int | None = None
        self.node = ''  # where it runs, for routes (a Ray node id; '' on this machine)

    def died(self) -> 'WorkerDiedError':
        """The error of the requests it held when it went away."""
        from ..errors import WorkerDiedError
        return WorkerDiedError(self.dep.name, self.replica, None, self.pid,
                               shard=self.shard if self.dep.shards > 1 else None)

    def pending_reason(self) -> str:
        """Why it is not ready yet, if the transport knows (e.g. resources no node has)."""
        return ''

    def label(self) -> str:
        """``'enc' (replica 1, shard 0, pid 123)``: how errors and logs name it."""
        pid = f', pid {self.pid}' if self.pid is not None else ''
        node = f', node {self.node}' if self.node else ''
        return f'{self.dep.name!r} (replica {self.replica}, shard {self.shard}{pid}{node})'

    def __repr__(self) -> str:
        return f'<{type(self).__name__} {self.label()}{"" if self.alive else " dead"}>'


# -- events: what ``Transport.poll`` returns ---------------------------------------------
class Ready:
    """``worker`` finished its ``__init__`` and takes requests (also after a restart).

    ``matrix``: the endpoints (``'__default__'`` for the default handler) whose handler
    names ``docs_matrix``."""
    __slots__ = ('worker', 'endpoints', 'default', 'matrix')

    def __init__(self, worker: Worker, endpoints: frozenset, default: bool, matrix: frozenset = frozenset()) -> None:
        self.worker, self.endpoints, self.default, self.matrix = worker, endpoints, default, matrix


class InitFailed:
    """``worker``'s ``__init__`` raised (its process or actor is going away)."""
    __slots__ = ('worker', 'error')

    def __init__(self, worker: Worker, error: 'ExecutorStartError') -> None:
        self.worker, self.error = worker, error


class Reply:
    """``worker`` answered request ``rid``.

    ``times`` are wall-clock (``time.time()``) stamps in the worker: received, handler
    start, handler end, reply sent. ``results`` is the dict the handler returned, if any.
    """
    __slots__ = ('worker', 'rid', 'payload', 'docs_out', 'results', 'times', 'moved_bytes')

    def __init__(self, worker: Worker, rid: int, payload: Payload, docs_out: int, results: dict | None,
                 times: tuple, moved_bytes: int) -> None:
        self.worker, self.rid, self.payload, self.docs_out = worker, rid, payload, docs_out
        self.results, self.times, self.moved_bytes = results, times, moved_bytes


class Failed:
    """``worker``'s handler raised on request ``rid``; the error is rebuilt by the router.
    ``times`` as in ``Reply`` (received, handler start, end, sent)."""
    __slots__ = ('worker', 'rid', 'exc_type', 'message', 'traceback', 'times')

    def __init__(self, worker: Worker, rid: int, exc_type: str, message: str, traceback: str,
                 times: tuple) -> None:
        self.worker, self.rid, self.exc_type, self.message = worker, rid, exc_type, message
        self.traceback, self.times = traceback, times


class Died:
    """``worker`` is gone (exit, signal, lost connection, dead node): every request it
    held is lost with it. ``error`` says how, for the requests' callers."""
    __slots__ = ('worker', 'error')

    def __init__(self, worker: Worker, error: 'WorkerDiedError') -> None:
        self.worker, self.error = worker, error


Event = Ready | InitFailed | Reply | Failed | Died


class Transport(abc.ABC):
    """Reaches executor instances and moves documents; driven by one router, in one thread.

    No call may block for long: ``send`` queues when the other side is slow, and only
    ``poll`` waits (up to its timeout).
    """

    #: Shown in logs and profiles: 'local' or 'ray'.
    name = ''

    @abc.abstractmethod
    def open(self) -> None:
        """Get ready to spawn workers (sockets, arenas, a cluster connection)."""

    @abc.abstractmethod
    def spawn(self, dep: 'Deployment', shard: int, replica: int) -> Worker:
        """Start one instance of ``dep``; it reports ``Ready`` (or ``InitFailed`` /
        ``Died``) through ``poll`` later. Called again with the same (shard, replica) to
        restart a dead one."""

    @abc.abstractmethod
    def send(self, worker: Worker, rid: int, endpoint: str, params_blob: bytes, earlier: dict | None,
             payload: Payload, split: tuple | None = None) -> None:
        """Hand request ``rid`` to ``worker``: run its handler for ``endpoint`` on the
        documents of ``payload`` with the pickled parameters and the earlier executors'
        results (``split``: sizes of consecutive parts, given to the handler as
        ``docs_matrix``; see ``handling.run_handler``). Never blocks; a request that cannot
        be delivered makes ``worker`` die (a ``Died`` event), which fails or retries what
        it held."""

    @abc.abstractmethod
    def poll(self, timeout_s: float) -> list[Event]:
        """Events (``Ready``, ``InitFailed``, ``Reply``, ``Failed``, ``Died``) that
        happened, waiting up to ``timeout_s`` for the first one."""

    def flush(self) -> None:
        """Send now what ``send`` queued. The router calls it once it has handled the
        events of a poll, before the caller encodes new inputs (which takes long): a request
        moving on to its next executor must not wait for that. Nothing to do for a
        transport whose ``send`` does not queue."""

    def has_events(self) -> bool:
        """Whether ``poll`` would return an event now (asked before the router's caller does
        other work instead of polling). True when the transport cannot tell cheaply."""
        return True

    def deaths(self) -> list[Event]:
        """``Died`` events of workers that ended since the last ``poll``, without waiting
        and without reading anything else (asked before each post: between posts nothing
        polls). A transport that learns of deaths only from its calls returns none."""
        return []

    @abc.abstractmethod
    def put(self, rid: int, docs: 'DocumentArray') -> Payload:
        """A payload holding ``docs``, owned by request ``rid`` (freed by ``retire``)."""

    @abc.abstractmethod
    def count(self, payload: Payload) -> int:
        """How many documents ``payload`` holds (without reading them)."""

    @abc.abstractmethod
    def combine(self, rid: int, payloads: list, merge: Callable[[list], 'DocumentArray']) -> Payload:
        """The payload of ``merge([docs of each payload])``, owned by ``rid``: joins of
        branches and of shards. Arrays the merge did not change need not be copied."""

    @abc.abstractmethod
    def open_result(self, rid: int, payload: Payload, copy: bool) -> tuple['DocumentArray', Any]:
        """The documents of a finished request for the caller, and a token for
        ``close_result`` once the callbacks returned. ``copy=False`` may give views that
        stay valid for as long as the caller keeps them. Raises if the payload cannot be
        read (its owner died with it): the router fails the request loudly."""

    @abc.abstractmethod
    def close_result(self, token: Any) -> None:
        """The callbacks of a finished request have returned."""

    @abc.abstractmethod
    def retire(self, rid: int) -> None:
        """Request ``rid`` is over and no worker holds it: free what it owned."""

    @abc.abstractmethod
    def kill(self, worker: Worker, why: str) -> None:
        """End ``worker`` now (it hangs, or lost its connection); a ``Died`` event follows."""

    @abc.abstractmethod
    def close(self, workers: list, timeout_close: float) -> None:
        """Stop ``workers`` (each executor's ``close()`` runs; one that takes longer than
        ``timeout_close`` is killed) and release everything this transport holds; then
        raise what an executor's ``close()`` raised (``raise_close_errors``)."""

    def describe(self) -> str:
        """Where the workers run, for the ready line."""
        return 'local processes'


def raise_close_errors(errors: list[tuple[Worker, 'ExecutorError']]) -> None:
    """Raise the first (in the Flow's order) of the errors executors' ``close()`` raised,
    after logging the others: called once everything is stopped and released.

    >>> raise_close_errors([])  # nothing raised: nothing to do
    """
    errors = sorted(errors, key=lambda e: (e[0].dep.index, e[0].shard, e[0].replica))
    for _, error in errors[1:]:
        logger.error('%s\n%s', error, error.remote_traceback)
    if errors:
        raise errors[0][1]
