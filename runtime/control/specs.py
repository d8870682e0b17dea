"""What an ``add()`` means: its arguments checked, and the spec dicts the router runs.

Every Jina 2 option is either honoured or refused with an error naming it and what to use
instead: a script that passed one must not run believing it took effect.

Example
-------
>>> specs = build_specs([], {}, name='idx', needs=None, given={'uses': Indexer, 'shards': 2})
>>> [s['resolved_name'] for s in specs]
['idx']
"""
from __future__ import annotations

import itertools
import os
import pickle
from typing import Any

from ..executor import resolve_uses
from .inputs import describe
from .jina2_options import check_jina2_options

__all__ = ['ADD_ARGS', 'ADD_ONLY', 'FLOW_DEFAULT_ARGS', 'check_polling', 'build_specs',
           'reject_jina_only', 'unexpected_argument']

#: ``add()`` arguments (besides ``name`` and ``needs``).
ADD_ARGS = ('uses', 'uses_with', 'uses_metas', 'uses_requests', 'timeout_ready', 'env', 'replicas', 'shards',
            'polling', 'max_restarts', 'max_retries', 'ray_options', 'uses_before', 'uses_after', 'py_modules',
            'workspace')
#: ``add()`` arguments that mean something for one executor only -> why ``Flow(...)``
#: refuses them as a default for every executor.
ADD_ONLY = {
    'uses_requests': 'binds endpoints to methods of one executor class, which another executor of the Flow (or '
                     'the pass-through of an add() without uses) does not have',
}
#: The ``add()`` arguments that ``Flow(...)`` takes as defaults for every executor
#: (``workspace`` given to ``Flow`` is the Flow's own).
FLOW_DEFAULT_ARGS = tuple(k for k in ADD_ARGS if k not in ADD_ONLY and k != 'workspace')
_POLLING = ('any', 'all')

#: Gateway options, which belong to ``Flow(...)``, not to one executor.
_SERVE_ONLY = ('port_expose', 'port', 'protocol', 'host')


def unexpected_argument(where: str, name: str, known: tuple, takes: str) -> TypeError:
    """The error for an argument ``name`` that ``where`` (e.g. ``'add'``) does not take: it
    names the one of ``known`` it resembles, or else says what ``where`` takes.

    Example
    -------
    >>> unexpected_argument('add', 'usess', ('uses', 'needs'), 'uses, needs')
    TypeError("add() got an unexpected argument 'usess'; did you mean 'uses'?")
    """
    import difflib  # only to word a refusal: no import time for every program

    close = difflib.get_close_matches(name, known, n=1)
    hint = f'did you mean {close[0]!r}?' if close else f'it takes {takes}'
    return TypeError(f'{where}() got an unexpected argument {name!r}; {hint}')


def reject_jina_only(where: str, kwargs: dict, takes: str, known: tuple = ()) -> None:
    """The arguments ``where`` (``'Flow'`` or ``'add'``) has no parameter for: Jina 2's that
    ask for what happens here anyway are taken out of ``kwargs`` (``jina2_options``); for the
    first other one, raise saying what to do: what to use instead of a Jina 2 option, or
    which of ``known`` it resembles, or else what ``where`` takes."""
    check_jina2_options(where, kwargs)
    for k in kwargs:
        if k in _SERVE_ONLY and where == 'add':
            if k == 'protocol':
                raise TypeError("add(protocol=...) is a gateway option: give it to Flow(protocol='http', ...) to "
                                "serve the Flow")
            raise TypeError(f"add({k}=...) placed a Jina 2 executor on another machine (a remote pod or JinaD); "
                            f"executors here run on this machine, or as Ray actors on a cluster with "
                            f"Flow(backend='ray', ray_address=...); to serve the Flow itself, give Flow({k}=...)")
        raise unexpected_argument(where, k, known, takes)


def given_int(value: Any, default: int) -> Any:
    """None when ``value`` is the default int itself, so Flow-level defaults apply (True and
    1.0 equal 1 but are not it: they stay, to be refused)."""
    return None if type(value) is int and value == default else value


