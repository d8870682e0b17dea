"""Documents, arrays and plain values as JSON, both ways, checked field by field.

The content half of the HTTP wire (``wire.py`` holds the request and response shapes around
it; ``jsonarrays.py`` the arrays and floats these are built on). Everything that comes from the network is plain JSON: nothing is unpickled, array
dtypes are limited to numbers, booleans and (fixed-width) str, and sizes must agree with
shapes.

Arrays (``embedding``, ``blob``, arrays in tags and parameters) may be sent as nested JSON
lists of numbers, in ``Document.json()``'s forms ``{"__ndarray__": <nested list>, "dtype":
"<f4", "shape": [768]}`` and ``{"__ndarray_b64__": <base64 of the raw bytes>, "dtype", "shape"}``,
or as Jina 2's ``{"dense": {"buffer", "dtype", "shape"}}``. They are written as the caller
asks (``ARRAY_FORMATS``): in the base64 form, or as lists; what a bare list cannot carry
exactly keeps a form that reads back equal: complex arrays and arrays holding NaN or
±Infinity in the base64 form, str arrays, 0-d arrays and empty arrays of more than one
dimension of ``embedding`` / ``blob`` as ``__ndarray__`` with their dtype and shape.

Strict JSON both ways: no ``NaN`` / ``Infinity`` token is written. A float field that is not
finite (``weight``, a score's ``value``) is written as the str ``"NaN"``, ``"Infinity"`` or
``"-Infinity"`` (protobuf's JSON mapping, which Jina 2 wrote); such a float in tags or
parameters as ``{"__float__": "NaN"}`` (there a str would read back as a str).

Document fields go by Jina 2's camelCase names or the Python ones. A key that is no field
goes into ``tags``, as Jina 2's gateway (and ``Document(dict)``) did; Jina 2's own fields that
this data model lacks are sorted by what Jina 2 did with them (``JINA2_COMPUTED``,
``JINA2_KEPT``).
"""
from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from ..array import DocumentArray
from ..document import Document
from ..fields import JSON_NAMES
from .jsonarrays import (ARRAY_FORMATS, MAX_DIM, MAX_TEXT_ARRAY_BYTES, NONFINITE, WireError,
                         decode_array, encode_array, float_from_json, float_name, float_to_json, json_kind)

__all__ = ['WireError', 'ARRAY_FORMATS', 'MAX_DEPTH', 'MAX_DIM', 'MAX_TEXT_ARRAY_BYTES', 'JINA2_COMPUTED',
           'JINA2_KEPT', 'doc_to_json', 'doc_from_json', 'encode_array', 'decode_array', 'encode_value',
           'decode_value', 'json_kind']

#: Document fields by their JSON names (Jina 2's camelCase and the Python ones) -> Python name.
_STR_NAMES = ('text', 'uri', 'mime_type', 'parent_id', 'modality')
_STR_FIELDS = {**{n: n for n in _STR_NAMES}, **{c: n for c, n in JSON_NAMES.items() if n in _STR_NAMES}}
_INT_FIELDS = ('granularity', 'adjacency')
#: Jina 2's document fields that Jina 2 computed itself (``update_content_hash``): accepted, so
#: that a Jina 2 answer can be posted back, and ignored.
JINA2_COMPUTED = frozenset({'contentHash', 'content_hash'})
#: Jina 2's document fields that held the user's own data and have no field here: kept in
#: ``tags`` under their name, with the type Jina 2's schema gave them. Jina 2 (proto3) could
#: not tell a default value from an absent one, and its JSON writes every default (its
#: ``/docs`` example has ``"siblings": 0, "location": [], "offset": 0``): defaults are dropped.
JINA2_KEPT = {'siblings': 'an int', 'offset': 'an int', 'location': 'a list of ints'}
_OUT_NAMES = {n: c for c, n in JSON_NAMES.items()}
_SCORE_OUT = {'op_name': 'opName', 'ref_id': 'refId'}
_SCORE_IN = {'value': 'value', 'opName': 'op_name', 'op_name': 'op_name', 'description': 'description',
             'refId': 'ref_id', 'ref_id': 'ref_id'}
#: ``evaluations`` where the data model has it (named scores, as ``scores``).
_SCORE_FIELDS = tuple(f for f in ('scores', 'evaluations') if f in Document.FIELDS)
#: Nesting of chunks / matches accepted from the network (a guard, not a real-world limit).
MAX_DEPTH = 8


