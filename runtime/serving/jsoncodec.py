"""Documents, arrays and plain values as JSON, both ways, checked field by field.

The content half of the HTTP wire (``wire.py`` holds the request and response shapes around
it). Everything that comes from the network is plain JSON: nothing is unpickled, array
dtypes are limited to numbers and booleans, and sizes must agree with shapes.

Arrays (``embedding``, ``blob``, arrays in tags and parameters) may be sent as nested JSON
lists, as the compact form ``{"__ndarray_b64__": <base64 of the raw bytes>, "dtype": "<f4",
"shape": [768]}`` (what ``Document.json()`` writes), or as Jina 2's ``{"dense": {"buffer",
"dtype", "shape"}}``; they are written as lists or in the compact form, as the caller asks
(``ARRAY_FORMATS``). Document fields go by Jina 2's camelCase names or the Python ones.
"""
from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from ..array import DocumentArray
from ..document import Document

__all__ = ['WireError', 'ARRAY_FORMATS', 'MAX_DEPTH', 'MAX_DIM', 'doc_to_json', 'doc_from_json', 'encode_array',
           'decode_array', 'encode_value', 'decode_value', 'json_kind']

#: How arrays travel: JSON lists (what curl users read) or base64 of the raw bytes (exact dtypes).
ARRAY_FORMATS = ('list', 'base64')
#: Document fields by their JSON names (Jina 2's camelCase and the Python ones) -> Python name.
_STR_FIELDS = {'text': 'text', 'uri': 'uri', 'mime_type': 'mime_type', 'mimeType': 'mime_type',
               'parent_id': 'parent_id', 'parentId': 'parent_id', 'modality': 'modality'}
_INT_FIELDS = ('granularity', 'adjacency')
#: Derived fields Jina 2 wrote into its JSON: accepted (a response may be posted back) and ignored.
_IGNORED_FIELDS = frozenset({'contentHash', 'content_hash'})
_DOC_FIELDS = sorted({'id', 'blob', 'embedding', 'buffer', 'tags', 'chunks', 'matches', 'weight',
                      *_STR_FIELDS, *_INT_FIELDS, *(f for f in ('scores', 'evaluations') if f in Document.FIELDS)})
_OUT_NAMES = {'mime_type': 'mimeType', 'parent_id': 'parentId'}
_SCORE_OUT = {'op_name': 'opName', 'ref_id': 'refId'}
_SCORE_IN = {'value': 'value', 'opName': 'op_name', 'op_name': 'op_name', 'description': 'description',
             'refId': 'ref_id', 'ref_id': 'ref_id'}
#: ``evaluations`` where the data model has it (named scores, as ``scores``).
_SCORE_FIELDS = tuple(f for f in ('scores', 'evaluations') if f in Document.FIELDS)
#: Nesting of chunks / matches accepted from the network (a guard, not a real-world limit).
MAX_DEPTH = 8


