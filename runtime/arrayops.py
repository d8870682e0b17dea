"""Jina 2's DocumentArray operations, written once for every sequence of Documents.

``ArrayOps`` is a mixin: it needs only ``__iter__``, ``__len__`` and ``__getitem__`` (int
and str), so ``DocumentArray`` and ``DocumentArrayMemmap`` share it. ``match`` (nearest
neighbours by embedding) lives in ``runtime.match`` and is reached through the method here.

Where Jina 2.0 was wrong, this does the right thing (the README lists each):
``find`` returns the documents it matched on a ``traversal_paths`` other than root (Jina 2
returned the root document at the same position), it does not rewrite the caller's
``regexes`` dict, and ``sample`` / ``shuffle`` with a ``seed`` do not reseed the global
``random`` module.
"""
from __future__ import annotations

import itertools
import operator as _operator
import random
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .array import DocumentArray
    from .document import Document

__all__ = ['ArrayOps', 'parse_traversal_paths']

_OPERATORS = {'<': _operator.lt, '>': _operator.gt, '==': _operator.eq, '!=': _operator.ne,
              '<=': _operator.le, '>=': _operator.ge}


def parse_traversal_paths(traversal_paths: str | Iterable[str]) -> list[str]:
    """``traversal_paths`` as a list of paths.

    Jina 2.0 took a list (``['r', 'c']``); later Jina 2 versions a comma-separated string
    (``'r,c'``): both work. Each path is made of ``r`` (the documents themselves), ``c``
    (their chunks) and ``m`` (their matches), e.g. ``'cm'`` is the matches of the chunks.

    >>> parse_traversal_paths('r, cm'), parse_traversal_paths(('c',))
    (['r', 'cm'], ['c'])
    """
    if isinstance(traversal_paths, str):
        paths = [p.strip() for p in traversal_paths.split(',')]
    elif isinstance(traversal_paths, Iterable) and not isinstance(traversal_paths, (bytes, Mapping)):
        paths = list(traversal_paths)
    else:
        raise TypeError(f"traversal_paths takes a list of paths such as ['r', 'c'] or a comma-separated "
                        f"str such as 'r,c', got {type(traversal_paths).__name__}")
    for p in paths:
        if not isinstance(p, str) or not p or set(p) - set('rcm'):
            raise ValueError(f"traversal path {p!r} is invalid: a path is made of 'r' (the documents), "
                             f"'c' (chunks) and 'm' (matches), e.g. ['r'], ['c'], ['cm'] or 'r,c'")
    return paths


def _walk(docs: Any, path: str, filter_fn: Callable | None) -> Iterator[Any]:
    """Yield the sequences reached by ``path`` from ``docs``."""
    if not path:
        if filter_fn is None:
            yield docs
        else:
            from .array import DocumentArray
            yield DocumentArray._from_list([d for d in docs if filter_fn(d)])
        return
    step, rest = path[0], path[1:]
    if step == 'r':
        yield from _walk(docs, rest, filter_fn)
    elif step == 'c':
        for d in docs:
            yield from _walk(d.chunks, rest, filter_fn)
    else:
        for d in docs:
            yield from _walk(d.matches, rest, filter_fn)


def _flat(sequences: Iterable[Iterable['Document']]) -> 'DocumentArray':
    from .array import DocumentArray
    return DocumentArray._from_list(list(itertools.chain.from_iterable(sequences)))


