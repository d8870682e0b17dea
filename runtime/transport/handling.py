"""Building an executor and calling its handlers: the same code in a local worker process
and in a Ray actor, so a handler sees the same arguments and its return value means the
same thing on every transport.

Example
-------
>>> ex = build_executor(MyExecutor, config)
>>> call = find_handler(ex, '/index')
>>> docs_out, results, t_start, t_end = run_handler(ex, 'enc', call, docs, params_blob, None)
"""
from __future__ import annotations

import inspect
import itertools
import pickle
import sys
import time
from typing import Any, Callable

from ..array import DocumentArray, DocumentSequence
from .code_files import code_files, restore_code_files

#: The key of the groundtruths in what a request carries besides its documents.
GROUNDTRUTHS = '__groundtruths__'
#: What a post without parameters sends as its parameters (the Flow pickles it once).
EMPTY_PARAMS = pickle.dumps({}, protocol=5)

__all__ = ['GROUNDTRUTHS', 'executor_config', 'use_sys_path', 'build_executor', 'find_handler', 'run_handler', 'handled_endpoints']


def executor_config(dep: Any, shard: int, replica: int) -> dict:
    """What an instance of deployment ``dep`` needs to build its executor (plain data)."""
    return {'name': dep.metas['name'], 'replica_id': replica, 'shard_id': shard, 'replicas': dep.replicas,
            'shards': dep.shards, 'metas': dep.metas, 'kwargs': dep.kwargs, 'sys_path': list(sys.path),
            'code_files': code_files(dep.cls)}


def use_sys_path(cfg: dict) -> None:
    """Put the parent's import path in front, so that a class pickled by reference (one
    defined in an importable module, e.g. a test file) loads here: call it before
    unpickling the class."""
    for p in reversed(cfg.get('sys_path', ())):
        if p not in sys.path:
            sys.path.insert(0, p)


def build_executor(cls: type, cfg: dict) -> Any:
    """An instance of ``cls`` with ``metas`` and ``runtime_args`` set before its
    ``__init__`` runs (as Jina 2 did), so ``__init__`` can read its workspace and shard.
    Code that arrived by value gets its source files back first, so that its tracebacks
    show them (see ``code_files``)."""
    restore_code_files(cls, cfg.get('code_files'))
    obj = cls.__new__(cls)
    for k, v in cfg['metas'].items():
        setattr(obj.metas, k, v)
    for k in ('replica_id', 'shard_id', 'replicas', 'shards'):
        setattr(obj.runtime_args, k, cfg[k])
    obj.__init__(**cfg['kwargs'])
    return obj


def handled_endpoints(executor: Any) -> tuple[list[str], bool, list[str]]:
    """(the endpoints it has a handler for, whether it has a default handler, the
    endpoints ('__default__' for the default) whose handler names ``docs_matrix``: at a
    join, those get one DocumentArray per upstream instead of the documents joined by id)."""
    handlers = executor._handlers
    matrix = [k for k, entry in handlers.items()
              if 'docs_matrix' in inspect.signature(getattr(executor, entry[0])).parameters]
    return sorted(k for k in handlers if k != '__default__'), '__default__' in handlers, sorted(matrix)


def find_handler(executor: Any, endpoint: str) -> tuple[Callable, tuple | None] | None:
    """The handler for ``endpoint`` and the keyword arguments it accepts, or None (the
    documents pass through)."""
    return executor._handler_for(endpoint)


def run_handler(executor: Any, name: str, found: tuple, docs: DocumentArray, params_blob: bytes,
                earlier: dict | None, split: tuple | None = None) -> tuple[DocumentArray, dict | None, float, float]:
    """Call one handler: (the documents to send on, the dict it returned, start, end).

    Each request unpickles its own parameters, so what one handler does to them no other
    request sees; ``parameters[name]`` (a dict) is merged over the rest for this executor.
    ``split`` (sizes of consecutive parts of ``docs``) gives the handler ``docs_matrix``,
    one DocumentArray per upstream or shard, with ``docs`` all of them in order, as Jina 2
    gave a join. Raises what the handler raised, or TypeError for a return value that
    means nothing.
    """
    handler, accepted = found
    # A new {} is a dict of its own too: for the most common blob, a quarter of the cost.
    params = {} if params_blob == EMPTY_PARAMS else pickle.loads(params_blob)
    truths = None
    if earlier and GROUNDTRUTHS in earlier:
        earlier = dict(earlier)
        truths = earlier.pop(GROUNDTRUTHS)
    if earlier:
        params['__results__'] = earlier  # what the executors before this one returned
    own = params.get(name)
    if isinstance(own, dict):
        params.update(own)
    kwargs = {'docs': docs, 'parameters': params}
    if truths is not None and (accepted is None or 'groundtruths' in accepted):
        kwargs['groundtruths'] = truths
    if split is not None and (accepted is None or 'docs_matrix' in accepted):
        bounds = [0, *itertools.accumulate(split)]
        kwargs['docs_matrix'] = [DocumentArray(docs[a:b]) for a, b in zip(bounds, bounds[1:])]
    if accepted is not None:
        for k in accepted:
            kwargs.setdefault(k, None)
    t_start = time.time()
    ret = handler(**kwargs)
    t_end = time.time()
    results = None
    if ret is None:  # docs changed in place, or only read
        pass
    elif isinstance(ret, dict):
        results = ret
        # Fail here, naming the handler, rather than in the transport.
        pickle.dumps(results, protocol=5)
    elif isinstance(ret, DocumentArray):
        docs = ret
    elif isinstance(ret, (DocumentSequence, list)):
        docs = DocumentArray(ret)
    else:
        raise TypeError(f'handler {type(executor).__name__}.{handler.__name__} returned '
                        f'{type(ret).__name__}; return None (docs changed in place), a '
                        f'DocumentArray (replaces the docs) or a dict (results)')
    return docs, results, t_start, t_end
