"""FusionRanker: join the rankings of parallel search branches into one list of matches.

Example
-------
>>> from runtime import Flow
>>> f = (Flow().add(name='seg', uses=TextSegmenter)  # doctest: +SKIP
...      .add(name='sparse', uses=SparseIndexer, uses_with={'rank_tag': 'sparse'}, needs='seg')
...      .add(name='lsa', uses=LSAEncoder, needs='seg')
...      .add(name='dense', uses=MemmapIndexer, uses_with={'rank_tag': 'dense'}, needs='lsa')
...      .add(name='fusion', uses=FusionRanker, uses_with={'branches': {'sparse': 1.0, 'dense': 1.0}},
...           needs=['sparse', 'dense']))
"""
from __future__ import annotations

import logging
from typing import Any

from runtime import Document, DocumentArray, Executor, requests
from runtime.control.merge import match_limit
from runtime.scores import NamedScore, is_distance

__all__ = ['FusionRanker', 'fuse', 'branch_scores', 'branch_ranking']

logger = logging.getLogger(__name__)

METHODS = ('rrf', 'sum')


def branch_scores(metric: str, value: float, branch: str | None) -> dict[str, Any]:
    """A match's scores from a search branch: ``{metric: value}`` and, with ``branch``, the
    same value as ``branch`` with ``op_name=metric`` (so whoever ranks by the branch's name
    knows from ``is_distance`` which way is better).

    Example
    -------
    >>> s = branch_scores('cosine', 0.25, 'dense'); s['dense'].op_name, s['dense'].value
    ('cosine', 0.25)
    """
    scores: dict[str, Any] = {metric: value}
    if branch:
        scores[branch] = NamedScore(value, op_name=metric)
    return scores


def branch_ranking(matches: DocumentArray, branch: str) -> tuple[list[str], list[float]]:
    """(ids, scores) of the matches that carry ``scores[branch]``, best first: ascending
    for a distance (``runtime.scores.is_distance`` of the name or its op_name), else
    descending; equal scores keep the matches' order.

    Example
    -------
    >>> ms = DocumentArray([Document(id=i, scores={'d': NamedScore(v, op_name='l2')})
    ...                     for i, v in [('a', 2.), ('b', 1.)]])
    >>> branch_ranking(ms, 'd')
    (['b', 'a'], [1.0, 2.0])
    """
    found = []
    for m in matches:
        s = m.scores.get(branch)  # .get: a missing name is not created (as [] would)
        if s is not None:
            found.append((m.id, float(s.value), s.op_name))
    if not found:
        return [], []
    smaller = is_distance(branch, found[0][2])
    found.sort(key=(lambda t: t[1]) if smaller else (lambda t: -t[1]))
    return [i for i, _, _ in found], [v for _, v, _ in found]


def fuse(rankings: dict[str, tuple[list[str], list[float]]], weights: dict[str, float], method: str = 'sum',
         rrf_k: float = 60.0) -> list[tuple[str, float]]:
    """Fuse several rankings (name -> (ids best first, their scores)) into one, best first.

    - ``'rrf'``, reciprocal-rank fusion: ``sum_b w_b / (rrf_k + rank_b(d))`` (rank from 1);
      uses only the order, so branches with incomparable scores mix safely.
    - ``'sum'``: each branch's scores min-max normalised over its own list to [0, 1] (the
      first listed gets 1, the last 0, whichever way its scores go: a distance ranking
      lists them ascending), then ``sum_b w_b * norm_b(d)``; uses how much better the first
      hits are, which helps when one branch is sure and the other not.

    Ties are broken by the id's first appearance (the first branch's order first).

    Example
    -------
    >>> fuse({'a': (['x', 'y'], [3.0, 1.0]), 'b': (['y', 'z'], [0.9, 0.8])}, {'a': 1, 'b': 1}, 'rrf')[0][0]
    'y'
    >>> [i for i, _ in fuse({'a': (['x', 'y'], [3.0, 1.0]), 'b': (['y'], [0.9])}, {'a': 1, 'b': 2})]
    ['y', 'x']
    >>> fuse({'l2': (['x', 'y', 'z'], [0.0, 1.0, 2.0])}, {})  # a distance: smallest first
    [('x', 1.0), ('y', 0.5), ('z', 0.0)]
    """
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {method!r}')
    total: dict[str, float] = {}
    for name, (ids, scores) in rankings.items():
        w = float(weights.get(name, 1.0))
        if not ids:
            continue
        if method == 'rrf':
            for r, i in enumerate(ids, 1):
                total[i] = total.get(i, 0.0) + w / (rrf_k + r)
            continue
        if len(scores) != len(ids):
            raise ValueError(f'ranking {name!r} has {len(ids)} ids but {len(scores)} scores; give one score per id')
        best, worst = scores[0], scores[-1]
        steps = [b - a for a, b in zip(scores, scores[1:])]
        if not (all(x <= 0 for x in steps) or all(x >= 0 for x in steps)):
            raise ValueError(f'ranking {name!r} is not sorted: list its ids best first (scores descending, '
                             f'or ascending for a distance), e.g. with branch_ranking()')
        span = best - worst
        for i, s in zip(ids, scores):
            norm = (s - worst) / span if span else 1.0
            total[i] = total.get(i, 0.0) + w * norm
    order = {i: k for k, i in enumerate(total)}
    return sorted(total.items(), key=lambda kv: (-kv[1], order[kv[0]]))


