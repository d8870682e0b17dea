"""Jina 2 YAML configs of Executors and Flows (PyYAML, safe loading only).

An Executor config::

    jtype: MyEncoder          # or the Jina 1 / early 2 form: !MyEncoder as a tag
    with: {dim: 128}          # __init__ arguments
    metas:
      name: enc
      py_modules: [encoder.py]  # imported first; paths relative to this file
    requests: {/index: encode}  # endpoint -> method, added to the @requests bindings

A Flow config::

    jtype: Flow
    version: '1'
    with: {workspace: ./ws}   # Flow(...) arguments
    executors:
      - name: enc
        uses: encoder.yml     # any uses= form; paths relative to this file
        replicas: 2
      - {name: idx, uses: MyIndexer, needs: enc, shards: 2, polling: all}

Values may refer to the environment or to a ``context`` dict: ``${{ ENV.HOME }}``,
``${{ CONTEXT.dim }}`` (or ``${{ dim }}``), ``$HOME`` / ``${HOME}``; a value that is only
a reference keeps the referred value's type. Errors name the file and the line.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
from typing import Any, Iterable, Mapping

__all__ = ['load_flow', 'save_flow', 'load_executor_config', 'save_executor_config', 'import_py_modules',
           'ConfigError']

EXECUTOR_KEYS = ('jtype', 'with', 'metas', 'requests')
FLOW_KEYS = ('jtype', 'version', 'with', 'executors')
#: Per-executor keys written by save_flow, in this order: every ``Flow.add`` argument (read:
#: the same). One missing here would be dropped, and the reloaded Flow would differ silently.
_SAVED_ADD_KEYS = ('uses', 'needs', 'replicas', 'shards', 'polling', 'uses_with', 'uses_metas', 'uses_before',
                   'uses_after', 'workspace', 'py_modules', 'env', 'timeout_ready', 'max_restarts', 'max_retries',
                   'ray_options')
_REF = re.compile(r'\$\{\{\s*(?:(ENV|CONTEXT)\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}|\$\{([A-Za-z_][A-Za-z0-9_]*)\}'
                  r'|\$([A-Za-z_][A-Za-z0-9_]*)')
_imported: dict[str, Any] = {}


class ConfigError(ValueError):
    """A YAML config that cannot be used; the message names the file and line."""


class _Node(dict):
    """A mapping from the YAML, remembering its line and each key's line (1-based)."""
    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


def _make_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: Loader, node: Any) -> _Node:
        out = _Node()
        out.line, out.key_lines = node.start_mark.line + 1, {}
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            out[key] = loader.construct_object(value_node, deep=True)
            out.key_lines[key] = key_node.start_mark.line + 1
        return out

    def tagged(loader: Loader, suffix: str, node: Any) -> Any:
        # Jina 1 / early Jina 2 wrote ``!MyExecutor`` (or ``!Flow``) instead of ``jtype:``.
        if isinstance(node, yaml.MappingNode):
            out = mapping(loader, node)
            out['jtype'] = suffix
            out.key_lines.setdefault('jtype', out.line)
            return out
        if isinstance(node, yaml.ScalarNode) and not node.value:
            out = _Node(jtype=suffix)
            out.line, out.key_lines = node.start_mark.line + 1, {'jtype': node.start_mark.line + 1}
            return out
        raise yaml.constructor.ConstructorError(None, None, f'the tag !{suffix} must be on a mapping',
                                                node.start_mark)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    Loader.add_multi_constructor('!', tagged)
    return Loader


def _read(source: Any) -> tuple[str, str, str | None]:
    """(YAML text, a name for messages, the directory relative paths start from)."""
    if hasattr(source, 'read'):
        text = source.read()
        name = getattr(source, 'name', '<file object>')
        base = os.path.dirname(os.path.abspath(name)) if isinstance(name, str) and os.path.exists(name) else None
        return (text.decode('utf-8') if isinstance(text, bytes) else text), str(name), base
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise TypeError(f'a YAML config is a path, a YAML string or an open file, got {type(source).__name__}')
    if '\n' in source or source.lstrip().startswith(('jtype:', '!')) or not (
            source.endswith(('.yml', '.yaml')) or os.path.isfile(source)):
        if not ('\n' in source or ':' in source or source.lstrip().startswith('!')):
            raise FileNotFoundError(f'YAML config {source!r}: no such file (and it is not YAML text either)')
        return source, '<YAML string>', None
    try:
        with open(source, encoding='utf-8') as fp:
            return fp.read(), source, os.path.dirname(os.path.abspath(source))
    except FileNotFoundError:
        raise FileNotFoundError(f'YAML config {source!r}: no such file (relative paths start from '
                                f'{os.getcwd()})') from None