def check_polling(polling: Any) -> dict:
    """``polling`` as {endpoint: 'any' | 'all'} with a '*' default."""
    if polling is None:
        return {'*': 'any'}
    if isinstance(polling, str):
        polling = {'*': polling}
    if not isinstance(polling, dict):
        raise TypeError(f"polling must be 'any', 'all' or a dict {{endpoint: 'any' | 'all'}}, got {describe(polling)}")
    # Jina 2 wrote 'ANY' / 'ALL'.
    out = {k: v.lower() if isinstance(v, str) else v for k, v in polling.items()}
    if 'all_async' in out.values():
        # Not 'all': Jina 2 reserved it for "every shard gets the request, the first answer
        # goes on", which waits for no other shard and joins nothing.
        raise ValueError("polling 'ALL_ASYNC' (reserved in Jina 2: every shard gets the request and any one "
                         "answer goes on) is not supported; use 'all' (every shard, their documents joined) "
                         "or 'any' (one shard per request)")
    bad = {k: v for k, v in out.items() if not isinstance(k, str) or v not in _POLLING}
    if bad:
        raise ValueError(f"polling values must be 'any' or 'all' and keys endpoints (or '*'); got {bad}")
    return {'*': 'any', **out}


def _check(spec: dict) -> None:
    for label in ('replicas', 'shards'):
        value = spec.get(label, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f'{label} must be a positive int, got {value!r}')
    timeout_ready = spec.get('timeout_ready')
    if timeout_ready is not None and (not isinstance(timeout_ready, (int, float)) or isinstance(timeout_ready, bool)):
        raise TypeError(f'timeout_ready takes seconds (a number; -1 waits forever), got {describe(timeout_ready)}')
    for label in ('max_restarts', 'max_retries'):
        value = spec.get(label, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f'{label} must be an int >= 0, got {value!r}')
    if spec.get('env') is not None and not isinstance(spec['env'], dict):
        raise TypeError(f'env must be a dict of str -> str, got {type(spec["env"]).__name__}')

    workspace = spec.get('workspace')
    if workspace is not None and not isinstance(workspace, (str, os.PathLike)):
        raise TypeError(f'workspace must be a folder path (str), got {describe(workspace)}')
    py_modules = spec.get('py_modules')
    if py_modules is not None and not isinstance(py_modules, (str, list, tuple)):
        raise TypeError(f'py_modules must be a file path or module name, or a list of them, got '
                        f'{describe(py_modules)}')


def _label(name: str | None, uses: Any, metas: Any) -> str:
    """How an error names the executor of an add() before its class is known: its name,
    else ``metas.name``, else the class (name) that ``uses`` gives."""
    if isinstance(name, str) and name:
        return name
    if isinstance(metas, dict) and isinstance(metas.get('name'), str):
        return metas['name']
    if isinstance(uses, dict):
        uses = uses.get('jtype')
    if uses is None:
        return '_PassThrough'  # (what _name_for names it)
    return uses.__name__ if isinstance(uses, type) else str(uses).strip().splitlines()[0]


def _name_for(cls: type, name: str | None, metas: dict, taken: set) -> str:
    resolved = name or metas.get('name')
    if resolved is not None and resolved in taken:
        raise ValueError(f'an executor named {resolved!r} is already in this Flow; give each add() a unique name')
    if resolved is None:
        base = resolved = cls.__name__
        for i in itertools.count(1):
            if resolved not in taken:
                break
            resolved = f'{base}{i}'
    return resolved


def _needs(specs: list[dict], needs: Any) -> list[str]:
    """The resolved names this node takes its input from (a name with a ``uses_after``
    means its tail)."""
    if needs is not None and not isinstance(needs, (str, list, tuple)):
        raise TypeError(f"needs takes an executor name, 'gateway', or a list of them, got {describe(needs)}")
    last = specs[-1]['resolved_name'] if specs else 'gateway'
    wanted = [last] if needs is None else [needs] if isinstance(needs, str) else list(needs)
    taken = {s['resolved_name'] for s in specs}
    tails = {s['group']: s['resolved_name'] for s in specs if s.get('group')}
    known = taken | set(tails) | {'gateway'}
    unknown = [n for n in wanted if not isinstance(n, str) or n not in known]
    if unknown or not wanted or len(set(wanted)) != len(wanted):
        # Only earlier names are known, so the graph can never have a cycle.
        raise ValueError(f'needs={needs!r} must name executors added before this one (or "gateway"), '
                         f'each once; unknown: {unknown}; known: {sorted(known)}')
    resolved = [tails.get(n, n) for n in wanted]
    # An executor and its uses_after tail are one node (the executor's output is its tail's):
    # named both ways, the join would wait for a second input that never comes.
    for n in wanted:
        if n in tails and tails[n] in wanted:
            raise ValueError(f'needs={needs!r} names {n!r} and {tails[n]!r}, which are the same input: the output '
                             f'of {n!r} is that of its uses_after tail {tails[n]!r}; name it once, needs=[{n!r}, ...]')
    return resolved


