"""Named scores: ``doc.scores['cosine']`` and ``doc.evaluations['recall']``, as in Jina 2.

A ``NamedScore`` carries ``value``, ``op_name``, ``description`` and ``ref_id`` (Jina 2's
fields) and behaves as its value wherever a number is expected: it compares, sorts,
formats and converts (``float(s)``, ``np.asarray([s1, s2])``) as ``s.value``, so code that
treated scores as plain floats keeps working. ``NamedScores`` is the dict of them: assigning
a number wraps it, reading a missing name creates an empty score (Jina 2 did, so that
``d.scores['cosine'].value = 0.5`` works on a fresh document).

Both pickle compactly (a score with only a value travels as a float).

A score's name says which way is better, one meaning everywhere (the shard merge, the
bundled rankers): the names in ``DISTANCE_SCORES`` are distances, smaller is better, as
Jina 2's ``DocumentArray.match`` wrote them (``scores['cosine']`` is ``1 - cosine
similarity``); any other name is a similarity, larger is better. A score named otherwise
(say, after the search branch that computed it) counts as a distance when its ``op_name``
is one (``is_distance``).

Example
-------
>>> s = NamedScores({'cosine': 0.5})
>>> s['cosine'].value, s['cosine'] > 0.2, f"{s['cosine']:.2f}"
(0.5, True, '0.50')
>>> s['l2'].value = 3.0; s['l2'].op_name = 'l2'; sorted(s.values())
[NamedScore(value=0.5), NamedScore(value=3.0, op_name='l2')]
"""
from __future__ import annotations

import numbers
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ['NamedScore', 'NamedScores', 'DISTANCE_SCORES', 'SIMILARITY', 'is_distance']

_TEXT_FIELDS = ('op_name', 'description', 'ref_id')

#: Score names where smaller is better. ``DocumentArray.match`` writes the distance under
#: the metric's name: 'cosine' (1 - cosine similarity), 'euclidean', 'sqeuclidean', and with
#: ``use_scipy=True`` any of scipy's ``cdist`` metrics (all distances, listed here);
#: 'l2', 'distance', 'manhattan' are the common names of others.
DISTANCE_SCORES = frozenset({
    'cosine', 'euclidean', 'sqeuclidean', 'l2', 'distance', 'manhattan',
    'braycurtis', 'canberra', 'chebyshev', 'cityblock', 'correlation', 'dice', 'hamming', 'jaccard',
    'jensenshannon', 'kulczynski1', 'mahalanobis', 'matching', 'minkowski', 'rogerstanimoto',
    'russellrao', 'seuclidean', 'sokalmichener', 'sokalsneath', 'yule'})


#: The ``op_name`` that makes a score a similarity (larger is better) whatever its name: what
#: ``match(normalization=(1, 0))`` writes under a distance's name.
SIMILARITY = 'similarity'


def is_distance(name: str, op_name: str = '') -> bool:
    """Whether a score named ``name`` (computed by ``op_name``, if given) is a distance,
    smaller is better: an ``op_name`` in ``DISTANCE_SCORES`` says so, ``'similarity'`` says
    not; else its name decides.

    Example
    -------
    >>> is_distance('cosine'), is_distance('bm25'), is_distance('dense', op_name='l2')
    (True, False, True)
    >>> is_distance('cosine', op_name='similarity')  # match(normalization=(1, 0))
    False
    """
    if op_name:
        if op_name in DISTANCE_SCORES:
            return True
        if op_name == SIMILARITY:
            return False
    return name in DISTANCE_SCORES


def _as_value(value: Any, what: str) -> float:
    if isinstance(value, NamedScore):
        return value.value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.generic)):
        raise TypeError(f'{what} must be a number (int or float), got {type(value).__name__} {value!r}')
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f'{what} must be a number (int or float), got {type(value).__name__} {value!r}') from None


def _as_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f'{what} must be a str, got {type(value).__name__} {value!r}')
    return value


