"""One ``Flow.post`` call: the window of requests in flight and the delivery of results.

The post reads its inputs in requests of ``request_size`` documents, keeps at most
``window`` of them in flight or waiting for delivery (so memory is bounded by the window,
not by the input), encodes the next few while the window is full and nothing else waits,
pumps the router while it waits, and hands each finished request's Response to the
callbacks — in completion order, or in input order when asked.

Example
-------
>>> post = Post(router, '/index', plan, params_blob, window=16, on_done=print)
>>> post.run(batched(docs, 100))
"""
from __future__ import annotations

import collections
import logging
import pickle
import time
from typing import Callable, Iterator

from ..array import DocumentArray
from ..errors import FlowNotStartedError
from ..response import Response, Status
from ..transport.handling import EMPTY_PARAMS
from .progress import Progress
from .router import POLL_S, Router
from .topology import Plan

__all__ = ['Post', 'run_callback']

logger = logging.getLogger('runtime')

#: The pickled parameters of a post without any (most posts): pickled once, not per post.
NO_PARAMETERS = EMPTY_PARAMS
#: Requests a post encodes ahead of their turn while its window is full and no event waits,
#: at most (and at most an eighth of its window: a small window still reads its inputs
#: strictly one request at a time).
AHEAD = 2
#: While a post reads an input that runs the caller's code, replies are booked at least
#: this often (seconds): a slow input's results come one read late, not a window late.
PUMP_GAP_S = 0.002


