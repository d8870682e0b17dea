"""Shared-memory transport: arenas, zero-copy receipt, arrays an executor keeps."""
from __future__ import annotations

import mmap
import os
import stat
import time
import uuid

import numpy as np
import pytest

from runtime import Document, DocumentArray, Executor, Flow, requests
from runtime.transport.local.codec import decode, encode
from runtime.transport.local.received import InputBuffers, buffer_refs
from runtime.transport.local.shm import Arena, Mapper, sweep


def _backed_by_mmap(arr: np.ndarray) -> bool:
    """Whether the array's memory is a shared-memory map (follows bases to the owner)."""
    base = arr
    while isinstance(base, np.ndarray):
        base = base.base
    objects = getattr(base, '_objects', None) or {}  # a ctypes view keeps its exporter here
    return any(isinstance(o, memoryview) and isinstance(o.obj, mmap.mmap) for o in objects.values())


@pytest.fixture
def arena():
    a = Arena(f'shmflow-test-{uuid.uuid4().hex[:8]}', 1 << 16)
    yield a
    a.close()


def test_arena_reuses_freed_space_lowest_first(arena):
    offs = [arena.alloc(10_000) for _ in range(3)]
    assert offs == sorted(offs) and all(o >= 0 for o in offs)
    assert len(set(offs)) == 3
    for o in offs:
        arena.free(o)
    assert arena.used == 0
    assert arena.alloc(10_000) == 0  # holes coalesced: the arena is whole again