class NamedScore:
    """One score: a float ``value`` and, optionally, the ``op_name`` that computed it, a
    ``description`` and the ``ref_id`` of the document it was computed against.

    Compares, sorts and formats as its value (unhashable: it is mutable).

    Examples
    --------
    >>> s = NamedScore(0.9, op_name='cosine')
    >>> s == 0.9, s < 1, round(1 - s, 2), float(s)
    (True, True, 0.1, 0.9)
    """

    __slots__ = ('_value', '_op_name', '_description', '_ref_id')

    def __init__(self, value: float = 0.0, op_name: str = '', description: str = '', ref_id: str = '',
                 **unknown: Any) -> None:
        if unknown:
            raise TypeError(f'NamedScore() got unexpected keywords {sorted(unknown)}; it takes value, op_name, '
                            f'description and ref_id')
        self._value = _as_value(value, 'NamedScore.value')
        self._op_name = _as_text(op_name, 'NamedScore.op_name')
        self._description = _as_text(description, 'NamedScore.description')
        self._ref_id = _as_text(ref_id, 'NamedScore.ref_id')

    @property
    def value(self) -> float:
        """The score (a float)."""
        return self._value

    @value.setter
    def value(self, value: float) -> None:
        self._value = _as_value(value, 'NamedScore.value')

    @property
    def op_name(self) -> str:
        """Name of what computed the score, e.g. 'cosine'."""
        return self._op_name

    @op_name.setter
    def op_name(self, value: str) -> None:
        self._op_name = _as_text(value, 'NamedScore.op_name')

    @property
    def description(self) -> str:
        """Free text about the score."""
        return self._description

    @description.setter
    def description(self, value: str) -> None:
        self._description = _as_text(value, 'NamedScore.description')

    @property
    def ref_id(self) -> str:
        """Id of the document the score was computed against."""
        return self._ref_id

    @ref_id.setter
    def ref_id(self, value: str) -> None:
        self._ref_id = _as_text(value, 'NamedScore.ref_id')

    # -- conversions ------------------------------------------------------------------------
    def _pack(self) -> float | tuple:
        if self._op_name or self._description or self._ref_id:
            return (self._value, self._op_name, self._description, self._ref_id)
        return self._value

    def to_dict(self) -> dict:
        """``{'value': v}`` plus whichever of op_name / description / ref_id are set (the
        shape of Jina 2's ``dict()``)."""
        out: dict[str, Any] = {'value': self._value}
        for name in _TEXT_FIELDS:
            v = getattr(self, name)
            if v:
                out[name] = v
        return out

    dict = to_dict  # Jina 2 name

    @classmethod
    def from_any(cls, value: Any, what: str = 'score') -> 'NamedScore':
        """A NamedScore from a number, a NamedScore (copied), a dict such as
        ``{'value': 0.5, 'op_name': 'cosine'}``, or a packed tuple."""
        if isinstance(value, NamedScore):
            return value.copy()
        if isinstance(value, Mapping):
            try:
                return cls(**value)
            except TypeError as exc:
                raise TypeError(f'{what}: {exc}') from None
        if isinstance(value, tuple):
            return cls(*value)
        s = cls.__new__(cls)
        s._value = _as_value(value, what)
        s._op_name = s._description = s._ref_id = ''
        return s

    def copy(self) -> 'NamedScore':
        """An independent copy."""
        s = NamedScore.__new__(NamedScore)
        s._value, s._op_name, s._description, s._ref_id = (self._value, self._op_name, self._description,
                                                           self._ref_id)
        return s

    def __reduce__(self):
        return _unpack_score, (self._pack(),)

    def __float__(self) -> float:
        return self._value

    def __int__(self) -> int:
        return int(self._value)

    def __round__(self, ndigits: int | None = None):
        return round(self._value, ndigits)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self._value, dtype=dtype)

    def __format__(self, spec: str) -> str:
        return format(self._value, spec)

    def __repr__(self) -> str:
        extra = ''.join(f', {n}={getattr(self, n)!r}' for n in _TEXT_FIELDS if getattr(self, n))
        return f'NamedScore(value={self._value!r}{extra})'

    __hash__ = None  # mutable (``.value = ...``)

    # -- a number where a number is expected ---------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if isinstance(other, NamedScore):
            return (self._value, self._op_name, self._description, self._ref_id) == \
                (other._value, other._op_name, other._description, other._ref_id)
        if isinstance(other, (numbers.Real, np.generic)):
            return self._value == other
        return NotImplemented

    def __lt__(self, other: Any) -> bool:
        return self._value < _num(other)

    def __le__(self, other: Any) -> bool:
        return self._value <= _num(other)

    def __gt__(self, other: Any) -> bool:
        return self._value > _num(other)

    def __ge__(self, other: Any) -> bool:
        return self._value >= _num(other)

    def __neg__(self) -> float:
        return -self._value

    def __abs__(self) -> float:
        return abs(self._value)

    def __add__(self, other: Any) -> float:
        return self._value + _num(other)

    __radd__ = __add__

    def __sub__(self, other: Any) -> float:
        return self._value - _num(other)

    def __rsub__(self, other: Any) -> float:
        return _num(other) - self._value

    def __mul__(self, other: Any) -> float:
        return self._value * _num(other)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> float:
        return self._value / _num(other)

    def __rtruediv__(self, other: Any) -> float:
        return _num(other) / self._value


