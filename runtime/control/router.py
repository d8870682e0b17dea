"""The router: the one place that knows where every request is.

Every hop of every request goes executor -> router -> next executor. Knowing where each
request is lets the router balance replicas by exact outstanding counts, time each hop,
fail or retry exactly the requests of an instance that died, and tell the transport when
a request is over so that its buffers are freed. It talks to a ``Transport`` (send a
request to a worker; events in: ready, reply, error, death) and never touches a socket,
a process or a buffer, so the same routing drives local processes and Ray actors.

``pump`` reads as named steps: poll the transport, then ``_on_ready`` / ``_on_reply`` /
``_on_failed`` / ``_on_died`` / ``_on_init_failed`` for each event.

Example
-------
>>> router = Router(specs, LocalTransport(32 << 20), workspace='workspace', timeout_close=5.0)
>>> router.start(); plan = router.plan('/index', None); ...; router.close()
"""
from __future__ import annotations

import collections
import itertools
import logging
import os
import secrets
import time
import traceback
from typing import TYPE_CHECKING, Any

from ..array import DocumentArray
from ..errors import ExecutorError, RequestTimeoutError
from ..response import Status
from ..transport.base import Died, Failed, InitFailed, Ready, Reply, Transport, Worker
from ..transport.handling import GROUNDTRUTHS
from .caller_clock import CallerClock
from .instances import MAX_OUTSTANDING, POLL_S, WAIT, Instances
from .merge import branch_merge, concatenate, shard_merge
from .topology import END, GATEWAY, Deployment, Plan, targets

if TYPE_CHECKING:  # pragma: no cover
    from .post import Post

__all__ = ['Router', 'MAX_OUTSTANDING', 'POLL_S']

logger = logging.getLogger('runtime')

#: Plans kept at most (one per endpoint and target_executor posted to).
MAX_PLANS = 256


class _Request:
    __slots__ = ('rid', 'post', 'index', 'ndocs', 'results', 'truths', 'routes', 'at', 'parts', 'shard_parts', 'done',
                 'last', 'retries', 'deadline', 'submitted', 'forks', 'record')

    def __init__(self, rid: int, post: 'Post', index: int, ndocs: int) -> None:
        self.rid, self.post, self.index, self.ndocs = rid, post, index, ndocs
        self.results: dict | None = None  # executor name -> the dict its handler returned
        self.truths: DocumentArray | None = None  # the groundtruths given with the documents
        self.routes: list = []
        # worker -> (node, payload, ready, dispatched, split): where it is being processed
        self.at: dict = {}
        self.parts: dict = {}  # node -> {source node: payload} arrived from its needs so far
        self.shard_parts: dict = {}  # node -> [payload or None] by shard
        self.done = False  # delivered (or abandoned): replies still due are only booked
        self.last: Any = None  # the latest payload, for an error response
        self.retries = 0
        self.deadline = post.timeout and post.router.clock() + post.timeout
        self.submitted = time.time()
        self.forks: dict = {}  # split node -> the payload it sent down its branches
        self.record: Any = None  # its profile record once finished, while profiling (for late answers)


