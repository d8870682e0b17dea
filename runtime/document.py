"""Document: one unit of data flowing through a Flow.

A plain Python object with ``__slots__`` (no protobuf), so building, copying and pickling
one costs microseconds and every value keeps its Python type (``tags={'n': 1}`` stays an
int, an embedding keeps its dtype and shape). Its layout is the field table of
``runtime.fields``; pickling, copying and equality are built from it.

What cannot cross a process boundary is refused where it is set, with the field named:
arrays of Python objects, tags that do not pickle (a lambda), a ``weight`` that is no
number, a ``granularity`` that is no int, a ``mime_type`` that is no str.
"""
from __future__ import annotations

import copy as _copy
import hashlib
import json
import mimetypes
import numbers
import os
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np

from .convert import ConvertMixin
from .fields import DEFAULTS, FIELD, FIELDS, SLOTS, TABLE
from .scores import NamedScore, NamedScores, as_scores
from .values import _arrays_equal, _from_jsonable, _to_jsonable, _values_equal, check_array, check_plain

if TYPE_CHECKING:  # pragma: no cover
    from .array import DocumentArray

__all__ = ['Document', 'NamedScore']

#: Defaults of the scalar metadata fields (the Jina 2 defaults: empty string, 0).
_SCALAR_DEFAULTS = {f.name: f.default for f in TABLE if f.kind == 'scalar'}
_CONTENT_KEYS = ('content', 'text', 'blob', 'buffer')
_ACCEPTED_KEYWORDS = FIELDS + ('content',)
_ALL_MIME_TYPES = frozenset(mimetypes.types_map.values())
#: Prefix of ``binary_str()``: JSON inside, so bytes from elsewhere cannot run code.
_BINARY_MAGIC = b'SHMFLOW-DOC1\n'

#: Bumped whenever the id of an existing Document changes. A DocumentArray's id index can
#: only go stale through such a change (the Document does not know which arrays hold it),
#: so an array rebuilds its index on a miss only when this moved since it last built it;
#: otherwise ``'absent-id' in da`` would cost O(N) every time.
_ID_EPOCH = [0]

#: Every field's value in table order, in one C-level call.
_get_state = attrgetter(*SLOTS)


#: Ids made ahead, 1024 at a time: one urandom call and one hex() for all of them costs a
#: fraction of a uuid4 each (on a slow machine uuid4() alone was 5 us, most of an empty
#: Document's construction).
_ID_POOL: list[str] = []
_POOL_SIZE = 1024


def _refill_ids() -> None:
    raw = np.frombuffer(os.urandom(16 * _POOL_SIZE), dtype=np.uint8).reshape(_POOL_SIZE, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.tobytes().hex()
    _ID_POOL.extend([text[i:i + 32] for i in range(0, len(text), 32)])


def _new_id() -> str:
    """A fresh id: what uuid.uuid4().hex gives."""
    try:
        return _ID_POOL.pop()
    except IndexError:
        _refill_ids()
        return _ID_POOL.pop()


# A forked process (a worker forked by the zygote) must not hand out its parent's ids.
os.register_at_fork(after_in_child=_ID_POOL.clear)


def _coerce_id(value: Any, field: str = 'id') -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise TypeError(f'Document.{field} cannot be None; pass a str'
                        + (' (or omit it for a fresh uuid4 hex)' if field == 'id' else ''))
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f'Document.{field} must be a str, got {type(value).__name__}; '
                        f'decode it first, e.g. {field}=value.decode()')
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool):
        return str(value)  # Jina 2 took int ids
    if field == 'id':
        return str(value)
    raise TypeError(f'Document.{field} must be a str (a document id), got {type(value).__name__} {value!r}')