def encode_value(value: Any, arrays: str = 'list', where: str = 'value') -> Any:
    """A tag, parameter or route value as JSON: arrays as ``encode_array`` writes them, bytes
    as ``{"__bytes__": base64}``, numpy scalars as numbers (complex ones as 0-d arrays), a
    float that is not finite as ``{"__float__": "NaN" | "Infinity" | "-Infinity"}``. Raises
    TypeError naming ``where`` for what JSON cannot carry (sets, objects).

    >>> encode_value({'n': np.int64(1), 'b': b'x', 'f': float('nan')})
    {'n': 1, 'b': {'__bytes__': 'eA=='}, 'f': {'__float__': 'NaN'}}
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {'__float__': float_name(value)}
    if isinstance(value, dict):
        return {str(k): encode_value(v, arrays, f'{where}[{k!r}]') for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v, arrays, where) for v in value]
    if isinstance(value, np.ndarray):
        return encode_array(value, arrays, where, typed=False)
    if isinstance(value, np.generic):
        if value.dtype.kind == 'c':  # JSON has no complex number: a 0-d array, which reads back equal
            return encode_array(np.asarray(value), arrays, where, typed=False)
        return encode_value(value.item(), arrays, where)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {'__bytes__': base64.b64encode(bytes(value)).decode('ascii')}
    raise TypeError(f'{where} holds a {type(value).__name__}, which JSON cannot carry; use numbers, str, '
                    f'lists, dicts, bytes or arrays of numbers or str')


def decode_value(value: Any, where: str = 'value', depth: int = 0) -> Any:
    """Reverse ``encode_value``: the array, bytes and float markers become arrays, bytes and
    floats again (numeric and str dtypes only); everything else stays the JSON value it is.

    >>> decode_value({'b': {'__bytes__': 'eA=='}, 'f': {'__float__': 'Infinity'}})
    {'b': b'x', 'f': inf}
    """
    if depth > 64:
        raise WireError(f'{where}: nested too deeply')
    if isinstance(value, dict):
        if '__ndarray_b64__' in value or '__ndarray__' in value:
            return decode_array(value, where)
        if '__bytes__' in value and len(value) == 1:
            try:
                return base64.b64decode(value['__bytes__'], validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise WireError(f'{where}: "__bytes__" must hold valid base64') from None
        if '__float__' in value and len(value) == 1:
            name = value['__float__']
            if not isinstance(name, str) or name not in NONFINITE:
                raise WireError(f'{where}: "__float__" must be "NaN", "Infinity" or "-Infinity", got '
                                f'{json_kind(name)}')
            return NONFINITE[name]
        return {k: decode_value(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v, where, depth + 1) for v in value]
    return value


# -- documents --------------------------------------------------------------------------------
def doc_to_json(doc: Document, arrays: str = 'list') -> dict:
    """A Document as a JSON-ready dict: the fields that differ from their defaults, arrays
    as ``encode_array`` writes them, ``buffer`` as base64, chunks and matches nested.

    >>> doc_to_json(Document(id='a', embedding=np.zeros(2, 'f4')))
    {'id': 'a', 'embedding': [0.0, 0.0]}
    """
    return _dict_to_json(doc.to_dict(), arrays)


def _dict_to_json(d: dict, arrays: str) -> dict:
    out = {}
    for name, value in d.items():
        if name in ('embedding', 'blob'):
            value = encode_array(value, arrays, f'Document.{name}')
        elif name == 'buffer':
            value = base64.b64encode(value).decode('ascii')
        elif name in ('chunks', 'matches'):
            value = [_dict_to_json(c, arrays) for c in value]
        elif name in ('scores', 'evaluations'):
            value = _scores_to_json(value)
        elif name == 'tags':
            value = encode_value(value, arrays, 'Document.tags')
        elif name == 'weight':
            value = float_to_json(value)
        elif not isinstance(value, (str, int, float)):
            value = encode_value(value, arrays, f'Document.{name}')
        elif isinstance(value, np.generic):
            value = value.item()
        out[_OUT_NAMES.get(name, name)] = value
    return out


def doc_from_json(obj: Any, where: str = 'data[0]', depth: int = 0, max_depth: int = MAX_DEPTH) -> Document:
    """A Document from one item of ``data``: a dict of fields (Jina 2's camelCase names or
    the Python ones) or a str (a text document). Every field is type-checked; a key that is
    no field goes into ``tags`` (over a tag of the same name), as Jina 2 did.

    >>> doc_from_json({'text': 'hi', 'lang': 'en', 'mimeType': 'text/plain'}).tags
    {'lang': 'en'}

    ``max_depth`` bounds the nesting of chunks and matches: ``MAX_DEPTH`` for what a client
    sends the gateway; a Client reading the gateway's answer allows more.
    """
    if isinstance(obj, str):
        return Document(text=obj)
    if not isinstance(obj, dict):
        raise WireError(f'{where} must be a document object such as {{"text": "..."}} or a str, got {json_kind(obj)}')
    if depth > max_depth:
        raise WireError(f'{where}: chunks / matches nested more than {max_depth} levels deep')
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}  # keys that are no field: tags
    for key, value in obj.items():
        at = f'{where}.{key}'
        if key in _STR_FIELDS:
            if value is not None and not isinstance(value, str):
                raise WireError(f'{at} must be a str, got {json_kind(value)}')
            if value is not None:
                fields[_STR_FIELDS[key]] = value
        elif key == 'id':
            if value is not None and (not isinstance(value, (str, int)) or isinstance(value, bool)):
                raise WireError(f'{at} must be a str, got {json_kind(value)}')
            if value is not None:
                fields['id'] = str(value)
        elif key in _INT_FIELDS:
            if type(value) is not int:
                raise WireError(f'{at} must be an int, got {json_kind(value)}')
            fields[key] = value
        elif key == 'weight':
            fields[key] = float_from_json(value, at)
        elif key in ('embedding', 'blob'):
            if value is not None:
                fields[key] = decode_array(value, at)
        elif key == 'buffer':
            if value is not None:
                if isinstance(value, dict) and '__bytes__' in value:
                    value = value['__bytes__']
                if not isinstance(value, str):
                    raise WireError(f'{at} must be a base64 str, got {json_kind(value)}')
                try:
                    fields[key] = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise WireError(f'{at} must be valid base64') from None
        elif key == 'tags':
            if value is not None:
                if not isinstance(value, dict):
                    raise WireError(f'{at} must be an object, got {json_kind(value)}')
                fields[key] = decode_value(value, at)
        elif key in _SCORE_FIELDS:
            fields[key] = _scores_from_json(value, at)
        elif key in ('chunks', 'matches'):
            if value is not None:
                if not isinstance(value, list):
                    raise WireError(f'{at} must be a list of documents, got {json_kind(value)}')
                fields[key] = DocumentArray([doc_from_json(v, f'{at}[{i}]', depth + 1, max_depth)
                                             for i, v in enumerate(value)])
        elif key in JINA2_COMPUTED:
            continue
        elif key in JINA2_KEPT:
            if not _is_default(value):
                extra[key] = _check_kept(key, value, at)
        else:
            extra[key] = decode_value(value, at)
    if extra:
        fields['tags'] = {**fields.get('tags', {}), **extra}
    # Chunks and matches last: attaching them reads the parent's granularity and id. What a
    # sub-document's JSON gave for the fields attaching sets (a match's adjacency, a
    # chunk's own parent_id) is put back after, as Flow.post's documents keep them.
    given = []
    for key in ('chunks', 'matches'):
        if key in fields:
            subs = fields[key] = fields.pop(key)
            for i, (sub, item) in enumerate(zip(subs, obj[key])):
                kept = {f: getattr(sub, f) for f in _ATTACHED if isinstance(item, dict)
                        and any(item.get(n) is not None for n in _ATTACHED[f])}
                if kept:
                    given.append((key, i, kept))
    try:
        doc = Document(**fields)
    except (TypeError, ValueError) as exc:
        raise WireError(f'{where}: {exc}') from None
    for key, i, kept in given:
        sub = getattr(doc, key)[i]
        for f, v in kept.items():
            setattr(sub, f, v)
    return doc


#: The fields attaching a chunk or match sets, and their JSON names.
_ATTACHED = {'parent_id': ('parentId', 'parent_id'), 'granularity': ('granularity',), 'adjacency': ('adjacency',)}


def _is_default(value: Any) -> bool:
    return value is None or (type(value) is int and value == 0) or (isinstance(value, list) and not value)


def _check_kept(key: str, value: Any, at: str) -> Any:
    """One of ``JINA2_KEPT``, with the type Jina 2's schema gave it (unsigned ints)."""
    ok = (isinstance(value, list) and all(type(v) is int and v >= 0 for v in value) if key == 'location'
          else type(value) is int and value >= 0)
    if not ok:
        raise WireError(f'{at} must be {JINA2_KEPT[key]} of at least 0 (Jina 2\'s field, kept here in tags), '
                        f'got {json_kind(value)}')
    return value


