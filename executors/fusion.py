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

__all__ = ['FusionRanker', 'fuse']

logger = logging.getLogger(__name__)

METHODS = ('rrf', 'sum')


def fuse(rankings: dict[str, tuple[list[str], list[float]]], weights: dict[str, float], method: str = 'sum',
         rrf_k: float = 60.0) -> list[tuple[str, float]]:
    """Fuse several rankings (name -> (ids best first, scores)) into one, best first.

    - ``'rrf'``, reciprocal-rank fusion: ``sum_b w_b / (rrf_k + rank_b(d))`` (rank from 1);
      uses only the order, so branches with incomparable scores mix safely.
    - ``'sum'``: each branch's scores min-max normalised over its own list to [0, 1] (the
      last listed gets 0, the first 1), then ``sum_b w_b * norm_b(d)``; uses how much
      better the first hits are, which helps when one branch is sure and the other not.

    Ties are broken by the id's first appearance (the first branch's order first).

    Example
    -------
    >>> fuse({'a': (['x', 'y'], [3.0, 1.0]), 'b': (['y', 'z'], [0.9, 0.8])}, {'a': 1, 'b': 1}, 'rrf')[0][0]
    'y'
    >>> [i for i, _ in fuse({'a': (['x', 'y'], [3.0, 1.0]), 'b': (['y'], [0.9])}, {'a': 1, 'b': 1})]
    ['y', 'x']
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
        else:
            hi, lo = max(scores), min(scores)
            span = hi - lo
            for i, s in zip(ids, scores):
                norm = (s - lo) / span if span > 0 else 1.0
                total[i] = total.get(i, 0.0) + w * norm
    order = {i: k for k, i in enumerate(total)}
    return sorted(total.items(), key=lambda kv: (-kv[1], order[kv[0]]))


class FusionRanker(Executor):
    """The join of a hybrid search: fuse the branches' rankings into each query's matches.

    Put it after parallel search branches (``needs=[...]``), each of which writes its
    ranking into ``query.tags[<branch>] = {'ids': [...], 'scores': [...]}`` (the
    ``rank_tag`` option of ``SparseIndexer`` and ``MemmapIndexer``). The Flow's join
    already gathered the branches' matches by id; this sets ``matches`` to the fused
    order, each with ``scores['fused']`` and the branch scores it had (``scores[branch]``),
    cut to ``limit`` / ``top_k``, and removes the ranking tags. On ``/search`` only;
    other requests pass through.

    Parameters
    ----------
    branches : dict of str to float
        Tag name of each branch's ranking, with its weight (default ``{'sparse': 1.0,
        'dense': 1.0}``). A branch missing from a query counts as an empty ranking.
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
    >>> q = Document(tags={'s': {'ids': ['a'], 'scores': [2.0]}, 'd': {'ids': ['a', 'b'], 'scores': [.9, .5]}})
    >>> q.matches = [Document(id='a'), Document(id='b')]
    >>> FusionRanker(branches={'s': 1, 'd': 1}).search(DocumentArray([q]), {})
    >>> [(m.id, m.scores['fused']) for m in q.matches]
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
        limit = parameters.get('limit', parameters.get('top_k', self.default_limit))
        method = parameters.get('fusion', self.method)
        weights = {**self.branches, **(parameters.get('weights') or {})}
        for d in docs:
            rankings: dict[str, tuple[list[str], list[float]]] = {}
            tags = d.tags
            for name in self.branches:
                got = tags.pop(name, None) if tags else None
                rankings[name] = (list(got['ids']), [float(s) for s in got['scores']]) if got else ([], [])
            fused = fuse(rankings, weights, method, self.rrf_k)[:limit]
            by_id: dict[str, Document] = {m.id: m for m in d.matches}
            branch_score = {name: dict(zip(*r)) for name, r in rankings.items()}
            matches = []
            for i, s in fused:
                m = by_id.get(i)
                if m is None:   # a branch ranked it but sent no match: keep the id at least
                    m = Document(id=i)
                scores = {'fused': float(s)}
                for name, per in branch_score.items():
                    if i in per:
                        scores[name] = per[i]
                m.scores = scores
                matches.append(m)
            d.matches = matches
