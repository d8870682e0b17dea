"""A DocumentArray as a Ray object: ``(count, kind, meta, matrix)``.

The embedding matrix travels as one numpy array, which Ray's serializer keeps out of band
(zero-copy within a node, through the object store); the documents' other fields are
pickled in band into ``meta`` by the local transport's column packer, so their arrays
(blobs, tags) unpickle writable. A receiver gets the documents lazily: a handler that only
reads ``docs.embeddings`` never unpickles a Document, and what it did not unpickle is sent
on as the same ``meta`` bytes.

Ray hands out arrays of the object store read-only; ``decode`` copies the matrix then
(~0.1 ms per 300 KB), so a handler may write to ``docs.embeddings`` as it may locally.

Example
-------
>>> wire = encode(docs)
>>> decode(wire).embeddings.flags.writeable
True
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...array import DocumentArray
from ..local.codec import _dumps
from ..local.received import MIXED, LazyDocumentArray

__all__ = ['MATRIX', 'encode', 'decode', 'nbytes', 'writable']

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


def writable(value: Any) -> Any:
    """``value`` (a handler's returned dict, as Ray unpacked it) with every read-only numpy
    array in it, at any depth of dicts, lists and tuples, replaced by a writable copy: the
    next executor and the caller may change them, as they may locally.

    >>> a = np.zeros(2); a.flags.writeable = False
    >>> writable({'s': [a]})['s'][0].flags.writeable
    True
    """
    if isinstance(value, np.ndarray):
        return value if value.flags.writeable else value.copy()
    if type(value) is dict:
        return {k: writable(v) for k, v in value.items()}
    if type(value) in (list, tuple):
        return type(value)(writable(v) for v in value)
    return value
