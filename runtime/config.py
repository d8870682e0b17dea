"""Reading Jina 2 YAML configs of Executors and Flows (PyYAML, safe loading only);
``config_save`` writes them, ``config_paths`` finds the files they name.

An Executor config::

    jtype: MyEncoder          # or the Jina 1 / early 2 form: !MyEncoder as a tag
    with: {dim: 128}          # __init__ arguments
    metas:
      name: enc
      py_modules: [encoder.py]  # imported first; found beside this file, else in the cwd
    requests: {/index: encode}  # endpoint -> method, added to the @requests bindings

A Flow config::

    jtype: Flow
    version: '1'
    with: {workspace: ./ws}   # Flow(...) arguments (a relative workspace: from the cwd)
    executors:
      - name: enc
        uses: encoder.yml     # any uses= form; files beside this file, else in the cwd
        replicas: 2
      - {name: idx, uses: MyIndexer, needs: enc, shards: 2, polling: all}

Values may refer to the environment or to a ``context`` dict: ``${{ ENV.HOME }}``,
``${{ CONTEXT.dim }}`` (or ``${{ dim }}``), ``$HOME`` / ``${HOME}``; a value that is only
a reference keeps the referred value's type. As in Jina 2, ``on`` / ``off`` are text, not
booleans (``yes`` / ``no`` / ``true`` / ``false`` are). Errors name the file and the line.
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Iterator, Mapping

# (import_py_modules, py_modules_paths and PyModuleImportError are this module's names too)
from .config_paths import (PyModuleImportError, absolute_py_modules, import_py_modules, not_found, py_modules_paths,
                           uses_path)

__all__ = ['load_flow', 'load_executor_config', 'import_py_modules', 'py_modules_paths', 'ConfigError',
           'PyModuleImportError']

EXECUTOR_KEYS = ('jtype', 'with', 'metas', 'requests')
FLOW_KEYS = ('jtype', 'version', 'with', 'executors')
_REF = re.compile(r'\$\{\{\s*(?:(ENV|CONTEXT)\.)?([A-Za-z_][A-Za-z0-9_]*)\s*\}\}|\$\{([A-Za-z_][A-Za-z0-9_]*)\}'
                  r'|\$([A-Za-z_][A-Za-z0-9_]*)')
#: Jina 2's internal references: ``${{ this.name }}`` (a key of the same mapping) and
#: ``${{ root.metas.name }}`` (a path from the top of the config).
_INTERNAL = re.compile(r'\$\{\{\s*(this|root)\.([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}')


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

    # Jina 2's loader dropped YAML 1.1's on / On / ON / off / Off / OFF booleans (jaml/helper.py
    # pops the resolvers of words starting with o / O): `mode: off` is the text 'off' there,
    # while yes / no / true / false stay booleans. Copied, so that yaml.safe_load keeps them.
    Loader.yaml_implicit_resolvers = {k: v for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
                                      if k not in ('o', 'O')}

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


#: What errors name a config given as a dict (Jina 2's ``load_config`` took one too).
_DICT_SOURCE = 'the config dict'
#: The position errors give in a YAML text, meaningless for a dict.
_DICT_LINE = re.compile(rf'^{re.escape(_DICT_SOURCE)}, line \d+: ')


def _as_node(value: Any) -> Any:
    """A config given as a dict, as ``_parse`` would read the same YAML: mappings as
    ``_Node`` (without lines), tuples as lists. The caller's dict is not changed."""
    if isinstance(value, Mapping):
        out = _Node((k, _as_node(v)) for k, v in value.items())
        out.line, out.key_lines = 0, {}
        return out
    if isinstance(value, (list, tuple)):
        return [_as_node(v) for v in value]
    return value


@contextlib.contextmanager
def _positions(name: str) -> Iterator[None]:
    """Errors about a config given as a dict, without the line a YAML text would have."""
    if name != _DICT_SOURCE:
        yield
        return
    try:
        yield
    except ConfigError as exc:
        message = str(exc)
        if not _DICT_LINE.match(message):
            raise
        raise ConfigError(_DICT_LINE.sub(f'{_DICT_SOURCE}: ', message)) from exc.__cause__


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
        raise TypeError(f'a config is a path, a YAML string, an open file or a dict, got {type(source).__name__}')
    if '\n' in source or source.lstrip().startswith(('jtype:', '!')) or not (
            source.endswith(('.yml', '.yaml')) or os.path.isfile(source)):
        if source.isidentifier():
            # Jina 2 (parse_config_source) read a bare identifier as a class name, '!Name':
            # Executor.load_config('MyEncoder') builds it as Flow().add(uses='MyEncoder') does.
            return f'!{source}', f'{source!r} (no file of that name: read as a class name)', None
        if not ('\n' in source or ':' in source or source.lstrip().startswith('!')):
            raise FileNotFoundError(f'YAML config {source!r}: no such file (and it is not YAML text either)')
        return source, '<YAML string>', None
    try:
        with open(source, encoding='utf-8') as fp:
            return fp.read(), source, os.path.dirname(os.path.abspath(source))
    except FileNotFoundError:
        raise not_found('YAML config', source, [os.path.abspath(os.path.expanduser(source))], None) from None


