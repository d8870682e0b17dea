"""Writing Jina 2 YAML configs of Executors and Flows, which ``config`` reads back.

``save_executor_config`` writes an executor as ``jtype`` / ``with`` / ``metas`` /
``requests``; ``save_flow`` writes each executor of a Flow as the ``add()`` arguments that
made it, and its defaults for every ``add()`` under ``with:``. Relative paths are made
absolute (a config's relative paths are looked up beside its file first, and a script may
load it from another directory), and a value YAML cannot hold is refused, naming where it
is, never left out.

Example
-------
>>> save_flow(Flow().add(name='enc', uses=MyEncoder, replicas=2), 'flow.yml')  # doctest: +SKIP
"""
from __future__ import annotations

import os
import sys
from typing import Any

from .config import _plain
from .config_paths import _is_module_path

__all__ = ['save_flow', 'save_executor_config']

#: Per-executor keys written by save_flow, in this order: every ``Flow.add`` argument (read:
#: the same). One missing here would be dropped, and the reloaded Flow would differ silently.
_SAVED_ADD_KEYS = ('uses', 'needs', 'replicas', 'shards', 'polling', 'uses_with', 'uses_metas', 'uses_requests',
                   'uses_before', 'uses_after', 'workspace', 'py_modules', 'env', 'timeout_ready', 'max_restarts',
                   'max_retries', 'ray_options')


def _class_ref(cls: type) -> dict:
    """``{'jtype': name}`` plus the py_modules that define the class, so it loads elsewhere."""
    out: dict = {'jtype': cls.__name__}
    module = sys.modules.get(cls.__module__)
    if cls.__module__.startswith('_runtime_py_modules.') and getattr(module, '__file__', None):
        out['metas'] = {'py_modules': [module.__file__]}
    elif cls.__module__ not in ('__main__', 'builtins') and not cls.__module__.startswith('runtime.'):
        out['metas'] = {'py_modules': [cls.__module__]}
    return out


def _dump(data: dict, path: Any, what: str) -> None:
    import yaml
    try:
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    except yaml.representer.RepresenterError as exc:
        raise TypeError(f'{what} cannot be written as YAML: it holds {type(exc.args[1]).__name__} '
                        f'{exc.args[1]!r:.60}; only str, numbers, bools, None, lists and dicts can be') from None
    if hasattr(path, 'write'):
        path.write(text)
    else:
        with open(path, 'w', encoding='utf-8') as fp:
            fp.write(text)


def save_executor_config(executor: Any, path: Any = None) -> Any:
    """Write ``executor`` as an executor config (``jtype``, ``with``, ``metas`` and
    ``requests``: ``{endpoint: method name}``, ``/default`` for the default handler);
    returns ``path``.

    Example
    -------
    >>> save_executor_config(MyEncoder(dim=8), 'enc.yml')  # doctest: +SKIP
    'enc.yml'
    """
    import inspect
    cls = type(executor)
    args, kwargs = getattr(executor, '_init_args', ((), {}))
    with_args = dict(kwargs)
    if args:
        bound = inspect.signature(cls.__init__).bind_partial(executor, *args).arguments
        bound.pop(next(iter(bound)))  # self
        with_args = {**bound, **with_args}
    ref = _class_ref(cls)
    # (metas.workspace is None unless one was given: the default is not written.)
    metas = {k: v for k, v in vars(executor.metas).items() if v is not None}
    metas = {**ref.get('metas', {}), **metas}
    data = {'jtype': ref['jtype'], 'with': with_args, 'metas': metas}
    # Every binding, as Jina 2 wrote them: those of a requests: section (or requests=) exist
    # on this object only, and would be lost; the @requests ones are bound again on load.
    bindings = {endpoint: method for endpoint, (method, _) in getattr(executor, '_handlers', {}).items()}
    if bindings:
        data['requests'] = bindings
    if path is None:
        path = f'{executor.metas.name}.yml'
    _dump(_plain(data), path, f'{cls.__name__} config')
    return path