def build_specs(specs: list[dict], defaults: dict, name: str | None, needs: Any, given: dict) -> list[dict]:
    """The spec(s) of one ``add()``: one, or with ``uses_before`` / ``uses_after`` a head
    that runs before the executor's shards and a tail that gets the shards' outputs as
    ``docs_matrix`` (Jina 2's sharded-search merger)."""
    spec = dict(defaults)
    spec.update({k: v for k, v in given.items() if v is not None})
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f'name must be a non-empty str, got {name!r}')
    if name == 'gateway':
        raise ValueError("'gateway' names the Flow's input in needs=; give the executor another name")
    _check(spec)
    spec['polling'] = check_polling(spec.get('polling'))
    metas_in = spec.get('uses_metas')
    if isinstance(metas_in, dict) or metas_in is None:  # anything else: resolve_uses says what is wrong
        metas_in = dict(metas_in or {})
        if spec.get('py_modules') is not None:
            metas_in.setdefault('py_modules', spec['py_modules'])
        if spec.get('workspace') is not None:
            metas_in['workspace'] = os.fspath(spec['workspace'])
    # metas keeps py_modules (absolute): the executor's process imports them too.
    try:
        cls, init_kwargs, metas = resolve_uses(spec.get('uses'), spec.get('uses_with'), metas_in or None,
                                               uses_requests=spec.get('uses_requests'), env=spec.get('env'))
    except ImportError as exc:
        from ..config import PyModuleImportError  # (only now: no import time for every program)
        if not isinstance(exc, PyModuleImportError):
            raise
        # Its class may come from the module: named as the add() names it so far.
        label = _label(name, spec.get('uses'), metas_in)
        err = PyModuleImportError(f'executor {label!r}: {exc}', name=exc.name, path=exc.path)
        err.executor = label
        raise err from exc.__cause__
    taken = {s['resolved_name'] for s in specs} | {s['group'] for s in specs if s.get('group')}
    resolved = _name_for(cls, name, metas, taken)
    metas.setdefault('name', resolved)
    if spec.get('ray_options') is not None:
        from ..transport.ray import check_ray_options  # imports no Ray unless installed
        spec['ray_options'] = check_ray_options(resolved, spec['ray_options'])
    try:  # here, naming the executor, rather than when its process is configured
        pickle.dumps((init_kwargs, metas), protocol=5)
    except Exception as exc:
        raise TypeError(f'the uses_with / uses_metas of executor {resolved!r} must be picklable to reach its '
                        f'process (numbers, str, lists, dicts, arrays...): {exc}') from None
    wanted = _needs(specs, needs)
    # uses_before / uses_after stay in the spec as they were given (save_config writes them
    # back as this add()'s arguments); the head and tail they make are marked ``side_of``.
    before, after = spec.get('uses_before'), spec.get('uses_after')
    out = []
    if before is not None:
        head = _side_spec(before, f'{resolved}-head', wanted, spec)
        head['side_of'] = resolved
        out.append(head)
        wanted = [head['resolved_name']]
    spec.update(name=name, resolved_name=resolved, cls=cls, kwargs=init_kwargs, metas=metas,
                replicas=spec.get('replicas', 1), shards=spec.get('shards', 1), needs=wanted)
    out.append(spec)
    if after is not None:
        tail = _side_spec(after, f'{resolved}-tail', [resolved], spec)
        tail['matrix'] = True  # its handler's docs_matrix: one DocumentArray per shard
        tail['group'] = resolved  # needs=[resolved] later means this tail
        tail['side_of'] = resolved
        out.append(tail)
    return out


def _side_spec(uses: Any, name: str, needs: list, main: dict) -> dict:
    cls, kwargs, metas = resolve_uses(uses, None, None, env=main.get('env'))
    metas.setdefault('name', name)
    spec = {'name': name, 'resolved_name': name, 'cls': cls, 'kwargs': kwargs, 'metas': metas, 'replicas': 1,
            'shards': 1, 'needs': needs, 'polling': {'*': 'any'}}
    spec.update({k: main[k] for k in ('env', 'timeout_ready', 'ray_options') if main.get(k) is not None})
    return spec
