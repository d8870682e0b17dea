"""Pickling that gives every place a document or an array was put its own object.

Pickle's memo writes an object met a second time as a reference to the first: one array
set on several documents, or one Document appended as a match of several queries, would
unpickle as one object in the next process, where changing it in one place changes every
place. Jina 2 (protobuf) copied into each place. The codec (``codec.py``) pickles array
columns through ``own_arrays`` and documents holding chunks or matches, subclasses, and
repeated documents through ``dumps_separated``; the receiver rebuilds them with
``received._rebuild_docs``. The reasons, in detail, are in the comment below.

Example
-------
>>> a = np.ones(3); b, c = own_arrays((a, a)); b is c
False
"""
from __future__ import annotations

import copy
import copyreg
import io
import pickle
import sys
import weakref
from operator import attrgetter, is_not
from itertools import repeat
from typing import Any, Callable

import numpy as np

from ...array import DocumentArray
from ...document import Document
from ...document_build import _compact
from ...fields import SLOTS, TABLE
from ...scores import NamedScores
from .received import LazyDocumentArray, _load_class, _rebuild_docs

__all__ = ['EncodeError', 'own_arrays', 'dumps_separated', 'ARRAY_COLUMNS', 'DOCS_COLUMNS', 'SHARED_COLUMNS',
           'MAX_COPIES']


class EncodeError(TypeError):
    """The documents cannot be sent to another process; the message names the document
    and the field. (A worker reports it as the failure of the handler that produced them.)"""


# What this needs of the Document field table, by column (a field of every document, in
# ``Document._state`` order).
ARRAY_COLUMNS = tuple(i for i, f in enumerate(TABLE) if f.kind == 'array')
# Columns that hold Documents (chunks, matches): pickled document by document, see _reduce_docs.
DOCS_COLUMNS = tuple(i for i, f in enumerate(TABLE) if f.kind == 'docs')
# Columns of containers (tags, scores, evaluations), which a document met twice must not
# share with its other occurrence (see _fresh_state).
_MAPPING_COLUMNS = tuple(i for i, f in enumerate(TABLE) if f.kind == 'mapping')
SHARED_COLUMNS = frozenset(DOCS_COLUMNS + _MAPPING_COLUMNS)
# The columns whose containers a Document's state gives as None when never used.
_EMPTY_WHEN_UNUSED = tuple(i for i, f in enumerate(TABLE) if f.pack == 'empty')
_view = np.ndarray.view
# One C-level call returns every field of a Document (in the order above).
_fields = attrgetter(*SLOTS)


# Why array fields travel as new views of themselves: pickle's memo writes an object met a
# second time as a reference to the first, so one ndarray set as the blob (or embedding) of
# several documents (``for d in docs: d.blob = shared``), or of a document and its chunk,
# would unpickle as one array in the next process, where an in-place change of one
# document's blob would change all of them. Jina 2 gave every document its own arrays. A
# new view is an object nothing else in the pickle references, over the same bytes: it is
# pickled (and placed in the arena, or named in the inputs) as the array itself would be,
# with its dtype, shape and strides; only the sharing is lost. Values in tags are left to
# pickle's rules (an array twice in tags is one array after), as copy.deepcopy does; but
# a tag value never aliases a blob or an embedding. The columnar matrix is not pickled, so
# its rows (views already) cost nothing here.
#
# The same memo would merge one Document object met twice: one document appended as a
# match of several queries (an indexer's ``for q in docs: q.matches.append(stored)``), a
# document that is also a chunk or a match of another. The memo is looked up before any
# reducer runs, so no reducer of the Document can prevent that; so Documents in chunks and
# matches are never pickled as objects: each list is reduced (``_reduce_docs``) to the
# states of its documents, fresh tuples, which the receiver rebuilds into new Documents
# (``received._rebuild_docs``). The first time a document is met its state holds its own
# containers (tags, scores, chunks, matches); met again (``seen``: by object, in one
# pickle) it is sent as a copy whose containers are new objects all the way down
# (``_fresh_state``), so that nothing of it is pickled twice. Jina 2 (protobuf) copied a
# document into each place it was added, which is what arrives.


def own_arrays(col: tuple) -> tuple:
    """An array column (blobs or embeddings of every document) with each array replaced by
    a new view of itself, so that pickle's memo cannot make two documents share one.

    >>> a = np.ones(3)
    >>> b, c = own_arrays((a, a))
    >>> b is c, np.shares_memory(b, a)
    (False, True)
    """
    if all(map(is_not, col, repeat(None))):
        return tuple(map(_view, col))  # (C-level: no Python call per document)
    return tuple([None if a is None else _view(a) for a in col])