def _as_array(value: Any, field: str) -> np.ndarray | None:
    """Accept an ndarray (of anything but Python objects), a sequence of numbers as a new
    array, None as unset."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        return check_array(value, field)
    if isinstance(value, Mapping) and ('__ndarray__' in value or '__ndarray_b64__' in value):
        return check_array(_from_jsonable(dict(value)), field)
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f'Document.{field} must be a numpy array (or a list of numbers), '
                        f'got {type(value).__name__}: {exc}') from None
    if arr.dtype == object or arr.dtype.kind in 'USV':
        raise TypeError(f'Document.{field} must be a numeric numpy array, got '
                        f'{type(value).__name__} holding {arr.dtype}; pass np.asarray(...) of numbers')
    return arr


def _check_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f'Document.{field} must be a str, got {type(value).__name__} {value!r}')
    return value


def _check_int(value: Any, field: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f'Document.{field} must be an int, got {type(value).__name__} {value!r}')
    return int(value)


def _check_float(value: Any, field: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer, np.floating)):
        raise TypeError(f'Document.{field} must be a number (float or int), got {type(value).__name__} {value!r}')
    return float(value)


def _resolve_path(obj: Any, path: str) -> Any:
    """Follow ``tags__key__sub`` style paths through attributes and mappings; None where
    a step is missing (as Jina 2's ``get_attributes``)."""
    for part in path.split('__'):
        if isinstance(obj, Mapping):
            obj = obj.get(part)
        else:
            obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _pad(state: tuple) -> tuple:
    # A state stored before a field was added to the end of the table.
    n = len(state)
    if n > len(DEFAULTS):
        raise ValueError(f'a Document state has {n} fields, this version knows {len(DEFAULTS)}: '
                         f'it was written by a newer version')
    return tuple(state) + DEFAULTS[n:]


_EMPTY_WHEN_UNUSED = tuple(i for i, f in enumerate(TABLE) if f.pack == 'empty')


def _compile(namespace: dict) -> None:
    # Generated from the table (as dataclasses and attrs generate __init__): one unpacking
    # assignment is ~3x faster than a loop of setattr, and the codec rebuilds every
    # document of every request with these.
    targets = ''.join(f'd.{s}, ' for s in SLOTS)
    pad = f'    if len(state) != {len(SLOTS)}:\n        state = _pad(state)\n'
    unused = ' or '.join(f'(state[{i}] is not None and not state[{i}])' for i in _EMPTY_WHEN_UNUSED)
    src = (f'def _fill(d, state):\n{pad}    {targets}= state\n\n'
           # Module-level on purpose: pickle stores a function by name much faster than a
           # bound classmethod (3.8 us against 10 us for a small Document).
           f'def _rebuild_document(state):\n    d = _new(Document)\n{pad}    {targets}= state\n    return d\n\n'
           f'def _compact(state):\n    if {unused}:\n'
           f'        return tuple(None if i in _EMPTY_WHEN_UNUSED and s is not None and not s else s '
           f'for i, s in enumerate(state))\n    return state\n')
    exec(src, namespace)  # noqa: S102 - the source is built from the constant field table


_new = object.__new__
_fill: Callable[[Any, tuple], None]  # set every slot from a state tuple
_rebuild_document: Callable[[tuple], 'Document']  # a new Document from a state tuple
_compact: Callable[[tuple], tuple]  # a state with empty containers as None
_compile(globals())


class Document(ConvertMixin):
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
    __slots__ = SLOTS + ('__weakref__',)  # weakref: see runtime.nested

    def __new__(cls, obj: Any = None, copy: bool = False, field_resolver: Any = None,
                **fields: Any) -> 'Document':
        # Jina 2: Document(doc) wraps the same data; with objects, that is the same object.
        if not copy and not fields and type(obj) is cls:
            return obj
        return super().__new__(cls)

    def __init__(self, obj: Any = None, copy: bool = False,
                 field_resolver: Mapping[str, str] | None = None, **fields: Any) -> None:
        if obj is self:
            return  # __new__ handed back the same object: nothing to initialise
        if isinstance(obj, Document):
            self._copy_from(obj, deep=copy)
        else:
            _fill(self, DEFAULTS)
            if obj is not None:
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
            _check_one_content(fields, 'Document()')
            if self._id is None and fields.get('id') is None:
                self._id = _new_id()  # before chunks=... so that they get it as parent_id
            for key, value in fields.items():
                setter = _SETTERS.get(key)
                if setter is not None:
                    setter(self, value)
                elif '__' in key and key.split('__', 1)[0] == 'tags':
                    self._set_path(key, value)
                else:
                    raise TypeError(f'Document() got an unexpected keyword {key!r}; valid fields are: '
                                    f'{", ".join(_ACCEPTED_KEYWORDS)} (and tag paths such as tags__key)')
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
            if setter is None:
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
            elif key == 'buffer' and isinstance(value, Mapping):
                self.buffer = _from_jsonable(value)
            elif key in ('chunks', 'matches'):
                self._set_slot(FIELD[key].slot, None if value is None else _as_doc_array(value, key))
            else:
                setter(self, value)

    def _set_slot(self, slot: str, value: Any) -> None:
        object.__setattr__(self, slot, value)

    def _set_path(self, path: str, value: Any) -> None:
        """``tags__a__b = v``: set ``tags['a']['b']``, creating dicts on the way."""
        parts = path.split('__')
        target = self.tags
        for p in parts[1:-1]:
            nxt = target.get(p)
            if not isinstance(nxt, dict):
                nxt = target[p] = {}
            target = nxt
        check_plain(value, 'tags', ''.join(f'[{p!r}]' for p in parts[1:]))
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

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are no attribute: Jina 2's ``doc.tags__key`` paths.
        if name.startswith('tags__'):
            return _resolve_path(self, name)
        raise AttributeError(f'{type(self).__name__!r} object has no attribute {name!r}')

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
    def text(self) -> str | None:
        """Text content (a str), or None. Setting it clears ``blob`` and ``buffer`` and, when
        ``mime_type`` is empty, sets it to 'text/plain' (as Jina 2 did)."""
        return self._text

    @text.setter
    def text(self, value: str | None) -> None:
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f'Document.text must be a str, got {type(value).__name__}; '
                                f'use blob= for arrays and buffer= for bytes')
            self._blob = self._buffer = None
            if not self._mime_type:
                self._mime_type = 'text/plain'
        self._text = value

    @property
    def buffer(self) -> bytes | None:
        """Raw bytes content, or None. Setting it clears ``text`` and ``blob``."""
        return self._buffer

    @buffer.setter
    def buffer(self, value: bytes | None) -> None:
        if value is None:
            self._buffer = None
            return
        if type(value) is not bytes:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f'Document.buffer must be bytes, got {type(value).__name__}; '
                                f'use text= for str and blob= for arrays')
            value = bytes(value)
        self._text = self._blob = None
        self._buffer = value

    @property
    def blob(self) -> np.ndarray | None:
        """Content as a numpy array (any dtype but object, any shape). Setting it clears
        ``text`` and ``buffer``."""
        return self._blob

    @blob.setter
    def blob(self, value: Any) -> None:
        value = _as_array(value, 'blob')
        if value is not None:
            self._text = self._buffer = None
        self._blob = value

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

    @property
    def parent_id(self) -> str:
        """Id of the document this one is a chunk of ('' if none)."""
        return self._parent_id

    @parent_id.setter
    def parent_id(self, value: str) -> None:
        self._parent_id = '' if value is None else _coerce_id(value, 'parent_id')

    @property
    def granularity(self) -> int:
        """Depth in the chunk tree (0 for a top-level document)."""
        return self._granularity

    @granularity.setter
    def granularity(self, value: int) -> None:
        self._granularity = _check_int(value, 'granularity')

    @property
    def adjacency(self) -> int:
        """Depth in the match tree (0 for a query, 1 for its matches)."""
        return self._adjacency

    @adjacency.setter
    def adjacency(self, value: int) -> None:
        self._adjacency = _check_int(value, 'adjacency')

    @property
    def weight(self) -> float:
        """A float weight (0.0 by default)."""
        return self._weight

    @weight.setter
    def weight(self, value: float) -> None:
        self._weight = _check_float(value, 'weight')

    @property
    def modality(self) -> str:
        """Free-form modality name, e.g. 'image'."""
        return self._modality

    @modality.setter
    def modality(self, value: str) -> None:
        self._modality = _check_str(value, 'modality')

    @property
    def tags(self) -> dict:
        """Free-form metadata: a dict of plain Python values (ints stay ints)."""
        if self._tags is None:
            self._tags = {}
        return self._tags

    @tags.setter
    def tags(self, value: Mapping | None) -> None:
        if value is not None:
            if not isinstance(value, Mapping):
                raise TypeError(f'Document.tags must be a dict, got {type(value).__name__}')
            value = dict(value)
            check_plain(value, 'tags')
        self._tags = value

    @property
    def scores(self) -> NamedScores:
        """Named scores: ``m.scores['cosine'] = 0.9``; ``m.scores['cosine']`` is a
        ``NamedScore`` (``.value``, ``.op_name``, ...) that compares as its value."""
        if self._scores is None:
            self._scores = NamedScores()
        return self._scores

    @scores.setter
    def scores(self, value: Mapping | None) -> None:
        self._scores = as_scores(value, 'scores')

    @property
    def evaluations(self) -> NamedScores:
        """Named evaluation results, e.g. ``d.evaluations['recall'] = 0.8`` (as ``scores``)."""
        if self._evaluations is None:
            self._evaluations = NamedScores()
        return self._evaluations

    @evaluations.setter
    def evaluations(self, value: Mapping | None) -> None:
        self._evaluations = as_scores(value, 'evaluations')

    @property
    def chunks(self) -> 'DocumentArray':
        """Sub-documents (e.g. passages of a file). Appending one sets its ``parent_id`` to
        this id and its ``granularity`` to this granularity + 1 (see ``runtime.nested``)."""
        c = self._chunks
        if type(c) is not _nested.ChunkArray or c._ref() is not self:
            c = self._chunks = _bind(_nested.ChunkArray, c, self)
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
        return m

    @matches.setter
    def matches(self, value: Iterable['Document'] | None) -> None:
        self._matches = None
        if value is not None:
            self.matches.extend(_as_doc_array(value, 'matches'))

    @property
    def content(self) -> str | np.ndarray | bytes | None:
        """Whichever of ``text``, ``blob``, ``buffer`` is set, else None.

        Writing dispatches by type: str -> text, ndarray -> blob, bytes -> buffer; the
        other two are cleared (they exclude each other, as in Jina 2).

        >>> d = Document(content=b'\\x00'); (d.buffer, d.text)
        (b'\\x00', None)
        """
        if self._text is not None:
            return self._text
        if self._blob is not None:
            return self._blob
        return self._buffer

    @content.setter
    def content(self, value: str | np.ndarray | bytes | None) -> None:
        if value is None:
            self._text = self._blob = self._buffer = None
        elif isinstance(value, str):
            self.text = value
        elif isinstance(value, np.ndarray):
            self.blob = value
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.buffer = value
        else:
            raise TypeError(f'Document.content takes a str (text), a numpy array (blob) or bytes '
                            f'(buffer), got {type(value).__name__}')

    @property
    def content_type(self) -> str | None:
        """'text', 'blob' or 'buffer': which field ``content`` reads, or None."""
        if self._text is not None:
            return 'text'
        if self._blob is not None:
            return 'blob'
        if self._buffer is not None:
            return 'buffer'
        return None

    @property
    def content_hash(self) -> str:
        """A 16-hex-digit hash of the content (its kind, and for blobs dtype and shape
        too), equal for equal content and stable across runs and processes.

        >>> Document(text='a').content_hash == Document(text='a').content_hash
        True
        """
        h = hashlib.blake2b(digest_size=8)
        kind = self.content_type
        h.update((kind or 'none').encode())
        if kind == 'text':
            h.update(self._text.encode('utf-8', 'surrogatepass'))
        elif kind == 'blob':
            blob = self._blob
            h.update(f'{blob.dtype.str}{blob.shape}'.encode())
            if blob.size:
                h.update(np.ascontiguousarray(blob).view(np.uint8).data)
        elif kind == 'buffer':
            h.update(self._buffer)
        return h.hexdigest()

    # -- Jina 2 sugar ---------------------------------------------------------------------------
    def set_attributes(self, **fields: Any) -> None:
        """Set several fields at once; ``tags__a__b=v`` sets a nested tag.

        >>> d = Document(); d.set_attributes(text='x', tags__meta__lang='en'); d.tags
        {'meta': {'lang': 'en'}}
        """
        _check_one_content(fields, 'set_attributes()')
        for key, value in fields.items():
            setter = _SETTERS.get(key)
            if setter is not None:
                setter(self, value)
            elif key.startswith('tags__'):
                self._set_path(key, value)
            else:
                raise AttributeError(f'{key!r} is not a Document field; valid fields are: '
                                     f'{", ".join(_ACCEPTED_KEYWORDS)} (and tag paths such as tags__key)')

    def get_attributes(self, *fields: str) -> Any:
        """Values of fields by name; ``tags__key__sub`` reaches into (nested) tags; a missing
        field gives None. One field gives its value, several a list.

        >>> Document(text='a', tags={'k': {'j': 1}}).get_attributes('text', 'tags__k__j')
        ['a', 1]
        """
        values = [_resolve_path(self, f) for f in fields]
        return values[0] if len(fields) == 1 else values

    def update(self, source: 'Document', fields: Iterable[str] | None = None) -> None:
        """Copy fields of ``source`` into this document (Jina 2's ``update``).

        ``fields=None`` copies every field ``source`` has set (its id too, as in Jina 2);
        otherwise the named ones. ``tags`` are merged key by key like ``dict.update``;
        chunks and matches are copied (``source`` is left unchanged).

        >>> d = Document(text='old', tags={'a': 1}); d.update(Document(id='n', tags={'b': 2}), ['tags'])
        >>> d.text, d.tags
        ('old', {'a': 1, 'b': 2})
        """
        if not isinstance(source, Document):
            raise TypeError(f'Document.update takes a Document, got {type(source).__name__}')
        if fields is None:
            names = [f.name for f, v in zip(TABLE, _get_state(source)) if not _is_default(f, v)]
        else:
            names = [fields] if isinstance(fields, str) else list(fields)
            bad = [n for n in names if n not in FIELD]
            if bad:
                raise ValueError(f'Document.update: unknown fields {bad}; valid fields are: {", ".join(FIELDS)}')
        for name in names:
            if name == 'tags':
                self.tags.update(_copy.deepcopy(source._tags or {}))
            elif name in ('chunks', 'matches'):
                setattr(self, name, [Document(d, copy=True) for d in getattr(source, FIELD[name].slot) or ()])
            elif name in ('scores', 'evaluations'):
                value = getattr(source, FIELD[name].slot)
                setattr(self, name, None if value is None else value.copy())
            else:
                setattr(self, name, getattr(source, name))

    def pop(self, *fields: str) -> None:
        """Reset the named fields to their defaults (``'content'`` resets text, blob and
        buffer).

        >>> d = Document(text='a', weight=2.0); d.pop('text', 'weight'); d.text, d.weight
        (None, 0.0)
        """
        for name in fields:
            if name == 'content':
                self._text = self._blob = self._buffer = None
                continue
            f = FIELD.get(name)
            if f is None or name == 'id':
                raise ValueError(f'Document.pop: {name!r} is not a field that can be reset; valid fields are: '
                                 f'{", ".join(n for n in _ACCEPTED_KEYWORDS if n != "id")}')
            self._set_slot(f.slot, f.default)

    def to_dict(self, prettify_ndarrays: bool = False) -> dict:
        """The fields that differ from their defaults, as plain Python (arrays stay arrays,
        or become nested lists with ``prettify_ndarrays=True``; chunks / matches become
        lists of dicts; scores ``{name: {'value': v, ...}}``). ``Document(d.to_dict()) == d``.

        >>> Document(id='a', text='hi').to_dict()
        {'id': 'a', 'text': 'hi', 'mime_type': 'text/plain'}
        """
        out: dict[str, Any] = {'id': self._id}
        for f, value in zip(TABLE[1:], _get_state(self)[1:]):
            if _is_default(f, value):
                continue
            kind = f.kind
            if kind == 'docs':
                out[f.name] = [d.to_dict(prettify_ndarrays) for d in value]
            elif kind == 'mapping':
                out[f.name] = value.to_dict() if isinstance(value, NamedScores) else dict(value)
            elif kind == 'array' and prettify_ndarrays:
                out[f.name] = value.tolist()
            else:
                out[f.name] = value
        return out

    dict = to_dict  # Jina 2 name

    def json(self, prettify_ndarrays: bool = False, **kwargs: Any) -> str:
        """A JSON string of ``to_dict()``; arrays keep dtype and shape (or are plain lists
        with ``prettify_ndarrays=True``), bytes go as base64. ``kwargs`` go to
        ``json.dumps``. ``Document(d.json()) == d``.

        >>> Document(Document(id='a', text='x').json()).text
        'x'
        """
        return json.dumps(_to_jsonable(self.to_dict(prettify_ndarrays)), **kwargs)

    def binary_str(self) -> bytes:
        """The document as bytes that ``Document(bytes)`` reads back (JSON inside, with
        arrays as base64 of their raw bytes: reading untrusted bytes cannot run code).

        >>> d = Document(embedding=np.arange(3, dtype=np.int8)); Document(d.binary_str()) == d
        True
        """
        return _BINARY_MAGIC + json.dumps(_to_jsonable(self.to_dict(), raw_arrays=True)).encode()

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


