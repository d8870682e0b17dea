"""Joining the documents of parallel branches: ``needs`` joins and shards polled with 'all'.

Example
-------
>>> merged = merge_by_id([branch_a_docs, branch_b_docs])
>>> searched = merge_shards([shard0_docs, shard1_docs], {'top_k': 10})
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Sequence

import numpy as np

from ..array import DocumentArray
from ..document import Document
from ..fields import FIELD, TABLE
from ..scores import DISTANCE_SCORES, is_distance

__all__ = ['merge_by_id', 'merge_shards', 'match_limit', 'sort_matches', 'DISTANCE_SCORES', 'branch_merge',
           'shard_merge', 'concatenate']

# DISTANCE_SCORES (from runtime.scores, re-exported): the score names sorted ascending.
# From the Document field table: fields where a later branch's non-default value wins
# (copied slot to slot, so no setter side effect such as a guessed mime_type applies twice),
# dicts merged key by key, and nested documents merged by id.
# A document's content is one of text, blob and buffer: merged as one field, so that a
# merged document never holds two (e.g. one branch's blob next to another's text).
_CONTENT = tuple(FIELD[name].slot for name in ('text', 'blob', 'buffer'))
_PLAIN_FIELDS = tuple((f.slot, f.default) for f in TABLE
                      if f.kind in ('content', 'array', 'scalar') and f.slot not in _CONTENT)
_MAPPINGS = tuple(f.slot for f in TABLE if f.kind == 'mapping')
_NESTED = tuple(f.slot for f in TABLE if f.kind == 'docs')


def _same(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and bool(np.array_equal(a, b)))
    try:
        return bool(a == b)
    except Exception:  # values that cannot compare are taken as different
        return False


def _merge_into(into: Document, other: Document, before: Document | None) -> None:
    """Copy into ``into`` what ``other`` changed: with ``before`` (the document as it was
    when the branches split), the fields where ``other`` differs from it; without, every
    field ``other`` set. The content (text, blob or buffer) goes as one field."""
    content = tuple(getattr(other, slot) for slot in _CONTENT)
    if before is not None:
        changed = not all(_same(v, getattr(before, slot)) for v, slot in zip(content, _CONTENT))
    else:
        changed = any(v is not None for v in content)  # (the content's default is None)
    if changed:
        for slot, value in zip(_CONTENT, content):
            object.__setattr__(into, slot, value)
        into._plain = False
    for slot, default in _PLAIN_FIELDS:
        value = getattr(other, slot)
        if before is not None:
            if _same(value, getattr(before, slot)):
                continue  # this branch left it as it was: keep what another branch did
        elif value is default or (default is not None and _same(value, default)):
            continue
        object.__setattr__(into, slot, value)
        into._plain = False
    # Tag keys, scores and sub-documents one branch removed stay removed (a ranker that kept
    # the top 2 matches, a cleaner that dropped a scratch tag) while another branch only
    # carried them on unchanged; where both touched one (one removed it, one changed it),
    # the change is kept.
    for name in _MAPPINGS:
        theirs = getattr(other, name) or {}
        old = (getattr(before, name) or {}) if before is not None else {}
        if theirs or old:
            mine = getattr(into, name[1:])
            for k, v in theirs.items():
                if k not in old or not _same(v, old[k]):
                    mine[k] = v
            for k, v in old.items():
                if k not in theirs and k in mine and _same(mine[k], v):
                    del mine[k]  # ``other``'s branch removed it
    for name in _NESTED:
        extra = getattr(other, name)
        old = getattr(before, name) if before is not None else None
        if extra or old:
            mine = getattr(into, name[1:])
            if old:
                kept = {d.id for d in extra} if extra else set()
                for was in old:
                    if was.id not in kept and was.id in mine and mine[was.id] == was:
                        del mine[was.id]  # ``other``'s branch removed it
                if extra and _reordered(extra, old) and not _reordered(mine, old):
                    # ``other``'s branch re-ranked them (and ``into``'s did not): its order wins
                    rank = {d.id: k for k, d in enumerate(extra)}
                    mine.sort(key=lambda d: rank.get(d.id, len(rank)))
            # DocumentArray's own methods: the sub-documents keep the parent_id /
            # granularity / adjacency their branch gave them (chunks.append would reset them).
            for d in extra or ():
                was = old[d.id] if old is not None and d.id in old else None
                if d.id not in mine:
                    if was is None or d != was:  # (unchanged: ``into``'s branch removed it)
                        DocumentArray.append(mine, d)
                    continue
                if was is not None and d == was:
                    continue  # this branch left it as it was
                into_sub = mine[d.id]
                if into_sub is not d:
                    # Merged field by field, as the documents themselves: a match that two
                    # search branches found keeps both branches' scores (a fusion step after
                    # the join needs every branch's ranking).
                    _merge_into(into_sub, d, was)


def _reordered(docs: DocumentArray, before: DocumentArray) -> bool:
    """Whether the documents of ``docs`` that were in ``before`` are in another order now."""
    was = [d.id for d in before]
    there = set(was)
    now = [d.id for d in docs if d.id in there]
    present = set(now)
    return now != [i for i in was if i in present]


def merge_by_id(parts: Sequence[DocumentArray], before: DocumentArray | None = None) -> DocumentArray:
    """One DocumentArray holding every document of ``parts`` once, in order of first
    appearance (documents that share an id are told apart by their order). A document present in several parts gets what each part changed: with
    ``before`` (the documents as they were when the branches split), a field one branch
    changed survives even if another branch carried the old value on, and a tag key, score,
    chunk or match one branch removed stays removed unless another changed it; without it, a later
    part's non-default values win. The content (text, blob or buffer) is one field: the
    merged document holds one part's. Tags and scores merge key by key, chunks and matches
    by id (one present in several parts is merged the same way, field by field: a match
    two search branches found keeps both branches' scores)."""
    if len(parts) == 1:
        return parts[0]
    # Documents that share an id (a request may hold several) stay apart: the k-th with an
    # id in one part meets the k-th with that id in the others.
    base: dict[tuple[str, int], Document] = {}
    if before is not None:
        nth: dict[str, int] = {}
        for d in before:
            k = nth[d.id] = nth.get(d.id, -1) + 1
            base[d.id, k] = d
    out: list[Document] = []
    seen: dict[tuple[str, int], Document] = {}
    for part in parts:
        nth = {}
        for d in part:
            k = nth[d.id] = nth.get(d.id, -1) + 1
            into = seen.get((d.id, k))
            if into is None:
                seen[d.id, k] = d
                out.append(d)
            elif into is not d:
                _merge_into(into, d, base.get((d.id, k)))
    return DocumentArray._from_list(out)


def _score_key(matches: DocumentArray) -> tuple[Callable, bool] | None:
    for m in matches:
        if m._scores:
            name, first = next(iter(m._scores.items()))
            return (lambda d: _score_value(d, name)), not is_distance(name, first.op_name)
    return None


def _score_value(d: Document, name: str) -> float:
    s = d._scores.get(name) if d._scores else None
    return float('nan') if s is None else s.value


def sort_matches(matches: DocumentArray, limit: int | None = None) -> None:
    """Sort ``matches`` in place by their first score, best first, and keep the first ``limit``.

    Best is smallest for a distance (a name in ``DISTANCE_SCORES``, such as 'cosine' as
    ``DocumentArray.match`` writes it, or a score whose ``op_name`` is one), largest for
    any other score.

    Example
    -------
    >>> ms = DocumentArray([Document(id=i, scores={'cosine': v}) for i, v in [('a', .5), ('b', .1)]])
    >>> sort_matches(ms, 1); ms[0].id
    'b'
    """
    found = _score_key(matches)
    if found is not None:
        key, descending = found
        matches.sort(key=key, reverse=descending)
    if limit is not None and len(matches) > limit:
        del matches[limit:]


def match_limit(parameters: dict, default: int | None = None) -> int | None:
    """``parameters['limit']``, else ``['top_k']``, else ``default``, as an int >= 0 (None:
    no limit); ValueError for any other value. A key holding None counts as not given
    (JSON's null: ``{"limit": null, "top_k": 5}`` is 5).

    An integral float (``3.0``) or a numpy integer (``np.int64(3)``) is taken as the int it
    holds: Jina 2 sent parameters as JSON-like protobuf structs, so its executors got every
    number as a float, and a limit computed with numpy is a numpy integer. ``3.5``, a
    negative number and a bool are refused (True is no count).

    Example
    -------
    >>> match_limit({'top_k': np.int64(3)}), match_limit({'limit': 5.0}), match_limit({}, 10)
    (3, 5, 10)
    >>> match_limit({'top_k': 3.5})
    Traceback (most recent call last):
    ValueError: parameters limit / top_k must be a non-negative int (3.0 and numpy ints are taken), got 3.5
    """
    limit = parameters.get('limit')
    if limit is None:
        limit = parameters.get('top_k')
        if limit is None:
            limit = default
    if limit is None or (type(limit) is int and limit >= 0):  # (the common case, first)
        return limit
    if isinstance(limit, (bool, np.bool_)):
        whole = None
    elif isinstance(limit, numbers.Integral):
        whole = int(limit)
    elif isinstance(limit, (float, np.floating)) and float(limit).is_integer():  # (not inf, not NaN)
        whole = int(limit)
    else:
        whole = None
    if whole is None or whole < 0:
        raise ValueError(f'parameters limit / top_k must be a non-negative int (3.0 and numpy ints are taken), '
                         f'got {limit!r}')
    return whole


def merge_shards(parts: Sequence[DocumentArray], parameters: dict) -> DocumentArray:
    """The default join of shards polled with 'all': documents merged by id, their matches
    concatenated, sorted by score and cut to ``parameters['limit']`` or ``['top_k']`` (read
    by ``match_limit``)."""
    merged = merge_by_id(parts)
    limit = match_limit(parameters)
    for d in merged:
        if d._matches:
            sort_matches(d._matches, limit)
    return merged


def branch_merge(with_fork: bool) -> Callable[[list], DocumentArray]:
    """The merge of a join's branches by id; ``with_fork``: the last part is the documents
    as they left the split point, so a field one branch changed survives another branch
    carrying the old value on."""
    if with_fork:
        return lambda docs: merge_by_id(docs[:-1], docs[-1])
    return lambda docs: merge_by_id(docs, None)


def shard_merge(dep: Any, parameters: dict) -> Callable[[list], DocumentArray]:
    """The merge of a deployment's shards: its class's ``reduce(docs_matrix, parameters)``
    if it has one, else ``merge_shards``; ``parameters[name]`` is merged over the rest."""
    params = dict(parameters)
    own = params.get(dep.metas['name'])
    if isinstance(own, dict):
        params.update(own)

    def merge(docs: list) -> DocumentArray:
        merged = dep.reduce(docs, params) if dep.reduce is not None else merge_shards(docs, params)
        if not isinstance(merged, DocumentArray):
            raise TypeError(f'{dep.cls.__name__}.reduce returned {type(merged).__name__}; return a DocumentArray')
        return merged
    return merge


def concatenate(parts: list) -> DocumentArray:
    """The parts' documents one after the other (a ``docs_matrix`` travels so)."""
    return DocumentArray([d for part in parts for d in part])
