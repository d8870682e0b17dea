"""What the receiver of a payload holds (see ``codec`` for the payload itself).

``InputBuffers``: zero-copy views of the shared-memory buffers a payload names, the
address ranges an encoder uses to name (not copy) arrays that still lie in them, and the
reference counts that tell whether a handler kept any. ``LazyDocumentArray``: the documents,
unpickled only when something touches them; ``len()`` and ``.embeddings`` never do.

Both sides read the payload's format from here: ``BufRef``, ``Payload``, ``MIXED``,
``buffer_refs``.
"""
from __future__ import annotations

import bisect
import itertools
import pickle
import sys
from typing import Any

import numpy as np

from ...array import DocumentArray
from ...document import _rebuild_document
from ...fields import DEFAULTS
from .shm import Mapper, written

__all__ = ['KEPT_ARENA_FRACTION', 'BufRef', 'Payload', 'MIXED', 'buffer_refs', 'InputBuffers', 'LazyDocumentArray',
           'held_elsewhere']

#: Views an InputBuffers ``reuse`` dict holds at most (it is emptied when it grows past).
REUSE_MAX = 256
#: ``InputBuffers.find`` scans this many buffers in order; past that it looks them up by
#: address, among the ``FIND_BACK`` that start nearest below.
FIND_SCAN_MAX = 16
FIND_BACK = 4
#: Arrays a process keeps may hold at most 1/KEPT_ARENA_FRACTION of an arena's shared
#: memory: past that, what it receives is copied out instead of viewed. A caller (or an executor)
#: that keeps something of every request would otherwise pin slot after slot; its
#: producer's arena fills, and every request after that gets a shared-memory file of its
#: own, mapped once per request kept -- until the kernel's limit on maps per process
#: (``vm.max_map_count``, 65530) kills the process that keeps them. Copied, what is kept
#: costs memory only, as it did in Jina 2.
KEPT_ARENA_FRACTION = 4
#: ``Payload.emb`` when the documents have embeddings of different shapes, or only some do:
#: they then travel one by one inside the pickle.
MIXED = 'mixed'


# On the wire everything is a plain tuple: pickling a namedtuple costs five times more, on
# every hop of every request.
#
# BufRef = (arena, slot, inner, nbytes): where one buffer lies: a slot of an arena (slot < 0:
#     a dedicated segment file named f'{arena}-s{-slot}', which may hold many buffers of
#     one request), an offset inside it, its size.
#     A small buffer rides in the header itself instead: (None, its bytes, 0, nbytes) (see
#     ``codec.INLINE_BUFFER_MAX``); a receiver gets a private copy of it, and nothing in
#     shared memory is allocated, pinned or freed for it.
# Payload = (count, emb, refs): the header part of a payload (the pickle frame travels
#     beside it); emb is None (no embeddings), MIXED, or (BufRef, dtype str, shape); refs
#     are the BufRefs of the pickle's out-of-band buffers, in order.
BufRef = tuple
Payload = tuple


def buffer_refs(payload: Payload) -> list:
    """Every BufRef of a payload (the matrix first, when there is one)."""
    emb = payload[1]
    if isinstance(emb, tuple):
        return [emb[0], *payload[2]]
    return list(payload[2])