_KINDS = tuple('value' if f.kind in ('id', 'content', 'scalar') else f.kind for f in TABLE)


def _is_default(f, value: Any) -> bool:
    """Whether a field value is its default (an empty container counts as unset)."""
    if value is None:
        return True
    if f.kind in ('mapping', 'docs'):
        return not len(value)
    if f.kind == 'scalar':
        return type(value) is type(f.default) and value == f.default
    return False


def _check_one_content(fields: Mapping[str, Any], where: str) -> None:
    if ('text' in fields) + ('blob' in fields) + ('buffer' in fields) + ('content' in fields) < 2:
        return
    given = [k for k in _CONTENT_KEYS if fields.get(k) is not None]
    if len(given) > 1:
        raise ValueError(f'{where}: {" and ".join(given)} exclude each other (a document has one content: '
                         f'text, blob or buffer); pass only one of them')


class _LazyNested:
    """``runtime.nested``, imported on first use: it subclasses DocumentArray, whose module
    imports this one."""

    def __getattr__(self, name: str) -> Any:
        from . import nested
        globals()['_nested'] = nested
        return getattr(nested, name)


_nested: Any = _LazyNested()


def _bind(kind: type, docs: Any, parent: Document) -> Any:
    from .array import DocumentArray
    if docs is not None and not isinstance(docs, DocumentArray):
        return docs  # another kind of sequence (e.g. on disk): used as it is
    return _nested.attach(kind, docs, parent)


