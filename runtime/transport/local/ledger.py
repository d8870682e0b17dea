"""Who holds which shared-memory slot, and when a slot may be reused.

A slot is a piece of one process's arena (the parent's or a worker's), named by the key
``(arena, slot)``. It is written for one request and belongs to it until the request is
over (``retire``). Past that it may still be *pinned*: a worker's executor kept arrays
over it (an in-memory indexer), or the caller kept arrays of a final response. A slot is
freed once its request is over and no pin is left. Freeing a slot of the parent's own
arena is immediate; a slot of a worker's arena is owed to that worker, which hears of it
with the next message the parent sends it anyway (or a ``free`` when it is idle).

Example
-------
>>> ledger = SlotLedger(own_arena, owner_of)
>>> ledger.written(rid, [('shmflow-1-w0', 0)]); ledger.retire(rid)   # freed now
"""
from __future__ import annotations

import collections
import time
from typing import Any, Callable

from .received import held_elsewhere
from .shm import Arena

__all__ = ['SlotLedger']

#: How often the parent looks whether a caller let go of arrays it kept from callbacks.
KEPT_CHECK_S = 0.05


class SlotLedger:
    """The one place that knows which slots are in use and by whom.

    Parameters
    ----------
    own : Arena
        The parent's arena (inputs and joins are written there).
    owner_of : callable(arena name) -> worker or None
        The live worker whose arena this is; a freed slot of it is appended to the
        worker's ``pending_frees``. A dead worker's arena is gone with it: nothing is owed.
    """

    def __init__(self, own: Arena, owner_of: Callable[[str], Any]) -> None:
        self.own, self.owner_of = own, owner_of
        self.by_request: dict[int, list] = {}
        self.pins: collections.Counter = collections.Counter()
        self.orphans: set = set()  # slots of finished requests that are still pinned
        self.kept: list = []  # ((arena, slot, ...), view) of final payloads a caller holds
        self.kept_bytes = 0  # what they hold (see SharedPayloads.open_result)
        self.next_kept_check = 0.0
        #: Counts the requests retired and the pins let go: what refers to an arena can
        #: only have changed when it did (``arenas_in_use`` need not be asked again before).
        self.version = 0

    # -- requests ------------------------------------------------------------------------
    def written(self, rid: int, keys: list) -> None:
        """``keys`` were written for request ``rid``."""
        if keys:
            self.by_request.setdefault(rid, []).extend(keys)

    def retire(self, rid: int) -> None:
        """Request ``rid`` is over: free its slots, or leave them to their pins."""
        self.version += 1
        for key in self.by_request.pop(rid, ()):
            if key in self.pins:
                self.orphans.add(key)
            else:
                self._free(key)

    # -- pins ----------------------------------------------------------------------------
    def pin(self, holder: collections.Counter | None, keys: list) -> None:
        """``holder`` (a worker's own counter, or None for the caller) keeps ``keys``."""
        for key in keys:
            key = tuple(key)
            self.pins[key] += 1
            if holder is not None:
                holder[key] += 1

    def unpin(self, holder: collections.Counter | None, keys: list) -> None:
        for key in keys:
            key = tuple(key)
            if holder is not None:
                holder[key] -= 1
                if holder[key] <= 0:
                    del holder[key]
            self._unpin(key)

    def holder_gone(self, holder: collections.Counter) -> None:
        """What a dead worker kept is let go with it."""
        for key, n in list(holder.items()):
            for _ in range(n):
                self._unpin(key)
        holder.clear()

    def _unpin(self, key: tuple) -> None:
        self.pins[key] -= 1
        if self.pins[key] <= 0:
            del self.pins[key]
            self.version += 1
            if key in self.orphans:
                self.orphans.discard(key)
                self._free(key)

    # -- arrays the caller keeps -----------------------------------------------------------
    def keep_or_unpin(self, refs: list, views: list, kept: set) -> None:
        """After the callbacks: slots whose arrays the caller kept (``kept``: indices in
        ``refs`` / ``views``) stay pinned (looked at again by ``check_kept``), the others
        are let go."""
        for i, (ref, view) in enumerate(zip(refs, views)):
            if i in kept:
                self.kept.append((ref, view))
                self.kept_bytes += ref[3]
            else:
                self._unpin((ref[0], ref[1]))

    def check_kept(self) -> None:
        """Unpin the slots of final payloads whose arrays the caller has let go of.

        A caller that keeps every response's arrays makes this list long: it is looked at
        a few times a second, not on every wake-up."""
        if not self.kept or time.monotonic() < self.next_kept_check:
            return
        self.next_kept_check = time.monotonic() + KEPT_CHECK_S
        still = []
        for entry in self.kept:
            if held_elsewhere(entry, 1):
                still.append(entry)
            else:
                self.kept_bytes -= entry[0][3]
                self._unpin((entry[0][0], entry[0][1]))
        self.kept = still

    def arenas_in_use(self) -> set:
        """The arenas that a request not yet over, or a pin, still refers to."""
        used = {key[0] for keys in self.by_request.values() for key in keys}
        used.update(key[0] for key in self.pins)  # (what callers keep and orphans are pinned)
        return used

    # -- freeing ---------------------------------------------------------------------------
    def _free(self, key: tuple) -> None:
        arena, slot = key
        if arena == self.own.name:
            self.own.free(slot)
        else:
            w = self.owner_of(arena)
            if w is not None:
                w.pending_frees.append(slot)