def _parse(source: Any) -> tuple[Any, str, str | None]:
    """(the config as ``_Node`` mappings, a name for messages, the directory relative paths
    start from): from a path, a YAML string, an open file, or a dict (relative paths in it
    start from the current directory)."""
    import yaml
    if isinstance(source, Mapping):
        return _as_node(source), _DICT_SOURCE, None
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


def _substitute(value: Any, context: Mapping, where: str, environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${{ ENV.X }}``, ``${{ CONTEXT.X }}``, ``${{ X }}``, ``${X}``, ``$X`` in every str;
    the environment is ``environ`` (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    if isinstance(value, dict):
        out = _Node((k, _substitute(v, context, where, environ)) for k, v in value.items())
        out.line, out.key_lines = getattr(value, 'line', 0), getattr(value, 'key_lines', {})
        return out
    if isinstance(value, list):
        return [_substitute(v, context, where, environ) for v in value]
    if not isinstance(value, str) or '$' not in value:
        return value

    def lookup(m: re.Match) -> Any:
        scope, name = m.group(1), m.group(2)
        if name is None:  # $X / ${X}: the environment, left as written when unset (as a shell does)
            key = m.group(3) or m.group(4)
            return environ.get(key, m.group(0))
        if scope == 'ENV':
            if name not in environ:
                raise ConfigError(f'{where}: {m.group(0)} refers to the environment variable {name}, which is not set')
            return environ[name]
        if name in context:
            return context[name]
        if scope is None and name in environ:
            return environ[name]
        raise ConfigError(f'{where}: {m.group(0)} is not in the context given ({sorted(context)}); pass '
                          f'context={{"{name}": ...}}')

    whole = _REF.fullmatch(value)
    if whole:
        found = lookup(whole)
        if isinstance(found, str) and whole.group(1) != 'CONTEXT':
            # ${{ ENV.DIM }}, $DIM or ${DIM} alone: typed (8 is an int, true a bool), as Jina 2
            # did (its shards: $JINA_SHARDS examples)
            return _typed(found)
        return found
    return _REF.sub(lambda m: str(lookup(m)), value)


def _typed(text: str) -> Any:
    # Jina 2's rules (its parse_arg): an int, else a float, else true / false, else the text.
    # Not YAML's: '010' is 10 and 'no' stays 'no' (YAML 1.1 reads 8 and False).
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    low = text.lower()
    return True if low == 'true' else False if low == 'false' else text


def _resolve_internal(value: Any, root: Any, where: str, this: Any = None) -> Any:
    """Replace ``${{ this.x }}`` and ``${{ root.a.b }}`` in every str (after ``_substitute``)."""
    if isinstance(value, dict):
        out = _Node((k, _resolve_internal(v, root, where, value)) for k, v in value.items())
        out.line, out.key_lines = getattr(value, 'line', 0), getattr(value, 'key_lines', {})
        return out
    if isinstance(value, list):
        return [_resolve_internal(v, root, where, this) for v in value]
    if not isinstance(value, str) or '${{' not in value:
        return value

    def lookup(m: re.Match) -> Any:
        found: Any = this if m.group(1) == 'this' else root
        for key in m.group(2).split('.'):
            if not isinstance(found, dict) or key not in found:
                raise ConfigError(f'{where}: {m.group(0)} refers to {m.group(1)}.{m.group(2)}, which is not in the '
                                  f'config (this. is the mapping the value is in, root. the whole config)')
            found = found[key]
        if isinstance(found, str) and _INTERNAL.search(found):
            raise ConfigError(f'{where}: {m.group(0)} refers to a value that is itself a reference ({found!r}); '
                              f'write the value')
        return found

    whole = _INTERNAL.fullmatch(value)
    if whole:
        return lookup(whole)
    return _INTERNAL.sub(lambda m: str(lookup(m)), value)


def _plain(value: Any) -> Any:
    """Plain dicts and lists again (what travels to executor processes)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _executor_section(data: _Node, name: str, base: str | None) -> dict:
    """Check an executor mapping and resolve its ``jtype`` to the class."""
    from .executor import METAS_FIELDS, Executor, lookup_executor_class, metas_error
    if data.get('jtype') == 'Flow':  # (before the keys: a Flow's version: / executors: are not the news)
        raise ConfigError(f'{name}, line {data.line_of("jtype")}: this is a Flow config; load it with '
                          f'Flow.load_config')
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
    section = data.get('metas') or {}
    unknown = [k for k in section if k not in METAS_FIELDS]
    if unknown:  # (as uses_metas= refuses them: nothing reads another key)
        exc = metas_error(unknown, 'a metas: section',
                          '__init__ arguments go under with:, endpoint bindings under requests:')
        raise ConfigError(f'{name}, line {section.line_of(unknown[0])}: {exc}')
    metas = _plain(section)
    if metas.get('py_modules'):
        line = section.line_of('py_modules')
        try:
            absolute_py_modules(metas, base)  # beside this file, else in the current directory
            import_py_modules(metas['py_modules'], base)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f'{name if name == _DICT_SOURCE else f"{name}, line {line}"}: {exc}') from None
        except PyModuleImportError as exc:
            raise ConfigError(f'{name}, line {line}: {exc}') from exc.__cause__
    try:
        cls = lookup_executor_class(jtype)
    except ValueError as exc:
        raise ConfigError(f'{name}, line {data.line_of("jtype")}: jtype: {exc}; a class defined in a file '
                          f'is found when the file is listed under metas: py_modules:') from None
    if not issubclass(cls, Executor):  # pragma: no cover - the registry holds Executors only
        raise ConfigError(f'{name}, line {data.line_of("jtype")}: {jtype} is not an Executor')
    out = {'jtype': cls, 'with': _plain(data.get('with') or {}), 'metas': metas}
    if data.get('requests'):
        out['requests'] = _check_requests_section(cls, data['requests'], name)
    return out


def _check_requests_section(cls: type, section: _Node, name: str) -> dict:
    """The ``requests:`` of an executor config checked against ``cls``, one entry at a
    time, so that the error names the line of the wrong one (and this file, not the
    ``uses_requests=`` the same call may pass)."""
    from .executor_args import check_requests
    for endpoint, method in section.items():
        try:
            check_requests(cls, {endpoint: method}, 'requests')
        except (TypeError, ValueError) as exc:
            raise ConfigError(f'{name}, line {section.line_of(endpoint)}: {exc}') from None
    return _plain(section)


def load_executor_config(source: Any, context: Mapping | None = None, substitute: bool = True,
                         env: Mapping | None = None) -> dict:
    """Read an executor config (path, YAML string, open file, or the same as a dict) into
    the dict form of ``uses=``: ``{'jtype': <class>, 'with': {...}, 'metas': {...}[,
    'requests': {...}]}``. ``env`` (the executor's ``add(env=...)``) is laid over the
    environment the ``$X`` / ``${{ ENV.X }}`` references read, as Jina 2 set it in the
    executor's process before loading its config.

    Example
    -------
    >>> load_executor_config('jtype: Executor\\nwith: {}')['with']
    {}
    >>> load_executor_config({'jtype': 'Executor', 'with': {}})['with']
    {}
    """
    data, name, base = _parse(source)
    with _positions(name):
        if substitute:
            environ = {**os.environ, **{str(k): str(v) for k, v in env.items()}} if env else None
            data = _substitute(data, dict(context or {}), name, environ)
            data = _resolve_internal(data, data, name)
        return _executor_section(data, name, base)


def load_flow(source: Any, context: Mapping | None = None, substitute: bool = True, **kwargs: Any) -> Any:
    """A Flow from a Jina 2 Flow config (path, YAML string, open file, or the same as a
    dict); ``kwargs`` override the config's ``with:`` (the ``Flow(...)`` arguments).

    Example
    -------
    >>> f = load_flow('jtype: Flow\\nexecutors:\\n  - name: a\\n  - name: b\\n    needs: gateway')
    >>> f.num_executors
    2
    """
    data, name, base = _parse(source)
    with _positions(name):
        return _flow_from(data, name, base, context, substitute, kwargs)


def _flow_from(data: _Node, name: str, base: str | None, context: Mapping | None, substitute: bool,
               kwargs: dict) -> Any:
    """``load_flow`` once the config is read."""
    from .flow import Flow
    if substitute:
        data = _substitute(data, dict(context or {}), name)
        data = _resolve_internal(data, data, name)
    jtype = data.get('jtype')
    if jtype != 'Flow':
        where = data.line_of('jtype') if 'jtype' in data else data.line
        raise ConfigError(f'{name}, line {where}: a Flow config starts with jtype: Flow, got '
                          f'{"no jtype" if jtype is None else f"jtype: {jtype}"}'
                          f'{" (an executor config: use it as Flow().add(uses=...))" if jtype else ""}')
    if 'pods' in data:  # Jina 2.0's name for the list (its examples write pods:)
        if 'executors' in data:
            raise ConfigError(f'{name}, line {data.line_of("pods")}: give the executors under executors: or '
                              f'under pods: (its Jina 2.0 name), not both')
        data['executors'] = data.pop('pods')
    unknown = [k for k in data if k not in FLOW_KEYS]
    if unknown:
        raise ConfigError(f'{name}, line {data.line_of(unknown[0])}: unknown key {unknown[0]!r} in a Flow config; '
                          f'it takes {", ".join(FLOW_KEYS)}')
    flow_args = data.get('with') or {}
    if not isinstance(flow_args, dict):
        raise ConfigError(f'{name}, line {data.line_of("with")}: with: must be a mapping of Flow arguments')
    # Its own paths (py_modules:, uses: files) as an executor's below; not those of kwargs, which
    # come from the caller. A relative workspace stays so: the Flow reads it from the current
    # directory, as Jina 2 did (os.path.abspath), not from this file's folder.
    own = _numbers(_plain(flow_args))
    try:
        _config_paths(own, base)
    except FileNotFoundError as exc:
        raise ConfigError(f'{name}, line {data.line_of("with")}: with: {exc}') from None
    try:
        flow = Flow(**{**own, **kwargs})
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
        if args.get('name') == 'gateway':
            continue  # (a Jina 2 config may list it; the gateway is always there)
        method = args.pop('method', 'add')
        if method not in ('add', 'needs'):
            raise ConfigError(f'{name}, line {line}: method: {method!r} is not supported; use method: add (the '
                              f'default) or needs (a join); Jina 2\'s inspect executors are not kept: add the '
                              f'executor as any other, with needs: naming what it inspects')
        _numbers(args)
        try:
            _config_paths(args, base)  # (a relative workspace: from the current directory, as with:'s)
            flow = flow.needs(**args) if method == 'needs' else flow.add(**args)
        except (TypeError, ValueError, FileNotFoundError, PyModuleImportError) as exc:
            label = '' if getattr(exc, 'executor', None) else f"executor {args.get('name') or f'executors[{i}]'!r}: "
            # What a py_module raised (its traceback) is kept; other causes say nothing more.
            raise ConfigError(f'{name}, line {line}: {label}{exc}') from exc.__cause__
    return flow


#: Options of Flow(...) / add() that take an int, and those that take seconds: Jina 2's Flow
#: config parser read every text value with parse_arg, so a quoted '2' was 2 there.
_INT_OPTIONS = ('replicas', 'shards', 'parallel', 'max_restarts', 'max_retries', 'prefetch', 'arena_size')
_SECONDS_OPTIONS = ('timeout_ready', 'timeout_close')
_INT_TEXT = re.compile(r'\s*[+-]?\d+\s*')
_NUMBER_TEXT = re.compile(r'\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*')


def _numbers(args: dict) -> dict:
    """``args`` (a Flow config's ``with:`` or one of its executors) with the numeric options
    given as text (``replicas: '2'``, ``timeout_ready: '-1'``) as numbers; other text is
    left for Flow / add() to refuse, naming it."""
    for key in _INT_OPTIONS + _SECONDS_OPTIONS:
        value = args.get(key)
        if isinstance(value, str):
            if _INT_TEXT.fullmatch(value):
                args[key] = int(value)
            elif key in _SECONDS_OPTIONS and _NUMBER_TEXT.fullmatch(value):
                args[key] = float(value)
    return args


def _config_paths(args: dict, base: str | None) -> None:
    """The files named by the ``add()`` arguments ``args`` (an executor of a Flow config, or
    its ``with:``) made absolute: ``uses`` / ``uses_before`` / ``uses_after`` YAML files and
    ``py_modules`` (its own and its ``uses_metas``'), each found beside the config (``base``),
    else in the current directory; FileNotFoundError naming both when neither has it."""
    for key in ('uses', 'uses_before', 'uses_after'):
        if key in args:
            args[key] = uses_path(args[key], base)
    absolute_py_modules(args.get('uses_metas'), base)
    absolute_py_modules(args, base)
