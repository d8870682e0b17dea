"""Columns of a document sequence: one array field of many documents as one matrix.

Used by ``DocumentArray`` and ``DocumentArrayMemmap`` (``.embeddings``, ``.blobs``) and by
``match``; it needs nothing of theirs, so every one of them can import it.

Example
-------
>>> from runtime import Document
>>> _stack([Document(embedding=[1, 2]), Document(embedding=[3, 4])], 'embedding').tolist()
[[1, 2], [3, 4]]
"""
from __future__ import annotations

from itertools import repeat
from operator import attrgetter, is_
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .fields import FIELD

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document

__all__: list[str] = []

_dtype_of = attrgetter('dtype')


def _stack(docs: Iterable[Document], field: str) -> np.ndarray | None:
    """Stack one array field of many documents into a new (N, ...) array.

    None when no document has the field; ValueError when only some have it, or when
    shapes or dtypes differ (stacking would silently upcast or fail later).
    """
    from .document import Document  # (here: document.py imports this module)
    # A DocumentArray's own list of plain Documents (the codec stacks one per request): the
    # slot is read directly (a subclass may override the property: it goes the long way).
    if type(docs) is list and docs and set(map(type, docs)) == {Document}:
        arrays = list(map(attrgetter(FIELD[field].slot), docs))
        # The common case, checked at C speed: every document has a plain ndarray, all of
        # one dtype; np.array then refuses differing shapes itself, and it stacks 100 rows
        # of 768 float32 in half the time of np.stack (which reshapes each row in Python).
        # Anything else goes through the loop below, which names the document at fault.
        if arrays and not any(map(is_, arrays, repeat(None))) and len(set(map(type, arrays))) == 1 \
                and type(arrays[0]) is np.ndarray and len(set(map(_dtype_of, arrays))) == 1:
            try:
                out = np.array(arrays)
            except ValueError:
                pass
            else:
                first = arrays[0]
                if out.shape[1:] == first.shape and out.dtype == first.dtype:
                    return out
    return _stack_each(docs, field)


def _stack_each(docs: Iterable[Document], field: str) -> np.ndarray | None:
    """``_stack``, one document at a time (streaming: a DocumentArrayMemmap is not held in
    memory): what is wrong, and with which document."""
    arrays, missing, first = [], None, None
    for i, d in enumerate(docs):
        a = getattr(d, field)
        if a is None:
            if missing is None:
                missing = (i, d.id)
            continue
        if first is None:
            first = (i, d.id, a.shape, a.dtype)
        elif a.shape != first[2] or a.dtype != first[3]:
            raise ValueError(f'cannot stack .{field}s: document #{i} (id {d.id!r}) has {a.dtype}{list(a.shape)} '
                             f'but document #{first[0]} (id {first[1]!r}) has {first[3]}{list(first[2])}; '
                             f'give every document the same shape and dtype')
        arrays.append(a)
    if not arrays:
        return None
    if missing is not None:
        raise ValueError(f'cannot stack .{field}s: document #{missing[0]} (id {missing[1]!r}) has no {field} '
                         f'while others have one; set it on every document (or on none)')
    return np.stack(arrays)
