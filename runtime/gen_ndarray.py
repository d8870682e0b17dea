"""Generator of documents from a numpy array: ``from_ndarray`` (one Document per slice,
the slice as its ``blob``, a view without copy).

Re-exported by ``runtime.generators`` (which see for the shared keywords).

Example
-------
>>> [d.blob.tolist() for d in from_ndarray(np.arange(4).reshape(2, 2))]
[[0, 1], [2, 3]]
"""
from __future__ import annotations

import numbers
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from .document import Document
from .gen_common import _check_size, _select

__all__ = ['from_ndarray']

# -- numpy arrays ------------------------------------------------------------------------------
def _ndarray_docs(array: np.ndarray, axis: int, size: int | None, shuffle: bool,
                  seed: Any) -> Iterator[Document]:
    n = array.shape[axis]
    order: Iterable[int] = np.random.default_rng(seed).permutation(n) if shuffle else range(n)
    # Basic indexing with a trailing Ellipsis gives a view, and a 0-d array (not a numpy
    # scalar) for 1-d input, so the blob keeps its dtype either way.
    head = (slice(None),) * axis
    for i in _select(order, size, None, None):
        yield Document(blob=array[head + (int(i), Ellipsis)])


def from_ndarray(array: Any, axis: int = 0, size: int | None = None, shuffle: bool = False,
                 *, seed: Any = None) -> Iterator[Document]:
    """One Document per slice of ``array`` along ``axis``, the slice as its ``blob``.

    The blob is a view into ``array`` (no copy) and keeps its dtype; writing into a blob
    writes into ``array``.

    Parameters
    ----------
    array : numpy.ndarray or array-like
        A numeric array; lists are converted with ``np.asarray``.
    axis : int
        The axis to slice along (negative counts from the end).
    size : int, optional
        Yield at most this many documents.
    shuffle : bool
        Yield the slices in a random order (a permutation: each exactly once).
    seed : optional
        Seed of the numpy random generator, for a reproducible shuffle.

    Returns
    -------
    Iterator[Document]
        A lazy generator.

    Raises
    ------
    TypeError
        At call time, when ``array`` is not a numeric array (or array-like).
    ValueError
        At call time, when ``axis`` is out of range or ``array`` is 0-d.

    Examples
    --------
    >>> docs = list(from_ndarray(np.zeros((4, 3), dtype=np.float32)))
    >>> len(docs), docs[0].blob.shape, docs[0].blob.dtype
    (4, (3,), dtype('float32'))
    """
    if not isinstance(array, np.ndarray):
        if isinstance(array, (str, bytes, Mapping)) or not (isinstance(array, (list, tuple))
                                                            or hasattr(array, '__array__')):
            raise TypeError(f'from_ndarray takes a numpy array (or a list of numbers), got '
                            f'{type(array).__name__}; for an iterator of arrays use '
                            f'(Document(blob=a) for a in ...)')
        try:
            array = np.asarray(array)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise TypeError(f'from_ndarray could not turn the {type(array).__name__} into a numeric '
                            f'array ({exc}); pass np.asarray(...) of numbers') from None
    if array.dtype == object or array.dtype.kind in 'USV':
        raise TypeError(f'from_ndarray takes a numeric array, got an array of dtype {array.dtype}; '
                        f'for text use (Document(text=t) for t in ...)')
    if array.ndim == 0:
        raise ValueError('from_ndarray takes an array with at least one dimension, got a 0-d array; '
                         'wrap it as Document(blob=array) instead')
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f'axis must be an int, got {type(axis).__name__}')
    if not -array.ndim <= axis < array.ndim:
        raise ValueError(f'axis {axis} is out of range for an array with {array.ndim} dimension(s) '
                         f'(shape {array.shape})')
    size = _check_size(size)
    return _ndarray_docs(array, int(axis) % array.ndim, size, bool(shuffle), seed)
