"""Building Documents fast: the state-tuple functions generated from the field table
(``_fill``, ``_fill_new``, ``_rebuild_document``, ``_compact``), the metaclass that makes
``Document(**fields)`` one Python call, and how keywords are applied (``_set_fields``).

The codec rebuilds every document of every request, and generators build one per input
row, so each of these is shaped by measurement (see the comments). :mod:`runtime.document`
defines the class with the metaclass below and then hands it over with :func:`bind`; this
module never imports it (it could not: the class needs this module first).

Examples
--------
>>> from runtime.document import Document
>>> d = Document(text='x'); _rebuild_document(d._state()) == d
True
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np

from .document_io import _ACCEPTED_KEYWORDS, _SETTERS, _check_one_content
from .fields import DEFAULTS, SLOTS, TABLE
from .ids import _ID_POOL, _new_id
from .values import _coerce_id

__all__ = ['bind']

Document: Any = None  # runtime.document.Document, set by bind()
_new = object.__new__
_pop_id = _ID_POOL.pop  # the pool is cleared in a forked child, never replaced
_ndarray = np.ndarray


def _pad(state: tuple) -> tuple:
    # A state stored before a field was added to the end of the table.
    n = len(state)
    if n > len(DEFAULTS):
        raise ValueError(f'a Document state has {n} fields, this version knows {len(DEFAULTS)}: '
                         f'it was written by a newer version')
    return tuple(state) + DEFAULTS[n:]


_EMPTY_WHEN_UNUSED = tuple(i for i, f in enumerate(TABLE) if f.pack == 'empty')


def _compile(namespace: dict) -> None:
    # Generated from the table (as dataclasses and attrs generate __init__): one unpacking
    # assignment is ~3x faster than a loop of setattr, and the codec rebuilds every
    # document of every request with these.
    targets = ''.join(f'd.{s}, ' for s in SLOTS)
    pad = f'    if len(state) != {len(SLOTS)}:\n        state = _pad(state)\n'
    unused = ' or '.join(f'(state[{i}] is not None and not state[{i}])' for i in _EMPTY_WHEN_UNUSED)
    values = {'_id': 'id', '_embedding': 'embedding'}
    fresh = ''.join(f'    d.{s} = {values.get(s, repr(v))}\n' for s, v in zip(SLOTS, DEFAULTS))
    # _plain (see Document.__slots__): True only from _fill_new, where every field but the
    # id and the embedding is its default; a state tuple may hold anything.
    src = (f'def _fill(d, state):\n{pad}    {targets}= state\n    d._plain = False\n\n'
           # Module-level on purpose: pickle stores a function by name much faster than a
           # bound classmethod (3.8 us against 10 us for a small Document).
           f'def _rebuild_document(state):\n    d = _new(Document)\n{pad}    {targets}= state\n'
           '    d._plain = False\n    return d\n\n'
           # A new Document: its fresh id, its embedding, every other field its default
           # (literals: the table's defaults are None, '', 0 and 0.0); plain stores,
           # without _fill's length check or a state tuple to build.
           f'def _fill_new(d, id, embedding):\n{fresh}    d._plain = True\n\n'
           f'def _compact(state):\n    if {unused}:\n'
           f'        return tuple(None if i in _EMPTY_WHEN_UNUSED and s is not None and not s else s '
           f'for i, s in enumerate(state))\n    return state\n')
    exec(src, namespace)  # noqa: S102 - the source is built from the constant field table


_fill: Callable[[Any, tuple], None]  # set every slot from a state tuple
_rebuild_document: Callable[[tuple], Any]  # a new Document from a state tuple
_fill_new: Callable[[Any, str, Any], None]  # set every slot of a new Document
_compact: Callable[[tuple], tuple]  # a state with empty containers as None
_compile(globals())
# Pickles name it where it always was, and runtime.document re-exports it: pickles written
# before this module existed still load, and new ones load in older versions.
_rebuild_document.__module__ = 'runtime.document'


class _DocumentType(type):
    """The type of ``Document``: it builds ``Document(**fields)`` (no first argument: how
    scripts and generators make documents) in one Python call. ``type.__call__`` would
    call ``__new__`` and then ``__init__``, each with its own copy of the keywords, which
    was 40% of the cost of ``Document(embedding=row)``. Every other call, and every
    subclass, goes through ``__new__`` / ``__init__`` as before."""

    def __call__(cls, *args: Any, **fields: Any) -> Any:
        if args or cls is not Document:
            return type.__call__(cls, *args, **fields)
        value = None
        if fields:
            value = fields.get('embedding')
            # Document(embedding=row), a generator's usual form, goes on below: the
            # embedding setter's check (check_array) inlined.
            if len(fields) != 1 or type(value) is not _ndarray or value.dtype.hasobject:
                if 'copy' in fields or 'field_resolver' in fields or 'obj' in fields:
                    return type.__call__(cls, **fields)
                d = _new(Document)
                _fill_new(d, None, None)  # (a setter of any field but id and embedding clears _plain)
                _set_fields(d, fields)
                if d._id is None:
                    d._id = _new_id()
                return d
        d = _new(Document)
        try:  # _new_id() without the call
            new_id = _pop_id()
        except IndexError:
            new_id = _new_id()
        _fill_new(d, new_id, value)
        return d

    @property
    def __signature__(cls) -> inspect.Signature:
        # What inspect.signature / help() show: the parameters of __init__, not the
        # (*args, **fields) of __call__ above.
        sig = inspect.signature(cls.__init__)
        return sig.replace(parameters=list(sig.parameters.values())[1:], return_annotation=sig.empty)


_NESTED = ('chunks', 'matches')


def _set_fields(d: Any, fields: dict[str, Any]) -> None:
    # The keywords of Document(...), validated like attribute assignment.
    if len(fields) > 1:  # one keyword cannot clash with itself
        _check_one_content(fields, 'Document()')
    if d._id is None and fields.get('id') is None:
        d._id = _new_id()  # before chunks=... so that they get it as parent_id
    if 'chunks' in fields or 'matches' in fields:
        # Chunks and matches take parent_id / granularity / adjacency from this document
        # when added: they go last, whatever the caller's keyword order, so that they see
        # the finished document.
        fields = {k: v for k, v in fields.items() if k not in _NESTED} | {
            k: fields[k] for k in _NESTED if k in fields}
    for key, value in fields.items():
        if key == 'embedding' and type(value) is _ndarray and not value.dtype.hasobject:
            # What the embedding setter does with an ndarray (check_array), inlined: a
            # generator of Document(embedding=row) spends its time here.
            d._embedding = value
            continue
        setter = _SETTERS.get(key)
        if setter is not None:
            setter(d, value)
        elif '__' in key and key.split('__', 1)[0] == 'tags':
            d._set_path(key, value)
        else:
            raise TypeError(f'Document() got an unexpected keyword {key!r}; valid fields are: '
                            f'{", ".join(_ACCEPTED_KEYWORDS)} (and tag paths such as tags__key)')


def _set_new_id(d: Any, value: Any) -> None:
    # A Document under construction sits in no DocumentArray: no need to bump _ID_EPOCH
    # (which would make the next id miss of every array rebuild its index).
    # None (e.g. "id": null in JSON) means "no id given": a fresh one is made at the end.
    if value is not None:
        d._id = _coerce_id(value)


def bind(document: type) -> None:
    """Hand over the class that :mod:`runtime.document` built with :class:`_DocumentType`:
    the functions above build it, and its property setters apply keywords and mapping keys.

    >>> bind(Document)  # doctest: +SKIP - done once, by runtime.document
    """
    global Document
    Document = document
    # How each keyword / mapping key is applied, validated like attribute assignment. The
    # table lives in runtime.document_io, whose set_attributes reads it too.
    _SETTERS.update({
        'id': _set_new_id,
        **{f.name: getattr(document, f.name).fset for f in TABLE if f.name != 'id'},
        'content': document.content.fset,
    })
