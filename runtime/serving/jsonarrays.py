"""Arrays and non-finite floats as JSON, both ways, and the error a bad one raises.

The lowest layer of the HTTP wire's content (``jsoncodec`` builds documents and values on
it). Arrays come as nested JSON lists of numbers, as ``{"__ndarray__": <nested list>,
"dtype", "shape"}``, ``{"__ndarray_b64__": <base64>, "dtype", "shape"}`` or Jina 2's
``{"dense": {"buffer", "dtype", "shape"}}``; dtypes are limited to numbers, booleans and
fixed-width str, and sizes must agree with shapes before anything is allocated.
"""
from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from ..protoarrays import decode_ndarray_proto

__all__ = ['WireError', 'ARRAY_FORMATS', 'MAX_DIM', 'MAX_TEXT_ARRAY_BYTES', 'NONFINITE', 'decode_array',
           'encode_array', 'float_name', 'float_to_json', 'float_from_json', 'json_kind']

#: A str array sent as a list takes (strings x the longest) x 4 bytes in numpy: a guard
#: against one long string among many short ones.
MAX_TEXT_ARRAY_BYTES = 64 << 20
#: Floats that are not finite, as protobuf's JSON mapping (and Jina 2) wrote them.
NONFINITE = {'NaN': math.nan, 'Infinity': math.inf, '-Infinity': -math.inf}
#: How arrays travel: JSON lists (what curl users read) or base64 of the raw bytes (exact dtypes).
ARRAY_FORMATS = ('list', 'base64')


class WireError(ValueError):
    """A request (or response) that is not what the JSON shape allows; the message says
    which field and what to send instead. ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


# -- floats that are not finite ---------------------------------------------------------------
def float_name(x: float) -> str:
    return 'NaN' if x != x else ('Infinity' if x > 0 else '-Infinity')


def float_to_json(x: Any) -> Any:
    """A float field: the number, or "NaN" / "Infinity" / "-Infinity"."""
    x = float(x)
    return x if math.isfinite(x) else float_name(x)


def float_from_json(value: Any, at: str) -> float:
    """A float field from a number or one of protobuf's names of non-finite floats."""
    if isinstance(value, str) and value in NONFINITE:
        return NONFINITE[value]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise WireError(f'{at} must be a number (or "NaN", "Infinity", "-Infinity"), got {json_kind(value)}')
    return float(value)