def _scores_to_json(scores: Any) -> dict:
    """Scores as Jina 2 wrote them: ``{"cosine": {"value": 0.5, "opName": "cosine"}}``."""
    out = {}
    for name, score in scores.items():
        if hasattr(score, 'to_dict'):
            score = score.to_dict()
        fields = dict(score) if isinstance(score, dict) else {'value': score}
        out[str(name)] = {_SCORE_OUT.get(k, k): float_to_json(v) if k == 'value' else
                          encode_value(v, 'list', f'score {name!r}') for k, v in fields.items()}
    return out


def _scores_from_json(value: Any, where: str) -> dict:
    """Each score a number or ``{"value": number, "opName": ..., "description": ..., "refId": ...}``
    (numbers: or "NaN", "Infinity", "-Infinity"); Jina 2's empty ``operands`` is taken too."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WireError(f'{where} must be an object of name -> number, got {json_kind(value)}')
    out: dict[str, Any] = {}
    for name, score in value.items():
        at = f'{where}[{name!r}]'
        if isinstance(score, dict):
            fields = {}
            for k, v in score.items():
                if k == 'operands':  # Jina 2's JSON writes [] for every score; there is no field for more
                    if v:
                        raise WireError(f'{at}.operands: scores here have no operands; send each operand as a '
                                        f'score of its own')
                    continue
                key = _SCORE_IN.get(k)
                if key is None:
                    raise WireError(f'{at} has an unknown field {k!r}; a score has value, opName, description, refId')
                if key != 'value' and not isinstance(v, str):
                    raise WireError(f'{at}.{k} must be a str, got {json_kind(v)}')
                fields[key] = v
            score = float_from_json(fields.pop('value', None), f'{at}.value')
            if any(fields.values()):
                out[name] = {'value': score, **fields}
                continue
        out[name] = float_from_json(score, at)
    return out
