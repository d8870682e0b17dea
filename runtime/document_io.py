"""Jina 2's dict-like surface of a Document: fields by name, dicts, JSON and bytes.

Mixed into ``Document`` (``runtime.document``), which keeps construction, the fields and
pickling. Here: ``set_attributes`` / ``get_attributes`` (with ``tags__a__b`` paths),
``update``, ``pop``, ``to_dict`` (``dict``), ``json`` and ``binary_str``, and the parsing
helpers that ``Document(dict | str | bytes)`` uses to read what these wrote. This module
does not import ``runtime.document``: the setter table it needs is filled in by that
module once ``Document`` exists.

Example
-------
>>> from runtime import Document
>>> d = Document(id='a', text='hi'); d.set_attributes(tags__lang='en'); d.to_dict()
{'id': 'a', 'text': 'hi', 'mime_type': 'text/plain', 'tags': {'lang': 'en'}}
>>> Document(d.json()) == d, Document(d.binary_str()) == d
(True, True)
"""
from __future__ import annotations

import copy as _copy
import json
import re
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from .fields import FIELD, FIELDS, SLOTS, TABLE
from .ids import _new_id
from .scores import NamedScores
from .values import _from_jsonable, _to_jsonable

if TYPE_CHECKING:  # pragma: no cover
    from .document import Document

__all__ = ['DictMixin']

_CONTENT_KEYS = ('content', 'text', 'blob', 'buffer')
_ACCEPTED_KEYWORDS = FIELDS + ('content',)
#: Prefix of ``binary_str()``: JSON inside, so bytes from elsewhere cannot run code.
_BINARY_MAGIC = b'SHMFLOW-DOC1\n'

#: Every field's value in table order, in one C-level call.
_get_state = attrgetter(*SLOTS)

#: How each keyword / mapping key is applied, validated like attribute assignment: the
#: property setters of ``Document`` (and ``content``), added by ``runtime.document``.
_SETTERS: dict[str, Callable[[Any, Any], None]] = {}


#: A path step that indexes into a list (``tags__a__1``, ``matches__0__id``), as Jina 2's
#: ``dunder_get`` read one.
_INDEX = re.compile(r'-?[0-9]+')
_INDEX_START = frozenset('-0123456789')  # a cheap test first: most steps are names


def _resolve_path(obj: Any, path: str) -> Any:
    """Follow ``tags__key__sub`` style paths through attributes, mappings and (with an int
    step, e.g. ``matches__0__id``) sequences; None where a step is missing (as Jina 2's
    ``get_attributes``).

    >>> _resolve_path({'a': {'b': [10, 20]}}, 'a__b__1'), _resolve_path({'a': [1]}, 'a__5')
    (20, None)
    """
    for part in path.split('__'):
        if isinstance(obj, Mapping):
            found = obj.get(part)
            if found is None and _INDEX.fullmatch(part):
                found = obj.get(int(part))  # a dict with int keys
            obj = found
        elif (part[:1] in _INDEX_START and _INDEX.fullmatch(part) and hasattr(obj, '__getitem__')
              and not isinstance(obj, (str, bytes, bytearray))):
            try:
                obj = obj[int(part)]
            except (IndexError, KeyError, TypeError):
                return None
        else:
            obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


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


#: The fields whose JSON form ``_json_field`` reads.
_JSON_FORMS = frozenset({'buffer', 'blob', 'embedding'})


def _is_ndarray_proto(value: Any) -> bool:
    """Whether ``value`` is Jina 2's ``NdArrayProto`` in JSON form (a dict with ``dense`` or
    ``sparse``): what ``protoarrays.decode_ndarray_proto`` reads.

    >>> _is_ndarray_proto({'dense': {}}), _is_ndarray_proto([1, 2])
    (True, False)
    """
    return isinstance(value, Mapping) and (isinstance(value.get('dense'), Mapping)
                                           or isinstance(value.get('sparse'), Mapping))


def _json_field(key: str, value: Any) -> Any:
    """The value of ``buffer`` / ``blob`` / ``embedding`` in a mapping that may come from
    JSON: ``Document.json()``'s markers, or the protobuf JSON of Jina 2's ``doc.json()``,
    ``doc.dict()`` and ``DocumentArray.save`` (bytes as base64, arrays as
    ``{"dense": {...}}`` / ``{"sparse": {...}}``). Anything else is returned as it is, for
    the field's setter to check.

    >>> _json_field('buffer', 'aGk='), _json_field('embedding', [1, 2])
    (b'hi', [1, 2])
    """
    # (protoarrays is imported here: every executor process imports this module, and few
    # ever read Jina 2's JSON)
    if key == 'buffer':
        if isinstance(value, Mapping):
            return _from_jsonable(value)
        if isinstance(value, str):
            from .protoarrays import decode_proto_bytes
            return decode_proto_bytes(value, 'Document(dict): buffer', TypeError,
                                      '; pass bytes (buffer=b"..."), or text=... for a str')
    elif _is_ndarray_proto(value):
        from .protoarrays import decode_ndarray_proto
        return decode_ndarray_proto(value, f'Document.{key}')
    return value


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