class Post:
    """The state of one post: callbacks, window, results and the first error.

    Parameters
    ----------
    router : Router
    endpoint : str
    plan : Plan
        Which executors handle the endpoint, and the edges between them.
    params_blob : bytes
        The pickled parameters; every request unpickles its own copy.
    window : int
        Requests submitted and not yet delivered, at most: in flight, or (``in_order``)
        finished and waiting for an earlier one.
    on_done, on_error, on_always : callable(Response) or None
    return_results : bool
        Keep every Response (returned by ``run``).
    in_order : bool
        Deliver in input order rather than completion order.
    progress : Progress or None
    timeout : float or None
        Seconds a request may take.
    continue_on_error : bool
        Without ``on_error``: log failed requests and go on instead of raising at the end;
        and an exception a callback raises is logged, not raised (see ``run_callback``).
    number : int
        Which post of the Flow this is (for profiles).
    id_prefix : str
        Request ids are ``f'{id_prefix}-{n}'``.
    """

    # Slots: the router reads a post's fields at every step of every request.
    __slots__ = ('router', 'endpoint', 'plan', 'params_blob', 'window', 'on_done', 'on_error', 'on_always',
                 'results', 'in_order', 'progress', 'timeout', 'continue_on_error', 'number', 'id_prefix',
                 'inflight', 'error', 'abandoned', '_pending', '_next_index', '_params')

    def __init__(self, router: Router, endpoint: str, plan: Plan, params_blob: bytes, window: int,
                 on_done: Callable | None = None, on_error: Callable | None = None,
                 on_always: Callable | None = None, return_results: bool = False, in_order: bool = False,
                 progress: Progress | None = None, timeout: float | None = None,
                 continue_on_error: bool = False, number: int = 0, id_prefix: str = '') -> None:
        self.router, self.endpoint, self.plan, self.params_blob = router, endpoint, plan, params_blob
        self.window = window
        self.on_done, self.on_error, self.on_always = on_done, on_error, on_always
        self.results: list | None = [] if return_results else None
        self.in_order, self.progress, self.timeout = in_order, progress, timeout
        self.continue_on_error, self.number, self.id_prefix = continue_on_error, number, id_prefix
        self.inflight = 0
        self.error: BaseException | None = None
        self.abandoned = False
        self._pending: dict[int, tuple] = {}  # index -> (Response, ndocs) waiting for an earlier one
        self._next_index = 0
        self._params: dict | None = None

    def params(self) -> dict:
        """The parameters, unpickled once (read-only: for reduce hooks in the router)."""
        if self._params is None:
            self._params = pickle.loads(self.params_blob)
        return self._params

    def response(self, rid: int, docs: DocumentArray, status: Status, routes: list, index: int,
                 results: dict | None, truths: DocumentArray | None = None) -> Response:
        """The Response of this post's request ``rid``; ``results`` (executor name -> the dict
        its handler returned) appear as ``parameters['__results__']``, ``truths`` (posted
        with the documents, if any) as ``groundtruths``.

        The parameters are unpickled only if the Response's ``parameters`` are read: a
        callback that only looks at the documents pays nothing for them.
        """
        return Response._from_blob(f'{self.id_prefix}-{rid}', docs, self.endpoint, self.params_blob, results,
                                   status, routes, index, truths)

    # -- the window loop -------------------------------------------------------------------------
    def run(self, batches: Iterator[tuple], read_ahead: bool = False) -> list | None:
        """Send every batch (documents, groundtruths or None), keeping at most ``window``
        in flight; returns the Responses if ``return_results``. Raises the first error when
        no ``on_error`` handles it, once the requests already in flight have settled; an
        error reading or encoding the input likewise stops the reading and is raised once
        the requests already sent have settled (their callbacks ran).

        ``read_ahead``: ``batches`` may be read before the window has room (they run none
        of the caller's code: see ``inputs.runs_no_user_code``)."""
        router = self.router
        wait_s = POLL_S if self.timeout is None else min(POLL_S, self.timeout / 4)
        index = 0
        exhausted = False
        input_error: Exception | None = None
        # Encoding a request costs the router's process more than anything else it does
        # for it, and while the window is full that process often only waits for replies.
        # So it encodes the next requests then (at most AHEAD), and when the window opens
        # they go at once: the executors waiting for work are not kept waiting by that.
        # Each holds what encoding it gave, a prepared request or the error its input raised
        # (raised in its turn, as it would have been without encoding ahead). An item
        # leaves it once submitted: whatever interrupts, what is left in it is discarded.
        ahead: collections.deque = collections.deque()
        ahead_max = min(AHEAD, self.window // 8) if read_ahead else 0
        # Reading an input that runs the caller's code may take any time (a live feed, a
        # query typed in): replies are booked and delivered between its reads, or each
        # result would wait until the window filled. (That time is not counted against
        # post(timeout=...): see caller_clock.)
        pumped = time.monotonic() if not read_ahead else None
        try:
            while True:
                while (ahead or not exhausted) and self.error is None and self._room():
                    if not ahead and not self._prepare(batches, ahead, not read_ahead):
                        exhausted = True
                        break
                    self._check_open()  # (reading the input ran the caller's code: it may have blocked)
                    item = ahead[0]
                    if isinstance(item, BaseException):
                        # Raised once the requests already sent have settled, as a failed
                        # request's error is: a caller that records progress in on_done
                        # must learn what reached the executors before the input broke.
                        input_error, exhausted = item, True
                        self._discard(ahead)
                        break
                    router.submit(self, item[0], index, item[1])
                    ahead.popleft()
                    index += 1
                    if pumped is not None and time.monotonic() - pumped >= PUMP_GAP_S:
                        router.pump(0)
                        if self.timeout is not None:
                            router.expire(self)
                        pumped = time.monotonic()
                if self.inflight == 0 and (exhausted or self.error is not None):
                    break
                if not exhausted and len(ahead) < ahead_max and self.error is None and router.quiet():
                    exhausted = not self._prepare(batches, ahead, False)  # (read ahead: no caller code)
                    continue
                router.pump(wait_s)
                if self.timeout is not None:
                    router.expire(self)
                self._check_open()
        except BaseException as exc:
            # Ctrl-C, close() or a raising callback stops the post at once, settled or not.
            self.abandoned = True
            if input_error is not None and exc.__context__ is None:
                exc.__context__ = input_error  # (shown with it: the input broke first)
            raise
        finally:
            self._discard(ahead)
            if self.progress is not None:
                self.progress.close()
        if input_error is not None:
            if self.error is not None:  # failed while settling: only one error can be raised
                logger.error('a request of post %d failed while the requests sent before its input raised '
                             'settled (the input\'s error is raised, not this one): %s', self.number, self.error)
            raise input_error
        if self.error is not None:
            raise self.error
        if self.results is not None and self.in_order:
            self.results.sort(key=lambda r: r.index)
        return self.results

    def _check_open(self) -> None:
        """Raise FlowNotStartedError once the Flow is being closed (from another thread)."""
        if self.router.closing:
            raise FlowNotStartedError(f'{self.router.closing} while this post was running (from another thread: '
                                      f'Ctrl-C, SIGTERM, the gateway shutting down); the requests still in '
                                      f'flight were abandoned')

    def _discard(self, ahead: collections.deque) -> None:
        """Free the requests encoded ahead and not submitted (whatever ends the reading)."""
        while ahead:
            item = ahead.popleft()
            if isinstance(item, tuple):
                self.router.discard(item[0])

    def _room(self) -> bool:
        """True while fewer than ``window`` requests are submitted and not yet delivered.

        A finished request parked for in-order delivery still holds its documents (and
        their shared memory): it counts as much as one in flight, or one slow request
        would let the post read the whole input. This never deadlocks: the request the
        parked ones wait for is itself in flight, and frees the window when it finishes.
        """
        return self.inflight + len(self._pending) < self.window

    def _prepare(self, batches: Iterator[tuple], ahead: collections.deque, user_code: bool) -> bool:
        """Append the next request, encoded, to ``ahead``: (prepared, groundtruths), or
        the exception that reading or encoding it raised; False at the end of the inputs.
        ``user_code``: reading the input runs the caller's code (see ``caller_clock``)."""
        try:
            if user_code:
                self.router.caller.enter()  # (its time is not counted: see caller_clock)
                try:
                    batch = next(batches, None)
                finally:
                    self.router.caller.leave()
            else:
                batch = next(batches, None)
            if batch is None:
                return False
            ahead.append((self.router.prepare(batch[0]), batch[1]))
        except Exception as exc:  # noqa: BLE001 - raised in its turn by run()
            ahead.append(exc)
        return True

    # -- delivery --------------------------------------------------------------------------------
    def finished(self, resp: Response, ndocs: int) -> None:
        """The router finished a request that held ``ndocs`` input documents."""
        if not self.in_order:
            return self._deliver(resp, ndocs)
        self._pending[resp.index] = (resp, ndocs)
        del resp
        while self._next_index in self._pending:
            self._deliver(*self._pending.pop(self._next_index))
            self._next_index += 1

    def _deliver(self, resp: Response, ndocs: int) -> None:
        failed = resp.status.code == Status.ERROR
        if self.progress is not None:
            self.progress.update(ndocs, failed, len(resp.docs))
        keep_going = self.continue_on_error
        if failed:
            if self.on_error is not None:
                run_callback(self.on_error, 'on_error', resp, keep_going)
            elif keep_going:
                logger.error('request %s failed: %s', resp.request_id, resp.status.description)
            elif self.error is None:
                self.error = resp.status.error
        elif self.on_done is not None:
            run_callback(self.on_done, 'on_done', resp, keep_going)
        if self.on_always is not None:
            run_callback(self.on_always, 'on_always', resp, keep_going)
        if self.results is not None:
            self.results.append(resp)


def run_callback(callback: Callable, name: str, resp: Response, keep_going: bool) -> None:
    """Call ``callback(resp)``; with ``keep_going`` (a post's ``continue_on_error``) an
    Exception it raises is logged (logger 'runtime', ERROR, with its traceback) instead of
    stopping the post, as Jina 2's ``continue_on_error`` did. Anything else (Ctrl-C,
    SystemExit) always propagates. ``name`` says which callback it is, in the log.

    Example
    -------
    >>> run_callback(print, 'on_done', resp, keep_going=True)  # doctest: +SKIP
    """
    if not keep_going:
        callback(resp)
        return
    try:
        callback(resp)
    except Exception:  # noqa: BLE001 - what continue_on_error asks for
        logger.error('%s raised for request %s (continue_on_error=True: logged, the post goes on)', name,
                     resp.request_id, exc_info=True)
