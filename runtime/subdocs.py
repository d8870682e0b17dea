"""A Document's nested documents: ``chunks`` and ``matches``, held as DocumentArrays.

Mixed into ``Document`` (``runtime.document``). The arrays are bound to their parent
(``runtime.nested``): appending a chunk sets its ``parent_id`` and ``granularity``,
appending a match its ``adjacency``. ``runtime.array`` imports ``runtime.document`` at its
top, so this module (which ``runtime.document`` imports) reaches ``runtime.array`` and
``runtime.nested`` only inside functions, on first use: the one place where the data
model's document <-> array dependency lives.

Example
-------
>>> from runtime import Document
>>> d = Document(id='p'); d.chunks.append(Document(text='c'))
>>> d.chunks[0].parent_id, d.chunks[0].granularity
('p', 1)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from .array import DocumentArray
    from .document import Document

__all__ = ['SubdocsMixin']


class SubdocsMixin:
    """The ``chunks`` and ``matches`` fields of ``Document``."""

    __slots__ = ()

    @property
    def chunks(self) -> 'DocumentArray':
        """Sub-documents (e.g. passages of a file). Appending one sets its ``parent_id`` to
        this id and its ``granularity`` to this granularity + 1 (see ``runtime.nested``)."""
        c = self._chunks
        if type(c) is not _nested.ChunkArray or c._ref() is not self:
            c = self._chunks = _bind(_nested.ChunkArray, c, self)
            self._plain = False
        return c

    @chunks.setter
    def chunks(self, value: Iterable['Document'] | None) -> None:
        self._chunks = None
        if value is not None:
            self.chunks.extend(_as_doc_array(value, 'chunks'))

    @property
    def matches(self) -> 'DocumentArray':
        """Search results for this document, each with ``scores``. Appending one sets its
        ``adjacency`` to this adjacency + 1 and its ``granularity`` to this one's."""
        m = self._matches
        if type(m) is not _nested.MatchArray or m._ref() is not self:
            m = self._matches = _bind(_nested.MatchArray, m, self)
            self._plain = False
        return m

    @matches.setter
    def matches(self, value: Iterable['Document'] | None) -> None:
        self._matches = None
        if value is not None:
            self.matches.extend(_as_doc_array(value, 'matches'))


class _LazyNested:
    """``runtime.nested``, imported on first use: it subclasses DocumentArray, whose module
    imports this one."""

    def __getattr__(self, name: str) -> Any:
        from . import nested
        globals()['_nested'] = nested
        return getattr(nested, name)


_nested: Any = _LazyNested()


def _bind(kind: type, docs: Any, parent: 'Document') -> Any:
    from .array import DocumentArray
    if docs is not None and not isinstance(docs, DocumentArray):
        return docs  # another kind of sequence (e.g. on disk): used as it is
    return _nested.attach(kind, docs, parent)


def _as_doc_array(value: Iterable[Any], field: str) -> 'DocumentArray':
    # runtime.array imports Document at its top: taking it from there keeps this module
    # off runtime.document (which imports this one).
    from .array import Document, DocumentArray
    if isinstance(value, DocumentArray):
        return value
    if isinstance(value, (str, bytes, Document, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f'Document.{field} must be a DocumentArray or a list of Documents, '
                        f'got {type(value).__name__}')
    return DocumentArray(Document(d) if isinstance(d, Mapping) else d for d in value)


def _copy_docs(docs: 'DocumentArray') -> 'DocumentArray':
    from .array import DocumentArray
    return DocumentArray._from_list([d.copy() for d in docs])


def _shallow_docs(docs: 'DocumentArray') -> 'DocumentArray':
    from .array import DocumentArray
    if isinstance(docs, DocumentArray):
        return DocumentArray._from_list(list(docs._docs))
    return docs  # another kind of sequence (e.g. on disk): share it rather than load it