def _compile_reduce_own_arrays() -> Any:
    # Generated from the field table, as _plain_ids below: ``d.__reduce__()`` with each
    # array field that is set replaced by a new view (see ``own_arrays``). Written out
    # field by field, it costs ~0.3 us a document with arrays over Document's own reduce,
    # a loop over the columns twice that.
    none = ' and '.join(f's[{i}] is None' for i in ARRAY_COLUMNS)
    views = ''.join(f'    if s[{i}] is not None:\n        s[{i}] = _view(s[{i}])\n' for i in ARRAY_COLUMNS)
    src = ('def _reduce_own_arrays(d):\n    rv = d.__reduce__()\n    s = rv[1][0]\n'
           f'    if {none}:\n        return rv\n'
           f'    s = list(s)\n{views}'
           '    return rv[0], (tuple(s),)\n')
    namespace: dict = {'_view': _view}
    exec(src, namespace)  # noqa: S102 - our own source, from the field table
    return namespace['_reduce_own_arrays']


#: A Document's reduce (``(rebuild, (state,))``: only types that use Document's own get it,
#: see _dispatch_table) with arrays of its own. (Documents in chunks and matches travel as
#: states, see _reduce_docs: this is for one pickled anywhere else, a Document in tags.)
_reduce_own_arrays = _compile_reduce_own_arrays()


#: The copies (see _fresh_state) one pickle may make: past that the documents hold one
#: another in so many places (through cycles: every document a match of every other) that
#: copying each place, as Jina 2 did, would not end in reasonable time or memory.
MAX_COPIES = 200_000


class _Pickling:
    """What the reducers of one pickle share: the documents sent so far (by ``id``), how
    many more copies may be made, and whether a cycle was met (see _fresh_state)."""

    __slots__ = ('seen', 'copies_left', 'cyclic')

    def __init__(self, seen: set) -> None:
        self.seen, self.copies_left, self.cyclic = seen, MAX_COPIES, False


class _Copies:
    """The chunks or matches of a document that ``_fresh_state`` copies (pickled by
    ``_reduce_docs``, as a DocumentArray); ``within`` and ``tree`` as for _fresh_state."""

    __slots__ = ('docs', 'within', 'tree')

    def __init__(self, docs: list, within: frozenset, tree: set) -> None:
        self.docs, self.within, self.tree = docs, within, tree


def _compile_states() -> Any:
    # Generated from the field table, as _reduce_own_arrays: the states of a list of plain
    # Documents, each as Document.__reduce__ makes it (containers only ever read as None,
    # see document_build._compact) with arrays of its own, written out so that a document
    # costs no Python call (a match list of a search result is ~10 of them per query).
    # Stops at the first document of another type: the caller goes on from there.
    unused = ' or '.join(f'(s[{i}] is not None and not s[{i}])' for i in _EMPTY_WHEN_UNUSED)
    any_array = ' or '.join(f's[{i}] is not None' for i in ARRAY_COLUMNS)
    views = ''.join(f'            if s[{i}] is not None:\n                s[{i}] = _view(s[{i}])\n'
                    for i in ARRAY_COLUMNS)
    src = ('def _states(docs, pickling, within, tree):\n    out = []\n    append = out.append\n'
           '    seen = pickling.seen\n    add = seen.add\n'
           '    for d in docs:\n'
           '        if type(d) is not Document:\n            break\n'
           '        if id(d) in seen:\n'
           '            append(_fresh_state(d, pickling, within, tree))\n            continue\n'
           '        add(id(d))\n'
           '        s = _fields(d)\n'
           f'        if {unused}:\n            s = _compact(s)\n'
           f'        if {any_array}:\n            s = list(s)\n{views}            s = tuple(s)\n'
           '        append(s)\n'
           '    return out\n')
    namespace: dict = {'_view': _view, 'Document': Document, '_fields': _fields, '_compact': _compact,
                       '_fresh_state': _fresh_state}
    exec(src, namespace)  # noqa: S102 - our own source, from the field table
    return namespace['_states']


