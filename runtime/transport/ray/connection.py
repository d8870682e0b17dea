"""The process's Ray connection, shared by every Ray-backend Flow open in it.

Ray keeps one connection per process (``ray.init``), so Flows open at the same time share
it. The first Flow that finds none makes it (starting a private Ray for ``ray_address=None``);
the ones that open meanwhile use it; it ends (``ray.shutdown``, which also stops a private
Ray) when the *last* Flow using it closes, whichever opened first. A connection the script
made itself (``ray.init`` before its Flows) is never counted: it stays the script's.

Ray takes ``ray.init`` arguments once per process: a Flow that joins the connection another
Flow made must not ask for ``ray_init_kwargs`` it was not made with (it would run without
them); those it leaves out it takes as they are.

``ray_address='auto'`` is resolved here, not by Ray: ``RAY_ADDRESS``, else the cluster that
``ray start`` recorded on this machine. Ray's own 'auto' falls back to any Ray it sees running
here (it searches the processes), which may be another script's private Ray: one that ends,
and takes this Flow's actors with it, when that script does.

Example
-------
>>> lease = acquire(ray, None, {'num_cpus': 2})     # starts a private Ray
>>> other = acquire(ray, None, {})                  # a second Flow: the same Ray
>>> release(ray, lease); release(ray, other)        # stopped here, by the last one
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
from typing import Any

from .options import private_ray_kwargs

__all__ = ['Lease', 'acquire', 'release', 'baseline_environ', 'resolve_auto']

logger = logging.getLogger('runtime')


class Lease:
    """One Flow's use of the connection that Flows made (``users`` Flows hold it).

    ``key`` tells that connection from a later one in the same process (a script that
    shut it down and connected again), ``address`` the ``ray_address`` it was made for
    (None: a private Ray it started), ``init_kwargs`` the ``ray_init_kwargs`` of the Flow
    that made it."""

    __slots__ = ('key', 'address', 'init_kwargs', 'users')

    def __init__(self, key: Any, address: str | None, init_kwargs: dict) -> None:
        self.key, self.address, self.init_kwargs, self.users = key, address, dict(init_kwargs), 0

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
    private Ray; 'auto' is ``resolve_auto``'s cluster; anything else is ``ray.init``'s
    ``address``. ``init_kwargs`` are the Flow's ``ray_init_kwargs``.

    Raises ValueError, taking no share, where the connection another Flow made was made
    without some of ``init_kwargs`` (or with other values), and ConnectionError where
    'auto' finds no cluster.

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
                _check_joinable(_shared, init_kwargs)
                _shared.users += 1
                return _shared
            _shared = None  # (one a script shut down and replaced: its Flows let it be)
            return None
        if address is None:
            _init_private(ray, private_ray_kwargs(init_kwargs))
        else:
            target = resolve_auto(init_kwargs.get('_temp_dir')) if address == 'auto' else address
            ray.init(address=target, **init_kwargs)
        lease = _shared = Lease(_key(ray), address, init_kwargs)
        _note_environ(lease.key, made=True)
        lease.users = 1
        return lease


def resolve_auto(temp_dir: str | None = None) -> str:
    """The cluster ``ray_address='auto'`` means: ``RAY_ADDRESS`` where it is set (to other
    than 'auto'), else the address the last ``ray start`` on this machine recorded (in
    ``ray_current_cluster`` under Ray's temporary directory, ``temp_dir`` where given, as
    ``ray.init``'s ``_temp_dir``; ``ray stop`` removes it). A private Ray (``ray.init()``
    without an address, or another script's Flow) records none, so it is never chosen.

    Raises ConnectionError where there is neither.

    Example
    -------
    >>> resolve_auto()          # after `ray start --head --port=6379`
    '192.168.1.5:6379'
    """
    from_env = os.environ.get('RAY_ADDRESS', '').strip()
    if from_env and from_env != 'auto':
        return from_env
    path = _address_file(temp_dir)
    try:
        with open(path, encoding='utf-8') as fp:
            recorded = fp.read().strip()
    except OSError:  # (absent: no `ray start` since the last `ray stop`)
        recorded = ''
    if recorded:
        return recorded
    raise ConnectionError(f'RAY_ADDRESS is not set and no `ray start` recorded a cluster on this machine '
                          f'(in {path}); a Ray that a script started for itself is not joined')


def _address_file(temp_dir: str | None) -> str:
    """Where ``ray start`` records its cluster's address (Ray's own lookup, a private
    function, where this Ray has it)."""
    try:
        from ray._private.utils import get_ray_address_file
    except ImportError:  # (a Ray that moved it: its documented default place)
        base = os.environ.get('RAY_TMPDIR') or os.environ.get('TMPDIR') or tempfile.gettempdir()
        return os.path.join(temp_dir or os.path.join(base, 'ray'), 'ray_current_cluster')
    return get_ray_address_file(temp_dir)


def _check_joinable(lease: Lease, init_kwargs: dict) -> None:
    """Refuse to share ``lease`` with a Flow whose ``init_kwargs`` it was not made with.

    Refused rather than applied another way: what ``ray.init`` sets is the whole job's
    (``runtime_env``'s local ``py_modules``, ``num_cpus`` of a private Ray, ...), and the
    per-actor route, ``add(env=..., ray_options={'runtime_env': ...})``, inherits the job's
    ``runtime_env`` besides, so the Flow would still not run as it was configured."""
    def same(a: Any, b: Any) -> bool:
        try:
            return bool(a == b)
        except Exception:  # (values that do not compare, numpy arrays: taken to differ)
            return False

    # Compared as ray.init got them: a private Ray's defaults (no dashboard, ...) asked for
    # again are what it has.
    as_init = private_ray_kwargs if lease.private else dict
    made_with, asked = as_init(lease.init_kwargs), as_init(init_kwargs)
    differ = [k for k in init_kwargs if k not in made_with or not same(made_with[k], asked[k])]
    if not differ:
        return
    made = ', '.join(map(repr, lease.init_kwargs)) or 'none'
    raise ValueError(
        f"ray_init_kwargs {', '.join(map(repr, differ))} cannot take effect: this process's Ray connection was "
        f"made by another Flow that is still open, with other ray_init_kwargs (keys: {made}), and Ray takes "
        f"ray.init arguments once per process. Close that Flow before starting this one, give both Flows the "
        f"same ray_init_kwargs, or leave these out of this Flow; for one executor, use add(env={{...}}) or "
        f"add(ray_options={{'runtime_env': {{...}}, 'num_cpus': ...}})")


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
