"""A Flow's executor instance as a Ray actor (``RayWorker``), the error of the requests it
held when its actor ended (``RayWorkerDiedError``), and what Ray says of an actor's death.

Example
-------
>>> RayWorkerDiedError('enc', 1, 0, 'a1b2c3d4 (10.0.0.7)', 'its node died', pid=4321)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import WorkerDiedError
from ..base import Worker
from .options import _fmt, import_ray

if TYPE_CHECKING:  # pragma: no cover
    from ...control.topology import Deployment

__all__ = ['RayWorker', 'RayWorkerDiedError', 'RayPayload']


class RayWorkerDiedError(WorkerDiedError):
    """An executor's Ray actor ended while it held requests: its process was killed, or
    its node left the cluster. The message names the executor, replica, shard and node,
    and Ray's account of the death.

    Example
    -------
    >>> RayWorkerDiedError('enc', 1, 0, 'a1b2c3d4 (10.0.0.7)', 'its node died', pid=4321)
    """

    def __init__(self, executor: str, replica: int, shard: int, node: str, reason: str,
                 pid: int | None = None) -> None:
        self.executor, self.replica, self.shard, self.node = executor, replica, shard, node
        self.returncode, self.pid, self.reason = None, pid, reason
        RuntimeError.__init__(self, f'the Ray actor of executor {executor!r} (replica {replica}, shard {shard}, '
                                    f'pid {pid}, node {node or "not known yet"}) ended unexpectedly: {reason}')

    def __reduce__(self):
        return type(self), (self.executor, self.replica, self.shard, self.node, self.reason, self.pid)


class RayWorker(Worker):
    """One executor instance as a Ray actor; ``node`` is 'node-id-prefix (ip)' once ready."""

    def __init__(self, dep: 'Deployment', shard: int, replica: int, asks: dict) -> None:
        super().__init__(dep, shard, replica)
        self.actor: Any = None
        self.node_id = ''
        self.asks = asks  # the resources its actor asked Ray for
        self.calls: set = set()  # receipt refs of the requests it holds
        self.end = ''  # how its actor ended (Ray's account, or why it could not start)

    def died(self) -> RayWorkerDiedError:
        """The error of the requests it held when its actor ended, and of every request
        that meets its executor with no instance left: the same each time (executor,
        replica, shard, node and Ray's account of the death)."""
        return RayWorkerDiedError(self.dep.name, self.replica, self.shard, self.node,
                                  self.end or 'its Ray actor is gone', self.pid)

    def label(self) -> str:
        """``'enc' (replica 0, shard 1, pid 77, node 3f2a9c1e (10.0.0.7))``; while it
        waits for Ray to place it, also the resources it asked for."""
        parts = [f'replica {self.replica}', f'shard {self.shard}']
        if self.pid is not None:
            parts.append(f'pid {self.pid}')
        if self.node:
            parts.append(f'node {self.node}')
        elif self.alive and not self.ready and self.asks:
            parts.append(f'Ray actor asking for {_fmt(self.asks)}')
        return f'{self.dep.name!r} ({", ".join(parts)})'

    def pending_reason(self) -> str:
        """Why its actor has not started yet, for a ``timeout_ready`` error: the
        resources it asked for and whether any node of the cluster has them."""
        if not self.asks:
            return ''  # nothing Ray could lack: the router's own guess (a slow __init__) stands
        ray = import_ray()
        try:
            nodes = [n.get('Resources', {}) for n in ray.nodes() if n.get('Alive')]
        except Exception as exc:  # the error we are about to raise matters more
            return f'its Ray actor asked for {_fmt(self.asks)} (the cluster could not be asked: {exc})'
        fits = [n for n in nodes if all(n.get(k, 0) >= v for k, v in self.asks.items())]
        offer = '; '.join(_fmt({k: v for k, v in sorted(n.items()) if not k.startswith('node:')
                                and k not in ('memory', 'object_store_memory')}) for n in nodes)
        if not fits:
            return (f'its Ray actor asked for {_fmt(self.asks)}, which no node of the Ray cluster has '
                    f'(its {len(nodes)} node(s) offer: {offer or "nothing"}); change add(..., ray_options=...) '
                    f'or add a node that has them')
        return (f'its Ray actor asked for {_fmt(self.asks)}; {len(fits)} node(s) have them but none were free, '
                f'or its runtime_env is still being set up')


class RayPayload:
    """The transport's handle on one request's documents: how many, and where they are
    (a Ray object reference, or ``payload.encode``'s tuple itself when small enough to
    ride inside the next call)."""

    __slots__ = ('count', 'obj')

    def __init__(self, count: int, obj: Any) -> None:
        self.count, self.obj = count, obj

    def __repr__(self) -> str:
        return f'<RayPayload {self.count} docs>'


def _death_reason(exc: BaseException, ray: Any) -> str:
    """Ray's account of an actor's death, on one line."""
    text = str(exc)
    for marker in ('The actor is dead because', 'The actor died because'):
        i = text.find(marker)
        if i >= 0:
            text = text[i:]
            break
    text = ' '.join(text.split())
    if len(text) > 500:
        text = text[:497] + '...'
    if isinstance(exc, getattr(ray.exceptions, 'ActorUnavailableError', ())):
        # Ray would wait for it to come back; the Flow restarts it instead (max_restarts).
        text = f'Ray lost the connection to it: its node died, left the cluster or cannot be reached ({text})'
    return text


def _dead_state() -> Any:
    """What ``ActorHandle._get_local_state`` says of a dead actor, or None where this Ray
    has no such method (it is private: Ray Data's actor pool relies on it since Ray 2.x)."""
    try:
        from ray.actor import ActorHandle
        from ray.core.generated.gcs_pb2 import ActorTableData
        return ActorTableData.DEAD if hasattr(ActorHandle, '_get_local_state') else None
    except (ImportError, AttributeError):
        return None


def _local_state(actor: Any) -> Any:
    """What this process knows of ``actor``'s state (None: nothing; a handle of Ray Client
    has no such method: its deaths show at the next call)."""
    get = getattr(actor, '_get_local_state', None)
    try:
        return get() if get is not None else None
    except Exception:  # (disconnected, a Ray that changed it): no news
        return None
