"""DocumentArray: an in-memory list of Documents with id lookup and columnar embeddings.

Also ``DocumentSequence``, what it shares with ``DocumentArrayMemmap``. Saving and loading
are in ``runtime.array_io``, stacking a field into a matrix in ``runtime.columns``.

>>> DocumentArray([Document(text='a'), Document(text='b')]).texts
['a', 'b']
"""
from __future__ import annotations

import operator
from typing import Any, Iterable, Iterator, Sequence, overload

import numpy as np

from . import ids as _ids
from .array_io import LoadMixin, SaveMixin
from .arrayops import ArrayOps
# _stack is also read from here by runtime.memmap and runtime.match.
from .columns import _stack
from .plot_methods import ArrayPlotMixin
from .document import Document
from .document_io import _resolve_path

__all__ = ['DocumentArray']

_get_embedding = operator.attrgetter('_embedding')


def _check_doc(value: Any, where: str) -> Document:
    if not isinstance(value, Document):
        hint = ' (use runtime.generators.from_ndarray for arrays)' if isinstance(value, np.ndarray) else ''
        raise TypeError(f'{where} takes Documents, got {type(value).__name__}{hint}; '
                        f'wrap values as Document(text=...), Document(blob=...) etc.')
    return value


def _matcher(value: Any, where: str) -> Any:
    """What ``index`` / ``count`` / ``remove`` look for: a test of one document."""
    if isinstance(value, str):
        return lambda d: d._id == value
    if isinstance(value, Document):
        return lambda d: d is value or d == value
    raise TypeError(f'DocumentArray.{where} takes a Document or a document id (str), got {type(value).__name__}')


def _not_found(value: Document | str) -> str:
    if isinstance(value, str):
        return f'no document with id {value!r} in this DocumentArray'
    return f'Document {value.id!r} (or one equal to it in every field) is not in this DocumentArray'


def _rebuild_array(docs: list) -> 'DocumentArray':
    # Module-level so pickle stores it by name cheaply (see document._rebuild_document).
    return DocumentArray._from_list(docs)