class Router:
    """Routes the requests of a Flow's posts over a transport's workers.

    The parameters are those of ``Instances`` (which keeps the workers): the ``add()``
    specs, the transport, the workspace folder and ``timeout_close``.
    """

    def __init__(self, specs: list[dict], transport: Transport, workspace: str, timeout_close: float) -> None:
        self.transport = transport
        self.instances = Instances(specs, transport, workspace, timeout_close)
        self.deployments: list[Deployment] = self.instances.deployments
        self.profile = None  # a ProfileRecorder while profiling
        self._requests: dict[int, _Request] = {}
        self._rids = itertools.count()
        self._hung = self.instances.hung
        self._plans: dict[tuple, Plan] = {}
        self._finished: collections.deque = collections.deque()  # (post, Response, ndocs, token)
        self.id_prefix = f'{os.getpid()}-{secrets.token_hex(4)}'  # request ids are f'{id_prefix}-{n}'
        #: Set (to why) from another thread to stop the post running here at its next poll.
        self.closing: str | None = None
        #: The time requests' timeouts and hung instances' graces count (see caller_clock).
        self.caller = CallerClock()

    def clock(self) -> float:
        """``caller.now()``: time that stands still while the caller's code holds this
        thread (see ``caller_clock``)."""
        return self.caller.now()

    # -- start / stop --------------------------------------------------------------------------
    @property
    def started(self) -> bool:
        return self.instances.started

    def start(self) -> None:
        """Start every executor's instances and wait until all are ready (see
        ``Instances.start``: raises ExecutorStartError, leaving nothing running)."""
        self.instances.start()

    def close(self) -> None:
        """Stop every instance and release everything the transport holds."""
        self.instances.close()

    # -- plans and inputs ------------------------------------------------------------------------
    def notice_deaths(self) -> None:
        """Book the workers that died since the last poll (a process killed while the Flow
        was idle): before a post plans and sends, so that its requests go to a live replica
        or wait for the restart instead of being sent to the dead process and failed."""
        for event in self.transport.deaths():
            self._on_died(event)

    def plan(self, endpoint: str, target: str | None) -> Plan:
        """The plan of a post to ``endpoint``; raises if an executor it needs is dead."""
        # (a target that is no str may not even hash: targets() refuses it, saying why)
        plan = self._plans.get((endpoint, target)) if target is None or isinstance(target, str) else None
        if plan is None:  # the graph is the same for every post to an endpoint: build it once
            targeted = targets(self.deployments, target)
            active = [t and d.handles(endpoint) for t, d in zip(targeted, self.deployments)]
            if len(self._plans) >= MAX_PLANS:  # endpoints and targets may come from HTTP clients
                self._plans.clear()
            plan = self._plans[(endpoint, target)] = Plan(self.deployments, endpoint, active)
        for d in plan.used:  # asked before every post: an executor may have died since
            dead = d.dead_shard()
            if dead is not None:
                raise dead.died()
        return plan

    def prepare(self, docs: DocumentArray) -> tuple[int, Any, int, float]:
        """One request's documents, encoded for ``submit``: (request id, payload, count,
        seconds the encoding took). What is prepared and never submitted must be
        ``discard``-ed."""
        rid = next(self._rids)
        t0 = time.perf_counter()
        try:
            return rid, self.transport.put(rid, docs), len(docs), time.perf_counter() - t0
        except BaseException:
            self.transport.retire(rid)
            raise

    def discard(self, prepared: tuple) -> None:
        """Free a prepared request unless ``submit`` took it (it raised part way: the
        request is the router's then, and goes when its workers are done with it)."""
        if prepared[0] not in self._requests:
            self.transport.retire(prepared[0])

    def quiet(self) -> bool:
        """Send what is queued; True when no event waits, so that the caller may do other
        work (prepare inputs) before it pumps."""
        self.transport.flush()
        return not self.transport.has_events()

    def submit(self, post: 'Post', prepared: tuple, index: int, truths: DocumentArray | None = None) -> None:
        """Send one prepared request (and its documents' groundtruths) on its way."""
        rid, payload, ndocs, encode_s = prepared
        req = _Request(rid, post, index, ndocs)
        # Its latency counts its encoding (not the wait of one encoded ahead of its turn).
        req.submitted -= encode_s
        req.truths = truths
        self._requests[rid] = req
        post.inflight += 1
        req.last = payload
        if GATEWAY in post.plan.forks:
            req.forks[GATEWAY] = payload
        for node in post.plan.start:
            self._arrive(req, node, payload)
        self._deliver()

    # -- stepping through the plan -----------------------------------------------------------
    def _arrive(self, req: _Request, node: int, payload: Any, split: tuple | None = None, src: int = GATEWAY) -> None:
        """One of ``node``'s needs has delivered; once all have, ``node`` takes the request.

        ``split``: ``payload`` is the concatenation of parts of these sizes, for a node
        that takes ``docs_matrix``; ``src``: the node it comes from."""
        plan = req.post.plan
        need = plan.end_preds if node == END else plan.npred[node]
        if need > 1:
            arrived = req.parts.setdefault(node, {})
            arrived[src] = payload
            if len(arrived) < need:
                return
            del req.parts[node]
            parts = [arrived[p] for p in plan.preds[node]]
            name = plan.nodes[node].name if node != END else 'gateway'
            if node != END and plan.matrix[node]:
                payload, split = self._concat(req, parts, name)
            else:
                payload = self._join(req, parts, None, req.forks.get(plan.split[node]), name, 'joining branches')
            if payload is None:
                return
        if node == END:
            return self._finish(req, payload)
        if not plan.active[node]:
            split = None
            if plan.fan[node] and self._matrix_next(plan, node):
                # Shards with no handler for it each hand the documents on unchanged: a
                # uses_after still sees one part per shard, as it would with handlers.
                payload, split = self._concat(req, [payload] * plan.nodes[node].shards, plan.nodes[node].name)
                if payload is None:
                    return
            return self._pass_on(req, node, payload, split)
        dep = plan.nodes[node]
        if plan.matrix[node] and split is None:
            split = (self.transport.count(payload),)
        elif not plan.matrix[node]:
            split = None
        if plan.fan[node]:
            req.shard_parts[node] = [None] * dep.shards
            for shard in range(dep.shards):
                self._assign(req, dep, shard, payload, split=split)
        else:
            self._assign(req, dep, None, payload, split=split)

    def _assign(self, req: _Request, dep: Deployment, shard: int | None, payload: Any,
                ready: float | None = None, split: tuple | None = None) -> None:
        """Send to the instance ``Instances.choose`` picks, or wait in the router."""
        ready = ready or time.time()  # when it could have gone: waiting in the router counts as queueing
        w = self.instances.choose(dep, shard)
        if w is WAIT:
            dep.waiting.append((req, shard, payload, ready, split))
        elif isinstance(w, BaseException):
            self._fail(req, w)
        else:
            self._send(req, w, payload, ready, split)

    def _send(self, req: _Request, w: Worker, payload: Any, ready: float, split: tuple | None) -> None:
        req.at[w] = (w.dep.index, payload, ready, time.time(), split)
        w.outstanding += 1
        earlier = req.results
        if req.truths is not None:  # they ride with the results, to every executor
            earlier = {**(earlier or {}), GROUNDTRUTHS: req.truths}
        self.transport.send(w, req.rid, req.post.endpoint, req.post.params_blob, earlier, payload, split)

    def _next_waiting(self, dep: Deployment) -> None:
        """An instance of ``dep`` has room again (or is gone): hand on the oldest waiting
        requests while ``Instances.choose`` finds one for them."""
        while dep.waiting:
            req, shard, payload, ready, split = dep.waiting[0]
            if req.done or req.post.abandoned:
                dep.waiting.popleft()
                self._drop(req)
                continue
            w = self.instances.choose(dep, shard)
            if w is WAIT:
                return
            dep.waiting.popleft()
            if isinstance(w, BaseException):
                self._fail(req, w)
            else:
                self._send(req, w, payload, ready, split)

    @staticmethod
    def _matrix_next(plan: Plan, node: int) -> bool:
        """Whether what ``node`` sends on goes to a node that takes ``docs_matrix``."""
        return any(nxt != END and plan.matrix[nxt] for nxt in plan.succ[node])

    def _concat(self, req: _Request, parts: list, name: str) -> tuple[Any, tuple | None]:
        """The parts one after the other, for a node that takes them as ``docs_matrix``."""
        payload = self._combine(req, parts, concatenate, name, 'gathering docs_matrix')
        return (None, None) if payload is None else (payload, tuple(self.transport.count(p) for p in parts))

    def _join(self, req: _Request, parts: list, dep: Deployment | None, fork: Any, name: str,
              doing: str) -> Any:
        """Merge the payloads of parallel branches (``dep`` given: its shards) into one;
        returns None (the request failed) if the merge raised."""
        if dep is not None:
            merge = shard_merge(dep, req.post.params())
        elif fork is not None:
            merge, parts = branch_merge(True), parts + [fork]
        else:
            merge = branch_merge(False)
        return self._combine(req, parts, merge, name, doing)

    def _combine(self, req: _Request, parts: list, merge: Any, name: str, doing: str) -> Any:
        try:
            return self.transport.combine(req.rid, parts, merge)
        except Exception as exc:
            self._fail(req, ExecutorError(name, type(exc).__qualname__, f'{doing}: {exc}', traceback.format_exc()))
            return None

    # -- events ----------------------------------------------------------------------------------
    def pump(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for events, and move requests on."""
        self._book(timeout_s)
        self._deliver()

    def _book(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for events and book them; what moves on is sent."""
        caller = self.caller
        caller.resume()  # (pumped from inside the caller's code: the clock runs)
        try:
            self._take_events(timeout_s)
        finally:
            caller.pause_if_inside()

    def _take_events(self, timeout_s: float) -> None:
        for event in self.transport.poll(timeout_s):
            kind = type(event)
            if kind is Reply:
                self._on_reply(event)
            elif kind is Failed:
                self._on_failed(event)
            elif kind is Died:
                self._on_died(event)
            elif kind is Ready:  # after start-up: a restarted instance
                self._on_ready(event)
                w = event.worker
                logger.info('executor %r (replica %d, shard %d) restarted', w.dep.name, w.replica, w.shard)
                self._next_waiting(w.dep)
            elif kind is InitFailed:
                self._on_init_failed(event)
        # Only after the replies that waited are booked: an instance whose answer sat
        # unread while the caller's code ran (a slow callback, its input) did answer.
        self._end_overdue()
        # Requests moving on go now: the caller's next steps (callbacks, then encoding new
        # inputs) would keep the executors that wait for them idle.
        self.transport.flush()

    def _deliver(self) -> None:
        """Hand finished requests to their posts' callbacks, in the order they finished.

        User code runs here, after the events of a poll were all booked: a callback that
        raises stops the post (it propagates from here) but cannot leave a reply unbooked,
        a worker counted busy or a death unseen. What a raising callback left undelivered
        is delivered on the next call, or only released if its post gave up."""
        finished = self._finished
        while finished:
            post, resp, ndocs, token = finished.popleft()
            self.caller.enter()
            try:
                if not post.abandoned:
                    post.finished(resp, ndocs)
            finally:
                self.caller.leave()
                del resp  # the arrays the callbacks did not keep are released now
                self.transport.close_result(token)

    def _on_ready(self, event: Ready) -> None:
        self.instances.on_ready(event)
        self._plans.clear()  # what each executor handles is known now

    def _on_init_failed(self, event: InitFailed) -> None:
        # A restarted instance whose __init__ raised: it is going away. A local process's
        # Died event follows; a Ray actor has none, so what waits for it is looked at now
        # (it goes to another instance, or fails naming the executor).
        logger.error('%s', event.error)
        self._next_waiting(event.worker.dep)

    def _on_reply(self, event: Reply) -> None:
        w = event.worker
        req = self._settle(w, event.rid, event.times, event.moved_bytes, event.docs_out)
        if req is not None:
            if event.results is not None:
                if req.results is None:
                    req.results = {}
                if req.post.plan.fan[w.dep.index]:  # one dict per shard, by shard id
                    req.results.setdefault(w.dep.name, [None] * w.dep.shards)[w.shard] = event.results
                else:
                    req.results[w.dep.name] = event.results
            self._done_at(req, w, event.payload)
        self._answered(w)

    def _on_failed(self, event: Failed) -> None:
        w = event.worker
        req = self._settle(w, event.rid, event.times, 0, None, keep_input=True)
        if req is not None:
            self._fail(req, ExecutorError(w.dep.name, event.exc_type, event.message, event.traceback, w.replica,
                                          req.post.endpoint), event.exc_type, event.traceback)
        self._answered(w)

    def _on_died(self, event: Died) -> None:
        w, dep = event.worker, event.worker.dep
        w.alive = False
        self.instances.on_died(w)
        if not self.started:
            return
        logger.error('%s', event.error)
        self.instances.restart(w)
        for req in [r for r in self._requests.values() if w in r.at]:
            node, payload, _, _, split = req.at.pop(w)
            w.outstanding -= 1
            if req.done or req.post.abandoned:
                self._drop(req)
            elif req.retries < dep.max_retries:
                req.retries += 1  # may run twice: the instance may have died after the handler
                self._assign(req, dep, w.shard if req.post.plan.fan[node] else None, payload, split=split)
            else:
                req.last = payload
                self._fail(req, event.error)
        self._next_waiting(dep)  # what waited for it goes to a sibling, or fails

    def _settle(self, w: Worker, rid: int, times: tuple, moved: int, docs_out: int | None,
                keep_input: bool = False) -> _Request | None:
        """Book an answer from ``w``; returns the request while it is still going. One to a request
        delivered already (timed out, failed in another branch) is profiled as late, if at all."""
        w.outstanding -= 1
        req = self._requests.get(rid)
        if req is None:  # cannot happen while the tables are right; never leak a buffer
            self.transport.retire(rid)
            return None
        node, payload, ready, dispatched, _ = req.at.pop(w)
        if keep_input:
            req.last = payload
        late = req.done or req.post.abandoned  # (answers in time pay no profiling check)
        if late and (self.profile is None or req.record is None):  # (no record: abandoned unfinished)
            return self._drop(req)
        # Wall times (time.time()) of one hop: ready to go to this executor, sent to it,
        # received there, handler start and end, sent back, back in the router.
        hop = {'executor': w.dep.name, 'replica': w.replica, 'shard': w.shard, 'pid': w.pid, 'node': w.node,
               'ready': ready, 'dispatched': dispatched, 'received': times[0], 'start': times[1], 'end': times[2],
               'sent': times[3], 'returned': time.time(), 'shm_bytes': moved, 'docs_in': self.transport.count(payload),
               'docs_out': docs_out}
        if late:  # to the profile only: the Response the callbacks got keeps its routes
            self.profile.add_late(req.record, hop)
            return self._drop(req)
        req.routes.append(hop)
        return req

    def _done_at(self, req: _Request, w: Worker, payload: Any) -> None:
        """``w`` answered: pass its output on (a shard's waits for its sibling shards)."""
        split = None
        plan = req.post.plan
        node = w.dep.index
        req.last = payload
        if plan.fan[node]:
            parts = req.shard_parts[node]
            parts[w.shard] = payload
            if any(p is None for p in parts):
                return
            del req.shard_parts[node]
            if self._matrix_next(plan, node):
                payload, split = self._concat(req, parts, w.dep.name)  # a uses_after merges them
            else:
                payload = self._join(req, parts, w.dep, None, w.dep.name, 'reducing shards')
            if payload is None:
                return
        self._pass_on(req, node, payload, split)

    def _pass_on(self, req: _Request, node: int, payload: Any, split: tuple | None) -> None:
        """``node``'s output goes to each of its successors (kept, where branches split,
        for the join that meets them)."""
        plan = req.post.plan
        if node in plan.forks:
            req.forks[node] = payload
        for nxt in plan.succ[node]:
            self._arrive(req, nxt, payload, split, node)

    # -- the end of a request --------------------------------------------------------------------
    def _drop(self, req: _Request) -> None:
        """A request whose caller has its answer (or gave up): only what is still due is
        booked, and its buffers go once no worker holds it."""
        req.done = True
        self._retire(req)

    def _answered(self, w: Worker) -> None:
        """``w`` answered: it has room again, and if it no longer holds a timed-out
        request it was only slow, not hung."""
        if w in self._hung and not any(r.done for r in self._requests.values() if w in r.at):
            self._hung.forget(w)
        self._next_waiting(w.dep)

    def _retire(self, req: _Request) -> None:
        """Let the transport free the request's buffers once no worker holds it any more."""
        if req.at or req.rid not in self._requests:
            return
        del self._requests[req.rid]
        self.transport.retire(req.rid)

    def _fail(self, req: _Request, error: BaseException, exc_type: str | None = None, tb: str = '') -> None:
        """Deliver ``req`` as failed, with the documents as they entered the failing step;
        branches still running finish unheard."""
        if not req.done:
            self._finish(req, req.last, error, exc_type, tb)

    def _finish(self, req: _Request, payload: Any, error: BaseException | None = None,
                exc_type: str | None = None, tb: str = '') -> None:
        """Hand the request's Response to its post.

        With callbacks (no ``return_results``) the transport may give views rather than
        copies, valid for as long as the caller keeps them; ``return_results`` keeps
        everything, so it gets copies and the buffers go at once.
        """
        post = req.post
        req.done = True
        post.inflight -= 1
        copy = post.results is not None
        token = None
        try:
            docs, token = self.transport.open_result(req.rid, payload, copy)
        except Exception as exc:
            # Never a SUCCESS with the documents missing: the request fails, saying why.
            docs = DocumentArray()
            if error is None:
                exc_type, tb = type(exc).__qualname__, traceback.format_exc()
                error = ExecutorError(req.routes[-1]['executor'] if req.routes else 'gateway', exc_type,
                                      f'the documents it sent could not be read back: {exc}', tb)
        self._retire(req)
        if error is None:
            status = Status()
        else:
            status = Status.from_error(error, getattr(error, 'executor', ''), exc_type, tb)
        resp = post.response(req.rid, docs, status, req.routes, req.index, req.results, req.truths)  # (lazily)
        if self.profile is not None:
            # (the documents posted: what the run handled, as the progress bar counts them)
            req.record = self.profile.add(resp.request_id, post.number, post.endpoint, req.submitted, time.time(),
                                          req.ndocs, error is None, req.routes)
        del docs
        # Delivered once the event that finished it is fully handled (see _deliver): a
        # callback that raises must not cut short the router's own bookkeeping.
        self._finished.append((post, resp, req.ndocs, token))

    # -- time limits -----------------------------------------------------------------------------
    def expire(self, post: 'Post | None' = None) -> None:
        """Fail the requests of ``post`` (None: of every post with a timeout, for a thread
        that holds several waiting, as an AsyncFlow's nested posts) older than its timeout,
        naming who holds them; end instances that keep holding one well past it, when their
        executor can restart."""
        clock = self.clock()
        for req in [r for r in self._requests.values()
                    if (r.post is post if post is not None else r.deadline is not None and not r.post.abandoned)
                    and not r.done and r.deadline < clock]:
            holders = [w.label() for w in req.at]
            holders += [f'{d.name!r} (waiting for a free instance)' for d in self.deployments
                        if any(item[0] is req for item in d.waiting)]
            p = req.post
            error = RequestTimeoutError(f'request {p.id_prefix}-{req.rid} took longer than timeout='
                                        f'{p.timeout} s; held by {", ".join(holders) or "the router"}')
            error.executor = req.at and next(iter(req.at)).dep.name or ''
            for w in req.at:
                self._hung.mark(w, p.timeout, clock)  # (its grace on the same clock: see clock())
            if req.at:  # the documents as they entered the step that holds it (not another branch's output)
                req.last = next(iter(req.at.values()))[1]
            self._fail(req, error)
        self._end_overdue()
        self._deliver()

    def _end_overdue(self) -> None:
        """End the instances the Flow gives up on (``Instances.end_overdue``); a hung one
        it leaves running takes the requests that waited for it."""
        for w in self.instances.end_overdue(time.monotonic(), self.clock()):
            self._next_waiting(w.dep)

