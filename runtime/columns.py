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

from typing import TYPE_CHECKING, Iterable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document

__all__: list[str] = []


def _stack(docs: Iterable[Document], field: str) -> np.ndarray | None:
    """Stack one array field of many documents into a new (N, ...) array.

    None when no document has the field; ValueError when only some have it, or when
    shapes or dtypes differ (stacking would silently upcast or fail later).
    """
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