class DictMixin:
    """Jina 2's field-by-name, dict, JSON and bytes methods of ``Document``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are no attribute: Jina 2's ``doc.tags__key`` and
        # ``doc.matches__0__id`` paths (a field name, then steps).
        if name.startswith('tags__') or ('__' in name and name.split('__', 1)[0] in FIELD):
            return _resolve_path(self, name)
        if name == '_plain':  # a Document made without a constructor: not known to be plain
            return False
        raise AttributeError(f'{type(self).__name__!r} object has no attribute {name!r}')

    def set_attributes(self, **fields: Any) -> None:
        """Set several fields at once; ``tags__a__b=v`` sets a nested tag. As in Jina 2, a
        list or tuple given as ``chunks`` / ``matches`` is appended to those there (any other
        value, e.g. a DocumentArray, replaces them), and ``scores`` / ``evaluations`` are
        merged in (as assigning them does).

        >>> from runtime import Document
        >>> d = Document(); d.set_attributes(text='x', tags__meta__lang='en'); d.tags
        {'meta': {'lang': 'en'}}
        >>> q = Document(matches=[Document(id='a')]); q.set_attributes(matches=[Document(id='b')])
        >>> [m.id for m in q.matches]
        ['a', 'b']
        """
        _check_one_content(fields, 'set_attributes()')
        for key, value in fields.items():
            if key == 'id':
                # The property, not _SETTERS['id'] (meant for documents still being built):
                # this document may sit in arrays whose id index must see the new id.
                self.id = value
                continue
            if key in ('chunks', 'matches') and isinstance(value, (list, tuple)):
                getattr(self, key).extend(value)
                continue
            setter = _SETTERS.get(key)
            if setter is not None:
                setter(self, value)
            elif key.startswith('tags__'):
                self._set_path(key, value)
            else:
                raise AttributeError(f'{key!r} is not a Document field; valid fields are: '
                                     f'{", ".join(_ACCEPTED_KEYWORDS)} (and tag paths such as tags__key)')

    @property
    def non_empty_fields(self) -> tuple[str, ...]:
        """The names of the fields that differ from a new ``Document()``'s (an empty
        container counts as unset), in ``Document.FIELDS`` order; the id always (Jina 2's
        ``non_empty_fields``, which listed the protobuf fields set).

        >>> from runtime import Document
        >>> Document(id='a', text='hi', tags={'k': 1}).non_empty_fields
        ('id', 'text', 'mime_type', 'tags')
        """
        return ('id',) + tuple(f.name for f, v in zip(TABLE[1:], _get_state(self)[1:]) if not _is_default(f, v))

    def get_attributes(self, *fields: str) -> Any:
        """Values of fields by name; ``tags__key__sub`` reaches into (nested) tags; a missing
        field gives None. One field gives its value, several a list.

        >>> from runtime import Document
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

        >>> from runtime import Document
        >>> d = Document(text='old', tags={'a': 1}); d.update(Document(id='n', tags={'b': 2}), ['tags'])
        >>> d.text, d.tags
        ('old', {'a': 1, 'b': 2})
        """
        # Only Document mixes this class in: this is Document's check without importing it.
        if not isinstance(source, DictMixin):
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
                setattr(self, name, [d.copy() for d in getattr(source, FIELD[name].slot) or ()])
            elif name in ('scores', 'evaluations'):
                # Replaced, not merged as assigning merges: Jina 2's update cleared the field first.
                value = getattr(source, FIELD[name].slot)
                self._set_slot(FIELD[name].slot, None if value is None else value.copy())
            else:
                setattr(self, name, getattr(source, name))

    def pop(self, *fields: str) -> None:
        """Reset the named fields to what a new ``Document()`` has: ``'content'`` resets
        text, blob and buffer; ``'id'`` gives a fresh id (a document always has one; Jina 2
        left it empty, and a fresh one was made when the document was next read). Every
        name is checked first: an unknown one changes nothing.

        >>> from runtime import Document
        >>> d = Document(id='a', text='a', weight=2.0); d.pop('text', 'id', 'weight'); d.text, d.weight, d.id != 'a'
        (None, 0.0, True)
        """
        bad = [name for name in fields if not isinstance(name, str) or (name not in FIELD and name != 'content')]
        if bad:
            raise ValueError(f'Document.pop: {", ".join(map(repr, bad))} '
                             f'{"is not a field" if len(bad) == 1 else "are not fields"}, so nothing was reset; '
                             f'pass field names: {", ".join(_ACCEPTED_KEYWORDS)}')
        for name in fields:
            if name == 'content':
                self._text = self._blob = self._buffer = None
            elif name == 'id':
                # The property: arrays holding this document must see its id change.
                self.id = _new_id()
            else:
                f = FIELD[name]
                self._set_slot(f.slot, f.default)

    def to_dict(self, prettify_ndarrays: bool = False) -> dict:
        """The fields that differ from their defaults, as plain Python (arrays stay arrays,
        or become nested lists with ``prettify_ndarrays=True``; chunks / matches become
        lists of dicts; scores ``{name: {'value': v, ...}}``). ``Document(d.to_dict()) == d``.

        >>> from runtime import Document
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

        >>> from runtime import Document
        >>> Document(Document(id='a', text='x').json()).text
        'x'
        """
        return json.dumps(_to_jsonable(self.to_dict(prettify_ndarrays)), **kwargs)

    def binary_str(self) -> bytes:
        """The document as bytes that ``Document(bytes)`` reads back (JSON inside, with
        arrays as base64 of their raw bytes: reading untrusted bytes cannot run code).

        >>> from runtime import Document
        >>> import numpy as np
        >>> d = Document(embedding=np.arange(3, dtype=np.int8)); Document(d.binary_str()) == d
        True
        """
        return _BINARY_MAGIC + json.dumps(_to_jsonable(self.to_dict(), raw_arrays=True)).encode()