class InputBuffers:
    """The buffers of one received payload: views for the decoder, address ranges so that
    an encoder can name (not copy) arrays that still lie in them, and reference counts that
    tell whether a handler kept any of them.

    ``reuse`` (a dict the caller keeps, for a process that opens one payload at a time: a
    worker) keeps the views of arena slots from one payload to the next: a view that no
    array uses any more is taken again instead of made (making one costs a few us, the
    most of what opening a payload costs). ``kept()`` takes what it finds kept out of it.
    """

    __slots__ = ('refs', 'views', 'ranges', 'reuse', 'floors', 'unwritten', 'handed', 'index')

    def __init__(self, payload: Payload, mapper: Mapper, copy: bool = False, reuse: dict | None = None) -> None:
        self.refs = refs = buffer_refs(payload)
        self.reuse = reuse
        self.floors = None
        self.index = None  # see ``find``
        self.unwritten: list[int] = []  # buffers ``unchanged`` found unwritten
        # Whether the documents decoded over these views gave out an array yet (until then
        # nothing can have written the views: see LazyDocumentArray).
        self.handed = False
        view = mapper.view
        # Each dedicated segment mapped once (see ``Mapper.view``); made when one is named.
        segments: dict | None = None
        if copy:
            segments = {}
            self.views = [bytearray(ref[1]) if ref[0] is None else mapper.copy(*ref, segments) for ref in refs]
            self.ranges = []
            return
        self.views = views = []
        self.ranges = ranges = []
        if reuse is None:
            for ref in refs:
                if ref[0] is None:
                    _inline(ref, views, ranges)
                    continue
                if ref[1] >= 0:
                    mv, addr = view(*ref)
                else:
                    if segments is None:
                        segments = {}
                    mv, addr = view(*ref, segments)
                views.append(mv)
                ranges.append((addr, addr + ref[3], ref))
            return
        if len(reuse) > REUSE_MAX:  # (safe now: no view in it is in use between payloads)
            reuse.clear()
        # The reference count of each view that tells that nothing else holds it: this
        # list's and getrefcount's own, and the reuse dict's for a view kept in it.
        self.floors = floors = []
        for ref in refs:
            if ref[0] is None:
                _inline(ref, views, ranges)
                floors.append(-1)  # (never a pin: the copy is this process's own)
                continue
            entry = reuse.get(ref)
            if entry is not None and sys.getrefcount(entry[0]) == 2:  # the dict's entry and the argument
                mapper.refresh(*ref)  # taken up again: as a new view would be
                floors.append(3)
            elif entry is None and ref[1] >= 0:
                entry = reuse[ref] = view(*ref)
                floors.append(3)
            else:  # named twice in this payload, or a dedicated segment (mapped only while viewed)
                if segments is None:
                    segments = {}
                entry = view(*ref, segments)
                floors.append(2)
            views.append(entry[0])
            addr = entry[1]
            ranges.append((addr, addr + ref[3], ref))

    def find(self, addr: int, nbytes: int) -> BufRef | None:
        """The reference of ``[addr, addr + nbytes)`` if it lies inside one of these buffers
        and this process did not write it (a changed array is copied: only this process's
        map shows the change, see ``shm``)."""
        ranges = self.ranges
        if len(ranges) <= FIND_SCAN_MAX:
            for i, (start, end, ref) in enumerate(ranges):
                if start <= addr and addr + nbytes <= end:
                    return self._found(i, addr, nbytes)
            return None
        # Many buffers (a document with thousands of chunks, each array its own buffer):
        # a scan per array would make re-encoding them quadratic. The buffers are looked
        # up by address instead; those that overlap (one buffer named twice) lie at the
        # same address, and the few ranges before the nearest one are looked at too.
        # Not finding one only means a copy, which is always right.
        index = self.index
        if index is None:
            order = sorted(range(len(ranges)), key=lambda i: ranges[i][:2])
            index = self.index = ([ranges[i][0] for i in order], order)
        starts, order = index
        j = bisect.bisect_right(starts, addr)
        for k in range(j - 1, max(j - 1 - FIND_BACK, -1), -1):
            i = order[k]
            if addr + nbytes <= ranges[i][1]:
                return self._found(i, addr, nbytes)
        return None

    def _found(self, i: int, addr: int, nbytes: int) -> BufRef | None:
        start, end, ref = self.ranges[i]
        if self.handed and written(addr, nbytes):
            return None
        if addr == start and nbytes == end - start:
            self.unwritten.append(i)  # (the whole buffer: done() need not ask again)
        return (ref[0], ref[1], ref[2] + (addr - start), nbytes)

    def unchanged(self, i: int) -> bool:
        """Whether this process wrote nothing of buffer ``i`` (no array over it went out,
        or the kernel says so)."""
        start, end, ref = self.ranges[i]
        if ref[0] is None:
            return False  # (a private copy: whether it changed is unknown, and it is small)
        if self.handed and written(start, end - start):
            return False
        self.unwritten.append(i)
        return True

    def done(self, mapper: Mapper, kept: list[int]) -> None:
        """The views are done with but ``kept`` (indices, from ``kept()``): the private
        pages this process may have written in the others go now, except where ``unchanged``
        found none; a slot some kept view still lies in is only marked (see ``Mapper``)."""
        refs, ok = self.refs, self.unwritten
        if not self.ranges:  # (copies, made with copy=True: no view went out)
            return
        if not self.handed:
            # No array over them went out yet: nothing wrote them. What is kept may still
            # hand one out later (an indexer that keeps the documents and reads them after):
            # marked, so that its pages are looked at when the slot is taken up again.
            for i in kept:
                r = refs[i]
                mapper.mark(r[0], r[1] + r[2], r[1] + r[2] + r[3])
            return
        if not kept and len(ok) == len(refs) == 1:
            return  # the usual request: one matrix, read and let go
        clean = set(ok)
        held = {(refs[i][0], refs[i][1]) for i in kept}
        for i, r in enumerate(refs):
            if r[0] is None or r[1] < 0 or (i in clean and (r[0], r[1]) not in held):
                continue  # (a dedicated segment is mapped anew for each use)
            start, end = r[1] + r[2], r[1] + r[2] + r[3]
            if (r[0], r[1]) in held:
                mapper.mark(r[0], start, end)  # still in use here: dropped when taken up again
            else:
                mapper.drop(r[0], start, end)

    def kept(self) -> list[int]:
        """The indices (in ``refs`` / ``views``) of the buffers whose memory something
        still references (the handler kept arrays). By index, not by ref: a payload may
        name one buffer twice, and only the view that is held must stay pinned.

        Call it once every local reference to the decoded documents is gone: the list
        itself (and the reuse dict) then holds the only reference to each view. A kept
        view leaves the reuse dict: from then on its holders alone reference it.
        """
        views, floors = self.views, self.floors
        if floors is None:
            refs = self.refs
            return [i for i in range(len(views)) if refs[i][0] is not None and held_elsewhere(views, i)]
        out = []
        for i in range(len(views)):
            if floors[i] > 0 and sys.getrefcount(views[i]) > floors[i]:
                out.append(i)
                if floors[i] == 3:
                    del self.reuse[self.refs[i]]
                    floors[i] = 2
        return out