def _num(other: Any) -> float:
    if isinstance(other, NamedScore):
        return other._value
    return other


def _unpack_score(packed: float | tuple) -> NamedScore:
    # Module-level: pickle stores a function by name cheaply.
    s = NamedScore.__new__(NamedScore)
    if type(packed) is tuple:
        s._value, s._op_name, s._description, s._ref_id = packed
    else:
        s._value, s._op_name, s._description, s._ref_id = packed, '', '', ''
    return s


class NamedScores(dict):
    """A dict of name -> ``NamedScore`` (``Document.scores`` and ``.evaluations``).

    Assigning a number, a dict or a NamedScore stores a NamedScore; reading a missing name
    creates an empty one (value 0.0), as Jina 2's mapping did.

    Examples
    --------
    >>> s = NamedScores(); s['cosine'] = 0.25; s['cosine'].value
    0.25
    >>> s == {'cosine': 0.25}
    True
    """

    __slots__ = ()

    def __init__(self, values: Mapping[str, Any] | Iterable | None = None, what: str = 'scores') -> None:
        super().__init__()
        if values is not None:
            items = values.items() if isinstance(values, Mapping) else values
            for k, v in items:
                self._put(k, v, what)

    def _put(self, key: Any, value: Any, what: str = 'scores') -> None:
        if not isinstance(key, str):
            raise TypeError(f'{what} names must be str, got {type(key).__name__} {key!r}')
        dict.__setitem__(self, key, NamedScore.from_any(value, f'{what}[{key!r}]'))

    def __setitem__(self, key: str, value: Any) -> None:
        self._put(key, value)

    def __missing__(self, key: str) -> NamedScore:
        if not isinstance(key, str):
            raise KeyError(key)
        s = NamedScore()
        dict.__setitem__(self, key, s)
        return s

    def update(self, *args: Any, **kwargs: Any) -> None:
        """As ``dict.update``; every value becomes a NamedScore."""
        for k, v in dict(*args, **kwargs).items():
            self._put(k, v)

    def setdefault(self, key: str, default: Any = 0.0) -> NamedScore:
        if key not in self:
            self._put(key, default)
        return dict.__getitem__(self, key)

    def copy(self) -> 'NamedScores':
        """A copy whose scores are independent of these."""
        out = NamedScores()
        for k, v in self.items():
            dict.__setitem__(out, k, v.copy())
        return out

    def __deepcopy__(self, memo: dict) -> 'NamedScores':
        return self.copy()

    def to_dict(self) -> dict:
        """Plain dicts (see ``NamedScore.to_dict``)."""
        return {k: v.to_dict() for k, v in self.items()}

    def __reduce__(self):
        return _unpack_scores, ({k: v._pack() for k, v in self.items()},)

    def __repr__(self) -> str:
        return f'NamedScores({dict.__repr__(self)})'


def _unpack_scores(packed: dict) -> NamedScores:
    out = NamedScores()
    for k, v in packed.items():
        dict.__setitem__(out, k, _unpack_score(v))
    return out


def as_scores(value: Any, what: str) -> NamedScores | None:
    """``value`` as NamedScores for a Document field (None stays None)."""
    if value is None:
        return None
    if isinstance(value, NamedScores):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f'Document.{what} must be a dict of name -> number (or NamedScore), '
                        f'got {type(value).__name__}')
    return NamedScores(value, what)
