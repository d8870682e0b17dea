"""Plain values in Documents: validation where they are set, equality, and JSON markers.

A Document crosses process boundaries (pickled, with its arrays as raw bytes in shared
memory), so what it holds is checked where it is set: arrays must not hold Python objects
(their raw bytes would be pointers), and tags must be plain data that pickles.

Example
-------
>>> check_array(np.zeros(3, dtype=object), 'embedding')
Traceback (most recent call last):
...
TypeError: Document.embedding cannot hold an array of dtype object (its elements are Python objects, which cannot travel between processes as raw bytes); pass a numeric array, e.g. np.asarray(values, dtype=np.float32)
>>> check_plain({'f': lambda: 1}, 'tags')  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
TypeError: Document.tags['f'] holds a function, which cannot be pickled to another process (...); tags take plain values: str, int, float, bool, None, bytes, lists, dicts and numpy arrays
"""
from __future__ import annotations

import ast
import base64
import numbers
import pickle
from typing import Any, Mapping

import numpy as np

__all__ = ['check_array', 'check_plain', 'describe_dtype']

# Array kinds whose ``tolist()`` is JSON-safe and converts back exactly; the rest
# (complex, datetime, bytes, void) travel as base64 of their raw bytes.
_JSON_LIST_KINDS = frozenset('biufU')
#: Leaf types of tags that need no check.
_PLAIN = (str, int, float, bool, type(None), bytes, np.generic)


def _where(field: str, doc_id: str | None) -> str:
    return f'Document {doc_id!r}: .{field}' if doc_id else f'Document.{field}'


def check_array(arr: np.ndarray, field: str, doc_id: str | None = None) -> np.ndarray:
    """Return ``arr`` if it can travel between processes as raw bytes; raise TypeError,
    naming the field (and the document when known), if it holds Python objects.

    >>> check_array(np.zeros((2, 3), np.float32), 'embedding').shape
    (2, 3)
    """
    dt = arr.dtype
    if dt.hasobject:
        what = 'dtype object' if dt == object else f'dtype {dt} (it has object fields)'
        raise TypeError(f'{_where(field, doc_id)} cannot hold an array of {what} (its elements are Python '
                        f'objects, which cannot travel between processes as raw bytes); pass a numeric array, '
                        f'e.g. np.asarray(values, dtype=np.float32)')
    return arr


def describe_dtype(dt: np.dtype) -> str | np.dtype:
    """What to put in a message header so the receiver rebuilds ``dt`` exactly: the short
    string when it says everything, else the dtype itself (structured dtypes keep their
    field names, which ``dt.str`` ('|V8') drops).

    >>> describe_dtype(np.dtype(np.float32)), describe_dtype(np.dtype([('a', 'i4')])).names
    ('<f4', ('a',))
    """
    s = dt.str
    if dt.names is None and dt.subdtype is None and np.dtype(s) == dt:
        return s
    return dt


def check_plain(value: Any, field: str, path: str = '') -> None:
    """Raise TypeError, naming the key path, if ``value`` holds something that cannot be
    pickled to another process (a lambda, a lock, an open file...)."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_plain(v, field, f'{path}[{k!r}]')
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        for i, v in enumerate(value):
            check_plain(v, field, f'{path}[{i}]')
        return
    if isinstance(value, np.ndarray):
        if not value.dtype.hasobject:
            return
    try:
        pickle.dumps(value, protocol=5)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same to the user
        kind = 'a function' if callable(value) else f'a {type(value).__name__}'
        raise TypeError(f'Document.{field}{path} holds {kind}, which cannot be pickled to another process '
                        f'({type(exc).__name__}: {exc}); {field} take plain values: str, int, float, bool, None, '
                        f'bytes, lists, dicts and numpy arrays') from None


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


def _dtype_fields(dt: np.dtype) -> dict:
    # dt.str of a structured dtype ('|V8') drops its field names: keep numpy's own .npy
    # header description instead, read back with ast.literal_eval (no code runs).
    if describe_dtype(dt) is dt:
        return {'dtype_descr': repr(np.lib.format.dtype_to_descr(dt))}
    return {'dtype': dt.str}


def _dtype_of(marker: Mapping) -> np.dtype:
    if 'dtype_descr' in marker:
        return np.lib.format.descr_to_dtype(ast.literal_eval(marker['dtype_descr']))
    return np.dtype(marker['dtype'])


def _to_jsonable(value: Any, raw_arrays: bool = False) -> Any:
    """Turn arrays and bytes into JSON-safe markers that ``_from_jsonable`` reverses
    (``raw_arrays``: every array as base64 of its bytes, compact and exact).

    >>> _to_jsonable({'v': np.arange(2, dtype=np.int8)})
    {'v': {'__ndarray__': [0, 1], 'dtype': '|i1', 'shape': [2]}}
    """
    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind in _JSON_LIST_KINDS and not raw_arrays:
            data = value.tolist()
        elif kind == 'O':
            data = _to_jsonable(value.tolist(), raw_arrays)
        else:
            return {'__ndarray_b64__': base64.b64encode(np.ascontiguousarray(value).tobytes()).decode('ascii'),
                    **_dtype_fields(value.dtype), 'shape': list(value.shape)}
        return {'__ndarray__': data, 'dtype': value.dtype.str, 'shape': list(value.shape)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {'__bytes__': base64.b64encode(bytes(value)).decode('ascii')}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _to_jsonable(v, raw_arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v, raw_arrays) for v in value]
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
            return np.frombuffer(raw, dtype=_dtype_of(value)).reshape(value['shape']).copy()
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


# -- checks of single field values, as Document's setters apply them ------------------------
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
