"""Ray's options for a Flow: whether Ray is installed, the arguments of a private Ray
instance, and ``add(..., ray_options=...)`` checked where it is given (what Ray itself
checks only when it creates the actor, seconds later, included) and turned into an
actor's ``.options()``.

Example
-------
>>> check_ray_options('enc', {'num_cpus': 2})
{'num_cpus': 2}
"""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ...control.topology import Deployment

__all__ = ['INSTALL_HINT', 'SHIP_HINT', 'import_ray', 'private_ray_kwargs', 'check_ray_options', 'actor_options']

INSTALL_HINT = "pip install 'shmflow[ray]' (or pip install 'ray>=2.9') on this machine and on every node of the cluster"
#: How to give actors modules of this machine: Ray uploads local folders for a whole job only.
SHIP_HINT = ("ship local folders with the Flow's Ray job: Flow(backend='ray', ray_init_kwargs={'runtime_env': "
             "{'py_modules': ['path/to/mypkg']}}) (a script that calls ray.init itself passes runtime_env there), "
             "or give ray_options URIs of uploaded packages ('s3://bucket/mypkg.zip')")
#: Payloads smaller than this ride inside the actor call; larger ones are put in the
#: ``ray_options`` that the Flow sets itself: Ray must not restart or retry on its own.
_FLOW_OWNED = {'max_restarts': 'use add(..., max_restarts=N)', 'max_task_retries': 'use add(..., max_retries=N)',
               'max_concurrency': 'use replicas=N (an executor handles one request at a time)',
               'lifetime': "leave it out: the Flow's actors end with the Flow",
               'name': 'use add(..., name=...)', 'namespace': 'leave it out', 'get_if_exists': 'leave it out'}