def _parse(source: Any) -> tuple[Any, str, str | None]:
    import yaml
    text, name, base = _read(source)
    try:
        data = yaml.load(text, Loader=_make_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f'line {mark.line + 1}, column {mark.column + 1}' if mark else 'unknown position'
        raise ConfigError(f'{name}: malformed YAML at {where}: {exc.problem or exc.context}') from None
    except yaml.YAMLError as exc:
        raise ConfigError(f'{name}: malformed YAML: {exc}') from None
    if not isinstance(data, dict):
        raise ConfigError(f'{name}: a config is a YAML mapping with jtype: ..., got {type(data).__name__}')
    return data, name, base


def _substitute(value: Any, context: Mapping, where: str) -> Any:
    """Replace ``${{ ENV.X }}``, ``${{ CONTEXT.X }}``, ``${{ X }}``, ``${X}``, ``$X`` in every str."""
    if isinstance(value, dict):
        out = _Node((k, _substitute(v, context, where)) for k, v in value.items())
        out.line, out.key_lines = getattr(value, 'line', 0), getattr(value, 'key_lines', {})
        return out
    if isinstance(value, list):
        return [_substitute(v, context, where) for v in value]
    if not isinstance(value, str) or '$' not in value:
        return value

    def lookup(m: re.Match) -> Any:
        scope, name = m.group(1), m.group(2)
        if name is None:  # $X / ${X}: the environment, left as written when unset (as a shell does)
            key = m.group(3) or m.group(4)
            return os.environ.get(key, m.group(0))
        if scope == 'ENV':
            if name not in os.environ:
                raise ConfigError(f'{where}: {m.group(0)} refers to the environment variable {name}, which is not set')
            return os.environ[name]
        if name in context:
            return context[name]
        if scope is None and name in os.environ:
            return os.environ[name]
        raise ConfigError(f'{where}: {m.group(0)} is not in the context given ({sorted(context)}); pass '
                          f'context={{"{name}": ...}}')

    whole = _REF.fullmatch(value)
    if whole:
        found = lookup(whole)
        if isinstance(found, str) and whole.group(2) is not None and whole.group(1) != 'CONTEXT':
            # ${{ ENV.DIM }} alone: typed as if written in the YAML (8 is an int), as Jina 2 did
            import yaml
            try:
                typed = yaml.safe_load(found)
            except yaml.YAMLError:
                typed = found
            return typed if isinstance(typed, (int, float, bool)) else found
        return found
    return _REF.sub(lambda m: str(lookup(m)), value)


def _plain(value: Any) -> Any:
    """Plain dicts and lists again (what travels to executor processes)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def import_py_modules(modules: str | Iterable[str], base_dir: str | None = None) -> list:
    """Import Jina 2's ``metas.py_modules``: ``.py`` files (relative to ``base_dir``, else
    the current directory) or dotted module names; returns the modules.

    A file is imported once per path under a private module name (two configs may each
    have an ``executor.py``) and its classes travel to executor processes by value; its
    directory is added to ``sys.path`` so that it can import its neighbours.

    Example
    -------
    >>> import_py_modules(['my_executor.py'], base_dir='/path/to/config/dir')  # doctest: +SKIP
    """
    if isinstance(modules, str):
        modules = [modules]
    if not isinstance(modules, Iterable) or not all(isinstance(m, str) for m in modules):
        raise TypeError(f'py_modules takes a list of .py files or module names, got {modules!r:.80}')
    out = []
    for entry in modules:
        if not _is_module_path(entry):
            out.append(importlib.import_module(entry))
            continue
        path = os.path.realpath(os.path.join(base_dir or os.getcwd(), os.path.expanduser(entry)))
        if path in _imported:
            out.append(_imported[path])
            continue
        if not os.path.isfile(path):
            where = f'relative to {base_dir}' if base_dir else f'relative to the current directory {os.getcwd()}'
            raise FileNotFoundError(f'py_modules: {entry!r} not found ({where}): {path}')
        folder = os.path.dirname(path)
        if folder not in sys.path:
            sys.path.append(folder)
        stem = re.sub(r'\W', '_', os.path.splitext(os.path.basename(path))[0])
        name = f'_runtime_py_modules.{stem}_{hashlib.sha1(path.encode()).hexdigest()[:8]}'
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        import cloudpickle
        cloudpickle.register_pickle_by_value(module)  # the processes cannot import it by this name
        _imported[path] = module
        out.append(module)
    return out


def _is_module_path(entry: str) -> bool:
    """Whether a ``py_modules`` entry is a file (``.py``, or with a folder in it), not a
    module name to import (one rule for loading, and for reading and writing configs)."""
    return entry.endswith('.py') or os.sep in entry or '/' in entry


def _absolute_py_modules(metas: Any, base: str | None) -> None:
    if base and isinstance(metas, dict) and metas.get('py_modules'):
        mods = metas['py_modules']
        mods = [mods] if isinstance(mods, str) else mods
        metas['py_modules'] = [os.path.join(base, os.path.expanduser(m)) if isinstance(m, str) and _is_module_path(m)
                               and not os.path.isabs(os.path.expanduser(m)) else m for m in mods]


def _executor_section(data: _Node, name: str, base: str | None) -> dict:
    """Check an executor mapping and resolve its ``jtype`` to the class."""
    from .executor import Executor, lookup_executor_class
    unknown = [k for k in data if k not in EXECUTOR_KEYS]
    if unknown:
        raise ConfigError(f'{name}, line {data.line_of(unknown[0])}: unknown key {unknown[0]!r} in an executor '
                          f'config; it takes {", ".join(EXECUTOR_KEYS)}')
    for key in ('with', 'metas', 'requests'):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise ConfigError(f'{name}, line {data.line_of(key)}: {key}: must be a mapping, got '
                              f'{type(data[key]).__name__}')
    jtype = data.get('jtype')
    if not isinstance(jtype, str) or not jtype:
        raise ConfigError(f'{name}, line {data.line}: an executor config needs jtype: <Executor class name>')
    if jtype == 'Flow':
        raise ConfigError(f'{name}, line {data.line_of("jtype")}: this is a Flow config; load it with '
                          f'Flow.load_config')
    metas = _plain(data.get('metas') or {})
    _absolute_py_modules(metas, base)
    if metas.get('py_modules'):
        import_py_modules(metas['py_modules'], base)
    try:
        cls = lookup_executor_class(jtype)
    except ValueError as exc:
        raise ConfigError(f'{name}, line {data.line_of("jtype")}: jtype: {exc}; a class defined in a file '
                          f'is found when the file is listed under metas: py_modules:') from None
    if not issubclass(cls, Executor):  # pragma: no cover - the registry holds Executors only
        raise ConfigError(f'{name}, line {data.line_of("jtype")}: {jtype} is not an Executor')
    out = {'jtype': cls, 'with': _plain(data.get('with') or {}), 'metas': metas}
    if data.get('requests'):
        out['requests'] = _plain(data['requests'])
    return out


def load_executor_config(source: Any, context: Mapping | None = None, substitute: bool = True) -> dict:
    """Read an executor config (path, YAML string or open file) into the dict form of
    ``uses=``: ``{'jtype': <class>, 'with': {...}, 'metas': {...}[, 'requests': {...}]}``.

    Example
    -------
    >>> load_executor_config('jtype: Executor\\nwith: {}')['with']
    {}
    """
    data, name, base = _parse(source)
    if substitute:
        data = _substitute(data, dict(context or {}), name)
    return _executor_section(data, name, base)


def _uses_entry(value: Any, base: str | None) -> Any:
    """A ``uses`` (or uses_before / uses_after) of a Flow config, with paths made absolute."""
    if isinstance(value, str) and value.endswith(('.yml', '.yaml')) and '\n' not in value:
        return os.path.join(base, value) if base and not os.path.isabs(value) else value
    if isinstance(value, dict):
        value = _plain(value)
        _absolute_py_modules(value.get('metas'), base)
    return value


def load_flow(source: Any, context: Mapping | None = None, substitute: bool = True, **kwargs: Any) -> Any:
    """A Flow from a Jina 2 Flow config (path, YAML string or open file); ``kwargs``
    override the config's ``with:`` (the ``Flow(...)`` arguments).

    Example
    -------
    >>> f = load_flow('jtype: Flow\\nexecutors:\\n  - name: a\\n  - name: b\\n    needs: gateway')
    >>> f.num_executors
    2
    """
    from .flow import Flow
    data, name, base = _parse(source)
    if substitute:
        data = _substitute(data, dict(context or {}), name)
    jtype = data.get('jtype')
    if jtype != 'Flow':
        where = data.line_of('jtype') if 'jtype' in data else data.line
        raise ConfigError(f'{name}, line {where}: a Flow config starts with jtype: Flow, got '
                          f'{"no jtype" if jtype is None else f"jtype: {jtype}"}'
                          f'{" (an executor config: use it as Flow().add(uses=...))" if jtype else ""}')
    if 'pods' in data:
        raise ConfigError(f'{name}, line {data.line_of("pods")}: pods: is the Jina 1 layout; write the executors '
                          f'as a list under executors:')
    unknown = [k for k in data if k not in FLOW_KEYS]
    if unknown:
        raise ConfigError(f'{name}, line {data.line_of(unknown[0])}: unknown key {unknown[0]!r} in a Flow config; '
                          f'it takes {", ".join(FLOW_KEYS)}')
    flow_args = data.get('with') or {}
    if not isinstance(flow_args, dict):
        raise ConfigError(f'{name}, line {data.line_of("with")}: with: must be a mapping of Flow arguments')
    flow_args = {**_plain(flow_args), **kwargs}
    if base and isinstance(flow_args.get('workspace'), str) and not os.path.isabs(flow_args['workspace']):
        flow_args['workspace'] = os.path.join(base, flow_args['workspace'])
    try:
        flow = Flow(**flow_args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f'{name}, line {data.line_of("with")}: with: {exc}') from None
    executors = data.get('executors') or []
    if not isinstance(executors, list):
        raise ConfigError(f'{name}, line {data.line_of("executors")}: executors: must be a list of mappings')
    for i, entry in enumerate(executors):
        line = getattr(entry, 'line', data.line_of('executors'))
        if not isinstance(entry, dict):
            raise ConfigError(f'{name}, line {line}: executors[{i}] must be a mapping (name:, uses:, ...), '
                              f'got {type(entry).__name__}')
        args = _plain(entry)
        for key in ('uses', 'uses_before', 'uses_after'):
            if key in args:
                args[key] = _uses_entry(args[key], base)
        _absolute_py_modules(args.get('uses_metas'), base)
        # Paths relative to this file, as those of uses: and with: workspace: are.
        _absolute_py_modules(args, base)
        if base and isinstance(args.get('workspace'), str) and not os.path.isabs(args['workspace']):
            args['workspace'] = os.path.join(base, args['workspace'])
        try:
            flow = flow.add(**args)
        except (TypeError, ValueError, FileNotFoundError) as exc:
            label = args.get('name') or f'executors[{i}]'
            raise ConfigError(f'{name}, line {line}: executor {label!r}: {exc}') from None
    return flow


# -- writing ------------------------------------------------------------------------------------
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
    metas = {k: v for k, v in vars(executor.metas).items() if v is not None}
    default_ws = os.path.join(os.getcwd(), 'workspace', str(metas.get('name')))
    if metas.get('workspace') == default_ws:
        del metas['workspace']
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
    which ``add()`` and the executors read it from): a config's relative paths are relative
    to its file."""
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


