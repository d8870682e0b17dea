"""The fast paths behind a generator of ``Document(embedding=row)`` posted to a Flow: they
must build, batch, check and stack exactly what the general code does, and refuse the same
bad input with the same messages.

- ``Document(**fields)`` is built by the metaclass in one call (``Document(embedding=nd)``
  and ``Document()`` without the keyword loop);
- ``runtime.control.inputs`` takes a request's items with one islice and checks them
  together;
- ``runtime.columns._stack`` stacks a list's arrays with one ``np.array`` after C-level
  checks, falling back to the per-document loop that names the culprit.
"""
from __future__ import annotations

import inspect
import itertools
import uuid

import numpy as np
import pytest

from runtime import BadInputError, Document, DocumentArray
from runtime.columns import _stack, _stack_each
from runtime.control.inputs import _CHECK_EVERY, batched
from runtime.fields import DEFAULTS


def _same_but_id(a: Document, b: Document) -> bool:
    return a._state()[1:] == b._state()[1:] if a.embedding is None else (
        a == Document(b, id=a.id))


def test_fast_embedding_keyword_builds_the_same_document():
    row = np.arange(4, dtype=np.float32)
    fast = Document(embedding=row)
    slow = Document(None, embedding=row)  # a first argument: through __new__ / __init__
    assert fast.embedding is row  # no copy, as the setter
    assert _same_but_id(fast, slow)
    assert type(fast) is Document and len(fast.id) == 32 and fast.id != slow.id
    empty = Document()
    assert empty._state()[1:] == DEFAULTS[1:] and len(empty.id) == 32


def test_every_keyword_form_matches_the_init_path():
    forms = [dict(text='hi', tags={'a': 1}), dict(embedding=np.zeros(2), weight=2), dict(embedding=[1, 2]),
             dict(embedding=None), dict(tags__a__b=1), dict(content=b'raw'), dict(uri='a.png'),
             dict(embedding=np.zeros(3, np.float32).view(np.recarray))]
    for kw in forms:
        assert _same_but_id(Document(**kw), Document(None, **kw)), kw
    assert Document(id='x', embedding=np.zeros(2)) == Document(None, id='x', embedding=np.zeros(2))
    assert Document(id=None).id != Document(id=None).id
    assert Document(chunks=[Document()]).chunks[0].parent_id != ''  # the id exists before chunks are set


@pytest.mark.parametrize('bad, err, words', [
    (np.array([object(), object()]), TypeError, 'dtype object'),
    (np.zeros(2, dtype=[('a', 'O')]), TypeError, 'object fields'),
    ([[1, 2], [3]], TypeError, 'numpy array'),
    ('text', TypeError, 'numeric'),
])
def test_bad_embeddings_are_refused_with_the_setters_messages(bad, err, words):
    with pytest.raises(err, match=words) as fast:
        Document(embedding=bad)
    with pytest.raises(err) as slow:
        Document(None, embedding=bad)
    assert str(fast.value) == str(slow.value)


def test_other_calls_still_go_through_new_and_init():
    d = Document(text='x')
    assert Document(d) is d and Document(obj=d) is d
    assert Document(d, copy=True) == d and Document(d, copy=True) is not d
    assert Document({'q': 'why'}, field_resolver={'q': 'text'}).text == 'why'
    assert Document(field_resolver={'q': 'text'}, q='why').text == 'why'
    with pytest.raises(TypeError, match='unexpected keyword'):
        Document(txt='typo')
    with pytest.raises(ValueError, match='exclude each other'):
        Document(text='a', buffer=b'b')

    class Sub(Document):
        __slots__ = ()

        def __init__(self, n: int, **kw):
            super().__init__(**kw)
            self.tags['n'] = n

    s = Sub(3, embedding=np.zeros(2))
    assert type(s) is Sub and s.tags == {'n': 3} and s.embedding.shape == (2,)
    assert list(inspect.signature(Document).parameters) == ['obj', 'copy', 'field_resolver', 'fields']
    assert list(inspect.signature(Sub).parameters) == ['n', 'kw']


def test_fresh_ids_are_uuid4_hex():
    ids = [Document().id for _ in range(3000)]  # crosses a refill of the pool
    assert len(set(ids)) == len(ids)
    for i in ids[::97]:
        u = uuid.UUID(i)
        assert u.hex == i and u.version == 4 and u.variant == uuid.RFC_4122


