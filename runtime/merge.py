"""Joining the documents of parallel branches: ``needs`` joins and shards polled with 'all'.

Example
-------
>>> merged = merge_by_id([branch_a_docs, branch_b_docs])
>>> searched = merge_shards([shard0_docs, shard1_docs], {'top_k': 10})
"""
from __future__ import annotations

from typing import Callable, Sequence

from .array import DocumentArray
from .document import Document

__all__ = ['merge_by_id', 'merge_shards', 'sort_matches', 'DISTANCE_SCORES']

#: Score names where smaller is better; matches are sorted by every other score descending.
DISTANCE_SCORES = frozenset({'l2', 'euclidean', 'sqeuclidean', 'distance', 'cityblock', 'manhattan',
                             'hamming', 'jaccard', 'chebyshev'})
# Fields where a later branch's non-default value wins (the defaults are Document's).
_PLAIN_FIELDS = (('text', None), ('blob', None), ('buffer', None), ('embedding', None), ('uri', ''),
                 ('mime_type', ''), ('parent_id', ''), ('granularity', 0), ('adjacency', 0), ('weight', 0.0),
                 ('modality', ''))


def _merge_into(base: Document, other: Document) -> None:
    for name, default in _PLAIN_FIELDS:
        value = getattr(other, name)
        if value is not default and not (default is not None and value == default):
            setattr(base, name, value)
    if other._tags:
        base.tags.update(other._tags)
    if other._scores:
        base.scores.update(other._scores)
    for name in ('_chunks', '_matches'):
        extra = getattr(other, name)
        if extra:
            mine = getattr(base, name[1:])
            for d in extra:
                if d.id in mine:
                    mine[d.id] = d  # the same sub-document from both branches: the later wins
                else:
                    mine.append(d)


def merge_by_id(parts: Sequence[DocumentArray]) -> DocumentArray:
    """One DocumentArray holding every document of ``parts`` once, in order of first
    appearance; a document present in several parts gets every field any of them set
    (a later part wins where both set one), tags and scores merged, and its chunks and
    matches merged by id."""
    if len(parts) == 1:
        return parts[0]
    out: list[Document] = []
    seen: dict[str, Document] = {}
    for part in parts:
        for d in part:
            base = seen.get(d.id)
            if base is None:
                seen[d.id] = d
                out.append(d)
            elif base is not d:
                _merge_into(base, d)
    return DocumentArray._from_list(out)


def _score_key(matches: DocumentArray) -> tuple[Callable, bool] | None:
    for m in matches:
        if m._scores:
            name = next(iter(m._scores))
            return (lambda d: d.scores.get(name, float('nan'))), name not in DISTANCE_SCORES
    return None


def sort_matches(matches: DocumentArray, limit: int | None = None) -> None:
    """Sort ``matches`` in place by their first score (best first: descending, except for
    the distances in ``DISTANCE_SCORES``) and keep the first ``limit``."""
    found = _score_key(matches)
    if found is not None:
        key, descending = found
        matches.sort(key=key, reverse=descending)
    if limit is not None and len(matches) > limit:
        del matches[limit:]


def merge_shards(parts: Sequence[DocumentArray], parameters: dict) -> DocumentArray:
    """The default join of shards polled with 'all': documents merged by id, their matches
    concatenated, sorted by score and cut to ``parameters['limit']`` or ``['top_k']``."""
    merged = merge_by_id(parts)
    limit = parameters.get('limit', parameters.get('top_k'))
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f'parameters limit / top_k must be a non-negative int, got {limit!r}')
    for d in merged:
        if d._matches:
            sort_matches(d._matches, limit)
    return merged
