"""Arrays and bytes in the JSON form of Jina 2's protobuf messages, read into numpy and bytes.

Jina 2's ``doc.json()`` / ``doc.dict()`` and ``DocumentArray.save('x.json')`` wrote a
Document through protobuf's JSON mapping: an embedding or blob is an ``NdArrayProto``,

    {"dense": {"buffer": "<base64 of the raw bytes>", "dtype": "<i8", "shape": [2]}}

older writers add quantization to the dense form (``"quantization": "FP16"`` or ``"UINT8"``
with ``original_dtype``, ``min_val`` and ``scale``), and a sparse array (scipy, torch or
TensorFlow in Jina 2) is ``{"sparse": {"indices": <dense>, "values": <dense>, "shape": [...]}}``
with one row of indices per stored value. A Document holds numpy arrays, so a sparse array
is read dense. Protobuf's JSON names fields in camelCase unless told otherwise
(``originalDtype``, ``minVal``), writes int64 numbers as strings and bytes (a ``buffer``
field too) as base64: all of these are read.

Jina 2 quantized only floats, so quantization restores float16, float32 or float64 and
nothing else; a restored or densified array is limited to ``MAX_ARRAY_BYTES``, checked
before it is allocated, since a few bytes of shape or dtype must not cost gigabytes.

This is the data model's reader, used by ``Document(dict | str)`` and so by
``DocumentArray.load``. The HTTP gateway's ``runtime.serving.jsonarrays`` reads the plain
dense form with checks of its own; ``decode_ndarray_proto`` takes the exception class to
raise, so that module can call it with its ``WireError``.

Example
-------
>>> decode_ndarray_proto({'dense': {'buffer': 'AQAAAAIAAAA=', 'dtype': '<i4', 'shape': [2]}}, 'embedding')
array([1, 2], dtype=int32)
"""
from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Mapping

import numpy as np

__all__ = ['decode_ndarray_proto', 'decode_proto_bytes']

#: The largest array (bytes) read from a message that is smaller than the array: a quantized
#: one restored to its original dtype (up to 8x its codes), a sparse one read dense (its shape
#: costs nothing to send). Checked before anything is allocated; the same 64 MiB as the HTTP
#: side's ``MAX_TEXT_ARRAY_BYTES``. A plain dense array is its buffer, so it is bounded by the
#: message that holds it, already in memory, and has no limit here.
MAX_ARRAY_BYTES = 64 << 20
#: Jina 2 quantized float32 and float64 arrays (UINT8 float16 too) and restored that dtype.
_QUANTIZED_ORIGINALS = ('float16', 'float32', 'float64')
#: Protobuf's enum names of ``DenseNdArrayProto.QuantizationMode``, and their numbers.
_QUANTIZATION = {'NONE': 0, 'FP16': 1, 'UINT8': 2}
_NONFINITE = {'NaN': math.nan, 'Infinity': math.inf, '-Infinity': -math.inf}


def decode_ndarray_proto(value: Mapping[str, Any], where: str,
                         error: type[Exception] = ValueError) -> np.ndarray | None:
    """The numpy array of an ``NdArrayProto`` in JSON form: dense (quantized or not) or
    sparse (read dense). None when the message holds no data, as Jina 2 read an empty one.

    Parameters
    ----------
    value : Mapping
        ``{"dense": {...}}`` or ``{"sparse": {...}}`` (``cls_name`` / ``parameters``, which
        named the sparse library in Jina 2, are ignored).
    where : str
        The field, for error messages (e.g. ``'Document.embedding'``).
    error : type
        The exception raised for a malformed message (ValueError by default), and for a
        quantized or sparse array larger than ``MAX_ARRAY_BYTES`` once restored or dense.

    Examples
    --------
    >>> decode_ndarray_proto({'sparse': {'indices': {'buffer': 'AQAAAAAAAAA=', 'dtype': '<i8', 'shape': [1, 1]},
    ...                                  'values': {'buffer': 'AABAQA==', 'dtype': '<f4', 'shape': [1]},
    ...                                  'shape': ['3']}}, 'embedding')
    array([0., 3., 0.], dtype=float32)
    """
    if isinstance(value.get('dense'), Mapping):
        return _dense(value['dense'], f'{where} (dense)', error)
    if isinstance(value.get('sparse'), Mapping):
        return _sparse(value['sparse'], f'{where} (sparse)', error)
    raise error(f'{where}: an NdArrayProto is {{"dense": {{"buffer", "dtype", "shape"}}}} or {{"sparse": ...}}, '
                f'got an object with keys {sorted(map(str, value))[:6]}')