# -- arrays ------------------------------------------------------------------------------------
def _safe_dtype(spec: Any, where: str, text: bool = False) -> np.dtype:
    """A numeric or boolean dtype from its string (``text``: a fixed-width str one too);
    anything else (objects, structs, bytes) refused."""
    if not isinstance(spec, str):
        raise WireError(f'{where}: dtype must be a numpy dtype string such as "<f4", got {json_kind(spec)}')
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError):
        raise WireError(f'{where}: unknown dtype {spec[:40]!r}; send e.g. "<f4", "float32" or "int64"') from None
    kinds = 'biufcU' if text else 'biufc'
    if (dtype.kind not in kinds or dtype.fields is not None or dtype.subdtype is not None
            or (dtype.kind == 'U' and dtype.itemsize == 0)):
        raise WireError(f'{where}: dtype {spec[:40]!r} is not allowed; arrays travel as numbers or booleans '
                        f'(kinds b, i, u, f, c), or as str (kind U, e.g. "<U8") in the __ndarray__ and base64 forms')
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
    # str arrays are safe here: the payload's size is the array's, checked below.
    dt, shp = _safe_dtype(dtype, where, text=True), _shape(shape, where)
    if not isinstance(raw, str):
        raise WireError(f'{where}: the base64 payload must be a str, got {json_kind(raw)}')
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f'{where}: the payload is not valid base64') from None
    if len(data) != math.prod(shp) * dt.itemsize:
        raise WireError(f'{where}: {len(data)} bytes do not make an array of shape {list(shp)} and dtype '
                        f'{dt.str} ({math.prod(shp) * dt.itemsize} bytes)')
    if dt.kind == 'U':  # UCS-4 code units: past 0x10FFFF numpy cannot hand them out as str
        codes = np.frombuffer(data, dtype=np.dtype('u4').newbyteorder(dt.byteorder))
        if (codes > 0x10FFFF).any():
            raise WireError(f'{where}: the payload holds values that are no Unicode characters (dtype {dt.str})')
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
        dense = value.get('dense')
        if isinstance(dense, dict) and dense.get('quantization') in (None, 'NONE', 0):
            return _from_b64(dense.get('buffer'), dense.get('dtype'), dense.get('shape'), where)
        if isinstance(dense, dict) or isinstance(value.get('sparse'), dict):
            # Jina 2's quantized and sparse forms: restored as the data model reads them
            # (bounded in bytes before allocating), then held to the wire's dtypes.
            arr = decode_ndarray_proto(value, where, WireError)
            if arr is None or arr.dtype.kind not in 'biufc':
                raise WireError(f'{where}: the array holds {"no data" if arr is None else arr.dtype}; arrays '
                                f'travel as numbers or booleans')
            return arr
        if '__ndarray__' in value:
            dt, shp = _safe_dtype(value.get('dtype'), where, text=True), _shape(value.get('shape'), where)
            if dt.kind == 'U':
                return _from_text_list(value['__ndarray__'], dt, shp, where)
            arr = _from_list(value['__ndarray__'], where, dt)
            if arr.size == 0 and math.prod(shp) == 0:
                arr = arr.reshape(shp)  # [] stands for every empty shape: (0,), (0, 3) ...
            if arr.shape != shp:
                raise WireError(f'{where}: the data has shape {list(arr.shape)}, not the {list(shp)} given')
            return arr
        raise WireError(f'{where}: an array is a list of numbers, or {{"__ndarray_b64__": ..., "dtype": ..., '
                        f'"shape": ...}}; got an object with keys {sorted(value)[:6]}')
    if isinstance(value, list):
        return _from_list(value, where, None)
    raise WireError(f'{where}: an array is a (nested) list of numbers or a base64 object, got {json_kind(value)}')


#: What the leaves of a JSON list of numbers may be.
_NUMBER_TYPES = frozenset({int, float, bool})


def _leaf_types(data: Any) -> set:
    """The types of a JSON list's leaves, found without numpy building a str array: for a
    list of numbers and one long str, that array takes (numbers x the str's length x 4)
    bytes (~4 GB from a 200 KB body)."""
    if type(data) is list and data and type(data[0]) is not list:
        return set(map(type, data))  # (a flat list, the usual embedding: at C speed)
    try:
        leaves = np.asarray(data, dtype=object).ravel().tolist()  # (pointers: 8 bytes a leaf)
    except (TypeError, ValueError):
        return {list}  # not rectangular: refused below as such
    return set(map(type, leaves))