def _named_class(cls: type, where: str) -> dict:
    """``_class_ref(cls)`` for a Flow config, or TypeError when loading the config in this
    process would find another class by that name (a config names classes by name)."""
    from .executor import Executor, lookup_executor_class
    if cls is Executor:
        return {'jtype': 'Executor'}
    try:
        found = lookup_executor_class(cls.__name__)
    except ValueError:
        found = None
    if found is not cls:
        other = 'no class' if found is None else f'another class ({found.__module__}.{found.__qualname__}, ' \
                                                  f'defined after it)'
        raise TypeError(f'{where} cannot be written as YAML: a config names its class by name, and '
                        f'{cls.__name__!r} now names {other}, not {cls.__module__}.{cls.__qualname__}; give each '
                        f'Executor class a name of its own')
    return _class_ref(cls)


def _absolute(path: Any) -> Any:
    """A file path made absolute (``~`` expanded; a relative one from the current directory,
    which ``add()`` and the executors read it from): a config's relative paths are looked up
    beside its file first, and it may be loaded from another directory."""
    return os.path.abspath(os.path.expanduser(path)) if isinstance(path, str) else path


def _py_modules_out(mods: Any) -> Any:
    mods = [mods] if isinstance(mods, str) else mods
    if not isinstance(mods, (list, tuple)):
        return mods
    return [_absolute(m) if isinstance(m, str) and _is_module_path(m) else m for m in mods]


def _uses_out(uses: Any, where: str) -> Any:
    """``uses`` (or uses_before / uses_after) as a Flow config writes it."""
    from .executor import Executor, _looks_like_yaml
    if isinstance(uses, os.PathLike):
        uses = os.fspath(uses)
    if isinstance(uses, type) and issubclass(uses, Executor):
        return _named_class(uses, where)
    if isinstance(uses, str) and uses.endswith(('.yml', '.yaml')) and not _looks_like_yaml(uses):
        return _absolute(uses)
    if isinstance(uses, dict):
        out = dict(uses)
        if isinstance(uses.get('jtype'), type):
            ref = _named_class(uses['jtype'], where)
            out['jtype'] = ref['jtype']
            if 'metas' in ref:
                out['metas'] = {**ref['metas'], **(uses.get('metas') or {})}
        if isinstance(out.get('metas'), dict) and out['metas'].get('py_modules'):
            out['metas'] = {**out['metas'], 'py_modules': _py_modules_out(out['metas']['py_modules'])}
        return out
    return uses


def _check_yaml(value: Any, where: str) -> None:
    """TypeError naming ``where`` when ``value`` cannot be written as YAML."""
    import yaml
    try:
        yaml.safe_dump(_plain(value))
    except yaml.representer.RepresenterError as exc:
        raise TypeError(f'{where} cannot be written as YAML: it holds {type(exc.args[1]).__name__} '
                        f'{exc.args[1]!r:.60}; only str, numbers, bools, None, lists and dicts can be') from None


def _saved_value(key: str, value: Any, where: str) -> Any:
    """An ``add()`` argument as a Flow config writes it (None: not written, it is the
    default): paths absolute, classes by name; TypeError naming ``where`` when YAML cannot
    hold it."""
    if key == 'polling' and isinstance(value, dict):
        value = value['*'] if set(value) == {'*'} else value
    if key == 'polling' and value == 'any':
        value = None
    elif key in ('replicas', 'shards') and value == 1:
        value = None
    elif key in ('uses', 'uses_before', 'uses_after'):
        value = _uses_out(value, where)
    elif key == 'workspace' and value is not None:
        value = _absolute(os.fspath(value))
    elif key == 'py_modules' and value is not None:
        value = _py_modules_out(value)
    elif key == 'uses_metas' and isinstance(value, dict) and value.get('py_modules'):
        value = {**value, 'py_modules': _py_modules_out(value['py_modules'])}
    if value is None or value == {} or (key.startswith('max_') and value == 0):
        return None
    _check_yaml(value, where)
    return value


