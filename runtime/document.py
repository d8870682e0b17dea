"""Document: one unit of data flowing through a Flow.

A plain Python object with ``__slots__`` (no protobuf), so building, copying and pickling
one costs microseconds and every value keeps its Python type (``tags={'n': 1}`` stays an
int, an embedding keeps its dtype and shape).
"""
from __future__ import annotations

import base64
import copy as _copy
import hashlib
import json
import os
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .array import DocumentArray

__all__ = ['Document']

#: The public fields of a Document, in the order ``to_dict`` and ``repr`` use.
FIELDS = (
    'id', 'text', 'blob', 'buffer', 'uri', 'mime_type', 'tags', 'embedding', 'chunks',
    'matches', 'scores', 'parent_id', 'granularity', 'adjacency', 'weight', 'modality',
)
#: Defaults of the scalar metadata fields (the Jina 2 defaults: empty string, 0).
_SCALAR_DEFAULTS = {
    'uri': '', 'mime_type': '', 'parent_id': '', 'granularity': 0, 'adjacency': 0,
    'weight': 0.0, 'modality': '',
}
_ACCEPTED_KEYWORDS = FIELDS + ('content',)

#: Bumped whenever the id of an existing Document changes. A DocumentArray's id index can
#: only go stale through such a change (the Document does not know which arrays hold it),
#: so an array rebuilds its index on a miss only when this moved since it last built it;
#: otherwise ``'absent-id' in da`` would cost O(N) every time.
_ID_EPOCH = [0]

# Array kinds whose ``tolist()`` is JSON-safe and converts back exactly; the rest
# (complex, datetime, bytes, void) travel as base64 of their raw bytes.
_JSON_LIST_KINDS = frozenset('biufU')


def _new_id() -> str:
    # Same result as uuid.uuid4().hex at a fifth of the cost (no UUID object): on a slow
    # machine uuid4() alone was 5 us, most of an empty Document's construction.
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    return b.hex()


def _coerce_id(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        raise TypeError('Document.id cannot be None; pass a str (or omit it for a fresh uuid4 hex)')
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f'Document.id must be a str, got {type(value).__name__}; '
                        f'decode it first, e.g. id=value.decode()')
    return str(value)


def _as_array(value: Any, field: str) -> np.ndarray | None:
    """Accept an ndarray as is, a sequence of numbers as a new array, None as unset."""
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, Mapping) and ('__ndarray__' in value or '__ndarray_b64__' in value):
        return _from_jsonable(dict(value))
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f'Document.{field} must be a numpy array (or a list of numbers), '
                        f'got {type(value).__name__}: {exc}') from None
    if arr.dtype == object or arr.dtype.kind in 'USV':
        raise TypeError(f'Document.{field} must be a numeric numpy array, got '
                        f'{type(value).__name__} holding {arr.dtype}; pass np.asarray(...) of numbers')
    return arr


def _arrays_equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    if a is b:
        return True
    # equal_nan so that a document equals its own round trip even with NaNs inside.
    try:
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))
    except TypeError:  # dtypes where NaN has no meaning (e.g. object)
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def _values_equal(a: Any, b: Any) -> bool:
    """``a == b`` for plain values, also when arrays sit somewhere inside them."""
    try:
        return bool(a == b)
    except ValueError:  # an array's elementwise == has no single truth value
        pass
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and _arrays_equal(a, b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_values_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_values_equal, a, b))
    return False