def decode_proto_bytes(value: str, where: str, error: type[Exception] = ValueError, hint: str = '') -> bytes:
    """A protobuf ``bytes`` field as its JSON form holds it: base64, standard or URL-safe,
    padded or not (protobuf's JSON parser takes all of these). ``hint`` ends the error
    message of a str that is no base64.

    >>> decode_proto_bytes('aGk=', 'buffer'), decode_proto_bytes('aGk', 'buffer')
    (b'hi', b'hi')
    """
    text = value.strip()
    if '-' in text or '_' in text:
        text = text.replace('-', '+').replace('_', '/')
    try:
        return base64.b64decode(text + '=' * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise error(f'{where} is a str that is not base64, the form protobuf JSON gives bytes{hint}') from None


# -- the parts of a message -----------------------------------------------------------------
def _field(msg: Mapping[str, Any], name: str) -> Any:
    """A field by its proto name or by the camelCase name of protobuf's default JSON."""
    if name in msg:
        return msg[name]
    head, *rest = name.split('_')
    return msg.get(head + ''.join(w.title() for w in rest))


def _dtype(spec: Any, where: str, error: type[Exception]) -> np.dtype:
    if not isinstance(spec, str) or not spec:
        raise error(f'{where}: dtype must be a numpy dtype string such as "<f4", got {spec!r}')
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError):
        raise error(f'{where}: unknown dtype {spec[:40]!r}; expected e.g. "<f4", "float32" or "<i8"') from None
    # Objects would be pointers read from the file; structured dtypes were never written.
    if dtype.kind not in 'biufcUSmM' or dtype.fields is not None or dtype.subdtype is not None or not dtype.itemsize:
        raise error(f'{where}: dtype {spec[:40]!r} cannot be read from raw bytes; arrays are read as numbers, '
                    f'booleans, str or bytes')
    return dtype


def _shape(value: Any, where: str, error: type[Exception]) -> tuple[int, ...]:
    # uint32 shapes are JSON numbers; the sparse shape is int64, which protobuf writes as str.
    if isinstance(value, list) and len(value) <= 32:
        try:
            dims = tuple(int(n) if isinstance(n, str) and n.isdigit() else n for n in value)
        except ValueError:
            dims = ()
        if all(type(n) is int and 0 <= n < 2 ** 31 for n in dims) and len(dims) == len(value):
            return dims
    raise error(f'{where}: shape must be a list of at most 32 non-negative ints, got {value!r:.80}')


def _float(value: Any, name: str, where: str, error: type[Exception]) -> float:
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if value is None:
        return 0.0  # proto3 leaves out fields that hold their default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f'{where}: {name} must be a number, got {value!r:.40}')
    try:
        return float(value)
    except OverflowError:  # a JSON integer of hundreds of digits
        raise error(f'{where}: {name} {str(value)[:20]}... is beyond any float; pass a finite number') from None


def _dense(msg: Mapping[str, Any], where: str, error: type[Exception]) -> np.ndarray | None:
    raw = msg.get('buffer')
    if not raw:  # Jina 2 read a message without data as no array at all
        return None
    if not isinstance(raw, str):
        raise error(f'{where}: buffer must be a base64 str, got {type(raw).__name__}')
    data = decode_proto_bytes(raw, f'{where}: buffer', error)
    dtype = _dtype(msg.get('dtype'), where, error)
    shape = _shape(msg.get('shape', []), where, error)
    if len(data) != math.prod(shape) * dtype.itemsize:
        raise error(f'{where}: {len(data)} bytes do not make an array of shape {list(shape)} and dtype {dtype.str} '
                    f'({math.prod(shape) * dtype.itemsize} bytes)')
    arr = np.frombuffer(data, dtype=dtype)
    mode = _field(msg, 'quantization') or 0
    mode = _QUANTIZATION.get(mode, mode) if isinstance(mode, str) else mode
    if mode not in (0, 1, 2):
        raise error(f'{where}: unknown quantization {mode!r}; Jina 2 wrote NONE, FP16 or UINT8')
    if mode:
        arr = _dequantize(arr, msg, mode, where, error)
    if arr.dtype.kind == 'U' and (arr.view(np.dtype('u4').newbyteorder(arr.dtype.byteorder)) > 0x10FFFF).any():
        raise error(f'{where}: the buffer holds values that are no Unicode characters (dtype {dtype.str})')
    # A writable array of its own (frombuffer's is read-only): a handler may change it in place.
    return arr.reshape(shape).copy() if not mode else arr.reshape(shape)