def _saved_add_args(spec: dict, needs: list, previous: str) -> dict:
    """One executor of a Flow config: the ``add()`` arguments that built ``spec``, with
    ``needs`` (the add()'s own, by the names add() takes) omitted when it is ``previous``."""
    name = spec['resolved_name']
    entry: dict = {'name': name}
    for key in _SAVED_ADD_KEYS:
        if key == 'needs':
            value = None if needs == [previous] else needs[0] if len(needs) == 1 else needs
        else:
            value = _saved_value(key, spec.get(key), f'save_config: executor {name!r}, {key}=')
        if value is not None:
            entry[key] = value
    return entry


def save_flow(flow: Any, path: Any) -> None:
    """Write ``flow`` as a Flow config that ``load_flow`` reads back into a Flow that does the
    same: each executor as the ``add()`` arguments that made it (``uses_before`` /
    ``uses_after`` included, not their head and tail), its ``Flow(...)`` arguments (the
    defaults of every ``add()`` too) under ``with:``, relative paths made absolute. An
    argument that YAML cannot hold is refused with a TypeError naming the executor and the
    argument, never left out.

    Example
    -------
    >>> save_flow(Flow().add(name='a', uses=MyEncoder, replicas=2), 'flow.yml')  # doctest: +SKIP
    """
    from .control.post_args import POST_DEFAULTS
    from .flow import DEFAULT_ARENA_SIZE, DEFAULT_PREFETCH, DEFAULT_TIMEOUT_CLOSE
    flow_args: dict = {}
    for attr, key, default in (('_workspace', 'workspace', None), ('_prefetch', 'prefetch', DEFAULT_PREFETCH),
                               ('_arena_size', 'arena_size', DEFAULT_ARENA_SIZE),
                               ('_timeout_close', 'timeout_close', DEFAULT_TIMEOUT_CLOSE),
                               ('_profile_opt', 'profile', False), ('_backend', 'backend', 'local'),
                               ('_ray_address', 'ray_address', None), ('_ray_init_kwargs', 'ray_init_kwargs', None)):
        value = getattr(flow, attr, default)
        if value != default:
            if key == 'workspace':
                value = _absolute(os.fspath(value))  # (the reloading script may run elsewhere)
            elif isinstance(value, os.PathLike):
                value = os.fspath(value)
            _check_yaml(value, f'save_config: Flow({key}=...)')
            flow_args[key] = value
    # (the gateway's options: those it serves with, or those kept for when it serves)
    flow_args.update(getattr(flow, '_serve', None) or getattr(flow, '_serve_later', None) or {})
    # (the defaults of its posts, Flow(return_results=True) ...: only those that differ)
    flow_args.update({k: v for k, v in getattr(flow, '_post_defaults', POST_DEFAULTS).items() if v != POST_DEFAULTS[k]})
    # (its defaults for every add(), Flow(replicas=2, env=...), as Jina 2 wrote its
    # _common_kwargs: an executor added to the reloaded Flow gets them too)
    for key, value in getattr(flow, '_defaults', {}).items():
        value = _saved_value(key, value, f'save_config: Flow({key}=...)')
        if value is not None:
            flow_args[key] = value
    specs = flow._specs
    tails = {s['resolved_name']: s['side_of'] for s in specs if s.get('group')}
    heads = {s['side_of']: s for s in specs if s.get('side_of') and not s.get('group')}
    executors = []
    for spec in specs:
        if spec.get('side_of'):
            continue  # written as its executor's uses_before / uses_after
        name = spec['resolved_name']
        # needs as add() took it: what the head (if any) takes; a tail by its executor's name
        needs = [tails.get(n, n) for n in (heads[name] if name in heads else spec)['needs']]
        previous = executors[-1]['name'] if executors else 'gateway'
        executors.append(_saved_add_args(spec, needs, previous))
    data: dict = {'jtype': 'Flow', 'version': '1'}
    if flow_args:
        data['with'] = flow_args
    data['executors'] = executors
    _dump(_plain(data), path, 'the Flow config')