def _set_new_id(d: Document, value: Any) -> None:
    # A Document under construction sits in no DocumentArray: no need to bump _ID_EPOCH
    # (which would make the next id miss of every array rebuild its index).
    # None (e.g. "id": null in JSON) means "no id given": a fresh one is made at the end.
    if value is not None:
        d._id = _coerce_id(value)


#: How each keyword / mapping key is applied, validated like attribute assignment.
_SETTERS: dict[str, Callable[[Document, Any], None]] = {
    'id': _set_new_id,
    **{f.name: getattr(Document, f.name).fset for f in TABLE if f.name != 'id'},
    'content': Document.content.fset,
}


def _parse_binary(raw: bytes) -> dict:
    if not raw.startswith(_BINARY_MAGIC):
        raise ValueError('Document(bytes) reads what Document.binary_str() wrote (it starts with '
                         f'{_BINARY_MAGIC!r}); for raw bytes content pass Document(buffer=...)')
    try:
        data = json.loads(raw[len(_BINARY_MAGIC):])
    except ValueError as exc:
        raise ValueError(f'Document(bytes): damaged binary_str() data ({exc})') from None
    if not isinstance(data, dict):
        raise ValueError('Document(bytes): damaged binary_str() data (not a JSON object)')
    return data


def _as_doc_array(value: Iterable[Any], field: str) -> 'DocumentArray':
    from .array import DocumentArray
    if isinstance(value, DocumentArray):
        return value
    if isinstance(value, (str, bytes, Document, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f'Document.{field} must be a DocumentArray or a list of Documents, '
                        f'got {type(value).__name__}')
    return DocumentArray(Document(d) if isinstance(d, Mapping) else d for d in value)


def _copy_docs(docs: 'DocumentArray') -> 'DocumentArray':
    from .array import DocumentArray
    return DocumentArray._from_list([Document(d, copy=True) for d in docs])


def _shallow_docs(docs: 'DocumentArray') -> 'DocumentArray':
    from .array import DocumentArray
    if isinstance(docs, DocumentArray):
        return DocumentArray._from_list(list(docs._docs))
    return docs  # another kind of sequence (e.g. on disk): share it rather than load it
