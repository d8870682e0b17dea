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
import logging
import os
import pickle
import socket
import sys
import time
from typing import Any, Callable

from ..array import DocumentArray, DocumentSequence
from ..executor import DEFAULT_ENDPOINT, workspace_root
from ..executor_args import hold_back_for
from .code_files import code_files, restore_code_files

#: The key of the groundtruths in what a request carries besides its documents.
GROUNDTRUTHS = '__groundtruths__'
#: What a post without parameters sends as its parameters (the Flow pickles it once).
EMPTY_PARAMS = pickle.dumps({}, protocol=5)
logger = logging.getLogger('runtime')

__all__ = ['GROUNDTRUTHS', 'executor_config', 'use_sys_path', 'build_executor', 'find_handler', 'run_handler', 'handled_endpoints']


def executor_config(dep: Any, shard: int, replica: int) -> dict:
    """What an instance of deployment ``dep`` needs to build its executor (plain data).

    ``workspace`` is the Flow's (``dep.workspace``), the root of the executor's own folder
    where its metas give none; made absolute here, in the Flow's process, as a Ray actor on
    another node has another cwd."""
    flow_workspace = getattr(dep, 'workspace', None)
    return {'name': dep.metas['name'], 'flow_name': dep.name, 'replica_id': replica, 'shard_id': shard,
            'replicas': dep.replicas, 'shards': dep.shards, 'metas': dep.metas, 'kwargs': dep.kwargs,
            'workspace': workspace_root(flow_workspace) if flow_workspace else None,
            'sys_path': list(sys.path), 'code_files': code_files(dep.cls)}


def use_sys_path(cfg: dict, existing: bool = False) -> None:
    """Take the parent's import path, in its order, in front of this process's own, so that
    a class pickled by reference (one defined in an importable module, e.g. a test file)
    loads here as it did there: call it before unpickling the class.

    In its order: a folder the parent appended (a ``py_modules`` file's, for its neighbours)
    must not come first here, or its ``executors.py`` would hide a package of that name the
    parent found earlier on its path. ``existing``: only the folders that exist here (a Ray
    actor on another node)."""
    parent = [p for p in cfg.get('sys_path', ()) if not existing or os.path.isdir(p)]
    if parent:
        known = set(parent)
        sys.path[:] = parent + [p for p in sys.path if p not in known]


def build_executor(cls: type, cfg: dict) -> Any:
    """An instance of ``cls`` with ``metas`` and ``runtime_args`` set before its
    ``__init__`` runs (as Jina 2 did), so ``__init__`` can read its workspace and shard;
    ``runtime_args.name`` is its name in the Flow, ``runtime_args.workspace`` the absolute
    root of its workspace (its ``metas.workspace`` if given, else the Flow's), which
    ``Executor.workspace`` adds its name (and shard) to. ``metas.py_modules`` are imported first.

    ``__init__`` gets ``metas``, ``runtime_args`` and ``requests`` only if it takes them
    (by name, or ``**kwargs`` as hub executors do); those it does not take are applied to
    the object after it returns, as Jina 2's ExecutorType did: the same wrapper
    (``executor_args.hold_back_for``) as a direct call and ``Executor.load_config`` use.
    Code that arrived by value gets its source files back first, so that its tracebacks
    show them (see ``code_files``)."""
    restore_code_files(cls, cfg.get('code_files'))
    _import_py_modules(cfg['metas'].get('py_modules'))
    obj = cls.__new__(cls)
    for k, v in cfg['metas'].items():
        setattr(obj.metas, k, v)
    for k in ('replica_id', 'shard_id', 'replicas', 'shards'):
        setattr(obj.runtime_args, k, cfg[k])
    obj.runtime_args.name = cfg.get('flow_name', cfg['name'])
    # A relative metas.workspace is resolved here, as the executor's own property does: a
    # Ray actor's node has its own cwd. The Flow's workspace came absolute.
    obj.runtime_args.workspace = workspace_root(obj.metas.workspace or cfg.get('workspace'))
    # As Jina 2 built executors (hub executors read kwargs['runtime_args'] before calling
    # super().__init__).
    kwargs = dict(cfg['kwargs'])
    base = {'metas': dict(cfg['metas']), 'requests': kwargs.pop('requests', None),
            'runtime_args': {**vars(obj.runtime_args), 'pea_id': cfg['shard_id'], 'parallel': cfg['shards']}}
    hold_back_for(cls)
    obj.__init__(**{**base, **kwargs})
    return obj


def _import_py_modules(modules: Any) -> None:
    """Import the executor's ``metas.py_modules`` (absolute paths, or module names) in this
    process, for what importing them does, as Jina 2's executor process did. The parent
    found every file; one missing here is on another machine (a Ray node): its classes
    arrived by value, so only the module's side effects are lost, which is said."""
    if not modules:
        return
    from ..config import import_py_modules
    for entry in [modules] if isinstance(modules, str) else modules:
        try:
            import_py_modules([entry])
        except FileNotFoundError:
            logger.warning('py_modules: %s is not on this machine (%s); the executor\'s class arrived '
                           'with its code, but the module is not imported here', entry, socket.gethostname())


def handled_endpoints(executor: Any) -> tuple[list[str], bool, list[str]]:
    """(the endpoints it has a handler for, whether it has a default handler, the
    endpoints ('__default__' for the default) whose handler names ``docs_matrix``: at a
    join, those get one DocumentArray per upstream instead of the documents joined by id).

    The default handler is bound at ``/default``; the router knows it as '__default__', so
    that a post to ``/default`` and one to an endpoint without a handler find the same."""
    handlers = executor._handlers
    matrix = ['__default__' if k == DEFAULT_ENDPOINT else k for k, entry in handlers.items()
              if 'docs_matrix' in inspect.signature(getattr(executor, entry[0])).parameters]
    return sorted(k for k in handlers if k != DEFAULT_ENDPOINT), DEFAULT_ENDPOINT in handlers, sorted(matrix)


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
    gave a join. A handler that takes ``**kwargs`` gets all of ``docs``, ``parameters``,
    ``docs_matrix``, ``groundtruths`` and ``groundtruths_matrix`` (None where they do not
    apply); one that names its arguments gets those it names. Raises what the handler
    raised, or TypeError for a return value that means nothing.
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
    matrix = None
    if split is not None and (accepted is None or 'docs_matrix' in accepted):
        bounds = [0, *itertools.accumulate(split)]
        matrix = [DocumentArray(docs[a:b]) for a, b in zip(bounds, bounds[1:])]
    extra = None  # what a handler that names its arguments takes besides docs and parameters
    if accepted is not None and len(accepted) > 2:
        extra = {k: matrix if k == 'docs_matrix' else truths if k == 'groundtruths' else None
                 for k in accepted if k != 'docs' and k != 'parameters'}
    # Keywords written out rather than a dict unpacked: this runs for every request, and a
    # call with five keywords costs less than one with two unpacked from a dict.
    t_start = time.time()
    if accepted is None:
        # **kwargs: every name, None where it does not apply, as Jina 2 passed them (its
        # cookbook reads kwargs['docs_matrix']). groundtruths ride whole, not per upstream.
        ret = handler(docs=docs, parameters=params, docs_matrix=matrix, groundtruths=truths,
                      groundtruths_matrix=None)
    elif extra is None:  # docs and parameters, which every handler without **kwargs names
        ret = handler(docs=docs, parameters=params)
    else:  # only the names it declares: another would be a TypeError
        ret = handler(docs=docs, parameters=params, **extra)
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