class ArrayOps:
    """Traversal, sampling, search by tags and nearest-neighbour matching over any sequence
    of Documents (``__iter__``, ``__len__``, ``__getitem__(int | str)``).

    Example
    -------
    >>> from runtime import Document, DocumentArray
    >>> da = DocumentArray([Document(text='a', chunks=[Document(text='a1')])])
    >>> da.traverse_flat(['r', 'c']).texts
    ['a', 'a1']
    """

    __slots__ = ()

    # -- traversal ------------------------------------------------------------------------------
    def traverse(self, traversal_paths: str | Iterable[str],
                 filter_fn: Callable[['Document'], bool] | None = None) -> Iterator[Any]:
        """Yield, lazily, every sequence of documents that ``traversal_paths`` reaches: for
        ``['c']`` the ``chunks`` of each document, for ``['r']`` this array itself.

        Parameters
        ----------
        traversal_paths : list of str or comma-separated str
            ``'r'`` this array, ``'c'`` chunks, ``'m'`` matches; ``'cc'`` chunks of chunks,
            ``'cm'`` matches of chunks; several paths are followed one after the other.
        filter_fn : callable(Document) -> bool, optional
            Keep only the documents for which it is true.

        Example
        -------
        >>> from runtime import Document, DocumentArray
        >>> da = DocumentArray([Document(chunks=[Document(), Document()]), Document(chunks=[Document()])])
        >>> [len(s) for s in da.traverse(['c'])]
        [2, 1]
        """
        paths = parse_traversal_paths(traversal_paths)
        for p in paths:
            yield from _walk(self, p, filter_fn)

    def traverse_flat_per_path(self, traversal_paths: str | Iterable[str],
                               filter_fn: Callable[['Document'], bool] | None = None) -> Iterator['DocumentArray']:
        """Yield one flat DocumentArray per path of ``traversal_paths`` with every document
        that path reaches.

        Example
        -------
        >>> from runtime import Document, DocumentArray
        >>> da = DocumentArray([Document(chunks=[Document()], matches=[Document(), Document()])])
        >>> [len(s) for s in da.traverse_flat_per_path(['c', 'm'])]
        [1, 2]
        """
        for p in parse_traversal_paths(traversal_paths):
            yield _flat(_walk(self, p, filter_fn))

    def traverse_flat(self, traversal_paths: str | Iterable[str],
                      filter_fn: Callable[['Document'], bool] | None = None) -> 'DocumentArray':
        """One flat DocumentArray of every document ``traversal_paths`` reaches, in path
        order (the documents themselves, not copies).

        Example
        -------
        >>> from runtime import Document, DocumentArray
        >>> da = DocumentArray([Document(text='a', chunks=[Document(text='a1'), Document(text='a2')])])
        >>> da.traverse_flat('c').texts, len(da.traverse_flat(['r', 'c']))
        (['a1', 'a2'], 3)
        """
        return _flat(self.traverse(traversal_paths, filter_fn))

    # -- bulk access --------------------------------------------------------------------------
    def get_attributes_with_docs(self, *fields: str) -> tuple[list, 'DocumentArray']:
        """The values of ``fields`` with the documents they came from, leaving out documents
        where a field is missing (None), so that values and documents stay aligned.

        One field gives a list of values, several give one list per field (as
        ``get_attributes``); ``tags__key`` reaches into tags.

        Example
        -------
        >>> from runtime import Document, DocumentArray
        >>> da = DocumentArray([Document(text='a'), Document(), Document(text='c')])
        >>> texts, docs = da.get_attributes_with_docs('text')
        >>> texts, len(docs)
        (['a', 'c'], 2)
        """
        if not fields:
            raise TypeError("get_attributes_with_docs() needs at least one field name, e.g. 'text' or 'tags__key'")
        from .array import DocumentArray
        from .document import _resolve_path
        rows, docs = [], []
        for d in self:
            values = [_resolve_path(d, f) for f in fields]
            if any(v is None for v in values):
                continue
            rows.append(values)
            docs.append(d)
        if len(fields) == 1:
            contents = [r[0] for r in rows]
        else:
            contents = [list(col) for col in zip(*rows)] if rows else [[] for _ in fields]
        return contents, DocumentArray._from_list(docs)

    # -- random -------------------------------------------------------------------------------
    def sample(self, k: int, seed: int | None = None) -> 'DocumentArray':
        """``k`` documents drawn at random without replacement, as a new DocumentArray (of
        the same Document objects). ``seed`` makes the draw repeatable; the global
        ``random`` state is left alone.

        Example
        -------
        >>> from runtime import Document, DocumentArray
        >>> da = DocumentArray(Document(text=str(i)) for i in range(10))
        >>> da.sample(3, seed=1).texts == da.sample(3, seed=1).texts
        True
        """
        n = len(self)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ValueError(f'sample size k must be an int >= 0, got {k!r}')
        if k > n:
            raise ValueError(f'sample size can not be greater than the length of {type(self).__name__}, '
                             f'but {k} > {n}; use shuffle() to draw every document')
        from .array import DocumentArray
        rng = random.Random(seed) if seed is not None else random
        return DocumentArray._from_list([self[i] for i in rng.sample(range(n), k)])

    def shuffle(self, seed: int | None = None) -> 'DocumentArray':
        """Every document in random order, as a new DocumentArray (this one is unchanged).

        Example
        -------
        >>> from runtime import Document, DocumentArray
        >>> da = DocumentArray(Document(text=str(i)) for i in range(5))
        >>> sorted(da.shuffle(seed=0).texts) == da.texts
        True
        """
        return self.sample(len(self), seed=seed)

    # -- search -------------------------------------------------------------------------------
    def find(self, regexes: Mapping[str, str | re.Pattern], traversal_paths: str | Iterable[str] = ('r',),
             operator: str = '>=', threshold: int | None = None) -> 'DocumentArray':
        """The documents whose tags match regular expressions.

        A document counts how many of ``regexes`` (``{tag name: pattern}``, matched with
        ``re.match`` against the tag's value as a str; ``a__b`` reaches nested tags) it
        matches, and is kept when ``count <operator> threshold`` holds; ``threshold``
        defaults to ``len(regexes)`` (all must match).

        Parameters
        ----------
        regexes : dict of str -> str or compiled pattern
        traversal_paths : list of str or comma-separated str
            Which documents to search (default the documents themselves).
        operator : one of '<', '>', '==', '!=', '<=', '>='
        threshold : int, optional

        Example
        -------
        >>> from runtime import Document, DocumentArray
        >>> da = DocumentArray([Document(tags={'city': 'Berlin'}), Document(tags={'city': 'Paris'})])
        >>> [d.tags['city'] for d in da.find({'city': 'B.*'})]
        ['Berlin']
        """
        if not isinstance(regexes, Mapping) or not regexes:
            raise TypeError(f"find() takes a non-empty dict {{tag name: regular expression}}, e.g. "
                            f"{{'city': 'B.*'}}, got {regexes!r:.60}")
        op = _OPERATORS.get(operator)
        if op is None:
            raise ValueError(f'operator must be one of {", ".join(map(repr, _OPERATORS))}, got {operator!r}')
        if threshold is None:
            threshold = len(regexes)
        patterns = []
        for name, pattern in regexes.items():
            try:
                patterns.append((str(name).split('__'), re.compile(pattern)))
            except (re.error, TypeError) as exc:
                raise ValueError(f'find(): the pattern for tag {name!r} is not a regular expression: {exc}') from None
        from .array import DocumentArray
        kept = []
        for d in self.traverse_flat(traversal_paths):
            count = 0
            for keys, pattern in patterns:
                value: Any = d.tags
                for key in keys:
                    value = value.get(key) if isinstance(value, Mapping) else None
                if value is not None and pattern.match(value if isinstance(value, str) else str(value)):
                    count += 1
            if op(count, threshold):
                kept.append(d)
        return DocumentArray._from_list(kept)

    # -- nearest neighbours ------------------------------------------------------------------
    def match(self, darray: Any, metric: str | Callable = 'cosine', limit: int | float | None = 20,
              normalization: tuple[float, float] | None = None, metric_name: str | None = None,
              batch_size: int | None = None, exclude_self: bool = False,
              traversal_ldarray: str | Sequence[str] | None = None,
              traversal_rdarray: str | Sequence[str] | None = None, only_id: bool = False,
              use_scipy: bool = False, **kwargs: Any) -> None:
        """For each document here, find its nearest neighbours in ``darray`` by embedding
        and store them in its ``matches``, each with ``scores[metric_name]``. See
        :func:`runtime.match.match` for the parameters.

        Example
        -------
        >>> import numpy as np
        >>> from runtime import Document, DocumentArray
        >>> q = DocumentArray([Document(embedding=np.array([1., 0.]))])
        >>> idx = DocumentArray([Document(text='x', embedding=np.array([0., 1.])),
        ...                      Document(text='y', embedding=np.array([1., .1]))])
        >>> q.match(idx, metric='euclidean', limit=1)
        >>> q[0].matches[0].text
        'y'
        """
        from .match import match
        match(self, darray, metric=metric, limit=limit, normalization=normalization, metric_name=metric_name,
              batch_size=batch_size, exclude_self=exclude_self, traversal_ldarray=traversal_ldarray,
              traversal_rdarray=traversal_rdarray, only_id=only_id, use_scipy=use_scipy, **kwargs)