def test_arena_a_long_held_slot_blocks_only_its_own_bytes(arena):
    held = arena.alloc(20_000)  # say, arrays an executor keeps
    for _ in range(50):  # many payloads come and go after it
        a, b = arena.alloc(20_000), arena.alloc(20_000)
        assert a >= 0 and b >= 0  # never pushed out to a segment file
        arena.free(b)
        arena.free(a)
    arena.free(held)
    assert arena.used == 0 and arena.live == 0
    assert arena.alloc(arena.size // 2) == 0


def test_arena_frees_in_any_order_and_coalesces(arena):
    offs = [arena.alloc(5_000) for _ in range(6)]
    for o in (offs[1], offs[4], offs[2], offs[0], offs[5], offs[3]):
        arena.free(o)
    assert arena.used == 0
    big = arena.alloc(arena.size // 2)
    assert big == 0  # one hole again, not six
    arena.free(offs[1])  # not a live slot any more (it is inside `big`): ignored
    assert arena.live == 1 and arena.used == arena.size // 2


def test_arena_full_or_oversized_falls_back_to_a_segment(arena):
    big = arena.alloc(arena.size)  # over max_slot
    assert big < 0
    name = arena.segment_name(big)
    assert os.path.exists(f'/dev/shm/{name}')
    arena.free(big)
    assert not os.path.exists(f'/dev/shm/{name}')
    held = [arena.alloc(20_000) for _ in range(4)]
    assert any(o < 0 for o in held)  # the arena filled up
    for o in held:
        arena.free(o)
    assert arena.live == 0


def test_arena_files_are_private(arena):
    mode = os.stat(f'/dev/shm/{arena.name}').st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_sweep_removes_only_the_prefix(arena):
    other = Arena(arena.name + 'x', 1 << 16)
    try:
        seg = other.alloc(other.size)
        assert sweep(other.name) == sorted([other.name, other.segment_name(seg)]) or \
            set(sweep(other.name)) == set()
        assert os.path.exists(f'/dev/shm/{arena.name}')
    finally:
        other.close()


def test_codec_roundtrip_is_zero_copy_and_names_unchanged_arrays(arena):
    docs = DocumentArray(Document(id=str(i), tags={'i': i}, blob=np.full((4, 100), i, np.int16))
                         for i in range(5))
    # (20 KB: in shared memory; a matrix of a few KB would ride inline, see test_inline_*)
    docs.embeddings = np.arange(5 * 1024, dtype=np.float32).reshape(5, 1024)
    payload, meta, allocs = encode(docs, arena)
    mapper = Mapper()
    inputs = InputBuffers(payload, mapper)
    got = decode(payload, meta, inputs)
    emb = got.embeddings
    assert not got.materialized  # reading the matrix unpickles no Document
    assert _backed_by_mmap(emb)
    assert np.array_equal(emb, docs.embeddings)
    assert got[2].tags == {'i': 2} and got[2].blob.dtype == np.int16
    assert np.shares_memory(got[2].embedding, emb)
    # re-encoding what was only read allocates nothing: the same buffers are named again
    again, meta2, allocs2 = encode(got, arena, inputs)
    assert allocs2 == []
    assert again[1][0] == payload[1][0]
    del got, emb
    assert inputs.kept() == []
    for s in allocs:
        arena.free(s)
    mapper.close()


def test_a_small_matrix_rides_inline_as_a_private_copy_that_allocates_and_pins_nothing(arena):
    # One query's embedding (3 KB): copying it through the socket costs less than a slot.
    d = Document(id='q', embedding=np.arange(768, dtype=np.float32))
    payload, meta, allocs = encode(DocumentArray([d]), arena)
    assert allocs == [] and arena.used == 0
    (ref,) = buffer_refs(payload)
    assert ref[0] is None and ref[3] == 768 * 4
    mapper = Mapper()
    try:
        inputs = InputBuffers(payload, mapper, reuse={})
        got = decode(payload, meta, inputs)
        emb = got.embeddings
        emb += 1  # a handler may write what it got in place...
        assert float(d.embedding[0]) == 0.0  # ...the sender's array is its own
        again = decode(payload, meta, InputBuffers(payload, mapper))
        assert float(again.embeddings[0, 0]) == 0.0  # and so is every other receiver's
        out, _, out_allocs = encode(got, arena, inputs)  # the change travels on, inline again
        assert out_allocs == [] and buffer_refs(out)[0][1] == (np.arange(768, dtype=np.float32) + 1).tobytes()
        del got
        assert inputs.kept() == []  # held (emb), but nothing in shared memory to pin
        inputs.done(mapper, [])
        assert float(emb[0, 0]) == 1.0
    finally:
        mapper.close()


def test_inline_bytes_per_request_are_bounded_the_rest_goes_to_shared_memory(arena):
    from runtime.transport.local.codec import INLINE_BUFFER_MAX, INLINE_TOTAL_MAX
    per = INLINE_BUFFER_MAX // 2
    docs = DocumentArray(Document(id=str(i), blob=np.full(per, i, np.uint8)) for i in range(8))
    docs.append(Document(id='big', blob=np.ones(INLINE_BUFFER_MAX + 1, np.uint8)))  # never inline
    payload, meta, allocs = encode(docs, arena)
    refs = buffer_refs(payload)
    inline = [r for r in refs if r[0] is None]
    assert sum(r[3] for r in inline) <= INLINE_TOTAL_MAX and len(inline) == INLINE_TOTAL_MAX // per
    assert len(allocs) == len(refs) - len(inline) >= 2
    mapper = Mapper()
    try:
        got = decode(payload, meta, InputBuffers(payload, mapper, copy=True))
        assert [int(d.blob[0]) for d in got][:8] == list(range(8)) and int(got[-1].blob.sum()) == INLINE_BUFFER_MAX + 1
    finally:
        for s in allocs:
            arena.free(s)
        mapper.close()


class Looker(Executor):
    @requests
    def look(self, docs, **kwargs):
        return {'shm': _backed_by_mmap(docs.embeddings),
                'materialized': docs.materialized}


class Doubler(Executor):
    @requests
    def double(self, docs, **kwargs):
        docs.embeddings *= 2  # in place, in shared memory


class Replacer(Executor):
    @requests
    def replace(self, docs, **kwargs):
        docs.embeddings = np.ones((len(docs), 3), dtype=np.float64)


def test_flow_embeddings_are_zero_copy_and_changes_travel():
    docs = DocumentArray(Document(id=str(i)) for i in range(30))
    src = np.random.default_rng(0).random((30, 768), dtype=np.float32)
    docs.embeddings = src.copy()
    with Flow().add(uses=Looker).add(uses=Doubler).add(name='look2', uses=Looker) as f:
        res = f.post('/', docs, request_size=10, return_results=True, results_in_order=True)
    assert len(res) == 3
    for r in res:
        out = r.parameters['__results__']
        assert out['Looker'] == {'shm': True, 'materialized': False}
        assert out['look2'] == {'shm': True, 'materialized': False}
    got = np.concatenate([r.docs.embeddings for r in res])
    assert got.dtype == np.float32 and np.array_equal(got, src * 2)
    # the caller's arrays are its own: the shared memory is gone with the Flow
    assert got.flags.writeable
    assert np.array_equal(docs.embeddings, src)  # the inputs were not modified


def test_flow_replaced_embeddings_keep_their_dtype():
    docs = DocumentArray(Document() for _ in range(4))
    docs.embeddings = np.zeros((4, 8), np.float32)
    with Flow().add(uses=Replacer) as f:
        (r,) = f.post('/', docs, return_results=True)
    assert r.docs.embeddings.dtype == np.float64 and r.docs.embeddings.shape == (4, 3)
    assert r.docs[0].embedding.tolist() == [1.0, 1.0, 1.0]


class ShapesAndSums(Executor):
    @requests
    def look(self, docs, **kwargs):
        return {'got': [None if d.embedding is None else (d.embedding.shape, float(d.embedding.sum()))
                        for d in docs]}


@pytest.mark.parametrize('request_size', [2, 100])
def test_a_columnar_array_whose_documents_changed_since_travels_as_the_documents_are(request_size):
    docs = DocumentArray(Document() for _ in range(5))
    docs.embeddings = np.ones((5, 3), np.float32)
    docs[1].embedding = np.full(3, 2, np.float32)  # same shape: its new values
    docs[2].embedding = np.full(4, 3, np.float32)  # another shape: each document its own
    docs[3].embedding = None
    with Flow().add(uses=ShapesAndSums, name='s') as f:
        res = f.post('/', docs, request_size=request_size, return_results=True, results_in_order=True)
    got = [g for r in res for g in r.parameters['__results__']['s']['got']]
    assert got == [((3,), 3.0), ((3,), 6.0), ((4,), 12.0), None, ((3,), 3.0)]


class Keeper(Executor):
    """Keeps every received document (and so views of shared memory) across requests."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.kept = DocumentArray()

    @requests(on='/index')
    def index(self, docs, **kwargs):
        self.kept.extend(docs)

    @requests(on='/check')
    def check(self, docs, **kwargs):
        return {'sums': [float(d.embedding.sum()) for d in self.kept], 'n': len(self.kept)}

    @requests(on='/forget')
    def forget(self, docs, **kwargs):
        self.kept = DocumentArray()


def test_arrays_an_executor_keeps_stay_intact_while_slots_are_reused():
    # A small arena: without pinning, later requests would overwrite the kept rows.
    n, dim = 200, 512
    docs = DocumentArray(Document(id=str(i)) for i in range(n))
    docs.embeddings = np.arange(n, dtype=np.float32)[:, None] * np.ones((n, dim), np.float32)
    with Flow(arena_size=1 << 18).add(uses=Keeper) as f:
        f.index(docs, request_size=10)
        for _ in range(3):  # churn: many more payloads through the same arena
            f.post('/other', docs, request_size=10)
        (r,) = f.post('/check', return_results=True)
        out = r.parameters['__results__']['Keeper']
        assert out['n'] == n
        assert out['sums'] == [float(i * dim) for i in range(n)]
        f.post('/forget')
        f.post('/other', docs, request_size=10)  # the released slots are usable again



class KeepEveryThird(Executor):
    """Keeps the matrix (documents never unpickled) of every third '/index' request, and
    reads every request's."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.kept, self.seen = [], 0

    @requests(on='/index')
    def index(self, docs, **kwargs):
        if self.seen % 3 == 0:
            self.kept.append(docs.embeddings)
        self.seen += 1

    @requests(on='/check')
    def check(self, docs, **kwargs):
        return {'sums': [float(m.sum()) for m in self.kept]}

    @requests(on='/forget')
    def forget(self, docs, **kwargs):
        self.kept = []

    @requests
    def read(self, docs, **kwargs):
        float(docs.embeddings.sum())


class TwiceInPlace(Executor):
    @requests
    def twice(self, docs, **kwargs):
        if docs.embeddings is not None:
            docs.embeddings *= 2  # in place: the next executor gets the same slot


class TwiceNew(Executor):
    @requests
    def twice(self, docs, **kwargs):
        if docs.embeddings is not None:
            docs.embeddings = docs.embeddings * 2  # a new matrix, in this worker's arena


def test_a_matrix_kept_from_some_requests_stays_intact_while_the_others_reuse_its_slot():
    # A worker takes the view of a slot again for the next request naming it; a view whose
    # matrix the executor kept must leave that reuse (and stay pinned), for a slot of the
    # parent's arena (passed on) and of a worker's (a new matrix).
    n, dim = 300, 256
    docs = DocumentArray(Document(id=str(i)) for i in range(n))
    docs.embeddings = np.arange(n, dtype=np.float32)[:, None] * np.ones((n, dim), np.float32)
    expected = [2 * dim * float(sum(range(10 * k, 10 * k + 10))) for k in range(0, n // 10, 3)]
    for first in (TwiceInPlace, TwiceNew):
        with Flow(arena_size=1 << 18).add(uses=first).add(uses=KeepEveryThird, name='keep') as f:
            f.index(docs, request_size=10)
            for _ in range(3):  # churn: the same slots, views taken again
                f.post('/other', docs, request_size=10)
            (r,) = f.post('/check', return_results=True)
            got = r.parameters['__results__']['keep']['sums']
            assert got == expected, first.__name__
            f.post('/forget')  # and what it let go is released
            rt, deadline = f._rt, time.monotonic() + 10
            while rt.transport.ledger.pins and time.monotonic() < deadline:
                rt.pump(0.05)
            assert not rt.transport.ledger.pins, first.__name__

def test_arrays_a_callback_keeps_stay_intact_while_slots_are_reused():
    # Callbacks get zero-copy views (of results of 32 KB and more: 10 x 1024 float32 here);
    # keeping them must pin their slots, not see them reused.
    n, dim = 300, 1024
    docs = DocumentArray(Document(id=str(i)) for i in range(n))
    docs.embeddings = np.arange(n, dtype=np.float32)[:, None] * np.ones((n, dim), np.float32)
    kept, texts = [], []
    with Flow(arena_size=1 << 18).add(uses=Doubler) as f:
        f.post('/', docs, request_size=10, on_done=lambda r: kept.append(r.docs.embeddings))
        f.post('/', docs, request_size=10, on_done=lambda r: texts.append(len(r.docs)))  # churn
    got = np.concatenate(kept)
    assert np.array_equal(got, docs.embeddings * 2)
    assert sum(texts) == n


def test_small_results_reach_callbacks_as_copies_that_hold_no_shared_memory():
    # A one-document query's result: copying its few KB costs less than viewing them and
    # tracking whether a callback kept the view. Keeping such arrays holds no slot.
    kept = []
    with Flow().add(uses=Doubler) as f:
        rt = f._rt
        for i in range(20):
            f.post('/', Document(embedding=np.full(768, i, np.float32)), on_done=lambda r: kept.append(r.docs[0]))
            assert not rt.transport.ledger.pins
        assert rt.transport._arena.live == 0
    assert [float(d.embedding[0]) for d in kept] == [2.0 * i for i in range(20)]
    kept[0].embedding[0] = -1  # a copy of its own: writable, like a view was


class ReadsMatrix(Executor):
    @requests
    def read(self, docs, **kwargs):
        float(docs.embeddings.sum())  # the documents themselves stay unpickled


_ONE_FIELD = {'text': 'x', 'blob': np.ones(2), 'buffer': b'x', 'uri': 'a.txt', 'mime_type': 'text/csv',
              'tags': {'k': 1}, 'chunks': [Document()], 'matches': [Document()], 'scores': {'s': 1.5},
              'parent_id': 'p', 'granularity': 1, 'adjacency': 2, 'weight': 0.5, 'modality': 'm',
              'evaluations': {'e': 0.25}}


def test_every_field_travels_when_only_the_last_document_sets_it():
    # The codec sends only the columns some document sets (ids alone when none does): one
    # document out of 100 setting one field must bring that column along.
    from runtime.fields import FIELDS
    assert set(_ONE_FIELD) == set(FIELDS) - {'id', 'embedding'}  # a new field gets a case here
    with Flow().add(uses=ReadsMatrix) as f:
        for name, value in _ONE_FIELD.items():
            docs = DocumentArray(Document() for _ in range(100))
            docs.embeddings = np.zeros((100, 4), np.float32)
            setattr(docs[99], name, value)
            (r,) = f.post('/', docs, return_results=True)
            assert list(r.docs) == list(docs), name  # (equality looks at every field)


def _write_routes() -> dict:
    # Every way a script or the runtime writes a field of an existing Document besides its
    # id and embedding. A new Document is marked plain (the codec then sends only its id);
    # each of these must take the mark away, or the field would not travel.
    import copy
    import pickle

    from runtime.control.merge import _merge_into

    def blobs(d):
        DocumentArray([d]).blobs = np.ones((1, 3))

    def texts(d):
        DocumentArray([d]).texts = ['t']

    routes = {f'{name} =': (lambda d, n=name, v=value: setattr(d, n, v)) for name, value in _ONE_FIELD.items()}
    routes.update({
        'tags[k] =': lambda d: d.tags.__setitem__('k', 1),
        'scores[s] =': lambda d: d.scores.__setitem__('s', 0.5),
        'evaluations[e] =': lambda d: d.evaluations.__setitem__('e', 0.25),
        'chunks.append': lambda d: d.chunks.append(Document(text='c')),
        'matches.append': lambda d: d.matches.append(Document(text='m')),
        'content = str': lambda d: setattr(d, 'content', 'x'),
        'content = bytes': lambda d: setattr(d, 'content', b'x'),
        'content = array': lambda d: setattr(d, 'content', np.ones(3)),
        'set_attributes(tags__a__b)': lambda d: d.set_attributes(tags__a__b=1),
        'set_attributes(weight)': lambda d: d.set_attributes(weight=2.0),
        'update(other)': lambda d: d.update(Document(text='u', tags={'a': 1})),
        'convert_text_to_uri': lambda d: (setattr(d, 'text', 'hi'), d.convert_text_to_uri()),
        'da.blobs =': blobs,
        'da.texts =': texts,
        'branch merge': lambda d: _merge_into(d, Document(text='merged', weight=3.0), None),
    })
    # Documents made from another, or rebuilt: each must send what it holds.
    made = {
        'Document(dict)': lambda d: Document({'uri': 'a.png', 'extra': 1}),
        'Document(json)': lambda d: Document('{"weight": 2.0}'),
        'Document(dict with chunks)': lambda d: Document({'chunks': [Document(text='c')]}),
        'Document(tags__a=1)': lambda d: Document(tags__a=1),
        'Document(doc, field=)': lambda d: Document(Document(text='src'), weight=3.0),
        'Document(doc, copy=True)': lambda d: Document(Document(text='src'), copy=True),
        'copy.copy': lambda d: copy.copy(Document(text='src')),
        'pickle': lambda d: pickle.loads(pickle.dumps(Document(text='src'))),
    }
    return routes, made


def test_every_way_of_writing_a_field_makes_it_travel(arena):
    routes, made = _write_routes()
    mapper = Mapper()
    cases = [(name, route, False) for name, route in routes.items()] + [(n, r, True) for n, r in made.items()]
    for name, route, replaces in cases:
        docs = [Document(embedding=np.full(4, i, np.float32)) for i in range(3)]
        if replaces:
            docs[2] = route(None)
            docs[2].embedding = np.full(4, 2, np.float32)
        else:
            route(docs[2])
        payload, meta, allocs = encode(DocumentArray(docs), arena)
        got = list(decode(payload, meta, InputBuffers(payload, mapper, copy=True)))
        assert got == docs, f'{name}: {got[2]!r} arrived, {docs[2]!r} was sent'
        for slot in allocs:
            arena.free(slot)
    mapper.close()


def test_one_document_arrives_with_its_embedding_of_any_shape_and_layout(arena):
    # A request of one document (an interactive query) places its embedding without
    # stacking it: shape, dtype and values must come out as they went in.
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    embeddings = [np.float32(3.5) * np.ones(()), np.arange(5, dtype=np.float16), x, x[:, ::2], x.T[1],
                  np.arange(3, dtype=np.int64)]
    mapper = Mapper()
    try:
        for e in embeddings:
            d = Document(embedding=e)
            payload, meta, allocs = encode(DocumentArray([d]), arena)
            (got,) = decode(payload, meta, InputBuffers(payload, mapper, copy=True))
            assert got.embedding.shape == e.shape and got.embedding.dtype == e.dtype
            assert np.array_equal(got.embedding, e)
            for slot in allocs:
                arena.free(slot)
    finally:
        mapper.close()


def test_documents_an_executor_kept_from_an_earlier_request_are_copied_when_it_returns_them(arena):
    # An executor keeps a request's documents (never unpickled) and returns them with a
    # later request. The slots they lie in belong to the earlier request: once it is over
    # and the executor lets go, they are reused. What is sent must not name them.
    mapper = Mapper()
    try:
        # (arrays of 32 KB: in shared memory, not inline in the message)
        first = DocumentArray([Document(id='a', blob=np.full(8192, 7, np.float32),
                                        embedding=np.ones(8192, np.float32))])
        p1, m1, slots1 = encode(first, arena)
        kept = decode(p1, m1, InputBuffers(p1, mapper))
        later = DocumentArray([Document(id='b', blob=np.full(8192, 3, np.float32))])
        p2, m2, slots2 = encode(later, arena)
        out, meta, allocs = encode(kept, arena, InputBuffers(p2, mapper))  # the handler returns `kept`
        assert allocs and not {r[:2] for r in buffer_refs(out)} & {r[:2] for r in buffer_refs(p1)}
        del kept
        for slot in slots1:  # the earlier request is over: its slots are reused
            arena.free(slot)
        reuse, _, more = encode(DocumentArray([Document(blob=np.zeros(16384, np.float32))]), arena)
        (got,) = decode(out, meta, InputBuffers(out, mapper, copy=True))
        assert float(got.blob[0]) == 7.0 and got.blob.shape == (8192,) and float(got.embedding.sum()) == 8192.0
        # and the documents of the request being answered still pass through uncopied
        inputs = InputBuffers(p2, mapper)
        passed, _, none = encode(decode(p2, m2, inputs), arena, inputs)
        assert none == [] and buffer_refs(passed) == buffer_refs(p2)
        del inputs
        for slot in [*slots2, *allocs, *more]:
            arena.free(slot)
    finally:
        mapper.close()


class AliasBlob(Executor):
    @requests
    def alias(self, docs, **kwargs):
        if len(docs) > 1 and docs[0].blob is not None:
            docs[1].blob = docs[0].blob[:]  # the same bytes: the payload names that buffer twice


class KeepSecondBlob(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.kept = None

    @requests(on='/index')
    def index(self, docs, **kwargs):
        self.kept = docs[1].blob  # the second naming only

    @requests(on='/check')
    def check(self, docs, **kwargs):
        return {'sum': float(self.kept.sum())}

    @requests(on='/forget')
    def forget(self, docs, **kwargs):
        self.kept = None

    @requests
    def read(self, docs, **kwargs):
        for d in docs:
            if d.blob is not None:
                float(d.blob.sum())


def test_a_kept_array_of_a_buffer_named_twice_is_pinned_and_released_when_let_go():
    # The view that is held must be the one pinned: pinning the other naming of the same
    # buffer would never see it let go (or see it too early).
    blob = np.arange(4000, dtype=np.float64)  # (32 KB: in shared memory, not inline)
    docs = DocumentArray([Document(blob=blob), Document(blob=np.zeros(4000))])
    with Flow(arena_size=1 << 18).add(uses=AliasBlob).add(uses=KeepSecondBlob, name='keep') as f:
        f.index(docs)
        for _ in range(20):  # churn: the same slots, views taken again
            f.post('/other', docs)
        (r,) = f.post('/check', return_results=True)
        assert r.parameters['__results__']['keep']['sum'] == float(blob.sum())
        rt = f._rt
        assert rt.transport.ledger.pins  # held while the executor keeps it
        f.post('/forget')
        deadline = time.monotonic() + 10
        while rt.transport.ledger.pins and time.monotonic() < deadline:
            rt.pump(0.05)  # an idle worker tells what it let go within its idle poll
        assert not rt.transport.ledger.pins


class KeepLast(Executor):
    """Keeps the previous request's matrix only (an indexer that buffers, then flushes)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.last = None

    @requests
    def keep(self, docs, **kwargs):
        self.last = docs.embeddings  # the one before is let go here


def test_buffers_let_go_are_released_while_requests_keep_coming():
    # A worker used to tell which kept buffers it let go only when idle for a while: under a
    # steady stream every slot it had kept once stayed held, and the arenas filled up.
    n = 600
    held = []
    x = np.random.default_rng(0).random((n * 10, 64), dtype=np.float32)
    with Flow().add(uses=KeepLast) as f:
        ledger = f._rt.transport.ledger
        f.post('/', (Document(embedding=row) for row in x), request_size=10,
               on_done=lambda r: held.append(len(ledger.pins)))
    assert len(held) == n
    assert max(held) < n // 2 and held[-1] < n // 2, (max(held), held[-1])


# -- each executor's writes are its own (copy-on-write maps) ------------------------------------
class KeepsWhatItGets(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.store = []

    @requests(on='/index')
    def index(self, docs, **kwargs):
        self.store.append(docs.embeddings)

    @requests(on='/check')
    def check(self, docs, **kwargs):
        return {'sum': float(sum(float(e.sum()) for e in self.store))}


class ZeroesInPlace(Executor):
    @requests(on=['/index', '/'])
    def zero(self, docs, **kwargs):
        docs.embeddings *= 0  # in place, as a normalizer's /= would be


class SumsWhatItGets(Executor):
    @requests
    def total(self, docs, **kwargs):
        return {'sum': float(docs.embeddings.sum())}


def _ones(n=100, dim=64):
    return DocumentArray(Document(embedding=np.ones(dim, np.float32)) for _ in range(n))


#: Documents per request: 100 x 64 float32 (25 KB) lie in shared memory; 4 (1 KB) ride
#: inline in the message. Each executor's writes must be its own either way.
WAYS = pytest.mark.parametrize('n', [100, 4], ids=['shared-memory', 'inline'])


@WAYS
def test_an_in_place_change_travels_on_but_leaves_what_an_earlier_executor_kept(n):
    with Flow().add(uses=KeepsWhatItGets, name='idx').add(uses=ZeroesInPlace) as f:
        (r,) = f.post('/index', _ones(n), return_results=True)
        assert float(r.docs.embeddings.sum()) == 0.0  # the change reached the caller
        (r,) = f.post('/check', Document(), return_results=True)
        assert r.parameters['__results__']['idx']['sum'] == n * 64.0  # the indexer's copy is intact


@WAYS
def test_a_parallel_branch_does_not_see_another_branchs_in_place_change(n):
    f = (Flow().add(uses=ZeroesInPlace, name='a', needs='gateway')
         .add(uses=SumsWhatItGets, name='b', needs='gateway').add(name='join', needs=['a', 'b']))
    with f:
        (r,) = f.post('/', _ones(n), return_results=True)
    assert r.parameters['__results__']['b']['sum'] == n * 64.0
    assert float(r.docs.embeddings.sum()) == 0.0  # the join keeps what branch a changed


class AliasesBlobToEmbedding(Executor):
    @requests
    def alias(self, docs, **kwargs):
        for d in docs:
            d.blob = d.embedding  # one array, twice in each document


class UnpicklesOnly(Executor):
    @requests
    def look(self, docs, **kwargs):
        [d.id for d in docs]  # every Document unpickled, nothing changed


class BumpsBlobs(Executor):
    @requests
    def bump(self, docs, **kwargs):
        for d in docs:
            d.blob += 1  # in place, the blob only


@pytest.mark.parametrize('dim', [8, 5000], ids=['inline', 'shared-memory'])
@pytest.mark.parametrize('between', [0, 1])
def test_arrays_that_share_bytes_in_one_executor_are_separate_in_the_next(dim, between):
    # As in Jina 2, where every executor got its own deserialized documents.
    f = Flow().add(uses=AliasesBlobToEmbedding)
    for _ in range(between):
        f = f.add(uses=UnpicklesOnly)
    with f.add(uses=BumpsBlobs) as f:
        (r,) = f.post('/', DocumentArray(Document(embedding=np.zeros(dim, np.float32)) for _ in range(3)),
                      return_results=True)
    assert r.docs.blobs.tolist() == np.ones((3, dim)).tolist()
    assert r.docs.embeddings.tolist() == np.zeros((3, dim)).tolist()


class AddsOneThenDiesOnce(Executor):
    def __init__(self, marker: str = '', **kwargs):
        super().__init__(**kwargs)
        self.marker = marker

    @requests
    def add(self, docs, **kwargs):
        docs.embeddings += 1
        if not os.path.exists(self.marker):
            open(self.marker, 'w').close()
            os._exit(9)  # after changing the request's arrays


@WAYS
def test_a_retry_gets_the_request_as_it_was_before_the_dead_attempt(tmp_path, n):
    with Flow().add(uses=AddsOneThenDiesOnce, uses_with={'marker': str(tmp_path / 'died')},
                    max_restarts=1, max_retries=1) as f:
        (r,) = f.post('/', _ones(n), return_results=True)
    assert (tmp_path / 'died').exists()
    assert r.docs.embeddings.tolist() == np.full((n, 64), 2.0).tolist()


class AddsOne(Executor):
    @requests
    def add(self, docs, **kwargs):
        docs.embeddings += 1


def test_slots_reused_after_in_place_writes_show_the_new_bytes():
    # A process that wrote a slot in place holds a private copy of its pages; once the
    # owner reuses the slot for another request, the process must see the new bytes.
    x = np.arange(300 * 10 * 1024, dtype=np.float32).reshape(300 * 10, 1024) % 1000
    got = []

    def scribble(r):  # a callback that changes its results in place (views, not copies)
        e = r.docs.embeddings
        got.append(e.copy())
        e[:] = -1

    with Flow().add(uses=AddsOne).add(uses=AddsOne, name='again').add(uses=SumsWhatItGets) as f:
        # Requests of other sizes make slots start and end elsewhere than the written ones.
        for request_size in (10, 10, 15, 6, 20):
            got.clear()
            docs = DocumentArray(Document(embedding=row) for row in x)
            f.post('/', docs, request_size=request_size, on_done=scribble, results_in_order=True)
            assert np.array_equal(np.concatenate(got), x + 2), request_size
            assert np.array_equal(docs.embeddings, x)  # the caller's own arrays are untouched


class DoublesBlobs(Executor):
    @requests
    def double(self, docs, **kwargs):
        for d in docs:
            d.blob *= 2  # in place (an image normalizer)


def test_in_place_writes_to_arrays_of_varying_sizes_travel_right():
    rng = np.random.default_rng(0)
    blobs = [rng.random((int(rng.integers(8, 64)), 256), dtype=np.float32) for _ in range(400)]
    got = {}
    with Flow().add(uses=DoublesBlobs) as f:
        # (requests mix blobs inline in the message with blobs in shared memory)
        f.post('/', DocumentArray(Document(id=str(i), blob=b) for i, b in enumerate(blobs)), request_size=4,
               on_done=lambda r: got.update({d.id: d.blob.copy() for d in r.docs}))
        assert not f._rt.transport.ledger.pins  # nothing is held once the callbacks are done
    assert [i for i, b in enumerate(blobs) if not np.array_equal(got[str(i)], b * 2)] == []


def test_a_process_drops_its_private_pages_only_where_it_takes_memory_up_again(arena):
    # Copy-on-write maps: the owner (the arena) writes, another process's view (here a
    # Mapper in this process) writes its own copy. Taking up a range that overlaps what was
    # written drops the private pages there only; a range still held keeps its changes.
    page = mmap.PAGESIZE
    arena.array(0, 6 * page)[:] = 1
    m = Mapper()
    try:
        held, _ = m.view(arena.name, 0, 0, 2 * page)        # pages 0-1: kept, written
        other, _ = m.view(arena.name, 2 * page, 0, 4 * page)  # pages 2-5: written, let go
        np.frombuffer(held, np.uint8)[:] = 7
        np.frombuffer(other, np.uint8)[:] = 9
        m.mark(arena.name, 0, 2 * page)
        m.mark(arena.name, 2 * page, 6 * page)
        arena.array(2 * page, 4 * page)[:] = 5  # the owner reuses pages 2-5 (split otherwise)
        fresh, _ = m.view(arena.name, 3 * page, 0, page)  # a new slot over page 3 only
        assert set(np.frombuffer(fresh, np.uint8)) == {5}
        assert set(np.frombuffer(held, np.uint8)) == {7}  # never taken up: its change stays
        assert set(np.frombuffer(other, np.uint8)[:page]) == {9}  # page 2: still this process's
        again = m.copy(arena.name, 2 * page, 0, page)  # taken up now: the owner's bytes
        assert set(again) == {5}
    finally:
        del held, other, fresh
        m.close()


class Produces(Executor):
    @requests
    def make(self, docs, parameters, **kwargs):
        docs.embeddings = np.full((len(docs), 1024), float(parameters['k']), np.float32)


class KeepsUntouchedThenWrites(Executor):
    """Keeps the documents themselves, not reading them (an indexer that buffers); writes
    what it kept later."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.kept = None

    @requests(on='/keep')
    def keep(self, docs, **kwargs):
        self.kept = docs

    @requests(on='/write')
    def write(self, docs, **kwargs):
        self.kept.embeddings[:] = -1
        self.kept = None

    @requests(on='/check')
    def check(self, docs, **kwargs):
        return {'values': sorted(set(docs.embeddings.ravel().tolist()))}


def _let_go(f):
    ledger = f._rt.transport.ledger
    deadline = time.monotonic() + 10
    while ledger.pins and time.monotonic() < deadline:
        f._rt.pump(0.05)  # an idle worker tells what it let go within its idle poll
    assert not ledger.pins


def test_what_is_kept_untouched_and_written_later_leaves_no_stale_pages():
    docs = lambda: [Document() for _ in range(16)]  # noqa: E731
    with Flow().add(uses=Produces).add(uses=KeepsUntouchedThenWrites, name='b') as f:
        f.post('/keep', docs(), parameters={'k': 1})
        f.post('/write', docs(), parameters={'k': 2})
        _let_go(f)
        for _ in range(4):  # the kept slot is reused: the worker must see the new bytes
            (r,) = f.post('/check', docs(), parameters={'k': 3}, return_results=True)
            assert r.parameters['__results__']['b']['values'] == [3.0]
            assert set(r.docs.embeddings.ravel().tolist()) == {3.0}
        # the same in the parent: a callback keeps a response untouched, writes it later
        kept = []
        f.post('/check', docs(), parameters={'k': 4}, on_done=kept.append)
        kept[0].docs.embeddings[:] = -1
        kept.clear()
        _let_go(f)
        for _ in range(4):
            (r,) = f.post('/check', docs(), parameters={'k': 5}, return_results=True)
            assert set(r.docs.embeddings.ravel().tolist()) == {5.0}