class DocumentSequence(SaveMixin, ArrayPlotMixin):
    """Behaviour shared by DocumentArray and DocumentArrayMemmap, written against
    ``__len__``, ``__iter__``, ``__getitem__`` and ``_has_id``."""

    __slots__ = ()

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[Document]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def texts(self) -> list:
        """The ``text`` of every document, in order (None where a document has none)."""
        return [d.text for d in self]

    @property
    def blobs(self) -> np.ndarray | None:
        """The blobs stacked into one (N, ...) array (a copy); None when no document has a
        blob; ValueError when only some have one or their shapes / dtypes differ."""
        return _stack(self, 'blob')

    def get_attributes(self, *fields: str) -> list:
        """Jina 2's accessor: one field gives a list of values, several give one list per
        field. ``tags__key`` reaches into tags; a missing value is None.

        >>> da = DocumentArray([Document(text='a', tags={'k': 1})])
        >>> da.get_attributes('text', 'tags__k')
        [['a'], [1]]
        """
        if len(fields) == 1:
            return [_resolve_path(d, fields[0]) for d in self]
        return [[_resolve_path(d, f) for d in self] for f in fields]

    def split(self, tag: str) -> dict[Any, 'DocumentArray']:
        """Group the documents by the value of a tag (Jina 2's ``split``): ``{value:
        DocumentArray}`` in order of first appearance, each keeping the documents' order.
        ``tag`` may be a path into nested tags (``'meta__lang'``); documents without the
        tag (or with None there) are left out.

        >>> da = DocumentArray([Document(id=str(i), tags={'c': i % 2}) for i in range(4)])
        >>> {value: [d.id for d in part] for value, part in da.split('c').items()}
        {0: ['0', '2'], 1: ['1', '3']}
        """
        if not isinstance(tag, str) or not tag:
            raise TypeError(f'split takes a tag name (str), got {tag!r}')
        groups: dict[Any, list] = {}
        for d in self:
            value = _resolve_path(d._tags or {}, tag)
            if value is None:
                continue
            try:
                groups.setdefault(value, []).append(d)
            except TypeError:
                raise TypeError(f'split: document {d.id!r} has the tag {tag!r} = {value!r:.60}, a '
                                f'{type(value).__name__}, which cannot be a group key; split by a tag that holds '
                                f'str, int, float or bool values') from None
        return {value: DocumentArray._from_list(docs) for value, docs in groups.items()}

    def __contains__(self, item: object) -> bool:
        """``'some-id' in da`` or ``doc in da``: is there a document with that id."""
        if isinstance(item, Document):
            item = item.id
        if not isinstance(item, str):
            return False
        return self._has_id(item)

    def _has_id(self, doc_id: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        """Equal to another sequence of equal Documents in the same order (a list too)."""
        if not isinstance(other, (DocumentSequence, list, tuple)):
            return NotImplemented
        if self is other:
            return True
        if len(self) != len(other):
            return False
        return all(a == b for a, b in zip(self, other))

    __hash__ = None

    def __add__(self, other: Iterable[Document]) -> 'DocumentArray':
        """A new DocumentArray with the documents of both (the Documents are shared)."""
        if isinstance(other, (str, bytes, Document)) or not isinstance(other, Iterable):
            return NotImplemented
        out = DocumentArray(self)
        out.extend(other)
        return out

    def __radd__(self, other: Iterable[Document]) -> 'DocumentArray':
        if isinstance(other, (str, bytes, Document)) or not isinstance(other, Iterable):
            return NotImplemented
        out = DocumentArray(other)
        out.extend(self)
        return out


class DocumentArray(DocumentSequence, LoadMixin, ArrayOps):
    """A mutable list of Documents with lookup by id and columnar embeddings.

    ``da.embeddings = X`` keeps ``X`` as the array's embedding matrix (no copy) and makes
    each ``doc.embedding`` a view of its row; while no document's embedding is replaced
    and no document is added, removed or moved, ``da.embeddings`` returns ``X`` itself
    (and a slice ``da[a:b]`` returns a view of its rows). Otherwise it stacks the
    documents' embeddings into a new array; it returns None when no document has an
    embedding, and raises ValueError when only some have one or their shapes / dtypes
    differ.

    Examples
    --------
    >>> da = DocumentArray(Document(text=t) for t in ['a', 'b'])
    >>> X = np.eye(2, dtype=np.float32)
    >>> da.embeddings = X
    >>> da.embeddings is X, np.shares_memory(da[1].embedding, X)
    (True, True)
    >>> da[da[1].id].text, da[1:].texts, da[0] in da
    ('b', ['b'], True)
    """

    __slots__ = ('_docs', '_id_map', '_emb', '_emb_rows', '_id_epoch')

    def __init__(self, docs: Iterable[Document] | Document | None = None) -> None:
        self._id_map: dict[str, int] | None = None
        self._emb: np.ndarray | None = None
        self._emb_rows: list | None = None
        if docs is None:
            self._docs: list[Document] = []
        elif isinstance(docs, Document):
            self._docs = [docs]
        elif isinstance(docs, (str, bytes, np.ndarray, dict)) or not isinstance(docs, Iterable):
            hint = ' (use runtime.generators.from_ndarray)' if isinstance(docs, np.ndarray) else ''
            raise TypeError(f'DocumentArray() takes an iterable of Documents, got {type(docs).__name__}{hint}')
        elif type(docs) is DocumentArray:
            self._docs = list(docs._docs)
            # The row check in .embeddings keeps this correct whatever happens later.
            self._emb, self._emb_rows = docs._emb, docs._emb_rows
        else:
            self._docs = [_check_doc(d, 'DocumentArray()') for d in docs]

    @classmethod
    def _from_list(cls, docs: list[Document]) -> 'DocumentArray':
        """Trusted fast path for the runtime: ``docs`` is used as is (not copied, not
        checked)."""
        da = cls.__new__(cls)
        da._docs, da._id_map, da._emb, da._emb_rows = docs, None, None, None
        return da

    # -- sequence protocol ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._docs)

    def __iter__(self) -> Iterator[Document]:
        return iter(self._docs)

    def __reversed__(self) -> Iterator[Document]:
        return reversed(self._docs)

    def __bool__(self) -> bool:
        return bool(self._docs)

    def _build_id_map(self) -> dict[str, int]:
        # Duplicated ids: the last one wins, as with append.
        m = self._id_map = {d.id: i for i, d in enumerate(self._docs)}
        self._id_epoch = _ids._ID_EPOCH[0]
        return m

    def _index_of(self, doc_id: str) -> int:
        m = self._id_map
        if m is None:
            m = self._build_id_map()
            i = m.get(doc_id)
        else:
            i = m.get(doc_id)
            docs = self._docs
            if i is not None and (i >= len(docs) or docs[i]._id != doc_id):
                i = self._build_id_map().get(doc_id)  # a document's id changed since
            elif i is None and self._id_epoch != _ids._ID_EPOCH[0]:
                i = self._build_id_map().get(doc_id)  # maybe it was renamed to doc_id
        if i is None:
            raise KeyError(f'no document with id {doc_id!r} in this DocumentArray')
        return i

    def _has_id(self, doc_id: str) -> bool:
        try:
            self._index_of(doc_id)
            return True
        except KeyError:
            return False

    @overload
    def __getitem__(self, key: int | str) -> Document: ...
    @overload
    def __getitem__(self, key: slice | Sequence[int]) -> 'DocumentArray': ...

    def __getitem__(self, key):
        """``da[0]``, ``da['some-id']`` give a Document; ``da[1:3]`` and lists of ints,
        ids or bools give a new DocumentArray (of the same Document objects)."""
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            return self._docs[key]
        if isinstance(key, str):
            return self._docs[self._index_of(key)]
        if isinstance(key, slice):
            out = DocumentArray._from_list(self._docs[key])
            if self._emb is not None:
                # Views of the matrix; out's own row check decides whether they still hold.
                out._emb, out._emb_rows = self._emb[key], self._emb_rows[key]
            return out
        if isinstance(key, (list, tuple, np.ndarray)):
            arr = np.asarray(key)
            if arr.size == 0:
                return DocumentArray()
            if arr.dtype == bool:
                if arr.shape != (len(self._docs),):
                    raise IndexError(f'boolean mask has shape {arr.shape}, DocumentArray has {len(self._docs)} '
                                     f'documents')
                arr = np.flatnonzero(arr)
            if arr.ndim == 1 and arr.dtype.kind in 'iu':
                return DocumentArray._from_list([self._docs[i] for i in arr.tolist()])
            if arr.ndim == 1 and arr.dtype.kind == 'U':
                return DocumentArray._from_list([self._docs[self._index_of(k)] for k in arr.tolist()])
        raise TypeError(f'DocumentArray indices are int, str (id), slice, or a list of ints / ids / bools; '
                        f'got {type(key).__name__}')

    def __setitem__(self, key: int | str, value: Document) -> None:
        """Replace the document at an index or with an id."""
        _check_doc(value, 'DocumentArray item assignment')
        i = self._index_of(key) if isinstance(key, str) else key
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f'DocumentArray assignment takes an int index or str id, got {type(key).__name__}')
        self._docs[i] = value
        self._id_map = None

    def __delitem__(self, key: int | str | slice) -> None:
        """Remove by index, id or slice."""
        if isinstance(key, str):
            key = self._index_of(key)
        elif not isinstance(key, (int, np.integer, slice)) or isinstance(key, bool):
            raise TypeError(f'DocumentArray deletion takes an int index, str id or slice, got {type(key).__name__}')
        del self._docs[key]
        self._id_map = None

    def append(self, doc: Document) -> None:
        """Add one Document at the end."""
        self._docs.append(_check_doc(doc, 'DocumentArray.append'))
        if self._id_map is not None:
            self._id_map[doc._id] = len(self._docs) - 1

    def extend(self, docs: Iterable[Document]) -> None:
        """Add many Documents at the end."""
        if isinstance(docs, Document):
            raise TypeError('DocumentArray.extend takes an iterable of Documents; use append for one')
        if isinstance(docs, (str, bytes, np.ndarray, dict)) or not isinstance(docs, Iterable):
            raise TypeError(f'DocumentArray.extend takes an iterable of Documents, got {type(docs).__name__}')
        # Materialised first: extending with itself (da.extend(da), da += da) must not
        # iterate over a list that grows while it is read.
        new = [_check_doc(d, 'DocumentArray.extend') for d in docs]
        start = len(self._docs)
        self._docs.extend(new)
        m = self._id_map
        if m is not None:
            for i, d in enumerate(new, start):
                m[d._id] = i

    def insert(self, index: int, doc: Document) -> None:
        """Insert one Document before ``index``."""
        self._docs.insert(index, _check_doc(doc, 'DocumentArray.insert'))
        self._id_map = None

    def pop(self, index: int | str = -1) -> Document:
        """Remove and return the document at ``index`` (or with that id); the last by
        default."""
        if isinstance(index, str):
            index = self._index_of(index)
        doc = self._docs.pop(index)
        self._id_map = None
        return doc

    def index(self, value: Document | str, start: int = 0, stop: int | None = None) -> int:
        """The position of the first document that is ``value`` or equal to it (every field,
        as ``list.index`` and Jina 2's MutableSequence compared); a str finds the first
        document with that id. ValueError when there is none.

        >>> da = DocumentArray([Document(id='a'), Document(id='b')])
        >>> da.index(Document(id='b')), da.index('b')
        (1, 1)
        """
        docs = self._docs
        found = _matcher(value, 'index')
        for i in range(*slice(start, stop).indices(len(docs))):
            if found(docs[i]):
                return i
        raise ValueError(_not_found(value))

    def count(self, value: Document | str) -> int:
        """How many documents are ``value`` or equal to it (a str: have that id).

        >>> DocumentArray([Document(id='a'), Document(id='a')]).count('a')
        2
        """
        return sum(map(_matcher(value, 'count'), self._docs))

    def remove(self, value: Document | str) -> None:
        """Remove the first document that is ``value`` or equal to it (a str: has that id),
        as ``list.remove``; ValueError when there is none.

        >>> da = DocumentArray([Document(id='a')]); da.remove(da[0]); len(da)
        0
        """
        del self._docs[self.index(value)]
        self._id_map = None

    def clear(self) -> None:
        """Remove every Document."""
        self._docs.clear()
        self._id_map = None
        self._emb = self._emb_rows = None

    def __iadd__(self, other: Iterable[Document]) -> 'DocumentArray':
        self.extend(other)
        return self

    def sort(self, key=None, reverse: bool = False) -> None:
        """Sort in place, e.g. ``doc.matches.sort(key=lambda m: m.scores['cosine'].value)``
        (closest first: 'cosine' is a distance, as ``match`` writes it)."""
        self._docs.sort(key=key, reverse=reverse)
        self._id_map = None

    def reverse(self) -> None:
        """Reverse in place."""
        self._docs.reverse()
        self._id_map = None

    def __copy__(self) -> 'DocumentArray':
        return DocumentArray(self)

    def __deepcopy__(self, memo: dict) -> 'DocumentArray':
        return DocumentArray._from_list([Document(d, copy=True) for d in self._docs])

    # -- columnar fields ------------------------------------------------------------------------
    def _columnar(self) -> np.ndarray | None:
        """The assigned embedding matrix while every row is still its document's
        embedding, else None (and the stale matrix is dropped)."""
        emb = self._emb
        if emb is not None:
            docs, rows = self._docs, self._emb_rows
            if len(docs) == len(rows) and all(map(operator.is_, map(_get_embedding, docs), rows)):
                return emb
            self._emb = self._emb_rows = None
        return None

    @property
    def embeddings(self) -> np.ndarray | None:
        """The (N, ...) embedding matrix: the assigned matrix itself (zero-copy) while it is
        still every document's embedding, else a stacked copy; None when no document has
        an embedding; ValueError when only some have one or shapes / dtypes differ.

        Assigning an (N, ...) array sets every document's embedding to a view of its row
        (no copy); a wrong N raises ValueError; None clears every embedding.
        """
        emb = self._columnar()
        if emb is not None:
            return emb
        return _stack(self._docs, 'embedding')

    @embeddings.setter
    def embeddings(self, value: np.ndarray | None) -> None:
        if value is None:
            for d in self._docs:
                d._embedding = None
            self._emb = self._emb_rows = None
            return
        if not isinstance(value, np.ndarray):
            try:
                value = np.asarray(value)
            except ValueError as exc:
                raise ValueError(f'embeddings must be an (N, D) numpy array, got a ragged '
                                 f'{type(value).__name__}: {exc}') from None
        if value.dtype == object or value.dtype.kind in 'USV':
            raise TypeError(f'embeddings must be a numeric array, got dtype {value.dtype}')
        if value.ndim < 2 or value.shape[0] != len(self._docs):
            raise ValueError(f'embeddings must have shape (N, ...) with N = {len(self._docs)} documents, '
                             f'got shape {value.shape}')
        rows = list(value)  # row views of ``value``: no copy
        for d, r in zip(self._docs, rows):
            d._embedding = r
        self._emb, self._emb_rows = value, rows

    @DocumentSequence.texts.setter
    def texts(self, values: Sequence[str]) -> None:
        values = list(values)
        if len(values) != len(self._docs):
            raise ValueError(f'got {len(values)} texts for {len(self._docs)} documents')
        for d, t in zip(self._docs, values):
            d.text = t

    @DocumentSequence.blobs.setter
    def blobs(self, value: np.ndarray) -> None:
        value = np.asarray(value)
        if value.dtype == object or value.dtype.kind in 'USV':
            raise TypeError(f'blobs must be a numeric array, got dtype {value.dtype}')
        if value.ndim < 1 or value.shape[0] != len(self._docs):
            raise ValueError(f'blobs must have shape (N, ...) with N = {len(self._docs)} documents, '
                             f'got shape {value.shape}')
        for d, r in zip(self._docs, value):
            d.blob = r  # the setter: a blob replaces a text or buffer (content is one of them)

    def __reduce__(self):
        return _rebuild_array, (self._docs,)

    def __repr__(self) -> str:
        extra = ''
        emb = self._columnar()
        if emb is not None:
            extra = f' embeddings={emb.dtype}{list(emb.shape)}'
        return f'<DocumentArray length={len(self._docs)}{extra}>'