def _from_list(data: Any, where: str, dtype: np.dtype | None) -> np.ndarray:
    kinds = _leaf_types(data)
    if list in kinds or dict in kinds:
        raise WireError(f'{where}: not a rectangular list of numbers (its rows differ in length, or mix lists '
                        f'and numbers)')
    if not kinds <= _NUMBER_TYPES:
        other = sorted(k.__name__ for k in kinds - _NUMBER_TYPES)
        raise WireError(f'{where}: the list must hold only numbers (or booleans), got {", ".join(other)} values; '
                        f'send a str array as {{"__ndarray__": [...], "dtype": "<U8", "shape": [...]}}')
    try:
        arr = np.asarray(data)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError(f'{where}: not a rectangular list of numbers ({str(exc)[:120]})') from None
    if arr.dtype.kind not in 'biufc':
        raise WireError(f'{where}: the list must hold only numbers (or booleans), got {arr.dtype} values; '
                        f'send a str array as {{"__ndarray__": [...], "dtype": "<U8", "shape": [...]}}')
    if dtype is not None:
        try:
            arr = arr.astype(dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise WireError(f'{where}: the numbers do not fit dtype {dtype.str} ({str(exc)[:120]})') from None
    return arr


def _from_text_list(data: Any, dtype: np.dtype, shape: tuple[int, ...], where: str) -> np.ndarray:
    """A str array from ``{"__ndarray__": [...], "dtype": "<U3", "shape": [...]}``: the
    nesting must match ``shape`` and every leaf be a str that fits ``dtype``; checked before
    numpy allocates (strings x the widest x 4 bytes)."""
    level = [data]
    for depth, n in enumerate(shape):
        nxt: list = []
        for item in level:
            if not isinstance(item, list) or len(item) != n:
                raise WireError(f'{where}: the data does not have the shape {list(shape)} given (at depth {depth})')
            nxt.extend(item)
        level = nxt
    flat = level
    if not all(isinstance(s, str) for s in flat):
        raise WireError(f'{where}: an array of dtype {dtype.str} must hold only str')
    width = dtype.itemsize // 4
    longest = max(map(len, flat), default=0)
    if longest > width:
        raise WireError(f'{where}: a str of {longest} characters does not fit dtype {dtype.str}; send a wider '
                        f'dtype, e.g. "<U{longest}"')
    need = len(flat) * dtype.itemsize
    if need > MAX_TEXT_ARRAY_BYTES:
        raise WireError(f'{where}: {len(flat)} strings of dtype {dtype.str} would take {need} bytes, more than '
                        f'{MAX_TEXT_ARRAY_BYTES}; send fewer strings, or a narrower dtype')
    return np.array(flat, dtype=dtype).reshape(shape)


def encode_array(arr: np.ndarray, arrays: str, where: str = 'the array', typed: bool = True) -> Any:
    """An array as JSON, in the form ``arrays`` asks for where that form carries it exactly:
    ``'base64'`` the compact base64 form; ``'list'`` a JSON list, except complex arrays and
    arrays holding NaN / ±Infinity (base64 form) and str arrays (``__ndarray__`` with dtype
    and shape). ``typed``: the field is an array (``embedding``, ``blob``), so a bare list
    reads back as one; there a 0-d array or an empty one of more than one dimension keeps
    its shape in the ``__ndarray__`` form. Raises TypeError naming ``where`` for dtypes JSON
    cannot carry (objects, structs, bytes).

    >>> encode_array(np.zeros(2, np.float32), 'base64')['dtype']
    '<f4'
    >>> encode_array(np.array([1.0, np.nan]), 'list')['dtype']  # no bare NaN in strict JSON
    '<f8'
    """
    kind = arr.dtype.kind
    if kind not in 'biufcU' or arr.dtype.fields is not None or arr.dtype.subdtype is not None:
        raise TypeError(f'{where} is an array of dtype {arr.dtype}, which JSON cannot carry; use numbers, '
                        f'booleans or str')
    if arrays != 'list' or kind == 'c' or (kind == 'f' and not np.isfinite(arr).all()):
        return {'__ndarray_b64__': base64.b64encode(np.ascontiguousarray(arr).data).decode('ascii'),
                'dtype': arr.dtype.str, 'shape': list(arr.shape)}
    if kind == 'U' or (typed and (arr.ndim == 0 or (arr.size == 0 and arr.ndim > 1))):
        return {'__ndarray__': arr.tolist(), 'dtype': arr.dtype.str, 'shape': list(arr.shape)}
    return arr.tolist()


def json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words, for error messages.

    >>> json_kind({}), json_kind(None)
    ('an object', 'null')
    """
    names = {dict: 'an object', list: 'a list', str: 'a str', bool: 'a boolean', int: 'an int',
             float: 'a number', type(None): 'null'}
    return names.get(type(value), type(value).__name__)