def _inline(ref: BufRef, views: list, ranges: list) -> None:
    # A writable copy (a handler may change its arrays in place), and a range that no
    # address falls in: an encoder copies what lies in it, as small as it is.
    views.append(bytearray(ref[1]))
    ranges.append((0, 0, ref))


def held_elsewhere(container, key) -> bool:
    """Whether ``container[key]`` is referenced from anywhere but ``container``.

    (getrefcount sees the container's reference and its own argument.)
    """
    return sys.getrefcount(container[key]) > 2


#: The slot under LazyDocumentArray's ``_docs`` property.
_DA_DOCS = DocumentArray._docs


class LazyDocumentArray(DocumentArray):
    """A received DocumentArray whose Documents are unpickled on first use.

    ``len()`` and ``.embeddings`` (and assigning ``.embeddings``) work without unpickling;
    anything that touches the Documents unpickles them all, once.
    """

    # _emb_in: (the matrix as decoded, its shape, its dtype) while the documents are not
    # unpickled, so that encode knows that matrix without asking numpy for its address.
    # _inputs: the InputBuffers decoded from, told (``handed``) when an array over them goes
    # out: the matrix (``embeddings``, ``_columnar``) or the documents (unpickled). Until
    # then nothing can have written them, which spares asking the kernel (see ``shm``).
    __slots__ = ('_lazy', '_emb_in', '_inputs')

    @classmethod
    def _wrap(cls, payload: Payload, meta: Any, views: list, emb: np.ndarray | None,
              inputs: 'InputBuffers | None' = None) -> 'LazyDocumentArray':
        da = cls.__new__(cls)
        _DA_DOCS.__set__(da, [])  # (the slot itself: the _docs property would unpickle)
        da._id_map = da._emb_rows = None
        da._emb = emb
        da._emb_in = None if emb is None else (emb, emb.shape, emb.dtype)
        # A list of its own: each view's reference count then shows this array is alive.
        da._lazy = (payload, meta, list(views))
        da._inputs = inputs
        return da

    def _hand_out(self) -> None:
        inputs = self._inputs
        if inputs is not None:
            inputs.handed = True
            self._inputs = None

    def _columnar(self) -> np.ndarray | None:
        self._hand_out()
        return DocumentArray._columnar(self)

    @property
    def _docs(self) -> list:
        lazy = self._lazy
        if lazy is not None:
            self._materialize(lazy)
        return _DA_DOCS.__get__(self)

    @_docs.setter
    def _docs(self, value: list) -> None:
        self._lazy = self._emb_in = None
        _DA_DOCS.__set__(self, value)

    def _materialize(self, lazy: tuple) -> None:
        payload, meta, views = lazy
        # (_emb_in goes too: an array that kept these documents must not keep the
        # received matrix alive, and with it the buffer pinned, once it is not theirs)
        self._lazy = self._emb_in = None
        self._hand_out()
        docs = _unpack(pickle.loads(meta, buffers=views[1:] if isinstance(payload[1], tuple) else views))
        _DA_DOCS.__set__(self, docs)
        emb = self._emb
        if emb is not None:
            rows = list(emb)
            for d, r in zip(docs, rows):
                d._embedding = r
            self._emb_rows = rows

    @property
    def materialized(self) -> bool:
        """Whether the Documents were unpickled."""
        return self._lazy is None

    def __len__(self) -> int:
        lazy = self._lazy
        return lazy[0][0] if lazy is not None else len(_DA_DOCS.__get__(self))

    def __bool__(self) -> bool:
        return len(self) > 0

    @property
    def embeddings(self) -> np.ndarray | None:
        lazy = self._lazy
        if lazy is not None and lazy[0][1] != MIXED:
            if self._inputs is not None:
                self._hand_out()
            return self._emb
        return DocumentArray.embeddings.fget(self)

    @embeddings.setter
    def embeddings(self, value: np.ndarray | None) -> None:
        lazy = self._lazy
        if lazy is not None and isinstance(value, np.ndarray) and lazy[0][1] != MIXED:
            if value.dtype.hasobject:
                raise TypeError(f'embeddings must be a numeric array, got dtype {value.dtype} (Python objects '
                                f'cannot travel between processes as raw bytes)')
            if value.ndim < 2 or value.shape[0] != lazy[0][0]:
                raise ValueError(f'embeddings must have shape (N, ...) with N = {lazy[0][0]} documents, '
                                 f'got shape {value.shape}')
            self._emb = value  # rows are attached if the documents are ever unpickled
            return
        DocumentArray.embeddings.fset(self, value)

    def __reduce__(self):
        return DocumentArray._from_list, (self._docs,)

    def __repr__(self) -> str:
        if self._lazy is not None:
            extra = f' embeddings={self._emb.dtype}{list(self._emb.shape)}' if self._emb is not None else ''
            return f'<DocumentArray length={len(self)}{extra}>'
        return super().__repr__()


