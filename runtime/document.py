"""Document: one unit of data flowing through a Flow.

A plain Python object with ``__slots__`` (no protobuf), so building, copying and pickling
one costs microseconds and every value keeps its Python type (``tags={'n': 1}`` stays an
int, an embedding keeps its dtype and shape). Its layout is the field table of
``runtime.fields``; pickling, copying and equality are built from it.

What cannot cross a process boundary is refused where it is set, with the field named:
arrays of Python objects, tags that do not pickle (a lambda), a ``weight`` that is no
number, a ``granularity`` that is no int, a ``mime_type`` that is no str.

This module holds the class, its metadata fields, pickling, copies and equality. The fast
paths that build documents (from keywords and from state tuples) are in
``runtime.document_build``; the rest of the class is mixed in from modules named for it:
``runtime.content`` (text, blob, buffer), ``runtime.subdocs`` (chunks, matches),
``runtime.document_io`` (Jina 2's ``to_dict`` / ``json`` / ``binary_str`` /
``set_attributes`` ...), ``runtime.convert`` (``convert_*``), ``runtime.plot_methods``
(``plot``); the value checks are in
``runtime.values`` and the ids in ``runtime.ids``.
"""
from __future__ import annotations

import copy as _copy
import json
import mimetypes
from operator import attrgetter
from typing import Any, Mapping

import numpy as np

from .content import ContentMixin
from .convert import ConvertMixin
from .plot_methods import DocumentPlotMixin
# Read from here by others: _rebuild_document (pickles name it here; the codec and
# array_io), _resolve_path (runtime.arrayops).
from .document_build import _DocumentType, _compact, _fill, _fill_new, _rebuild_document, _set_fields, bind
from .document_io import (_JSON_FORMS, _SETTERS, DictMixin, _check_one_content, _json_field, _parse_binary,
                          _resolve_path)
from .fields import DEFAULTS, FIELD, FIELDS, JSON_NAMES, SLOTS, TABLE
from .ids import _ID_EPOCH, _new_id
from .scores import NamedScore, NamedScores, as_scores
from .subdocs import SubdocsMixin, _as_doc_array, _copy_docs, _shallow_docs
from .values import (_arrays_equal, _as_array, _check_float, _check_int, _check_str, _coerce_id, _from_jsonable,
                     _values_equal, check_plain)

__all__ = ['Document', 'NamedScore']

_ALL_MIME_TYPES = frozenset(mimetypes.types_map.values())

#: Every field's value in table order, in one C-level call.
_get_state = attrgetter(*SLOTS)
_new = object.__new__


#: Keys of Jina 2's JSON that it computed itself (``content_hash``): not kept as tags.
_COMPUTED = frozenset({'content_hash', 'contentHash'})


