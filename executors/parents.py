"""Which stored passages belong to which document: ``parent_id`` -> ids, for the indexers'
whole-document ``/update`` and ``/delete``.

``TextSegmenter`` turns a document into passages ``'<id>/<k>'`` with ``parent_id`` the
document's id; the indexers store passages. A user who indexed documents updates and
deletes them by the documents (their ids), so an indexer needs the passages of a parent.

Example
-------
>>> from runtime import Document, DocumentArray
>>> parents = ParentMap([Document(id='a/0', parent_id='a'), Document(id='a/1', parent_id='a')])
>>> parents.children('a')
['a/0', 'a/1']
"""
from __future__ import annotations

from typing import Callable, Iterable

from runtime import Document

__all__ = ['ParentMap', 'plan_update', 'requested_ids', 'resolve']


def requested_ids(docs: Iterable[Document], parameters: dict) -> list[str]:
    """The ids a ``/delete`` names: the documents' ids, then ``parameters['ids']``, each once.

    Example
    -------
    >>> requested_ids([Document(id='a')], {'ids': ['b', 'a']})
    ['a', 'b']
    """
    ids = [d.id for d in docs]
    extra = parameters.get('ids')
    if extra is not None:
        if isinstance(extra, str) or not all(isinstance(i, str) for i in extra):
            raise TypeError(f"parameters['ids'] must be a list of str ids, e.g. ['a', 'b'], got {extra!r}")
        ids.extend(extra)
    return list(dict.fromkeys(ids))


def resolve(asked: Iterable[str], is_stored: Callable[[str], bool], parents: 'ParentMap') -> tuple[list[str], int]:
    """``(stored ids to remove, how many asked ids named nothing)``: an asked id names the
    stored document with that id and the stored passages whose parent it is.

    Example
    -------
    >>> m = ParentMap([Document(id='a/0', parent_id='a')])
    >>> resolve(['a', 'zz'], lambda i: i == 'a/0', m)
    (['a/0'], 1)
    """
    found: dict[str, None] = {}
    missing = 0
    for doc_id in asked:
        hits = [doc_id] if is_stored(doc_id) else []
        hits += [c for c in parents.children(doc_id) if is_stored(c)]
        if not hits:
            missing += 1
        found.update(dict.fromkeys(hits))
    return list(found), missing


def plan_update(docs: Iterable[Document], is_stored: Callable[[str], bool],
                parents: 'ParentMap') -> tuple[list[Document], list[str], int]:
    """``(documents to store, stored ids to remove, documents emptied)`` for an ``/update``
    of ``docs``.

    A document without ``parent_id`` replaces the stored one with its id (none: ignored);
    if the store holds passages of it instead, it has none now (its text was emptied): they
    are removed, and it is not stored.
    Passages (``parent_id`` set) replace their document whole: if the store holds passages
    of that parent, the request's passages are stored (replacing or added) and the parent's
    other stored passages removed; if it holds none (a document of another shard, or never
    indexed), only passages stored under their own id are replaced.

    Example
    -------
    >>> m = ParentMap([Document(id='a/0', parent_id='a'), Document(id='a/1', parent_id='a')])
    >>> store, stale, emptied = plan_update([Document(id='a/0', parent_id='a')], lambda i: i in ('a/0', 'a/1'), m)
    >>> [d.id for d in store], stale, emptied
    (['a/0'], ['a/1'], 0)
    """
    store: list[Document] = []
    stale: list[str] = []
    emptied = 0
    groups: dict[str, list[Document]] = {}
    for d in docs:
        if d.parent_id:
            groups.setdefault(d.parent_id, []).append(d)
            continue
        passages = [i for i in parents.children(d.id) if is_stored(i)]
        if passages:
            stale.extend(passages)
            emptied += 1
        elif is_stored(d.id):
            store.append(d)
    for parent, passages in groups.items():
        old = [i for i in parents.children(parent) if is_stored(i)]
        if old:
            new = {d.id for d in passages}
            stale.extend(i for i in old if i not in new)
            store.extend(passages)
        else:
            store.extend(d for d in passages if is_stored(d.id))
    return store, stale, emptied


class ParentMap:
    """parent id -> ids of the stored documents that name it as ``parent_id``.

    Built on first use by one pass over ``stored`` (any iterable of Documents, such as a
    ``DocumentArrayMemmap``: a store that never sees a whole-document update or delete
    never pays for the pass), then kept up to date by ``stored`` / ``removed``.

    Example
    -------
    >>> store = [Document(id='b/0', parent_id='b')]
    >>> m = ParentMap(store); m.children('b')
    ['b/0']
    >>> store.clear(); m.removed('b/0'); m.children('b')
    []
    """

    def __init__(self, source: Iterable[Document]) -> None:
        self._source = source
        self._children: dict[str, dict[str, None]] | None = None   # parent -> ids, in order stored
        self._parent_of: dict[str, str] = {}

    def _built(self) -> dict[str, dict[str, None]]:
        if self._children is None:
            self._children = {}
            for d in self._source:
                self._add(d.id, d.parent_id)
        return self._children

    def _add(self, doc_id: str, parent: str | None) -> None:
        self._drop(doc_id)
        if parent:
            self._children.setdefault(parent, {})[doc_id] = None
            self._parent_of[doc_id] = parent

    def _drop(self, doc_id: str) -> None:
        parent = self._parent_of.pop(doc_id, None)
        if parent is not None:
            ids = self._children[parent]
            ids.pop(doc_id, None)
            if not ids:
                del self._children[parent]

    def children(self, parent: str) -> list[str]:
        """Ids of the stored documents whose ``parent_id`` is ``parent``.

        >>> ParentMap([]).children('x')
        []
        """
        return list(self._built().get(parent, ()))

    def stored(self, docs: Iterable[Document]) -> None:
        """Note that ``docs`` were stored (a stored id's parent is replaced).

        >>> ParentMap([]).stored([Document(id='a/0', parent_id='a')])
        """
        if self._children is not None:  # not built yet: the pass will see them
            for d in docs:
                self._add(d.id, d.parent_id)

    def removed(self, doc_id: str) -> None:
        """Note that ``doc_id`` was deleted.

        >>> ParentMap([]).removed('a/0')
        """
        if self._children is not None:
            self._drop(doc_id)