def _fresh(value: Any) -> Any:
    """A tag value (or scores) as a new object all the way down: dicts, lists and tuples
    rebuilt, arrays as new views, NamedScores copied, anything else but plain immutable
    values deep-copied.

    >>> t = {'a': [1, {'b': 2}]}
    >>> f = _fresh(t)
    >>> f == t, f['a'] is t['a'], f['a'][1] is t['a'][1]
    (True, False, False)
    """
    t = type(value)
    if t in _ATOMS:
        return value
    if t is dict:
        return {k: _fresh(v) for k, v in value.items()}
    if t is list:
        return [_fresh(v) for v in value]
    if t is tuple:
        return tuple([_fresh(v) for v in value])
    if t is np.ndarray and not value.dtype.hasobject:
        return _view(value)
    if t is NamedScores:
        return value.copy()
    return copy.deepcopy(value)


_ATOMS = frozenset({str, int, float, bool, type(None), bytes, complex})


def _fresh_state(d: Document, pickling: _Pickling, within: frozenset, tree: set | None) -> tuple:
    """The state of a document met again in one pickle: its arrays as new views, its
    containers new objects (its chunks and matches are then met again: copies too).

    ``within``: the documents (by ``id``) this copy is part of a copy of. A document met
    again inside a copy of itself (``a.matches.append(b); b.matches.append(a)``: a cycle,
    which pickle's memo sent as one object) is sent there without its chunks and
    matches: Jina 2, which copied a document when it was added, never held a document
    inside itself either. ``tree``: the documents copied with their chunks and matches
    into the copy that this one is part of (None: this one is not part of a copy). Once
    a pickle met a cycle, a document goes into one such copy with its chunks and matches
    once, and is cut as above in the other places of that copy: every simple path of a
    graph in which the documents hold one another would be as many copies as its
    documents have orderings (an acyclic graph is copied in full)."""
    pickling.copies_left -= 1
    if pickling.copies_left < 0:
        raise EncodeError(f'the documents are held in more than {MAX_COPIES} places through the chunks and matches '
                          f'of one another (e.g. every document a match of every other), and each place is sent as '
                          f'a copy of its own, as in Jina 2; append copies (Document(d, copy=True)) rather than '
                          f'documents that have matches or chunks of their own')
    s = list(_compact(_fields(d)))
    for i in ARRAY_COLUMNS:
        if s[i] is not None:
            s[i] = _view(s[i])
    for i in _MAPPING_COLUMNS:
        if s[i] is not None:
            s[i] = _fresh(s[i])
    key = id(d)
    if tree is None:
        tree = set()
    if key in within:
        pickling.cyclic = True
    if key in within or (pickling.cyclic and key in tree):
        for i in DOCS_COLUMNS:
            s[i] = None
    else:
        within = within | {key}
        tree.add(key)
        for i in DOCS_COLUMNS:
            if s[i] is not None:
                s[i] = _Copies(list(s[i]), within, tree)  # a new object: _reduce_docs runs for it
    return tuple(s)


_states = _compile_states()
_NOTHING: frozenset = frozenset()


def _reduce_docs(docs: list, pickling: _Pickling, within: frozenset = _NOTHING, tree: set | None = None) -> tuple:
    """The reduce of a list of Documents (chunks, matches): their states, rebuilt by
    ``received._rebuild_docs`` (see the comment above ``own_arrays``); ``within`` and
    ``tree`` as for ``_fresh_state``."""
    states = _states(docs, pickling, within, tree)
    if len(states) == len(docs):
        return _rebuild_docs, (states,)
    # Other types than Document from here on: the class of each with it.
    inline, seen = _DISPATCH[2], pickling.seen
    kinds: list = [None] * len(states)
    for d in docs[len(states):]:
        t = type(d)
        if t in inline:  # (pickles as Document does: as its state)
            if id(d) in seen:
                states.append(_fresh_state(d, pickling, within, tree))
            else:
                seen.add(id(d))
                states.append(_reduce_own_arrays(d)[1][0])
            kinds.append(None if t is Document else t)
        else:  # a pickling of its own: pickled as itself
            states.append(d)
            kinds.append(True)
    return _rebuild_docs, (states, kinds)


def _reduce_class(cls: type) -> Any:
    """How a Document subclass itself is pickled: by name where the receiving process can
    import it by that name (it has this process's ``sys.path``), else by value, as the
    executors' classes travel (cloudpickle): a class defined in the user's script
    (``__main__``), inside a function, or in a module shipped by value. The receiving
    process has none of those by name."""
    blob = _CLASS_PICKLES.get(cls)
    if blob is None:
        if _importable(cls):
            blob = b''
        else:
            import cloudpickle
            blob = cloudpickle.dumps(cls, protocol=5)
        _CLASS_PICKLES[cls] = blob
    if not blob:
        return cls.__qualname__  # (a str: pickled as the global of that name in cls.__module__)
    return _load_class, (blob,)