def _sparse(msg: Mapping[str, Any], where: str, error: type[Exception]) -> np.ndarray:
    shape = _shape(_field(msg, 'shape') or _field(msg, 'dense_shape') or [], where, error)
    if not shape:
        raise error(f'{where}: a sparse array needs its dense "shape"')
    indices = _dense(msg.get('indices') or {}, f'{where} indices', error)
    values = _dense(msg.get('values') or {}, f'{where} values', error)
    if values is None:
        values = np.zeros(0, np.float32)  # (Jina 2 wrote no buffer for an all-zero array)
    if indices is None:
        indices = np.zeros((0, len(shape)), np.int64)
    if values.ndim != 1 or values.dtype.kind not in 'biufc' or indices.dtype.kind not in 'iu':
        raise error(f'{where}: values must be 1-D numbers and indices ints, got values of dtype {values.dtype} '
                    f'and shape {list(values.shape)}, indices of dtype {indices.dtype}')
    if indices.ndim == 1 and len(shape) == 1:
        indices = indices[:, None]
    if indices.shape != (len(values), len(shape)):
        raise error(f'{where}: indices of shape {list(indices.shape)} do not give one row of {len(shape)} '
                    f'coordinates for each of the {len(values)} values')
    if len(indices) and ((indices < 0).any() or (indices >= np.asarray(shape)).any()):
        raise error(f'{where}: indices fall outside the shape {list(shape)}')
    _check_sparse_bytes(shape, values.dtype, where, error)
    dense = np.zeros(shape, dtype=values.dtype)
    # Repeated coordinates add up, as scipy's and torch's conversions to dense do.
    np.add.at(dense, tuple(indices.T), values)
    return dense


def _check_sparse_bytes(shape: tuple[int, ...], dtype: np.dtype, where: str, error: type[Exception]) -> None:
    need = math.prod(shape) * dtype.itemsize
    if need > MAX_ARRAY_BYTES:
        raise error(f'{where}: a sparse array of shape {list(shape)} and dtype {dtype.str} takes {need} bytes '
                    f'read dense, more than the {MAX_ARRAY_BYTES} read from a message; Documents keep dense '
                    f'arrays, so store fewer dimensions (or split the array over several Documents)')


def _dequantize(codes: np.ndarray, msg: Mapping[str, Any], mode: int, where: str,
                error: type[Exception]) -> np.ndarray:
    """Jina 2's FP16 / UINT8 codes restored to the float dtype they were made from (UINT8:
    ``code * scale + min_val``), checked before the restored array is allocated."""
    name, codes_kind = ('FP16', 'f2') if mode == 1 else ('UINT8', 'u1')
    if codes.dtype.kind + str(codes.dtype.itemsize) != codes_kind:
        raise error(f'{where}: {name} quantization stores codes of dtype {codes_kind}, got a buffer of dtype '
                    f'{codes.dtype.str}; pass "dtype": "{np.dtype(codes_kind).str}", or no "quantization" for a '
                    f'plain array')
    spec = _field(msg, 'original_dtype')
    original = _dtype(spec, f'{where} original_dtype', error)
    if original.name not in _QUANTIZED_ORIGINALS:
        raise error(f'{where}: original_dtype {str(spec)[:40]!r} cannot be restored from {name} codes; Jina 2 '
                    f'quantized only floats, so pass one of {", ".join(_QUANTIZED_ORIGINALS)}, or store the array '
                    f'without "quantization"')
    need = codes.size * original.itemsize
    if need > MAX_ARRAY_BYTES:
        raise error(f'{where}: {codes.size} {name} codes restored to {original.name} take {need} bytes, more than '
                    f'the {MAX_ARRAY_BYTES} read from a quantized message; store the array without "quantization" '
                    f'(a plain array is read as large as its buffer) or split it over several Documents')
    if mode == 1:
        return codes.astype(original)
    scale = _float(_field(msg, 'scale'), 'scale', where, error)
    low = _float(_field(msg, 'min_val'), 'min_val', where, error)
    # Codes run from 0 to 255, so every product and restored value lies within these: checked
    # here, a NaN or an overflow would otherwise fill the array with only a RuntimeWarning.
    high = low + 255 * scale
    if not (math.isfinite(scale) and math.isfinite(low) and math.isfinite(high)
            and max(abs(low), abs(high), abs(255 * scale)) <= float(np.finfo(original).max)):
        raise error(f'{where}: UINT8 scale {scale!r} and min_val {low!r} restore values from {low!r} to {high!r}, '
                    f'which {original.name} cannot hold; pass finite numbers within its range (Jina 2 wrote the '
                    f'array\'s minimum and (max - min) / 255)')
    out = codes.astype(original)
    out *= scale
    out += low
    return out