def _saved_add_args(spec: dict, needs: list, previous: str) -> dict:
    """One executor of a Flow config: the ``add()`` arguments that built ``spec``, with
    ``needs`` (the add()'s own, by the names add() takes) omitted when it is ``previous``."""
    name = spec['resolved_name']
    entry: dict = {'name': name}
    for key in _SAVED_ADD_KEYS:
        value = spec.get(key)
        where = f'save_config: executor {name!r}, {key}='
        if key == 'needs':
            value = None if needs == [previous] else needs[0] if len(needs) == 1 else needs
        elif key == 'polling' and isinstance(value, dict):
            value = value['*'] if set(value) == {'*'} else value
            value = None if value == 'any' else value
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
        if value is not None and value != {} and not (key.startswith('max_') and value == 0):
            _check_yaml(value, where)
            entry[key] = value
    return entry


def save_flow(flow: Any, path: Any) -> None:
    """Write ``flow`` as a Flow config that ``load_flow`` reads back into a Flow that does the
    same: each executor as the ``add()`` arguments that made it (``uses_before`` /
    ``uses_after`` included, not their head and tail), relative paths made absolute. An
    argument that YAML cannot hold is refused with a TypeError naming the executor and the
    argument, never left out.

    Example
    -------
    >>> save_flow(Flow().add(name='a', uses=MyEncoder, replicas=2), 'flow.yml')  # doctest: +SKIP
    """
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
                value = _absolute(os.fspath(value))  # load_flow reads it relative to the file
            elif isinstance(value, os.PathLike):
                value = os.fspath(value)
            _check_yaml(value, f'save_config: Flow({key}=...)')
            flow_args[key] = value
    flow_args.update(getattr(flow, '_serve', None) or {})
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
