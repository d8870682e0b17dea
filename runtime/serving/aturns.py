"""The thread an ``AsyncFlow`` runs its posts in, and how they take turns on it (``Turns``).

``Flow.post`` runs whole in the thread that calls it, holding the Flow, so an AsyncFlow
runs every post in one thread of its own. A post waits there now and then: for room to
hand a response over (its consumer is slower than the executors), or for the next
documents of its async generator input. While it waits, the posts queued behind it run
right there, nested (``Flow.post`` may be called from a callback), each to its end; then
the waiting post goes on. So a post waiting for its consumer keeps its window (it reads
no input meanwhile), and a post queued behind it is served at once, whoever awaits it:
another coroutine, the consumer of the waiting post (a post awaited inside ``async for``
over another), or the async generator the waiting post reads.

Example
-------
>>> turns = Turns()
>>> turns.add(handover, run, pool)                  # on the loop: queue one post's run
>>> turns.until(handover, lambda: handover.room > 0)  # in the Flow's thread: wait, serving others
"""
from __future__ import annotations

import collections
import concurrent.futures
import threading
from typing import Callable

from .apost import Handover, Stopped

__all__ = ['Turns', 'MAX_NESTED']

#: Posts running in the Flow's thread at most, one nested inside another: each level takes
#: some 16 frames, and 32 of them stay well within Python's recursion limit (1000). A post
#: waiting at that depth serves none of the posts queued behind it: they wait for the posts
#: running to end, as they would behind a post of a Flow.
MAX_NESTED = 32


class Turns:
    """The posts of one AsyncFlow: queued (oldest first) or running in its Flow's thread.

    ``cond`` guards the queue and every post's ``Handover``; ``live`` holds the handovers
    of the posts queued or running (what ``stop_all`` stops). The stack of the posts
    running, innermost last, is touched in the Flow's thread only.

    Example
    -------
    >>> turns.add(handover, run, pool)   # pool: the Flow's thread, which calls turns.serve
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.live: set[Handover] = set()
        self._queue: collections.deque[tuple[Handover, Callable[[], None]]] = collections.deque()
        self._running: list[Handover] = []

    # -- on the loop -------------------------------------------------------------------------
    def add(self, handover: Handover, run: Callable[[], None], pool: concurrent.futures.Executor) -> None:
        """Queue a post (``run`` runs it whole); it runs once the Flow's thread is free, or
        as soon as a post running there waits (see ``wait``)."""
        with self.cond:
            self.live.add(handover)
            self._queue.append((handover, run))
            # (a waiting post may run it first: the task then finds it gone)
            pool.submit(self.serve, handover)
            self.cond.notify_all()

    def leave(self, handover: Handover) -> None:
        """The post's consumer is done with it (at its end, a break, a cancel): a post
        still queued will not run, and one waiting in the Flow's thread ends."""
        with self.cond:
            self.live.discard(handover)
            handover.gone = True
            self._take(handover)
            self.cond.notify_all()

    def stop_all(self) -> None:
        """Mark every post queued or running as stopped by ``close()``: a post waiting in
        the Flow's thread ends at once, a queued one when its turn comes."""
        with self.cond:
            for handover in self.live:
                handover.closed = True
            self.cond.notify_all()

    # -- in the Flow's thread ----------------------------------------------------------------
    def serve(self, handover: Handover) -> None:
        """Run ``handover``'s post, unless it ran already (nested) or will not run at all.
        (Its own post, not the oldest queued: a task left in the pool of an earlier start
        must not run a post of this one.)"""
        with self.cond:
            run = self._take(handover)
        if run is not None:
            self._run(handover, run)

    def hand_over(self, handover: Handover) -> bool:
        """Before a response of ``handover``'s post is handed over: wait until there is room
        for it (running the posts queued meanwhile, see ``wait``), or raise Stopped if the
        post is to end. False: drop it (its consumer is gone).

        A post nested in this one runs when the response comes (its pumps finish this one's
        requests): handed over without waiting, as this post can go on only once that one
        ends. That is bounded: this post sends nothing meanwhile, and reads no input until
        its consumer has made room again (here, or in ``AsyncInputs._ask``), so at most its
        window of requests in flight come back unread on top of a window's worth.

        Example
        -------
        >>> if turns.hand_over(handover):
        ...     loop.call_soon_threadsafe(queue.put_nowait, ('resp', resp))
        """
        top = self.on_top(handover)
        if top:
            # At the nesting cap a queued post cannot run here: waiting for room could then
            # wait for a consumer that awaits that post. Handed over unbounded instead, as a
            # post nested in this one would be, until the stack is lower again.
            self.until(handover, lambda: handover.room > 0 or self._at_cap())
        with self.cond:
            if handover.stopped and top:
                raise Stopped()
            if handover.stopped:
                return False  # (this post ends once it goes on: the one nested in it must not)
            handover.room -= 1
            return True

    def on_top(self, handover: Handover) -> bool:
        """Whether ``handover``'s post is the innermost one running (it may wait); False
        while a post nested in it runs."""
        return bool(self._running) and self._running[-1] is handover

    def until(self, handover: Handover, ready: Callable[[], bool]) -> None:
        """``wait`` until ``ready()`` (called under ``cond``), running the posts queued
        meanwhile; Stopped once ``handover``'s post is stopped.

        Example
        -------
        >>> turns.until(handover, lambda: handover.room > 0)
        """
        while True:
            with self.cond:
                if handover.stopped:
                    raise Stopped()
                if ready():
                    return
            self.wait(handover, ready)

    def wait(self, handover: Handover, ready: Callable[[], bool], timeout: float | None = None) -> None:
        """Wait until ``ready()`` (called under ``cond``) or ``timeout``, for the innermost
        post; if a post is queued meanwhile, run it (nested) and return once it ends.
        Raises Stopped once ``handover``'s post is stopped. The caller checks what it
        waited for again, and calls again while it still needs to wait.

        Example
        -------
        >>> while not box.done():
        ...     turns.wait(handover, box.done, 0.005)
        """
        with self.cond:
            self.cond.wait_for(lambda: ready() or handover.stopped or self._may_nest(), timeout)
            if handover.stopped:
                raise Stopped()
            if ready() or not self._may_nest():
                return
            nested, run = self._queue.popleft()
        self._run(nested, run)

    def _take(self, handover: Handover) -> Callable[[], None] | None:
        """Remove ``handover``'s post from the queue (under ``cond``); what runs it, if it was there."""
        for i, (queued, run) in enumerate(self._queue):
            if queued is handover:
                del self._queue[i]
                return run
        return None

    def _may_nest(self) -> bool:
        return bool(self._queue) and len(self._running) < MAX_NESTED

    def _at_cap(self) -> bool:
        return bool(self._queue) and len(self._running) >= MAX_NESTED

    def _run(self, handover: Handover, run: Callable[[], None]) -> None:
        self._running.append(handover)
        try:
            run()
        finally:
            self._running.pop()