def _to_jsonable(value: Any) -> Any:
    """Turn arrays and bytes into JSON-safe markers that ``_from_jsonable`` reverses.

    >>> _to_jsonable({'v': np.arange(2, dtype=np.int8)})
    {'v': {'__ndarray__': [0, 1], 'dtype': '|i1', 'shape': [2]}}
    """
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind in _JSON_LIST_KINDS:
            data = value.tolist()
        elif kind == 'O':
            data = _to_jsonable(value.tolist())
        else:
            return {'__ndarray_b64__': base64.b64encode(np.ascontiguousarray(value).tobytes()).decode('ascii'),
                    'dtype': value.dtype.str, 'shape': list(value.shape)}
        return {'__ndarray__': data, 'dtype': value.dtype.str, 'shape': list(value.shape)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {'__bytes__': base64.b64encode(bytes(value)).decode('ascii')}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def _from_jsonable(value: Any) -> Any:
    """Reverse ``_to_jsonable``: markers become arrays and bytes again; other dicts and
    lists are rebuilt (so the result shares no containers with ``value``)."""
    if isinstance(value, dict):
        if '__ndarray__' in value:
            data = value['__ndarray__']
            dtype = np.dtype(value['dtype'])
            if dtype.kind == 'O':
                data = _from_jsonable(data)
            shape = tuple(value['shape'])
            arr = np.empty(shape, dtype=dtype)
            # Assigning into a preallocated array keeps shapes like (0, 3) and object
            # elements that are themselves lists intact, where np.array(data) would not.
            if arr.size:
                if dtype.kind == 'O':
                    flat = arr.reshape(-1)  # a view: arr is fresh and contiguous
                    for i, item in enumerate(_flatten(data, arr.ndim)):
                        flat[i] = item  # one by one, so list elements stay lists
                else:
                    arr[...] = np.asarray(data, dtype=dtype)
            return arr
        if '__ndarray_b64__' in value:
            raw = base64.b64decode(value['__ndarray_b64__'])
            return np.frombuffer(raw, dtype=np.dtype(value['dtype'])).reshape(value['shape']).copy()
        if '__bytes__' in value and len(value) == 1:
            return base64.b64decode(value['__bytes__'])
        return {k: _from_jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    return value


def _flatten(data: Any, ndim: int) -> list:
    if ndim == 0:
        return [data]
    if ndim == 1:
        return list(data)
    return [x for sub in data for x in _flatten(sub, ndim - 1)]


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


def _rebuild_document(state: tuple) -> 'Document':
    # Module-level on purpose: pickle stores a function by name much faster than a bound
    # classmethod (3.8 us against 10 us for a small Document).
    d = object.__new__(Document)
    (d._id, d._text, d._blob, d._buffer, d.uri, d.mime_type, d._tags, d._embedding, d._chunks,
     d._matches, d._scores, d.parent_id, d.granularity, d.adjacency, d.weight, d.modality) = state
    return d


class Document:
    """One document: content (text, blob or buffer), metadata, an embedding, and nested
    chunks / matches.

    Parameters
    ----------
    obj : Document, dict, str or None
        Another Document (``copy=True`` deep-copies it; otherwise, as in Jina 2 where both
        wrapped the same data, ``Document(doc)`` is ``doc`` itself, and
        ``Document(doc, **fields)`` is a shallow copy with ``fields`` applied); a dict of
        fields (unknown keys go to ``tags``); or a JSON string of such a dict.
    copy : bool
        Deep-copy ``obj`` when it is a Document.
    field_resolver : dict, optional
        Renames keys of ``obj`` / keyword arguments before they are applied, e.g.
        ``{'question': 'text'}``.
    **fields
        Any of the field names in ``Document.FIELDS``, or ``content``; anything else
        raises TypeError.

    Examples
    --------
    >>> d = Document(text='hello', tags={'n': 1}, embedding=np.zeros(3, np.float32))
    >>> d.content, d.tags['n'], d.embedding.dtype
    ('hello', 1, dtype('float32'))
    >>> Document({'question': 'why?', 'lang': 'en'}, field_resolver={'question': 'text'}).tags
    {'lang': 'en'}
    >>> Document(d, copy=True) == d
    True
    """

    FIELDS = FIELDS
    __slots__ = ('_id', '_text', '_blob', '_buffer', 'uri', 'mime_type', '_tags', '_embedding',
                 '_chunks', '_matches', '_scores', 'parent_id', 'granularity', 'adjacency',
                 'weight', 'modality')

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
            self._id = None
            self._text = None
            self._blob = None
            self._buffer = None
            self.uri = ''
            self.mime_type = ''
            self._tags = None
            self._embedding = None
            self._chunks = None
            self._matches = None
            self._scores = None
            self.parent_id = ''
            self.granularity = 0
            self.adjacency = 0
            self.weight = 0.0
            self.modality = ''
            if obj is not None:
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
                    raise TypeError(f'Document() takes a Document, a dict or a JSON string as its first argument, '
                                    f'got {type(obj).__name__}; for content pass Document(content=...)')
        if fields:
            for key, value in fields.items():
                if field_resolver:
                    key = field_resolver.get(key, key)
                setter = _SETTERS.get(key)
                if setter is None:
                    raise TypeError(f'Document() got an unexpected keyword {key!r}; valid fields are: '
                                    f'{", ".join(_ACCEPTED_KEYWORDS)}')
                setter(self, value)
        if self._id is None:
            self._id = _new_id()

    # -- construction helpers -------------------------------------------------------------
    def _apply_mapping(self, data: Mapping[str, Any], resolver: Mapping[str, str] | None) -> None:
        # A mapping may come from json.loads(doc.json()), so array / bytes markers are
        # decoded; keys that are no field go to tags (Jina 2's behaviour).
        for key, value in data.items():
            if resolver:
                key = resolver.get(key, key)
            setter = _SETTERS.get(key)
            if setter is None:
                self.tags[key] = _from_jsonable(value)
            elif key == 'tags':
                if value is not None:
                    if not isinstance(value, Mapping):
                        raise TypeError(f'Document tags must be a dict, got {type(value).__name__}')
                    self.tags.update(_from_jsonable(dict(value)))
            elif key == 'buffer' and isinstance(value, Mapping):
                self.buffer = _from_jsonable(value)
            else:
                setter(self, value)

    def _copy_from(self, other: 'Document', deep: bool) -> None:
        (self._id, self._text, self._blob, self._buffer, self.uri, self.mime_type, self._tags,
         self._embedding, self._chunks, self._matches, self._scores, self.parent_id,
         self.granularity, self.adjacency, self.weight, self.modality) = other._state()
        if deep:
            if self._blob is not None:
                self._blob = self._blob.copy()
            if self._embedding is not None:
                self._embedding = self._embedding.copy()
            if self._tags is not None:
                self._tags = _copy.deepcopy(self._tags)
            if self._scores is not None:
                self._scores = _copy.deepcopy(self._scores)
            if self._chunks is not None:
                self._chunks = _copy_docs(self._chunks)
            if self._matches is not None:
                self._matches = _copy_docs(self._matches)
        else:
            # A new object must not change the original through shared containers (its
            # arrays stay shared, as numpy arrays passed around do).
            if self._tags is not None:
                self._tags = dict(self._tags)
            if self._scores is not None:
                self._scores = dict(self._scores)
            if self._chunks is not None:
                self._chunks = _shallow_docs(self._chunks)
            if self._matches is not None:
                self._matches = _shallow_docs(self._matches)

    @classmethod
    def _from_state(cls, state: tuple) -> 'Document':
        """Rebuild a Document from ``_state()`` without checks (trusted data only)."""
        if cls is Document:
            return _rebuild_document(state)
        d = object.__new__(cls)
        (d._id, d._text, d._blob, d._buffer, d.uri, d.mime_type, d._tags, d._embedding, d._chunks,
         d._matches, d._scores, d.parent_id, d.granularity, d.adjacency, d.weight, d.modality) = state
        return d

    def _state(self) -> tuple:
        """Every field in ``FIELDS`` order (lazy containers as None when never touched)."""
        return (self._id, self._text, self._blob, self._buffer, self.uri, self.mime_type, self._tags,
                self._embedding, self._chunks, self._matches, self._scores, self.parent_id,
                self.granularity, self.adjacency, self.weight, self.modality)

    def __reduce__(self):
        state = self._state()
        # Containers that were only ever read are empty: send None, which unpickles to the
        # same lazily created empty container, instead of pickling an empty DocumentArray.
        if (state[6] is not None and not state[6]) or (state[8] is not None and not state[8]) \
                or (state[9] is not None and not state[9]) or (state[10] is not None and not state[10]):
            state = list(state)
            for i in (6, 8, 9, 10):
                if state[i] is not None and not len(state[i]):
                    state[i] = None
            state = tuple(state)
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
    def text(self) -> str | None:
        """Text content (a str), or None."""
        return self._text

    @text.setter
    def text(self, value: str | None) -> None:
        if value is not None and not isinstance(value, str):
            raise TypeError(f'Document.text must be a str, got {type(value).__name__}; '
                            f'use blob= for arrays and buffer= for bytes')
        self._text = value

    @property
    def buffer(self) -> bytes | None:
        """Raw bytes content, or None."""
        return self._buffer

    @buffer.setter
    def buffer(self, value: bytes | None) -> None:
        if value is None or type(value) is bytes:
            self._buffer = value
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self._buffer = bytes(value)
        else:
            raise TypeError(f'Document.buffer must be bytes, got {type(value).__name__}; '
                            f'use text= for str and blob= for arrays')

    @property
    def blob(self) -> np.ndarray | None:
        """Content as a numpy array (any dtype / shape)."""
        return self._blob

    @blob.setter
    def blob(self, value: Any) -> None:
        self._blob = _as_array(value, 'blob')

    @property
    def embedding(self) -> np.ndarray | None:
        """The vector (or any array) that represents this document."""
        return self._embedding

    @embedding.setter
    def embedding(self, value: Any) -> None:
        self._embedding = _as_array(value, 'embedding')

    @property
    def tags(self) -> dict:
        """Free-form metadata: a dict of plain Python values (ints stay ints)."""
        if self._tags is None:
            self._tags = {}
        return self._tags

    @tags.setter
    def tags(self, value: Mapping | None) -> None:
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f'Document.tags must be a dict, got {type(value).__name__}')
        self._tags = dict(value) if value is not None else None

    @property
    def scores(self) -> dict:
        """Named scores, e.g. ``match.scores['cosine'] = 0.9`` (a dict of name -> float)."""
        if self._scores is None:
            self._scores = {}
        return self._scores

    @scores.setter
    def scores(self, value: Mapping | None) -> None:
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f'Document.scores must be a dict of name -> float, got {type(value).__name__}')
        self._scores = dict(value) if value is not None else None

    @property
    def chunks(self) -> 'DocumentArray':
        """Sub-documents (e.g. passages of a file). A plain DocumentArray: adding a chunk
        does not set its ``parent_id`` / ``granularity``; set them where that matters."""
        if self._chunks is None:
            from .array import DocumentArray
            self._chunks = DocumentArray()
        return self._chunks

    @chunks.setter
    def chunks(self, value: Iterable['Document'] | None) -> None:
        self._chunks = None if value is None else _as_doc_array(value, 'chunks')

    @property
    def matches(self) -> 'DocumentArray':
        """Search results for this document, each with ``scores``."""
        if self._matches is None:
            from .array import DocumentArray
            self._matches = DocumentArray()
        return self._matches

    @matches.setter
    def matches(self, value: Iterable['Document'] | None) -> None:
        self._matches = None if value is None else _as_doc_array(value, 'matches')

    @property
    def content(self) -> str | np.ndarray | bytes | None:
        """Whichever of ``text``, ``blob``, ``buffer`` is set (in that order), else None.

        Writing dispatches by type: str -> text, ndarray -> blob, bytes -> buffer; the
        other two are cleared.

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
            self._text, self._blob, self._buffer = value, None, None
        elif isinstance(value, np.ndarray):
            self._text, self._blob, self._buffer = None, value, None
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self._text, self._blob, self._buffer = None, None, bytes(value)
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
                h.update(np.ascontiguousarray(blob).data)
        elif kind == 'buffer':
            h.update(self._buffer)
        return h.hexdigest()

    # -- conversions ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The fields that differ from their defaults, as plain Python (arrays stay arrays,
        chunks / matches become lists of dicts). ``Document(d.to_dict()) == d``.

        >>> Document(id='a', text='hi').to_dict()
        {'id': 'a', 'text': 'hi'}
        """
        out: dict[str, Any] = {'id': self._id}
        for name, value in zip(FIELDS[1:], self._state()[1:]):
            if value is None or (name in _SCALAR_DEFAULTS and value == _SCALAR_DEFAULTS[name]
                                 and type(value) is type(_SCALAR_DEFAULTS[name])):
                continue
            if name in ('chunks', 'matches'):
                if len(value):
                    out[name] = [d.to_dict() for d in value]
            elif name in ('tags', 'scores'):
                if value:
                    out[name] = dict(value)
            else:
                out[name] = value
        return out

    dict = to_dict  # Jina 2 name

    def json(self, **kwargs: Any) -> str:
        """A JSON string of ``to_dict()``; arrays keep dtype and shape, bytes go as base64.
        ``kwargs`` go to ``json.dumps``. ``Document(d.json()) == d``.

        >>> Document(Document(id='a', text='x').json()).text
        'x'
        """
        return json.dumps(_to_jsonable(self.to_dict()), **kwargs)

    def get_attributes(self, *fields: str) -> Any:
        """Values of fields by name; ``tags__key`` reaches into tags; a missing field gives
        None. One field gives its value, several a list.

        >>> Document(text='a', tags={'k': 1}).get_attributes('text', 'tags__k')
        ['a', 1]
        """
        values = [_resolve_path(self, f) for f in fields]
        return values[0] if len(fields) == 1 else values

    def copy(self) -> 'Document':
        """A deep copy (arrays, tags, chunks and matches copied).

        >>> d = Document(tags={'k': [1]}); c = d.copy(); c.tags['k'].append(2); d.tags
        {'k': [1]}
        """
        return Document(self, copy=True)

    def __copy__(self) -> 'Document':
        d = object.__new__(type(self))
        (d._id, d._text, d._blob, d._buffer, d.uri, d.mime_type, d._tags, d._embedding, d._chunks,
         d._matches, d._scores, d.parent_id, d.granularity, d.adjacency, d.weight, d.modality) = self._state()
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
        if (self._id != other._id or self._text != other._text or self._buffer != other._buffer
                or self.uri != other.uri or self.mime_type != other.mime_type
                or self.parent_id != other.parent_id or self.granularity != other.granularity
                or self.adjacency != other.adjacency or self.weight != other.weight
                or self.modality != other.modality):
            return False
        if not (_arrays_equal(self._blob, other._blob) and _arrays_equal(self._embedding, other._embedding)):
            return False
        if not (_values_equal(self._tags or {}, other._tags or {})
                and _values_equal(self._scores or {}, other._scores or {})):
            return False
        for mine, theirs in ((self._chunks, other._chunks), (self._matches, other._matches)):
            if mine is None or theirs is None:
                if len(mine or ()) or len(theirs or ()):
                    return False
            elif mine != theirs:
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
        for name in ('_tags', '_scores'):
            value = getattr(self, name)
            if value:
                text = repr(value)
                parts.append(f'{name[1:]}={text if len(text) <= 60 else text[:57] + "..."}')
        for name in ('_chunks', '_matches'):
            value = getattr(self, name)
            if value:
                parts.append(f'{name[1:]}={len(value)}')
        return f'<Document {" ".join(parts)}>'


def _set_new_id(d: Document, value: Any) -> None:
    # A Document under construction sits in no DocumentArray: no need to bump _ID_EPOCH
    # (which would make the next id miss of every array rebuild its index).
    # None (e.g. "id": null in JSON) means "no id given": a fresh one is made at the end.
    if value is not None:
        d._id = _coerce_id(value)


def _member_setter(name: str) -> Callable[[Document, Any], None]:
    return getattr(Document, name).__set__


#: How each keyword / mapping key is applied, validated like attribute assignment.
_SETTERS: dict[str, Callable[[Document, Any], None]] = {
    'id': _set_new_id,
    **{name: getattr(Document, name).fset for name in
       ('text', 'blob', 'buffer', 'tags', 'embedding', 'chunks', 'matches', 'scores', 'content')},
    **{name: _member_setter(name) for name in _SCALAR_DEFAULTS},
}


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
    if type(docs) is DocumentArray:
        return DocumentArray._from_list(list(docs._docs))
    return docs  # another kind of sequence (e.g. on disk): share it rather than load it