#: What _reduce_class decided for each class (b'': by name), and the class's pickle.
_CLASS_PICKLES: 'weakref.WeakKeyDictionary[type, bytes]' = weakref.WeakKeyDictionary()


def _importable(cls: type) -> bool:
    name = cls.__module__
    if not name or name == '__main__':
        return False
    import cloudpickle
    if any(name == m or name.startswith(m + '.') for m in cloudpickle.list_registry_pickle_by_value()):
        return False
    obj = sys.modules.get(name)
    for part in cls.__qualname__.split('.'):  # ('<locals>' is no attribute: not found)
        obj = getattr(obj, part, None)
    return obj is cls


# copyreg's table plus, for Document and each subclass that pickles as it does,
# ``_reduce_own_arrays``, and for their metaclasses ``_reduce_class``; what it was built
# from; and those Document types (remade when copyreg's table or the types change).
_DISPATCH: tuple[tuple, dict, frozenset] = ((), {}, frozenset())


def _dispatch_table() -> dict:
    """The pickler's ``dispatch_table`` but for the lists of Documents (see dumps_separated):
    a dict that the C pickler reads directly, so that every other object (arrays, scores)
    pickles at its usual cost, with no Python call."""
    global _DISPATCH
    types, others, todo = [Document], [], [Document]
    while todo:
        for sub in type.__subclasses__(todo.pop()):
            if sub.__reduce__ is Document.__reduce__ and sub.__reduce_ex__ is Document.__reduce_ex__ \
                    and sub not in copyreg.dispatch_table:
                types.append(sub)
            else:
                others.append(sub)
            todo.append(sub)
    key = (len(copyreg.dispatch_table), *types, None, *others)
    if _DISPATCH[0] != key:
        table = dict(copyreg.dispatch_table)
        table.update(dict.fromkeys(types, _reduce_own_arrays))
        # (a class whose type is not ``type`` itself is looked up in the dispatch table)
        table.update(dict.fromkeys({type(t) for t in types + others} - {type}, _reduce_class))
        _DISPATCH = (key, table, frozenset(types))
    return _DISPATCH[1]


def _array_types() -> list:
    """DocumentArray and its subclasses but those with a pickling of their own (a
    LazyDocumentArray's documents are taken as they are: ``_docs`` unpickles them)."""
    out, todo = [DocumentArray], [DocumentArray]
    while todo:
        for sub in type.__subclasses__(todo.pop()):
            if sub.__reduce__ in _ARRAY_REDUCES and sub not in copyreg.dispatch_table:
                out.append(sub)
            todo.append(sub)
    return out


_ARRAY_REDUCES = (DocumentArray.__reduce__, LazyDocumentArray.__reduce__)


def dumps_separated(obj: Any, seen: set, buffer_callback, states_taken: Callable[[], None] | None = None) -> bytes:
    """``pickle.dumps`` that gives every Document inside (a chunk, a match, a document of a
    subclass) arrays and containers of its own, and is a document of its own (see the
    comment above ``own_arrays``). ``seen``: the documents already sent (by ``id``), which
    are sent as copies if they are met again. ``states_taken`` (``obj`` a DocumentArray)
    is called once the states of ``obj``'s own documents are taken, before anything
    inside them is pickled: the codec gives back there the embeddings it took off them.

    >>> a, b = Document(id='a'), Document(id='b')
    >>> b.matches.extend([a])
    >>> got = pickle.loads(dumps_separated(DocumentArray([b, a]), set(), None))
    >>> got[0].matches[0].id, got[0].matches[0] is got[1]
    ('a', False)
    """
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=5, buffer_callback=buffer_callback)
    table = dict(_dispatch_table())
    pickling = _Pickling(seen)

    def reduce_docs(da: DocumentArray) -> tuple:
        return _reduce_docs(da._docs, pickling)

    def reduce_docs_then_tell(da: DocumentArray) -> tuple:
        if da is not obj:
            return _reduce_docs(da._docs, pickling)
        try:
            return _reduce_docs(da._docs, pickling)
        finally:
            states_taken()

    def reduce_copies(c: _Copies) -> tuple:
        return _reduce_docs(c.docs, pickling, c.within, c.tree)

    table.update(dict.fromkeys(_array_types(), reduce_docs if states_taken is None else reduce_docs_then_tell))
    table[_Copies] = reduce_copies
    pickler.dispatch_table = table
    pickler.dump(obj)
    return out.getvalue()