def import_ray() -> Any:
    """``ray``, or ImportError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(f"Flow(backend='ray') needs Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


def private_ray_kwargs(init_kwargs: dict | None = None) -> dict:
    """The ``ray.init`` arguments of a private instance (``ray_address=None``):
    ``init_kwargs`` over no dashboard, warnings only, and executors at nice 0.

    Example
    -------
    >>> ray.init(address='local', **private_ray_kwargs({'num_cpus': 4}))
    """
    kwargs = dict(init_kwargs or {})
    kwargs.setdefault('include_dashboard', False)
    kwargs.setdefault('logging_level', logging.WARNING)  # not Ray's start-up chatter
    # Ray runs workers at nice 15 so that its daemons stay responsive on a shared cluster
    # node; on this machine the executors are the work, as the local runtime's processes
    # (nice 0) are: on a loaded 2-core machine nice 15 measured 0.7x of the local runtime.
    config = kwargs['_system_config'] = dict(kwargs.get('_system_config') or {})
    config.setdefault('worker_niceness', 0)
    return kwargs


def check_ray_options(executor: str, options: Any) -> dict:
    """``add(..., ray_options=...)`` checked where it is given: a dict of Ray actor options
    (``num_cpus``, ``num_gpus``, ``memory``, ``resources``, ``scheduling_strategy``,
    ``runtime_env``, ...), none of those the Flow sets itself. Ray checks names and values
    too when it is installed here, and its ``runtime_env`` as Ray would only when it
    creates the actor (``env_vars`` values are strings; ``py_modules`` and ``working_dir``
    are URIs: Ray uploads local folders for a whole job only, see ``SHIP_HINT``). Returns
    a copy.

    Example
    -------
    >>> check_ray_options('enc', {'num_gpus': 0.5, 'resources': {'big_mem': 1}})
    {'num_gpus': 0.5, 'resources': {'big_mem': 1}}
    """
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise TypeError(f'executor {executor!r}: ray_options must be a dict of Ray actor options such as '
                        f"{{'num_cpus': 1, 'num_gpus': 0.5, 'resources': {{'node_a': 1}}}}, got {type(options).__name__}")
    for key, instead in _FLOW_OWNED.items():
        if key in options:
            raise ValueError(f'executor {executor!r}: ray_options {key!r} is set by the Flow; {instead}')
    try:  # Ray's own check, where this Ray has it (a private module: its place moves between versions)
        from ray._common.ray_option_utils import validate_actor_options
    except ImportError:
        try:
            from ray._private.ray_option_utils import validate_actor_options
        except ImportError:
            validate_actor_options = None
    if validate_actor_options is not None:
        try:
            validate_actor_options(dict(options), in_options=True)
        except (ValueError, TypeError) as exc:
            raise type(exc)(f'executor {executor!r}: bad ray_options: {exc}') from None
    if options.get('runtime_env') is not None:
        _check_runtime_env(executor, options['runtime_env'])
    return dict(options)


def _check_runtime_env(executor: str, runtime_env: Any) -> None:
    """What Ray checks of a ``runtime_env`` only at the actor's creation, checked now:
    a mistake then surfaces seconds later, after Ray has started."""
    where = f"executor {executor!r}: bad ray_options['runtime_env']"
    if not isinstance(runtime_env, dict):
        raise TypeError(f"{where}: it must be a dict such as {{'env_vars': {{'THREADS': '4'}}, "
                        f"'py_modules': ['path/to/mypkg']}}, got {type(runtime_env).__name__}")
    env_vars = runtime_env.get('env_vars')
    if env_vars is not None:
        if not isinstance(env_vars, dict):
            raise TypeError(f"{where}: env_vars must be a dict of str to str, got {type(env_vars).__name__}")
        for k, v in env_vars.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"{where}: env_vars must map str to str, got {k!r}: {v!r}; "
                                f"write the value as a string ({{{k!r}: {str(v)!r}}}), or use add(..., env=...), "
                                f"which converts values with str()")
    modules = runtime_env.get('py_modules')
    paths = [('working_dir', runtime_env.get('working_dir'))]
    if isinstance(modules, (list, tuple)):
        paths += [('py_modules', m) for m in modules]
    refused = _local_paths_refused()
    for key, path in paths:
        # A URI ('s3://...', 'gcs://...') is the cluster's to fetch; a module object has no path here.
        if not isinstance(path, (str, os.PathLike)) or '://' in str(path):
            continue
        if not os.path.exists(path):
            raise ValueError(f"{where}: {key} path {str(path)!r} does not exist (relative to {os.getcwd()!r})"
                             + (f'; {SHIP_HINT}' if refused else ''))
        if refused:
            raise ValueError(f'{where}: {key} {str(path)!r} is a local path, which Ray takes for the whole job '
                             f'only, not for one actor: {SHIP_HINT}')
    try:  # the rest as Ray parses it (a public class; its module imports Ray)
        from ray.runtime_env import RuntimeEnv
    except ImportError:
        return
    try:
        RuntimeEnv(**runtime_env)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f'{where}: {exc}') from None


def _local_paths_refused() -> bool:
    """Whether this Ray refuses local ``py_modules`` / ``working_dir`` paths in an actor's
    options (it checks in ``.options()`` with this private function; Ray 2.x does)."""
    try:
        from ray.runtime_env import runtime_env
    except ImportError:
        return False
    return hasattr(runtime_env, '_validate_no_local_paths')


def _fmt(resources: dict) -> str:
    return '{' + ', '.join(f'{k!r}: {v:g}' if isinstance(v, (int, float)) else f'{k!r}: {v!r}'
                           for k, v in resources.items()) + '}'


def actor_options(dep: 'Deployment') -> tuple[dict, dict]:
    """(``.options()`` for the actor of ``dep``, the resources it asks for), from
    ``add(..., ray_options=..., env=...)``."""
    opts = check_ray_options(dep.name, getattr(dep, 'ray_options', None) or {})
    if dep.env:
        runtime_env = dict(opts.get('runtime_env') or {})
        env_vars = dict(runtime_env.get('env_vars') or {})
        env_vars.update({str(k): str(v) for k, v in dep.env.items()})
        runtime_env['env_vars'] = env_vars
        opts['runtime_env'] = runtime_env
    asks: dict = {}
    if opts.get('num_cpus'):
        asks['CPU'] = opts['num_cpus']
    if opts.get('num_gpus'):
        asks['GPU'] = opts['num_gpus']
    if opts.get('memory'):
        asks['memory'] = opts['memory']
    asks.update(opts.get('resources') or {})
    return opts, asks



def _shown(opts: dict) -> dict:
    """``opts`` for an error message: the values of ``env_vars`` (``env=``'s too, an API
    key perhaps) left out."""
    runtime_env = opts.get('runtime_env')
    if not isinstance(runtime_env, dict) or not isinstance(runtime_env.get('env_vars'), dict):
        return opts
    return {**opts, 'runtime_env': {**runtime_env, 'env_vars': {k: '...' for k in runtime_env['env_vars']}}}