class Document(DictMixin, ContentMixin, SubdocsMixin, ConvertMixin, DocumentPlotMixin, metaclass=_DocumentType):
    """One document: content (text, blob or buffer), metadata, an embedding, and nested
    chunks / matches.

    Parameters
    ----------
    obj : Document, dict, str, bytes or None
        Another Document (``copy=True`` deep-copies it; otherwise, as in Jina 2 where both
        wrapped the same data, ``Document(doc)`` is ``doc`` itself, and
        ``Document(doc, **fields)`` is a shallow copy with ``fields`` applied); a dict of
        fields (unknown keys go to ``tags``); a JSON string of such a dict; or the bytes of
        ``binary_str()``.
    copy : bool
        Deep-copy ``obj`` when it is a Document.
    field_resolver : dict, optional
        Renames keys of ``obj`` / keyword arguments before they are applied, e.g.
        ``{'question': 'text'}`` or ``{'lang': 'tags__meta__lang'}``.
    **fields
        Any of the field names in ``Document.FIELDS``, ``content``, or a tag path such as
        ``tags__a__b``; anything else raises TypeError. ``text``, ``blob``, ``buffer``
        and ``content`` exclude each other.

    Examples
    --------
    >>> d = Document(text='hello', tags={'n': 1}, embedding=np.zeros(3, np.float32))
    >>> d.content, d.mime_type, d.tags['n'], d.embedding.dtype
    ('hello', 'text/plain', 1, dtype('float32'))
    >>> Document({'question': 'why?', 'lang': 'en'}, field_resolver={'question': 'text'}).tags
    {'lang': 'en'}
    >>> Document(d, copy=True) == d, Document(d.binary_str()) == d
    (True, True)
    """

    FIELDS = FIELDS
    # _plain: True only while every field but the id and the embedding holds its default
    # object (a new Document(), Document(embedding=...)); every write of another field
    # clears it (and so does reading a container field, which creates the container), and
    # nothing sets it again. The codec then sends such documents as their ids without
    # reading the other fields, which costs more than it would seem: the ``__getattr__`` of
    # tag paths (DictMixin) keeps CPython 3.11 from specializing any attribute load on a
    # Document.
    __slots__ = SLOTS + ('_plain', '__weakref__')  # weakref: see runtime.nested

    def __new__(cls, obj: Any = None, copy: bool = False, field_resolver: Any = None,
                **fields: Any) -> 'Document':
        # Jina 2: Document(doc) wraps the same data; with objects, that is the same object.
        if not copy and not fields and type(obj) is cls:
            return obj
        # object.__new__ directly: super() would walk the mixins on every construction.
        return _new(cls)

    def __init__(self, obj: Any = None, copy: bool = False,
                 field_resolver: Mapping[str, str] | None = None, **fields: Any) -> None:
        if obj is None:
            _fill_new(self, None, None)
        elif obj is self:
            return  # __new__ handed back the same object: nothing to initialise
        elif isinstance(obj, Document):
            self._copy_from(obj, deep=copy)
        else:
            _fill_new(self, None, None)
            if isinstance(obj, (bytes, bytearray, memoryview)):
                obj = _parse_binary(bytes(obj))
            if isinstance(obj, str):
                try:
                    data = json.loads(obj)
                except json.JSONDecodeError as exc:
                    raise ValueError(f'Document(str) expects a JSON object string, got invalid JSON ({exc}); '
                                     f'to make a text document pass Document(text=...)') from None
                if not isinstance(data, dict):
                    raise TypeError(f'Document(str) expects a JSON object, got JSON {type(data).__name__}')
                self._apply_mapping(data, field_resolver)
            elif isinstance(obj, Mapping):
                self._apply_mapping(obj, field_resolver)
            else:
                raise TypeError(f'Document() takes a Document, a dict, a JSON string or the bytes of '
                                f'binary_str() as its first argument, got {type(obj).__name__}; '
                                f'for content pass Document(content=...)')
        if fields:
            if field_resolver:
                fields = {field_resolver.get(k, k): v for k, v in fields.items()}
            _set_fields(self, fields)
        if self._id is None:
            self._id = _new_id()

    # -- construction helpers -------------------------------------------------------------
    def _apply_mapping(self, data: Mapping[str, Any], resolver: Mapping[str, str] | None) -> None:
        # A mapping may come from json.loads(doc.json()), so array / bytes markers are
        # decoded; keys that are no field go to tags (Jina 2's behaviour). Chunks and
        # matches keep the fields they carry (as Jina 2's dict parsing did).
        if resolver:
            data = {resolver.get(k, k): v for k, v in data.items()}
        _check_one_content(data, 'Document(dict)')
        for key, value in data.items():
            setter = _SETTERS.get(key)
            if setter is None and key in JSON_NAMES:  # Jina 2's camelCase: mimeType, parentId
                key = JSON_NAMES[key]
                setter = _SETTERS[key]
            if setter is None:
                if key in _COMPUTED:
                    continue  # what Jina 2 computed from the content (a Jina 2 file holds it): computed here too
                if '__' in key and key.split('__', 1)[0] == 'tags':
                    self._set_path(key, _from_jsonable(value))
                else:
                    self.tags[key] = _from_jsonable(value)
                    check_plain(self._tags[key], 'tags', f'[{key!r}]')
            elif key == 'tags':
                if value is not None:
                    if not isinstance(value, Mapping):
                        raise TypeError(f'Document tags must be a dict, got {type(value).__name__}')
                    value = _from_jsonable(dict(value))
                    check_plain(value, 'tags')
                    self.tags.update(value)
            elif key in _JSON_FORMS:  # markers of json(), or Jina 2's protobuf JSON
                setter(self, _json_field(key, value))
            elif key in ('chunks', 'matches'):
                self._set_slot(FIELD[key].slot, None if value is None else _as_doc_array(value, key))
            else:
                setter(self, value)

    def _set_slot(self, slot: str, value: Any) -> None:
        object.__setattr__(self, slot, value)
        self._plain = False

    def _set_path(self, path: str, value: Any) -> None:
        """``tags__a__b = v``: set ``tags['a']['b']``, creating dicts on the way; an int
        step into a list sets that item (``tags__a__1``), as reading steps into it.

        >>> d = Document(tags={'a': [1, {'b': 2}]}); d.set_attributes(tags__a__1__b=3, tags__a__0=0); d.tags
        {'a': [0, {'b': 3}]}
        """
        parts = path.split('__')
        target: Any = self.tags
        for p in parts[1:-1]:
            if isinstance(target, list):
                nxt = target[_list_index(target, p, path)]
                if not isinstance(nxt, (dict, list)):
                    raise TypeError(f'{path}: item {p} of the list there is a {type(nxt).__name__}, not a dict or '
                                    f'list to step into')
            else:
                nxt = target.get(p)
                if not isinstance(nxt, (dict, list)):
                    nxt = target[p] = {}
            target = nxt
        check_plain(value, 'tags', ''.join(f'[{p!r}]' for p in parts[1:]))
        if isinstance(target, list):
            target[_list_index(target, parts[-1], path)] = value
        else:
            target[parts[-1]] = value

    def _copy_from(self, other: 'Document', deep: bool) -> None:
        _fill(self, _get_state(other))
        if deep:
            if self._blob is not None:
                self._blob = self._blob.copy()
            if self._embedding is not None:
                self._embedding = self._embedding.copy()
            if self._tags is not None:
                self._tags = _copy.deepcopy(self._tags)
            for name in ('_scores', '_evaluations'):
                if getattr(self, name) is not None:
                    self._set_slot(name, getattr(self, name).copy())
            if self._chunks is not None:
                self._chunks = _copy_docs(self._chunks)
            if self._matches is not None:
                self._matches = _copy_docs(self._matches)
        else:
            # A new object must not change the original through shared containers (its
            # arrays and score objects stay shared, as numpy arrays passed around do).
            if self._tags is not None:
                self._tags = dict(self._tags)
            for name in ('_scores', '_evaluations'):
                value = getattr(self, name)
                if value is not None:
                    fresh = NamedScores()
                    dict.update(fresh, value)
                    self._set_slot(name, fresh)
            if self._chunks is not None:
                self._chunks = _shallow_docs(self._chunks)
            if self._matches is not None:
                self._matches = _shallow_docs(self._matches)

    @classmethod
    def _from_state(cls, state: tuple) -> 'Document':
        """Rebuild a Document from ``_state()`` without checks (trusted data only); a state
        from before a field was added is padded with the defaults."""
        if cls is Document:
            return _rebuild_document(state)
        d = _new(cls)
        _fill(d, state)
        return d

    def _state(self) -> tuple:
        """Every field in ``FIELDS`` order (lazy containers as None when never touched)."""
        return _get_state(self)

    def __reduce__(self):
        # Containers that were only ever read are empty: send None, which unpickles to the
        # same lazily created empty container, instead of pickling an empty DocumentArray.
        state = _compact(_get_state(self))
        if type(self) is not Document:
            return type(self)._from_state, (state,)
        return _rebuild_document, (state,)

    # -- fields with checks or lazy defaults ------------------------------------------------
    @property
    def id(self) -> str:
        """Unique id (a str of any length; a fresh uuid4 hex when not given)."""
        return self._id

    @id.setter
    def id(self, value: Any) -> None:
        self._id = _coerce_id(value)
        _ID_EPOCH[0] += 1

    @property
    def embedding(self) -> np.ndarray | None:
        """The vector (or any array but of Python objects) that represents this document."""
        return self._embedding

    @embedding.setter
    def embedding(self, value: Any) -> None:
        self._embedding = _as_array(value, 'embedding')

    @property
    def uri(self) -> str:
        """Where the content comes from (a path, a URL, a data URI). Setting it sets
        ``mime_type`` when the URI's extension tells it (as Jina 2 did)."""
        return self._uri

    @uri.setter
    def uri(self, value: str) -> None:
        self._uri = _check_str(value, 'uri')
        self._plain = False
        if value:
            guess = mimetypes.guess_type(value)[0]
            if guess:
                self._mime_type = guess

    @property
    def mime_type(self) -> str:
        """MIME type, e.g. 'text/plain'. As in Jina 2, an extension such as 'png' is
        expanded ('image/png')."""
        return self._mime_type

    @mime_type.setter
    def mime_type(self, value: str) -> None:
        value = _check_str(value, 'mime_type')
        if value and '/' not in value and value not in _ALL_MIME_TYPES:
            value = mimetypes.guess_type(f'x.{value}')[0] or value
        self._mime_type = value
        self._plain = False

    @property
    def parent_id(self) -> str:
        """Id of the document this one is a chunk of ('' if none)."""
        return self._parent_id

    @parent_id.setter
    def parent_id(self, value: str) -> None:
        self._parent_id = '' if value is None else _coerce_id(value, 'parent_id')
        self._plain = False

    @property
    def granularity(self) -> int:
        """Depth in the chunk tree (0 for a top-level document)."""
        return self._granularity

    @granularity.setter
    def granularity(self, value: int) -> None:
        self._granularity = _check_int(value, 'granularity')
        self._plain = False

    @property
    def adjacency(self) -> int:
        """Depth in the match tree (0 for a query, 1 for its matches)."""
        return self._adjacency

    @adjacency.setter
    def adjacency(self, value: int) -> None:
        self._adjacency = _check_int(value, 'adjacency')
        self._plain = False

    @property
    def weight(self) -> float:
        """A float weight (0.0 by default)."""
        return self._weight

    @weight.setter
    def weight(self, value: float) -> None:
        self._weight = _check_float(value, 'weight')
        self._plain = False

    @property
    def modality(self) -> str:
        """Free-form modality name, e.g. 'image'."""
        return self._modality

    @modality.setter
    def modality(self, value: str) -> None:
        self._modality = _check_str(value, 'modality')
        self._plain = False

    @property
    def tags(self) -> dict:
        """Free-form metadata: a dict of plain Python values (ints stay ints)."""
        if self._tags is None:
            self._tags = {}
            self._plain = False  # (a _plain document's containers are all None)
        return self._tags

    @tags.setter
    def tags(self, value: Mapping | None) -> None:
        if value is not None:
            if not isinstance(value, Mapping):
                raise TypeError(f'Document.tags must be a dict, got {type(value).__name__}')
            value = dict(value)
            check_plain(value, 'tags')
        self._tags = value
        self._plain = False

    @property
    def scores(self) -> NamedScores:
        """Named scores: ``m.scores['cosine'] = 0.1`` (a distance); ``m.scores['cosine']`` is a
        ``NamedScore`` (``.value``, ``.op_name``, ...) that compares as its value.

        Assigning a dict merges it in, as Jina 2 did: the names given are set (copies) and
        come first, since a shard merge sorts matches by their first score; the other
        names stay after them. ``m.scores = None`` (or ``m.pop('scores')``) clears them.

        >>> m = Document(scores={'cosine': 0.1}); m.scores = {'relevance': 0.9}; list(m.scores)
        ['relevance', 'cosine']
        """
        if self._scores is None:
            self._scores = NamedScores()
            self._plain = False
        return self._scores

    @scores.setter
    def scores(self, value: Mapping | None) -> None:
        # Jina 2 wrote key by key into the map it had: a ranker's ``m.scores = {...}``
        # keeps the 'cosine' the matcher wrote. None clears them (Jina 2 raised).
        self._scores = _merged_scores(self._scores, value, 'scores')
        self._plain = False

    @property
    def evaluations(self) -> NamedScores:
        """Named evaluation results, e.g. ``d.evaluations['recall'] = 0.8``; assigning a dict
        merges it in (as ``scores``)."""
        if self._evaluations is None:
            self._evaluations = NamedScores()
            self._plain = False
        return self._evaluations

    @evaluations.setter
    def evaluations(self, value: Mapping | None) -> None:
        self._evaluations = _merged_scores(self._evaluations, value, 'evaluations')
        self._plain = False

    def copy(self) -> 'Document':
        """A deep copy (arrays, tags, chunks and matches copied).

        >>> d = Document(tags={'k': [1]}); c = d.copy(); c.tags['k'].append(2); d.tags
        {'k': [1]}
        """
        return Document(self, copy=True)

    def __copy__(self) -> 'Document':
        d = _new(type(self))
        _fill(d, _get_state(self))
        return d

    def __deepcopy__(self, memo: dict) -> 'Document':
        return Document(self, copy=True)

    # -- comparison and display ---------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        """Equal when every field is equal (ids included; arrays also by dtype and shape;
        an untouched container equals an empty one)."""
        if not isinstance(other, Document):
            return NotImplemented
        if self is other:
            return True
        for kind, a, b in zip(_KINDS, _get_state(self), _get_state(other)):
            if kind == 'array':
                if not _arrays_equal(a, b):
                    return False
            elif kind == 'mapping':
                if not _values_equal(a or {}, b or {}):
                    return False
            elif kind == 'docs':
                if a is None or b is None:
                    if len(a or ()) or len(b or ()):
                        return False
                elif a != b:
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # mutable with value equality

    def __repr__(self) -> str:
        parts = [f'id={self._id!r}']
        if self._text is not None:
            text = self._text if len(self._text) <= 40 else self._text[:37] + '...'
            parts.append(f'text={text!r}')
        for name, arr in (('blob', self._blob), ('embedding', self._embedding)):
            if arr is not None:
                parts.append(f'{name}={arr.dtype}{list(arr.shape)}')
        if self._buffer is not None:
            parts.append(f'buffer={len(self._buffer)} bytes')
        for name in ('uri', 'mime_type', 'parent_id'):
            value = getattr(self, name)
            if value:
                value = value if len(value) <= 40 else value[:37] + '...'
                parts.append(f'{name}={value!r}')
        for name in ('_tags', '_scores', '_evaluations'):
            value = getattr(self, name)
            if value:
                text = repr(dict(value) if isinstance(value, NamedScores) else value)
                parts.append(f'{name[1:]}={text if len(text) <= 60 else text[:57] + "..."}')
        for name in ('_chunks', '_matches'):
            value = getattr(self, name)
            if value:
                parts.append(f'{name[1:]}={len(value)}')
        return f'<Document {" ".join(parts)}>'


def _list_index(items: list, step: str, path: str) -> int:
    """The list index a path step names (``'1'``, ``'-1'``), or IndexError saying why."""
    try:
        i = int(step)
    except ValueError:
        raise IndexError(f'{path}: {step!r} steps into a list there, which takes an int index') from None
    if not -len(items) <= i < len(items):
        raise IndexError(f'{path}: index {i} is out of range of the list there ({len(items)} items)')
    return i


def _merged_scores(current: NamedScores | None, value: Mapping | None, what: str) -> NamedScores | None:
    """``current`` with ``value`` written into it (the names of ``value`` first), in place
    so that a reference to ``d.scores`` taken before sees the change; None for None.

    >>> cur = NamedScores({'cosine': 0.1}); _merged_scores(cur, {'bm25': 2.0}, 'scores') is cur, list(cur)
    (True, ['bm25', 'cosine'])
    """
    if value is None:
        return None
    new = as_scores(value, what)
    if new is value or new is current:
        new = new.copy()  # another document's scores (or these): copied, as Jina 2 copied them
    if current is None:
        return new
    kept = [(k, v) for k, v in current.items() if k not in new]
    dict.clear(current)
    dict.update(current, new)
    dict.update(current, kept)
    return current


_KINDS = tuple('value' if f.kind in ('id', 'content', 'scalar') else f.kind for f in TABLE)

bind(Document)
