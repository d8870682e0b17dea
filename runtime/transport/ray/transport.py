"""``RayTransport``: executor instances as Ray actors, payloads as Ray objects.

One hop is one actor call with two returns: a small *receipt* (timings, the handler's
results, the count of documents, or the handler's error as a value) that comes back to
the router, and the *payload* (the documents, ``payload.encode``'s tuple) that stays in
Ray: the router hands its reference to the next executor's call without fetching it. Ray
inlines small objects into the call and moves large ones through its object store
(zero-copy between actors of one node).

Restarts and retries stay in the router: actors are created with Ray's ``max_restarts=0``;
a dead actor (its process killed, its node gone) fails the calls it held, and the
transport reports one ``Died`` for it, after which the router spawns a new one if
``max_restarts`` allows and retries or fails the requests it held. One that dies while
the Flow is idle is found before the next post (``deaths``: what Ray told this process).
Each actor starts in the script's cwd and environment of the Flow's start (``context``).

``address=None`` starts a private local Ray instance (``ray.init(address='local')``:
never whatever cluster ran last on the machine); 'auto' joins the cluster of ``RAY_ADDRESS``
or else of ``ray start`` on this machine (never another script's private Ray), and
'ray://host:port' a remote one. Flows open at the same time share the process's one
connection (``connection``): it ends when the last of them closes (stopping a private
Ray; a cluster is only disconnected from), and a Flow that asks for ``ray_init_kwargs`` it
was not made with is refused. A process already connected to Ray
(``ray.init`` called by the script or a test fixture) keeps its connection: the transport
uses it and leaves it open.

Example
-------
>>> t = RayTransport(address=None, init_kwargs={'num_cpus': 4})
>>> t.open(); w = t.spawn(dep, shard=0, replica=0)
>>> t.send(w, 1, '/index', pickle.dumps({}), None, t.put(1, docs))
>>> events = t.poll(1.0)            # Ready(w, ...), then Reply(w, 1, ...)
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

import cloudpickle

from ...errors import ExecutorError, ExecutorStartError
from ..base import Died, Failed, InitFailed, Ready, Reply, Transport, Worker, raise_close_errors
from ..handling import executor_config
from . import connection
from .context import script_context
from .options import _shown, actor_options, import_ray
from .payload import decode, encode, nbytes, pack, unpack
from .workers import RayPayload, RayWorker, _dead_state, _death_reason, _local_state

if TYPE_CHECKING:  # pragma: no cover
    from ...array import DocumentArray
    from ...control.topology import Deployment

__all__ = ['RayTransport']

logger = logging.getLogger('runtime')

#: Payloads smaller than this ride inside the actor call; larger ones are put in the
#: object store once (a ``ray.put`` costs about as much as a call on a small machine).
INLINE_MAX = 64 << 10
#: The longest a transport call waits for Ray to hand over objects that already exist
#: (results of finished calls) or for actors to run their ``close()``.
GET_TIMEOUT_S = 60.0
#: The longest ``deaths`` waits for Ray's account of a death it reported (a call to a dead
#: actor fails at once: ~1 ms).
DEATH_ACCOUNT_S = 2.0


class RayTransport(Transport):
    """Executor instances as Ray actors on a local Ray instance or a Ray cluster.

    Parameters
    ----------
    address : None, 'local', 'auto', 'ray://host:port' or 'host:port'
        None (or 'local') starts a private local Ray instance (stopped at ``close`` of
        the last Flow using it); 'auto' joins the cluster at ``RAY_ADDRESS``, else the one
        ``ray start`` started on this machine (``connection.resolve_auto``); anything else
        is passed to ``ray.init(address=...)`` to join a running cluster.
    init_kwargs : dict, optional
        More arguments for ``ray.init`` (``num_cpus``, ``runtime_env``, ``_temp_dir``, ...).
        ``open`` raises ValueError where another open Flow made the process's connection
        without them.

    Example
    -------
    >>> t = RayTransport(address='auto')
    >>> t.open(); w = t.spawn(dep, 0, 0); t.poll(5.0)
    """

    name = 'ray'

    def __init__(self, address: str | None = None, init_kwargs: dict | None = None) -> None:
        if address is not None and (not isinstance(address, str) or not address):
            raise ValueError(f"ray_address must be None (a private local Ray), 'auto' (the cluster of "
                             f"`ray start` on this machine) or 'ray://host:port', got {address!r}")
        if init_kwargs is not None and not isinstance(init_kwargs, dict):
            raise TypeError(f'ray_init_kwargs must be a dict of ray.init arguments, got {type(init_kwargs).__name__}')
        # 'local' is what ray.init calls a private instance: the same as None here.
        self.address, self.init_kwargs = (None if address == 'local' else address), dict(init_kwargs or {})
        self._ray: Any = None
        self._actor_cls: Any = None
        # Its share of the connection Flows made (None: the script's own, left open).
        self._lease: connection.Lease | None = None
        self._calls: dict = {}  # receipt ref -> (worker, rid, payload ref)
        self._starting: dict = {}  # ready ref -> worker
        self._events: list = []  # events found outside poll (kill, a class that cannot be pickled)
        self._workers: list[RayWorker] = []
        self._blobs: dict = {}  # id(deployment) -> its class, pickled once
        # The script's cwd and changed environment at the Flow's start, for every actor (see context).
        self._context: tuple | None = None
        self._dead_state: Any = None  # what ActorHandle._get_local_state says of a dead actor

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        ray = self._ray = import_ray()
        connected = ray.is_initialized()
        try:
            self._lease = connection.acquire(ray, self.address, self.init_kwargs)
        except ConnectionError as exc:
            raise ConnectionError(f'no Ray cluster found at ray_address={self.address!r}: start one with '
                                  f'`ray start --head` (then `ray start --address=HEAD:6379` on the other '
                                  f'nodes), or pass ray_address=None for a private local Ray ({exc})') from exc
        if connected and (self._lease is None or self._lease.address != self.address):
            if self.address is not None:
                logger.warning('backend ray: this process is already connected to Ray; ray_address=%r is not used',
                               self.address)
            else:
                logger.info('backend ray: using the Ray instance this process is connected to')
        from .actor import ExecutorActor
        self._actor_cls = ExecutorActor
        self._context = script_context(connection.baseline_environ())
        self._dead_state = _dead_state()

    def describe(self) -> str:
        try:
            nodes = sum(1 for n in self._ray.nodes() if n.get('Alive'))
        except Exception:  # only a description
            nodes = '?'
        where = 'a private local Ray instance' if self._lease is not None and self._lease.private else 'a Ray cluster'
        return f'Ray actors on {where} ({nodes} node(s))'

    def spawn(self, dep: 'Deployment', shard: int, replica: int) -> RayWorker:
        try:
            opts, asks = actor_options(dep)
        except (TypeError, ValueError) as exc:  # checked at add(); a py_modules folder removed since
            why = str(exc).replace(f'executor {dep.name!r}: ', '', 1)
            return self._cannot_start(RayWorker(dep, shard, replica, {}), why)
        w = RayWorker(dep, shard, replica, asks)
        try:
            blob = self._blobs.get(id(dep))
            if blob is None:
                blob = self._blobs[id(dep)] = cloudpickle.dumps(dep.cls)
        except Exception as exc:
            return self._cannot_start(w, f'its class {dep.cls!r} cannot be pickled to send to Ray: '
                                         f'{type(exc).__name__}: {exc}')
        cfg = executor_config(dep, shard, replica)
        try:
            w.actor = self._actor_cls.options(**opts).remote(blob, cfg, self._context)
            self._starting[w.actor.ready.remote()] = w
        except Exception as exc:  # what Ray checks only here (a runtime_env it cannot set up, ...)
            return self._cannot_start(w, f'Ray could not create its actor with ray_options={_shown(opts)!r}: '
                                         f'{type(exc).__name__}: {exc}')
        self._workers.append(w)
        return w

    def _cannot_start(self, w: RayWorker, why: str) -> RayWorker:
        """``w`` never got an actor: an ``InitFailed`` saying ``why`` (the Flow's start
        raises it, stopping the others; a restart's is logged)."""
        w.alive = False
        w.end = why
        if w.actor is not None:
            try:
                self._ray.kill(w.actor, no_restart=True)
            except Exception as exc:  # it never started: nothing of it to stop
                logger.debug('%s: ray.kill: %s', w.label(), exc)
            w.actor = None
        self._events.append(InitFailed(w, ExecutorStartError(w.dep.name, why)))
        return w

    def close(self, workers: list, timeout_close: float) -> None:
        ray = self._ray
        if ray is None:
            return
        errors = []
        try:
            live = [w for w in self._workers if w.alive and w.ready and w.actor is not None]
            closing = {w.actor.close.remote(): w for w in live}
            if closing:
                done, late = ray.wait(list(closing), num_returns=len(closing), timeout=timeout_close)
                for ref in done:
                    w = closing[ref]
                    try:
                        value = ray.get(ref, timeout=GET_TIMEOUT_S)
                    except Exception as exc:  # (Ray's own failure: the actor went away meanwhile)
                        logger.warning('%s: close() could not be run: %s', w.label(), exc)
                        continue
                    if value[0] == 'err':  # the executor's close() raised: raised once all is stopped
                        _, exc_type, message, tb = value
                        errors.append((w, ExecutorError(w.dep.name, exc_type, f'{message} (in close())', tb,
                                                        w.replica)))
                for ref in late:
                    logger.warning('%s: close() took longer than %.1f s; killed', closing[ref].label(), timeout_close)
            for w in self._workers:
                if w.actor is not None:
                    try:
                        ray.kill(w.actor, no_restart=True)
                    except Exception as exc:  # one that cannot be killed must not spare the others
                        logger.warning('%s: could not kill its actor: %s', w.label(), exc)
                    w.actor = None
                w.alive = w.ready = False
        finally:
            self._calls.clear()
            self._starting.clear()
            self._events.clear()
            self._workers.clear()
            self._blobs.clear()
            lease, self._lease = self._lease, None
            connection.release(ray, lease)  # the last Flow using a connection Flows made ends it
        raise_close_errors(errors)

    def kill(self, worker: Worker, why: str) -> None:
        assert isinstance(worker, RayWorker)
        # (``why`` says 'by the Flow: ...' already, as for a local process: see Worker.died)
        self._died(worker, why if why.startswith('by the Flow') else f'killed by the Flow: {why}')

    # -- requests ----------------------------------------------------------------------------
    def send(self, worker: Worker, rid: int, endpoint: str, params_blob: bytes, earlier: dict | None,
             payload: Any, split: tuple | None = None) -> None:
        assert isinstance(worker, RayWorker)
        if not worker.alive or worker.actor is None:
            self._died(worker, 'it was sent a request after it had gone')
            return
        receipt, out = worker.actor.handle.remote(rid, endpoint, params_blob, pack(earlier), payload.obj, split)
        self._calls[receipt] = (worker, rid, out)
        worker.calls.add(receipt)

    def put(self, rid: int, docs: 'DocumentArray') -> RayPayload:
        wire = encode(docs)
        if nbytes(wire) >= INLINE_MAX:
            return RayPayload(wire[0], self._ray.put(wire))
        if wire[3] is not None:  # sent later, by value: keep what the documents hold now
            wire = (*wire[:3], wire[3].copy())
        return RayPayload(wire[0], wire)

    def count(self, payload: RayPayload) -> int:
        return payload.count

    def combine(self, rid: int, payloads: list, merge: Callable[[list], 'DocumentArray']) -> Any:
        return self.put(rid, merge([decode(w) for w in self._fetch(payloads)]))

    def open_result(self, rid: int, payload: Any, copy: bool) -> tuple['DocumentArray', Any]:
        # decode copies what Ray holds read-only, so the caller's arrays are its own either way.
        return decode(self._fetch([payload])[0]), None

    def close_result(self, token: Any) -> None:
        pass

    def retire(self, rid: int) -> None:
        # A request's objects are freed by Ray's reference counting once the router drops
        # their references; the transport keeps none.
        pass

    def _fetch(self, payloads: list) -> list:
        """The wire tuples of ``payloads``, fetching those that lie in Ray."""
        ray = self._ray
        objs = [p.obj for p in payloads]
        refs = [o for o in objs if isinstance(o, ray.ObjectRef)]
        if not refs:
            return objs
        got = iter(ray.get(refs, timeout=GET_TIMEOUT_S))
        return [next(got) if isinstance(o, ray.ObjectRef) else o for o in objs]

    # -- events ------------------------------------------------------------------------------
    def poll(self, timeout_s: float) -> list:
        ray = self._ray
        events, self._events = self._events, []
        refs = [*self._calls, *self._starting]
        if not refs:
            if not events and timeout_s > 0:
                time.sleep(timeout_s)  # nothing in flight: nothing can happen before then
            return events
        ready, _ = ray.wait(refs, num_returns=1, timeout=0 if events else max(timeout_s, 0), fetch_local=False)
        if not ready:
            return events
        if len(refs) > 1:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        try:
            values = ray.get(ready, timeout=GET_TIMEOUT_S)
        except Exception:  # some call failed: take them one by one to find which
            values = None
        for k, ref in enumerate(ready):
            if values is not None:
                value, error = values[k], None
            else:
                try:
                    value, error = ray.get(ref, timeout=GET_TIMEOUT_S), None
                except Exception as exc:
                    value, error = None, exc
            if ref in self._starting:
                self._on_ready(self._starting.pop(ref), value, error)
            elif ref in self._calls:
                self._on_receipt(ref, value, error)
        events.extend(self._events)
        self._events = []
        return events

    def _on_ready(self, w: RayWorker, value: Any, error: BaseException | None) -> None:
        if not w.alive:
            return
        if error is not None:
            if isinstance(error, self._ray.exceptions.RayActorError):
                self._died(w, _death_reason(error, self._ray))
            else:
                w.alive = False
                w.end = f'its Ray actor could not start: {_death_reason(error, self._ray)}'
                self._events.append(InitFailed(w, ExecutorStartError(w.dep.name, w.end)))
            return
        if value[0] == 'init_error':
            _, exc_type, message, tb = value
            w.alive = False
            w.end = f'its __init__ raised {exc_type}: {message}'
            self._ray.kill(w.actor, no_restart=True)
            w.actor = None
            self._events.append(InitFailed(w, ExecutorStartError(w.dep.name, f'{exc_type}: {message}', tb)))
            return
        _, (endpoints, default, *matrix), w.pid, w.node_id, ip = value
        w.node = f'{w.node_id[:8]} ({ip})'
        w.ready = True
        self._events.append(Ready(w, frozenset(endpoints), default, *map(frozenset, matrix)))

    def _on_receipt(self, ref: Any, value: Any, error: BaseException | None) -> None:
        w, rid, out = self._calls.pop(ref)
        w.calls.discard(ref)
        if error is not None:
            if isinstance(error, self._ray.exceptions.RayActorError):
                self._died(w, _death_reason(error, self._ray))
            else:  # the call itself failed in Ray (its arguments were lost with their node, ...)
                reason = _death_reason(error, self._ray)
                self._events.append(Failed(w, rid, type(error).__qualname__, reason, str(error), (time.time(),) * 4))
            return
        if value[0] == 'ok':
            _, docs_out, results, times, moved = value
            self._events.append(Reply(w, rid, RayPayload(docs_out, out), docs_out, unpack(results), times, moved))
        else:
            _, exc_type, message, tb, times = value
            self._events.append(Failed(w, rid, exc_type, message, tb, times))

    def deaths(self) -> list:
        # The driver owns its actors, so Ray tells it of their deaths (within milliseconds of
        # a process killed, in tests) and keeps what it was told locally: asking costs ~0.4 µs
        # an actor and no round trip, cheap enough for every post.
        dead = self._dead_state
        if dead is None:
            return []
        found = [w for w in self._workers if w.alive and w.actor is not None and _local_state(w.actor) == dead]
        events = []
        for w in found:
            event = self._end(w, self._death_account(w))
            if event is not None:
                events.append(event)
        return events

    def _death_account(self, w: RayWorker) -> str:
        """Ray's account of the death of ``w``'s actor, which Ray reports dead: a call to
        it fails at once (~1 ms) with it."""
        ray = self._ray
        try:
            ray.get(w.actor.ping.remote(), timeout=DEATH_ACCOUNT_S)
        except ray.exceptions.RayActorError as exc:
            return _death_reason(exc, ray)
        except Exception as exc:  # (no account: what is known is said)
            logger.debug('%s: no account of its death: %s', w.label(), exc)
        return 'Ray reports its actor dead (it ended while the Flow was idle)'

    def _died(self, w: RayWorker, reason: str) -> None:
        """Report ``w`` dead once; the calls it held are the router's to fail or retry."""
        event = self._end(w, reason)
        if event is not None:
            self._events.append(event)

    def _end(self, w: RayWorker, reason: str) -> Died | None:
        """Book ``w`` dead: its ``Died`` event, or None if it was booked already."""
        if not w.alive:
            return None
        w.alive = w.ready = False
        w.end = reason
        if w.actor is not None:
            # An actor Ray only lost touch with may come back: make sure it does not, since
            # the router may start its replacement.
            try:
                self._ray.kill(w.actor, no_restart=True)
            except Exception as exc:  # it is gone either way for the Flow
                logger.debug('%s: ray.kill: %s', w.label(), exc)
        for ref in w.calls:
            self._calls.pop(ref, None)
        w.calls.clear()
        for ref in [r for r, x in self._starting.items() if x is w]:
            del self._starting[ref]
        return Died(w, w.died())
