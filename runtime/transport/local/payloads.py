"""Documents in and out of shared memory: the payload half of the local transport.

A request's documents are encoded once into the writer's arena (``codec``) and named by
slot; the ``SlotLedger`` says when a slot may be reused. Results reach the callbacks as
views of the shared memory (pinned while anything refers to them) or, when small, as
copies. ``LocalTransport`` (pool.py) inherits this and adds the processes and the socket.
"""
from __future__ import annotations

from typing import Any, Callable

from ...array import DocumentArray
from .codec import decode, encode
from .ledger import SlotLedger
from .received import KEPT_ARENA_FRACTION, InputBuffers, buffer_refs
from .shm import Arena, Mapper

__all__ = ['SharedPayloads', 'COPY_RESULT_MAX']

#: Results whose arrays hold fewer bytes than this are copied out of shared memory for the
#: callbacks rather than viewed: viewing them, pinning their slots and checking afterwards
#: whether a callback kept one costs more than copying that much (a one-document query).
COPY_RESULT_MAX = 32 * 1024


class SharedPayloads:
    """The ``Transport`` payload methods over this process's arena (``put``, ``combine``,
    ``open_result``, ...): a payload is ``(desc, meta)``, the small pickle and the slots
    its arrays lie in.

    Example
    -------
    >>> desc, meta = transport.put(rid, docs)         # written once, read by every hop
    >>> docs, token = transport.open_result(rid, (desc, meta), copy=False)
    >>> transport.close_result(token)                 # unpins what the callbacks let go
    """

    _arena: Arena
    _mapper: Mapper
    ledger: SlotLedger

    def put(self, rid: int, docs: DocumentArray) -> tuple:
        desc, meta, allocs = encode(docs, self._arena)
        if allocs:
            self.ledger.written(rid, [(self._arena.name, s) for s in allocs])
        return desc, meta

    def count(self, payload: tuple) -> int:
        return payload[0][0]

    def combine(self, rid: int, payloads: list, merge: Callable[[list], DocumentArray]) -> tuple:
        buffers, decoded = [], []
        try:
            for desc, meta in payloads:
                b = InputBuffers(desc, self._mapper)
                buffers.append(b)
                decoded.append(decode(desc, meta, b))
            merged = merge(decoded)
            desc, meta, allocs = encode(merged, self._arena, _Ranges(buffers))
        finally:
            for b in buffers:  # (a merge may have written them; nothing here holds them now)
                b.done(self._mapper, [])
        if allocs:
            self.ledger.written(rid, [(self._arena.name, s) for s in allocs])
        return desc, meta

    def open_result(self, rid: int, payload: tuple, copy: bool) -> tuple[DocumentArray, Any]:
        """With ``copy=False`` the arrays are views of the shared memory (copies when they
        hold under ``COPY_RESULT_MAX`` bytes): their slots stay pinned while the callbacks
        run, and past that for as long as the caller keeps an array over them (the same
        reference check as the workers'). Copies too once the arrays kept from earlier
        results hold a ``KEPT_ARENA_FRACTION`` of an arena."""
        desc, meta = payload
        copy = (copy or sum(ref[3] for ref in buffer_refs(desc)) < COPY_RESULT_MAX
                or self.ledger.kept_bytes * KEPT_ARENA_FRACTION >= self._arena.size)
        buffers = InputBuffers(desc, self._mapper, copy=copy)
        docs = decode(desc, meta, buffers)
        if copy:
            return docs, None
        self.ledger.pin(None, [(ref[0], ref[1]) for ref in buffers.refs if ref[0] is not None])
        return docs, buffers

    def close_result(self, token: Any) -> None:
        if token is not None:
            kept = token.kept()
            token.done(self._mapper, kept)  # (the callbacks may have written them)
            self.ledger.keep_or_unpin(token.refs, token.views, set(kept))

    def retire(self, rid: int) -> None:
        self.ledger.retire(rid)


class _Ranges:
    """Several InputBuffers seen as one (their buffers one after the other), for naming
    arrays that lie in any of them: what the encoder asks of the inputs of a request."""

    def __init__(self, buffers: list) -> None:
        self.buffers = buffers
        self.ranges = [r for b in buffers for r in b.ranges]
        self.views = [v for b in buffers for v in b.views]

    def find(self, addr: int, nbytes: int):
        for b in self.buffers:
            ref = b.find(addr, nbytes)
            if ref is not None:
                return ref
        return None

    def unchanged(self, i: int) -> bool:
        # (a merge that hands on one part as it came: a shard reduce returning docs_matrix[0])
        for b in self.buffers:
            if i < len(b.views):
                return b.unchanged(i)
            i -= len(b.views)
        raise IndexError(i)