class FusionRanker(Executor):
    """The join of a hybrid search: fuse the branches' rankings into each query's matches.

    Put it after parallel search branches (``needs=[...]``), each of which gives its
    matches a score named after the branch, ``match.scores[<branch>]`` (the ``rank_tag``
    option of ``SparseIndexer`` and ``MemmapIndexer``; its ``op_name`` is the metric).
    A branch's ranking is the query's matches that carry its score, best first: ascending
    for a distance (``runtime.scores.is_distance`` of the name or op_name: 'cosine',
    'l2'...), else descending. The ranking travels as matches, so a sharded branch works
    through the Flow's shard merge (matches concatenated, sorted, cut), and the join of
    the branches merges a match that several branches found into one carrying every
    branch's score. This sets ``matches`` to the fused order, each with
    ``scores['fused']`` and the branch scores it had, cut to ``limit`` / ``top_k``. On
    ``/search`` only; other requests pass through.

    Parameters
    ----------
    branches : dict of str to float
        The score name of each branch (its ``rank_tag``), with its weight (default
        ``{'sparse': 1.0, 'dense': 1.0}``). A branch no match carries counts as an empty
        ranking.
    method : 'sum' or 'rrf'
        Score-normalised weighted sum (default) or reciprocal-rank fusion (see :func:`fuse`);
        ``parameters['fusion']`` overrides it per request, and ``parameters['weights']``
        (a dict like ``branches``) the weights.
    rrf_k : float
        The constant of reciprocal-rank fusion (default 60).
    default_limit : int
        Matches per query without ``limit`` / ``top_k`` (default 10).

    Example
    -------
    >>> q = Document()
    >>> q.matches = [Document(id='a', scores={'s': 2.0, 'd': NamedScore(.1, op_name='cosine')}),
    ...              Document(id='b', scores={'d': NamedScore(.5, op_name='cosine')})]
    >>> FusionRanker(branches={'s': 1, 'd': 1}).search(DocumentArray([q]), {})
    >>> [(m.id, m.scores['fused'].value) for m in q.matches]
    [('a', 2.0), ('b', 0.0)]
    """

    def __init__(self, branches: dict[str, float] | None = None, method: str = 'sum', rrf_k: float = 60.0,
                 default_limit: int = 10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if method not in METHODS:
            raise ValueError(f'method must be one of {METHODS}, got {method!r}')
        self.branches = dict(branches or {'sparse': 1.0, 'dense': 1.0})
        self.method, self.rrf_k, self.default_limit = method, float(rrf_k), default_limit

    @requests(on='/search')
    def search(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> None:
        """Replace each query's matches by the fused ranking.

        Example
        -------
        >>> FusionRanker().search(DocumentArray([Document(text='q')]), {'limit': 5})
        """
        limit = match_limit(parameters, self.default_limit)  # (3.0 and numpy ints taken; -1 refused)
        method = parameters.get('fusion', self.method)
        weights = {**self.branches, **(parameters.get('weights') or {})}
        for d in docs:
            found = d.matches
            rankings = {name: branch_ranking(found, name) for name in self.branches}
            fused = fuse(rankings, weights, method, self.rrf_k)[:limit]
            by_id: dict[str, Document] = {m.id: m for m in found}
            matches = []
            for i, s in fused:
                m = by_id[i]
                scores: dict[str, Any] = {'fused': float(s)}  # first: what a later sort goes by
                for name in self.branches:
                    got = m.scores.get(name)
                    if got is not None:
                        scores[name] = got
                m.scores = None  # (assigning merges into what is there, as in Jina 2: these replace it)
                m.scores = scores
                matches.append(m)
            d.matches = matches