def _unpack(packed: Any) -> list:
    if type(packed) is not tuple:  # documents that travel as objects (see codec)
        return packed._docs if isinstance(packed, DocumentArray) else packed  # (a list: an older sender's)
    n, cols = packed
    columns = [cols[i] if i in cols else itertools.repeat(d, n) for i, d in enumerate(DEFAULTS)]
    return list(map(_rebuild_document, zip(*columns)))


# -- rebuilding what the codec's pickler reduced (named in its pickles: module-level) -----------


def _rebuild_docs(states: list, kinds: list | None = None) -> DocumentArray:
    """The documents of a list (chunks, matches, or a request's documents that travel as
    objects) from what ``codec`` sent for each: its state (a Document), its state and its
    class (``kinds[i]``, a subclass), or the document itself (``kinds[i]`` True: a class
    with a pickling of its own).

    >>> from runtime import Document
    >>> _rebuild_docs([Document(id='a')._state()])[0].id
    'a'
    """
    if kinds is None:
        return DocumentArray._from_list(list(map(_rebuild_document, states)))
    return DocumentArray._from_list([_rebuild_document(s) if k is None else s if k is True else k._from_state(s)
                                     for s, k in zip(states, kinds)])


#: Classes ``_load_class`` made, by their pickle: each request names the class again, and
#: unpickling one by value (cloudpickle) costs far more than a lookup.
_CLASSES: dict[bytes, type] = {}
_CLASSES_MAX = 64


def _load_class(blob: bytes) -> type:
    """A Document subclass that the sender pickled by value (``codec._reduce_class``)."""
    cls = _CLASSES.get(blob)
    if cls is None:
        if len(_CLASSES) >= _CLASSES_MAX:
            _CLASSES.clear()
        cls = _CLASSES[blob] = pickle.loads(blob)
    return cls
