"""``doc.chunks`` and ``doc.matches``: DocumentArrays that know the document they belong to.

As in Jina 2, adding a chunk sets its ``parent_id`` to the document's id and its
``granularity`` to the document's granularity + 1; adding a match sets its ``adjacency``
to the document's adjacency + 1 and its ``granularity`` to the document's. Unlike Jina 2
(which copied the added document into its protobuf), the added Document object itself is
stored, so changing it afterwards changes the chunk.

The parent is held through a weak reference: a strong one would make every document with
chunks a reference cycle, and arrays in such a cycle live until the garbage collector runs
(shared-memory slots held by a worker would then look "kept" by the handler).

Example
-------
>>> from runtime import Document
>>> d = Document(id='root', granularity=1)
>>> d.chunks.append(Document(text='part'))
>>> d.chunks[0].parent_id, d.chunks[0].granularity
('root', 2)
>>> d.matches.append(Document(id='m')); d.matches[0].adjacency
1
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, Iterable

from .array import DocumentArray

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document

__all__ = ['ChunkArray', 'MatchArray', 'attach']

_ARRAY_SLOTS = tuple(s for klass in DocumentArray.__mro__ for s in getattr(klass, '__slots__', ()))


class _NestedArray(DocumentArray):
    """A DocumentArray that sets fields of what is added from its reference document."""

    __slots__ = ('_ref',)

    @property
    def reference_doc(self) -> 'Document | None':
        """The document these belong to (None once it is gone)."""
        return self._ref()

    def _adopt(self, doc: 'Document') -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    #: The fields ``_adopt`` sets from the reference document (``append`` refuses them).
    _ADOPTED: tuple[str, ...] = ()

    def append(self, doc: 'Document', **fields: Any) -> 'Document':
        """Add one Document at the end, set its fields from the reference document and
        ``fields`` (as ``Document.set_attributes`` does), and return it: Jina 2's
        ``append(document, **kwargs)``, which its own ``DocumentArray.match`` called as
        ``q.matches.append(d, scores={'cosine': dist})``.

        Raises AttributeError for a name that is no Document field (nothing is added then),
        TypeError for a field this array sets itself.

        Example
        -------
        >>> from runtime import Document
        >>> q = Document()
        >>> q.matches.append(Document(id='m'), scores={'cosine': 0.1}).scores['cosine'].value
        0.1
        """
        if fields:
            taken = [k for k in fields if k in self._ADOPTED]
            if taken:
                # Jina 2 raised here too (a keyword given twice), less clearly.
                raise TypeError(f'{type(self).__name__}.append sets {", ".join(self._ADOPTED)} from the document '
                                f'it belongs to; got {", ".join(taken)}: set them on the document after '
                                f'appending it')
            # Before it is added, so that a wrong name leaves this array as it was.
            doc.set_attributes(**fields)
        DocumentArray.append(self, doc)
        self._adopt(doc)
        return doc

    def extend(self, docs: Iterable['Document']) -> None:
        """Add many Documents at the end (and set their fields from the reference document)."""
        start = len(self)
        DocumentArray.extend(self, docs)
        for d in self._docs[start:]:
            self._adopt(d)

    def insert(self, index: int, doc: 'Document') -> None:
        """Insert one Document before ``index`` (and set its fields)."""
        DocumentArray.insert(self, index, doc)
        self._adopt(doc)

    def __setitem__(self, key, value: 'Document') -> None:
        DocumentArray.__setitem__(self, key, value)
        self._adopt(value)


class ChunkArray(_NestedArray):
    """``doc.chunks``: appending sets ``parent_id`` and ``granularity = parent + 1``.

    >>> from runtime import Document
    >>> d = Document(id='p'); d.chunks.extend([Document(), Document()])
    >>> [(c.parent_id, c.granularity) for c in d.chunks]
    [('p', 1), ('p', 1)]
    """

    __slots__ = ()
    _ADOPTED = ('parent_id', 'granularity')

    def append(self, doc: 'Document', **fields: Any) -> 'Document':
        """As ``DocumentArray.append``, and a chunk without a ``mime_type`` takes the
        parent's, as Jina 2's ``ChunkArray.append`` did (the chunk returned).

        >>> from runtime import Document
        >>> Document(text='hello').chunks.append(Document(text='he')).mime_type
        'text/plain'
        """
        out = super().append(doc, **fields)
        ref = self._ref()
        if ref is not None and not out.mime_type and ref.mime_type:
            out.mime_type = ref.mime_type
        return out

    @property
    def granularity(self) -> int:
        """The granularity its chunks get: the parent's + 1 (Jina 2's ``ChunkArray.granularity``).

        >>> from runtime import Document
        >>> Document(granularity=1).chunks.granularity
        2
        """
        return _live_ref(self).granularity + 1

    @property
    def adjacency(self) -> int:
        """The parent's adjacency (Jina 2's ``ChunkArray.adjacency``)."""
        return _live_ref(self).adjacency

    def _adopt(self, doc: 'Document') -> None:
        ref = self._ref()
        if ref is not None:
            doc.parent_id = ref.id
            doc.granularity = ref.granularity + 1


class MatchArray(_NestedArray):
    """``doc.matches``: appending sets ``adjacency = parent + 1`` and the parent's
    ``granularity``.

    >>> from runtime import Document
    >>> d = Document(adjacency=1); d.matches.append(Document()); d.matches[0].adjacency
    2
    """

    __slots__ = ()
    _ADOPTED = ('granularity', 'adjacency')

    @property
    def granularity(self) -> int:
        """The granularity its matches get: the query's (Jina 2's ``MatchArray.granularity``)."""
        return _live_ref(self).granularity

    @property
    def adjacency(self) -> int:
        """The adjacency its matches get: the query's + 1 (Jina 2's ``MatchArray.adjacency``).

        >>> from runtime import Document
        >>> Document().matches.adjacency
        1
        """
        return _live_ref(self).adjacency + 1

    def _adopt(self, doc: 'Document') -> None:
        ref = self._ref()
        if ref is not None:
            doc.adjacency = ref.adjacency + 1
            doc.granularity = ref.granularity


def _live_ref(array: _NestedArray) -> 'Document':
    ref = array._ref()
    if ref is None:
        raise ReferenceError(f'the document this {type(array).__name__} belonged to is gone (it is held '
                             f'weakly); keep a reference to the document while using its chunks / matches')
    return ref


def attach(kind: type, docs: DocumentArray | None, parent: 'Document') -> _NestedArray:
    """``docs`` (a plain DocumentArray, e.g. just unpickled, or None) as a ``kind`` bound to
    ``parent``, sharing its list and embedding matrix (nothing is copied or re-adopted)."""
    out = kind.__new__(kind)
    if docs is None:
        DocumentArray.__init__(out)
    else:
        for s in _ARRAY_SLOTS:
            try:
                object.__setattr__(out, s, object.__getattribute__(docs, s))
            except AttributeError:
                pass
    out._ref = weakref.ref(parent)
    return out