class WireError(ValueError):
    """A request (or response) that is not what the JSON shape allows; the message says
    which field and what to send instead. ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# -- arrays and plain values ------------------------------------------------------------------
def _safe_dtype(spec: Any, where: str) -> np.dtype:
    """A numeric or boolean dtype from its string; anything else (objects, structs, strings) refused."""
    if not isinstance(spec, str):
        raise WireError(f'{where}: dtype must be a numpy dtype string such as "<f4", got {json_kind(spec)}')
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError):
        raise WireError(f'{where}: unknown dtype {spec[:40]!r}; send e.g. "<f4", "float32" or "int64"') from None
    if dtype.kind not in 'biufc' or dtype.fields is not None or dtype.subdtype is not None:
        raise WireError(f'{where}: dtype {spec[:40]!r} is not allowed; arrays travel as numbers or booleans '
                        f'(kinds b, i, u, f, c)')
    return dtype


#: No dimension of an array from the network is larger (numpy refuses larger ones anyway).
MAX_DIM = 2 ** 31


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if (not isinstance(value, list) or len(value) > 32
            or not all(type(n) is int and 0 <= n < MAX_DIM for n in value)):
        raise WireError(f'{where}: shape must be a list of at most 32 ints from 0 to {MAX_DIM - 1}, '
                        f'got {json_kind(value)}')
    return tuple(value)


def _from_b64(raw: Any, dtype: Any, shape: Any, where: str) -> np.ndarray:
    dt, shp = _safe_dtype(dtype, where), _shape(shape, where)
    if not isinstance(raw, str):
        raise WireError(f'{where}: the base64 payload must be a str, got {json_kind(raw)}')
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f'{where}: the payload is not valid base64') from None
    if len(data) != math.prod(shp) * dt.itemsize:
        raise WireError(f'{where}: {len(data)} bytes do not make an array of shape {list(shp)} and dtype '
                        f'{dt.str} ({math.prod(shp) * dt.itemsize} bytes)')
    # A writable copy: a handler may change it in place, as it could a local array.
    return np.frombuffer(data, dtype=dt).reshape(shp).copy()


def decode_array(value: Any, where: str) -> np.ndarray:
    """An array from nested JSON lists, the ``__ndarray_b64__`` / ``__ndarray__`` forms of
    ``Document.json()``, or Jina 2's ``{"dense": {...}}``.

    >>> decode_array([[1, 2], [3, 4]], 'embedding').shape
    (2, 2)
    """
    if isinstance(value, dict):
        if '__ndarray_b64__' in value:
            return _from_b64(value['__ndarray_b64__'], value.get('dtype'), value.get('shape'), where)
        if isinstance(value.get('dense'), dict):
            dense = value['dense']
            return _from_b64(dense.get('buffer'), dense.get('dtype'), dense.get('shape'), where)
        if '__ndarray__' in value:
            dt, shp = _safe_dtype(value.get('dtype'), where), _shape(value.get('shape'), where)
            arr = _from_list(value['__ndarray__'], where, dt)
            if arr.shape != shp:
                raise WireError(f'{where}: the data has shape {list(arr.shape)}, not the {list(shp)} given')
            return arr
        raise WireError(f'{where}: an array is a list of numbers, or {{"__ndarray_b64__": ..., "dtype": ..., '
                        f'"shape": ...}}; got an object with keys {sorted(value)[:6]}')
    if isinstance(value, list):
        return _from_list(value, where, None)
    raise WireError(f'{where}: an array is a (nested) list of numbers or a base64 object, got {json_kind(value)}')


def _from_list(data: Any, where: str, dtype: np.dtype | None) -> np.ndarray:
    try:
        arr = np.asarray(data)  # what the JSON holds: strings stay strings, to be refused
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f'{where}: not a rectangular list of numbers ({str(exc)[:120]})') from None
    if arr.dtype.kind not in 'biufc':
        raise WireError(f'{where}: the list must hold only numbers (or booleans), got {arr.dtype} values')
    if dtype is not None:
        try:
            arr = arr.astype(dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise WireError(f'{where}: the numbers do not fit dtype {dtype.str} ({str(exc)[:120]})') from None
    return arr


def encode_array(arr: np.ndarray, arrays: str) -> Any:
    """An array as a JSON list (``'list'``) or the compact base64 form (``'base64'``).

    >>> encode_array(np.zeros(2, np.float32), 'base64')['dtype']
    '<f4'
    """
    if arr.dtype.kind not in 'biufcU' or arr.dtype.fields is not None:
        raise TypeError(f'an array of dtype {arr.dtype} cannot be sent as JSON; use numbers')
    if arrays == 'list' or arr.dtype.kind == 'U':
        return arr.tolist()
    return {'__ndarray_b64__': base64.b64encode(np.ascontiguousarray(arr).data).decode('ascii'),
            'dtype': arr.dtype.str, 'shape': list(arr.shape)}


def encode_value(value: Any, arrays: str = 'list', where: str = 'value') -> Any:
    """A tag, parameter or route value as JSON: arrays as lists or base64, bytes as
    ``{"__bytes__": base64}``, numpy scalars as numbers. Raises TypeError naming ``where``
    for what JSON cannot carry (sets, objects).

    >>> encode_value({'n': np.int64(1), 'b': b'x'})
    {'n': 1, 'b': {'__bytes__': 'eA=='}}
    """
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): encode_value(v, arrays, f'{where}[{k!r}]') for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v, arrays, where) for v in value]
    if isinstance(value, np.ndarray):
        return encode_array(value, arrays)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {'__bytes__': base64.b64encode(bytes(value)).decode('ascii')}
    raise TypeError(f'{where} holds a {type(value).__name__}, which JSON cannot carry; use numbers, str, '
                    f'lists, dicts, bytes or numeric arrays')


def decode_value(value: Any, where: str = 'value', depth: int = 0) -> Any:
    """Reverse ``encode_value``: the array and bytes markers become arrays and bytes again
    (numeric dtypes only); everything else stays the JSON value it is.

    >>> decode_value({'b': {'__bytes__': 'eA=='}})
    {'b': b'x'}
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
        return {k: decode_value(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v, where, depth + 1) for v in value]
    return value