def _docs(n: int) -> list[Document]:
    return [Document(embedding=np.full(3, i, np.float32)) for i in range(n)]


def test_generator_batches_keep_order_and_size():
    docs = _docs(2 * _CHECK_EVERY + 5)
    for size in (1, 100, _CHECK_EVERY, _CHECK_EVERY + 1, 10 ** 9):
        got = [b for b, _ in batched(iter(docs), size)]
        assert [len(b) for b in got[:-1]] == [size] * (len(got) - 1)
        assert [d for b in got for d in b] == docs and all(d is e for d, e in zip(itertools.chain(*got), docs))


def test_a_bad_generator_item_is_named_by_its_index_after_the_good_requests():
    def gen():
        yield from _docs(150)
        yield 42

    it = batched(gen(), 100)
    assert len(next(it)[0]) == 100
    with pytest.raises(BadInputError, match='item #150'):
        next(it)


def test_a_generator_of_junk_fails_soon_whatever_the_request_size():
    with pytest.raises(BadInputError, match='item #0'):
        next(batched(itertools.count(), 10 ** 9))  # never filled: checked every _CHECK_EVERY


def test_pairs_and_subclasses_across_requests():
    pairs = [(d, Document(text='t')) for d in _docs(250)]
    got = list(batched(iter(pairs), 100))
    assert [len(d) for d, _ in got] == [100, 100, 50]
    assert all(t is not None and t[0].text == 't' for _, t in got)
    mixed = itertools.chain(iter(pairs[:150]), _docs(1))
    with pytest.raises(BadInputError, match=r'item #150 .*not both'):
        list(batched(mixed, 100))
    with pytest.raises(BadInputError, match=r'item #120 .*not both'):
        list(batched(itertools.chain(_docs(120), pairs[:1]), 100))

    class Sub(Document):
        __slots__ = ()

    subs = [Sub(text=str(i)) for i in range(120)] + _docs(5)
    assert sum(len(b) for b, _ in batched(iter(subs), 100)) == 125


def test_stack_fast_path_matches_the_checked_loop():
    cases = [
        [Document(embedding=np.full(4, i, np.float32)) for i in range(5)],
        [Document(embedding=np.ones((2, 3), np.int8)) for _ in range(3)],
        [Document(embedding=np.float64(i) * np.ones(())) for i in range(3)],
        [Document(embedding=np.arange(3, dtype='>f4')) for _ in range(2)],
        [Document(embedding=np.zeros(2, dtype=[('a', 'i4'), ('b', 'f8')])) for _ in range(2)],
        [Document(embedding=np.ones(3).view(np.recarray)) for _ in range(2)],  # a subclass
    ]
    for docs in cases:
        fast, slow = _stack(docs, 'embedding'), _stack_each(docs, 'embedding')
        assert type(fast) is type(slow) and fast.dtype == slow.dtype and fast.shape == slow.shape
        assert fast.tobytes() == slow.tobytes()
        assert not np.shares_memory(fast, docs[0].embedding)
    assert _stack([Document(), Document()], 'embedding') is None and _stack([], 'embedding') is None


@pytest.mark.parametrize('second, words', [
    (np.ones(4), r'document #1 .* float64\[4\] but document #0'),
    (np.ones(3, np.float32), r'document #1 .* float32\[3\] but document #0'),
    (np.ones((1, 3)), r'document #1 .* float64\[1, 3\]'),
    (None, r'document #1 .* has no embedding'),
])
def test_stack_refuses_what_it_refused_naming_the_document(second, words):
    docs = [Document(embedding=np.ones(3)), Document(embedding=second)]
    with pytest.raises(ValueError, match=words):
        DocumentArray(docs).embeddings
    with pytest.raises(ValueError, match=r'document #0 .* has no embedding'):
        DocumentArray([Document(), Document(embedding=np.ones(3))]).embeddings


def test_stacking_goes_through_a_subclass_s_own_embedding_property():
    class Doubled(Document):
        @property
        def embedding(self):
            return None if self._embedding is None else self._embedding * 2

        @embedding.setter
        def embedding(self, value):
            self._embedding = value

    docs = DocumentArray([Doubled(embedding=np.ones(2)), Doubled(embedding=np.ones(2))])
    assert np.array_equal(docs.embeddings, np.full((2, 2), 2.0))
