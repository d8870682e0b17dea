"""The process's Ray connection, shared by every Ray-backend Flow open in it.

Ray keeps one connection per process (``ray.init``), so Flows open at the same time share
it. The first Flow that finds none makes it (starting a private Ray for ``ray_address=None``);
the ones that open meanwhile use it; it ends (``ray.shutdown``, which also stops a private
Ray) when the *last* Flow using it closes, whichever opened first. A connection the script
made itself (``ray.init`` before its Flows) is never counted: it stays the script's.

Example
-------
>>> lease = acquire(ray, None, {'num_cpus': 2})     # starts a private Ray
>>> other = acquire(ray, None, {})                  # a second Flow: the same Ray
>>> release(ray, lease); release(ray, other)        # stopped here, by the last one
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

__all__ = ['Lease', 'acquire', 'release', 'baseline_environ']

logger = logging.getLogger('runtime')


class Lease:
    """One Flow's use of the connection that Flows made (``users`` Flows hold it).

    ``key`` tells that connection from a later one in the same process (a script that
    shut it down and connected again), ``address`` the ``ray_address`` it was made for
    (None: a private Ray it started)."""

    __slots__ = ('key', 'address', 'users')

    def __init__(self, key: Any, address: str | None) -> None:
        self.key, self.address, self.users = key, address, 0

    @property
    def private(self) -> bool:
        return self.address is None


_lock = threading.Lock()  # opens and closes of Flows in several threads take turns
_shared: Lease | None = None  # the connection Flows made, while one is open
# (connection key, os.environ just after the connection was made, or first seen by a Flow)
_environ: tuple[Any, dict] | None = None


def acquire(ray: Any, address: str | None, init_kwargs: dict) -> Lease | None:
    """Connect this process to Ray for one Flow, or join the connection it has.

    Returns the lease to ``release`` at the Flow's close, or None where the script made
    the connection itself (the Flow then leaves it alone). ``address=None`` starts a
    private Ray; anything else is ``ray.init``'s ``address``.

    Example
    -------
    >>> lease = acquire(ray, 'auto', {})
    """
    global _shared
    with _lock:
        if ray.is_initialized():
            key = _key(ray)
            _note_environ(key)
            if _shared is not None and _shared.key == key:
                _shared.users += 1
                return _shared
            _shared = None  # (one a script shut down and replaced: its Flows let it be)
            return None
        if address is None:
            _init_private(ray, init_kwargs)
        else:
            ray.init(address=address, **init_kwargs)
        lease = _shared = Lease(_key(ray), address)
        _note_environ(lease.key, made=True)
        lease.users = 1
        return lease


def baseline_environ() -> dict:
    """``os.environ`` as it was when this process connected to Ray (for a private Ray: what
    its workers inherited), or when a Flow first used a connection the script made itself.
    What the script changed since is what its actors still lack (see ``context``).

    Example
    -------
    >>> lease = acquire(ray, None, {}); os.environ['MODEL_DIR'] = '/m'
    >>> 'MODEL_DIR' in baseline_environ()
    False
    """
    with _lock:
        return dict(_environ[1]) if _environ is not None else dict(os.environ)


def _note_environ(key: Any, made: bool = False) -> None:
    """Keep ``os.environ`` of now as the connection's baseline, unless it has one (a
    connection made by a Flow has it from then; one the script made, from its first Flow)."""
    global _environ
    if made or _environ is None or _environ[0] != key:
        _environ = key, dict(os.environ)


def release(ray: Any, lease: Lease | None) -> None:
    """One Flow is done with ``lease``: the last one disconnects (and stops a private Ray).

    Example
    -------
    >>> release(ray, lease)
    """
    global _shared
    if lease is None:
        return
    with _lock:
        lease.users -= 1
        if lease.users > 0 or lease is not _shared:
            return
        _shared = None
        if ray.is_initialized() and _key(ray) == lease.key:
            ray.shutdown()


def _key(ray: Any) -> Any:
    """What tells one connection from another: a new ``ray.init`` is a new job (and a new
    private Ray has a new GCS address)."""
    try:
        ctx = ray.get_runtime_context()
        return ctx.get_job_id(), ctx.gcs_address
    except Exception:  # a Ray without these: a connection is then taken to be the same
        return None


def _init_private(ray: Any, init_kwargs: dict) -> None:
    """``ray.init`` of a private Ray that, if it is interrupted (Ctrl-C) or fails half
    way, stops what it had started.

    Ray registers the cleanup of its processes only once its node is up: interrupted
    before, the GCS and the raylet die with this process but the agents the raylet forked
    (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) linger for a minute."""
    try:
        ray.init(address='local', **init_kwargs)
    except BaseException as exc:
        _stop_half_started(ray, exc)
        raise


def _stop_half_started(ray: Any, exc: BaseException) -> None:
    try:
        worker = getattr(getattr(ray, '_private', None), 'worker', None)
        known = getattr(worker, '_global_node', None)  # set once the node is up: ray.shutdown stops it
        ray.shutdown()
        # Interrupted inside the node's construction: the object is only in the traceback.
        node_cls = getattr(getattr(getattr(ray, '_private', None), 'node', None), 'Node', None)
        tb = exc.__traceback__
        while tb is not None and node_cls is not None:
            node = tb.tb_frame.f_locals.get('self')
            if isinstance(node, node_cls) and node is not known:
                node.kill_all_processes(check_alive=False, allow_graceful=True)
                break
            tb = tb.tb_next
    except Exception as cleanup:  # the interrupt (or the failure) is what the caller must see
        logger.debug('backend ray: could not stop the half-started private Ray: %s', cleanup)