# -- documents --------------------------------------------------------------------------------
def doc_to_json(doc: Document, arrays: str = 'list') -> dict:
    """A Document as a JSON-ready dict: the fields that differ from their defaults, arrays
    as lists or base64, ``buffer`` as base64, chunks and matches nested.

    >>> doc_to_json(Document(id='a', embedding=np.zeros(2, 'f4')))
    {'id': 'a', 'embedding': [0.0, 0.0]}
    """
    return _dict_to_json(doc.to_dict(), arrays)


def _dict_to_json(d: dict, arrays: str) -> dict:
    out = {}
    for name, value in d.items():
        if name in ('embedding', 'blob'):
            value = encode_array(value, arrays)
        elif name == 'buffer':
            value = base64.b64encode(value).decode('ascii')
        elif name in ('chunks', 'matches'):
            value = [_dict_to_json(c, arrays) for c in value]
        elif name in ('scores', 'evaluations'):
            value = _scores_to_json(value)
        elif name == 'tags':
            value = encode_value(value, arrays, 'Document.tags')
        elif not isinstance(value, (str, int, float)):
            value = encode_value(value, arrays, f'Document.{name}')
        elif isinstance(value, np.generic):
            value = value.item()
        out[_OUT_NAMES.get(name, name)] = value
    return out


def doc_from_json(obj: Any, where: str = 'data[0]', depth: int = 0) -> Document:
    """A Document from one item of ``data``: a dict of fields (Jina 2's camelCase names or
    the Python ones) or a str (a text document). Every field is type-checked."""
    if isinstance(obj, str):
        return Document(text=obj)
    if not isinstance(obj, dict):
        raise WireError(f'{where} must be a document object such as {{"text": "..."}} or a str, got {json_kind(obj)}')
    if depth > MAX_DEPTH:
        raise WireError(f'{where}: chunks / matches nested more than {MAX_DEPTH} levels deep')
    fields: dict[str, Any] = {}
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
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise WireError(f'{at} must be a number, got {json_kind(value)}')
            fields[key] = float(value)
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
                fields[key] = DocumentArray([doc_from_json(v, f'{at}[{i}]', depth + 1) for i, v in enumerate(value)])
        elif key not in _IGNORED_FIELDS:
            raise WireError(f'{where} has an unknown field {key!r}; document fields are {", ".join(_DOC_FIELDS)}')
    # Chunks and matches last: attaching them reads the parent's granularity and id.
    for key in ('chunks', 'matches'):
        if key in fields:
            fields[key] = fields.pop(key)
    try:
        return Document(**fields)
    except (TypeError, ValueError) as exc:
        raise WireError(f'{where}: {exc}') from None


def _scores_to_json(scores: Any) -> dict:
    """Scores as Jina 2 wrote them: ``{"cosine": {"value": 0.5, "opName": "cosine"}}``."""
    out = {}
    for name, score in scores.items():
        if hasattr(score, 'to_dict'):
            score = score.to_dict()
        fields = dict(score) if isinstance(score, dict) else {'value': score}
        out[str(name)] = {_SCORE_OUT.get(k, k): encode_value(v, 'list', f'score {name!r}') for k, v in fields.items()}
    return out


def _scores_from_json(value: Any, where: str) -> dict:
    """Each score a number or ``{"value": number, "opName": ..., "description": ..., "refId": ...}``."""
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
                key = _SCORE_IN.get(k)
                if key is None:
                    raise WireError(f'{at} has an unknown field {k!r}; a score has value, opName, description, refId')
                if key != 'value' and not isinstance(v, str):
                    raise WireError(f'{at}.{k} must be a str, got {json_kind(v)}')
                fields[key] = v
            score = fields.pop('value', None)
            if not isinstance(score, (int, float)) or isinstance(score, bool):
                raise WireError(f'{at}.value must be a number, got {json_kind(score)}')
            if any(fields.values()):
                out[name] = {'value': score, **fields}
                continue
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise WireError(f'{at} must be a number (or {{"value": number}}), got {json_kind(score)}')
        out[name] = score
    return out


def json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words, for error messages.

    >>> json_kind({}), json_kind(None)
    ('an object', 'null')
    """
    names = {dict: 'an object', list: 'a list', str: 'a str', bool: 'a boolean', int: 'an int',
             float: 'a number', type(None): 'null'}
    return names.get(type(value), type(value).__name__)
