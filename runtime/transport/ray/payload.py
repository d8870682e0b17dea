"""A DocumentArray as a Ray object: ``(count, kind, meta, matrix)``.

The embedding matrix travels as one numpy array, which Ray's serializer keeps out of band
(zero-copy within a node, through the object store); the documents' other fields are
pickled in band into ``meta`` by the local transport's column packer, so their arrays
(blobs, tags) unpickle writable. A receiver gets the documents lazily: a handler that only
reads ``docs.embeddings`` never unpickles a Document, and what it did not unpickle is sent
on as the same ``meta`` bytes.

Ray hands out arrays of the object store read-only; ``decode`` copies the matrix then
(~0.1 ms per 300 KB), so a handler may write to ``docs.embeddings`` as it may locally.
The dicts that ride beside the documents (a handler's results, the groundtruths) go as
``pack``'s tuple, whose arrays ``unpack`` copies in the same way.

Example
-------
>>> wire = encode(docs)
>>> decode(wire).embeddings.flags.writeable
True
"""
from __future__ import annotations

import io
import pickle
from typing import Any

import cloudpickle
import numpy as np

from ...array import DocumentArray
from ..local.codec import _dumps
from ..local.received import MIXED, LazyDocumentArray

__all__ = ['MATRIX', 'encode', 'decode', 'nbytes', 'pack', 'unpack']

#: ``kind`` when the documents' embeddings travel as one matrix.
MATRIX = 'matrix'


def encode(docs: DocumentArray) -> tuple:
    """``(count, kind, meta, matrix)``: kind is None (no embeddings), MATRIX, or MIXED
    (embeddings of different shapes, pickled with each document)."""
    lazy = getattr(docs, '_lazy', None)
    if lazy is not None:
        # Never unpickled: the documents are the bytes that came in; only the matrix may be new.
        (count, kind, _), meta, _ = lazy
        emb = docs._emb
        if kind != MIXED:
            kind = None if emb is None else MATRIX
        return count, kind, meta, emb
    doc_list = docs._docs
    try:
        emb = docs.embeddings
    except ValueError:
        emb, kind = None, MIXED
    else:
        kind = None if emb is None else MATRIX
    if emb is not None:
        emb = np.ascontiguousarray(emb)
    return len(doc_list), kind, _dumps(doc_list, emb is not None, None), emb


def decode(wire: tuple) -> DocumentArray:
    """The documents of ``encode``'s tuple, unpickled on first use, with arrays a handler
    may write to."""
    count, kind, meta, emb = wire
    if emb is not None and not emb.flags.writeable:
        emb = emb.copy()
    return LazyDocumentArray._wrap((count, kind, []), meta, [], emb)


def nbytes(wire: Any) -> int:
    """Roughly what the payload weighs (for the routes' moved bytes)."""
    emb = wire[3]
    return len(wire[2]) + (emb.nbytes if emb is not None else 0)


class _Pickler(pickle.Pickler):
    """Pickles numpy arrays out of band, a read-only one (a view of a memmap opened for
    reading, ``np.broadcast_to``) as a copy: the unpickler hands out a buffer that the
    pickle marks read-only as read-only, whatever the receiver makes of it."""

    def reducer_override(self, obj: Any) -> Any:
        # (called only for objects that are no plain int, str, list, dict, ...: cheap)
        if (type(obj) is np.ndarray or type(obj) is np.memmap) and not obj.flags.writeable:
            return np.array(obj).__reduce_ex__(5)
        return NotImplemented


def pack(value: Any) -> tuple | None:
    """``value`` (a handler's returned dict, or the earlier executors' results with the
    groundtruths) as ``(pickle, buffers)`` for Ray: the pickle in band, each array's
    bytes as a uint8 array Ray moves out of band. ``unpack`` rebuilds it with arrays of
    its own, which a handler and the caller may change, as they may locally (Ray hands out
    what it unpickles read-only, at any depth: in Documents, their chunks and matches, in
    a DocumentArray of groundtruths).

    >>> unpack(pack({'best': Document(embedding=np.zeros(2))}))['best'].embedding.flags.writeable
    True
    """
    if value is None:
        return None
    buffers: list = []
    out = io.BytesIO()
    try:
        _Pickler(out, protocol=5, buffer_callback=buffers.append).dump(value)
    except Exception:
        # What only cloudpickle takes (a class of ``__main__`` in a groundtruth's tags):
        # Ray's own serializer took it before, so it must not fail here.
        buffers.clear()
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    else:
        data = out.getvalue()
    # Views, not copies: Ray copies them into the call (or its object store) right away.
    return data, [np.frombuffer(b.raw(), np.uint8) for b in buffers]


def unpack(packed: tuple | None) -> Any:
    """The value ``pack`` packed, with every array in it a writable copy of what Ray
    delivered (~0.1 ms per 300 KB, as ``decode``'s matrix)."""
    if packed is None:
        return None
    data, buffers = packed
    return pickle.loads(data, buffers=[np.array(b, np.uint8) for b in buffers])
