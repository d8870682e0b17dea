"""The Ray actor that hosts one executor instance (one shard replica).

It runs the same building and handler-calling code as a local worker process
(``runtime.transport.handling``), so a handler sees the same arguments, and its return
value means the same thing, on both transports. Every outcome is a value: a handler's
exception comes back in the receipt, never as a Ray task error, so the router tells a
failing handler (``Failed``) from a dead actor (``Died``) by how the call ends.

This module imports Ray; only ``transport.RayTransport.open`` imports it.

Example
-------
>>> actor = ExecutorActor.options(num_cpus=1).remote(cloudpickle.dumps(MyExecutor), cfg, script_context(base))
>>> ray.get(actor.ready.remote())            # ('ready', (endpoints, default, ...), pid, node, ip)
>>> receipt_ref, payload_ref = actor.handle.remote(7, '/index', params_blob, None, wire)
"""
from __future__ import annotations

import gc
import os
import pickle
import time
import traceback
from typing import Any

import ray

from ..handling import build_executor, find_handler, handled_endpoints, run_handler, use_sys_path
from .context import adopt
from .payload import decode, encode, nbytes, pack, unpack

__all__ = ['ExecutorActor', 'class_load_error']


def class_load_error(exc: BaseException, name: str) -> str:
    """What to tell a user whose executor class could not be unpickled on the cluster."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split('.')[0]
        return (f'its class could not be loaded on this Ray node: module {exc.name!r} is not importable '
                f'there. Install it on every node, or ship it with the Flow\'s Ray job: '
                f"Flow(backend='ray', ray_init_kwargs={{'runtime_env': {{'py_modules': ['path/to/{top}']}}}}) "
                f'(a script that calls ray.init itself passes runtime_env there), or define the class of '
                f'executor {name!r} in the script that builds the Flow')
    return f'its class could not be loaded on this Ray node: {type(exc).__qualname__}: {exc}'


@ray.remote(max_restarts=0, max_task_retries=0)
class ExecutorActor:
    """One executor instance: built by ``ready``, serving ``handle`` one call at a time."""

    def __init__(self, cls_blob: bytes, cfg: dict, context: tuple | None = None) -> None:
        # Nothing that can fail here: a failing constructor would look like a dead actor.
        self.cls_blob, self.cfg, self.context = cls_blob, cfg, context
        self.executor: Any = None
        self.name = cfg['name']

    def ready(self) -> tuple:
        """Build the executor: ``('ready', handled_endpoints(), pid, node_id, ip)`` or
        ``('init_error', exc_type, message, traceback)``."""
        # The script's cwd and environment of now, not the raylet's (see ``context``):
        # before the class loads, since its module may read them.
        adopt(self.context)
        # The parent's sys.path first, in its order: a class pickled by reference (from a
        # test module, a package next to the script) then imports on a node of this machine.
        use_sys_path(self.cfg, existing=True)
        try:
            cls = pickle.loads(self.cls_blob)
        except BaseException as exc:
            return 'init_error', type(exc).__qualname__, class_load_error(exc, self.name), traceback.format_exc()
        try:
            self.executor = build_executor(cls, self.cfg)
        except BaseException as exc:  # even SystemExit from __init__ is the user's to see
            return 'init_error', type(exc).__qualname__, str(exc), traceback.format_exc()
        # (endpoints, has a default handler, endpoints whose handler takes docs_matrix)
        handled = tuple(tuple(x) if isinstance(x, list) else x for x in handled_endpoints(self.executor))
        ctx = ray.get_runtime_context()
        return 'ready', handled, os.getpid(), ctx.get_node_id(), ray.util.get_node_ip_address()

    @ray.method(num_returns=2)
    def handle(self, rid: int, endpoint: str, params_blob: bytes, earlier: tuple | None, wire: tuple,
               split: tuple | None = None) -> tuple:
        """Run the handler for ``endpoint``: (receipt, payload out); ``split``: the sizes
        of the parts of a join, for a handler that takes ``docs_matrix``.

        ``earlier`` (the earlier executors' results and the groundtruths) and the results in
        the receipt are ``payload.pack``'s tuples. The receipt is ``('ok', docs_out,
        results, times, moved_bytes)`` or ``('err', exc_type, message, traceback, times)``;
        times (both) are (received, handler start, handler end, sent) wall-clock stamps.
        """
        t_recv = time.time()
        t_start = t_end = t_recv
        try:
            found = find_handler(self.executor, endpoint)
            if found is None:  # the router routes around this; pass through all the same
                return ('ok', wire[0], None, (t_recv, t_start, t_end, time.time()), 0), wire
            docs = decode(wire)
            more = () if split is None else (split,)
            docs, results, t_start, t_end = run_handler(self.executor, self.name, found, docs, params_blob,
                                                        unpack(earlier), *more)
            out = encode(docs)
            results = pack(results)
            return ('ok', out[0], results, (t_recv, t_start, t_end, time.time()), nbytes(out)), out
        except BaseException as exc:
            if isinstance(exc, SystemExit):
                raise  # (the actor ends: reported as its death, as a local process's exit is)
            # A KeyboardInterrupt or a library's own BaseException too: said with its type,
            # message and traceback (escaping into Ray, it came back as Ray's header line).
            t_end = max(time.time(), t_start)
            receipt = ('err', type(exc).__qualname__, str(exc), traceback.format_exc(),
                       (t_recv, t_start, t_end, time.time()))
            del exc
            gc.collect()  # a traceback's frames may hold documents in a cycle
            return receipt, None

    def ping(self) -> None:
        """Nothing: a call to an actor Ray reports dead fails at once with Ray's account
        of its death, which ``RayTransport.deaths`` passes on."""

    def close(self) -> tuple:
        """Run the executor's ``close()`` (saving indexes, ...): ``('ok',)``, or ``('err',
        exc_type, message, traceback)`` for the Flow's close to raise."""
        executor, self.executor = self.executor, None
        try:
            if executor is not None:
                executor.close()
        except Exception as exc:
            return 'err', type(exc).__qualname__, str(exc), traceback.format_exc()
        return ('ok',)
