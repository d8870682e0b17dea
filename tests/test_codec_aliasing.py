"""One ndarray object held by several documents arrives as one array per document.

Pickle's memo writes an object met twice as a reference to the first, so without care
``for d in docs: d.blob = shared`` in one executor made every document of the next share
one array: an in-place change of one document's blob changed all of them. Jina 2
(protobuf) gave every document its own arrays; so does the codec, for the fields it
carries as arrays (blob, embedding) at any depth (chunks, matches). Values inside tags keep
pickle's sharing among themselves, but never alias an array field.

The same goes for one Document object in several places (the matches of several queries):
each place arrives as a document of its own. Also here: a request with tens of thousands of
arrays (one segment for what the arena has no room for, not one each), and Document
subclasses that a worker cannot import by name (sent by value).
"""
from __future__ import annotations

import os
import sys
import uuid

import numpy as np
import pytest

from runtime import Document, DocumentArray, Executor, Flow, requests
from runtime.transport.local.codec import decode, encode
from runtime.transport.local.received import InputBuffers, buffer_refs
from runtime.transport.local.shm import Arena, Mapper

# Sizes that take each way an array travels: inside the pickle (< 1 KB), inline in the
# message header (a few KB), in a shared-memory slot (tens of KB).
SIZES = {'in-pickle': 4, 'inline': 500, 'shared-memory': 5000}


@pytest.fixture
def arena():
    a = Arena(f'shmflow-test-{uuid.uuid4().hex[:8]}', 1 << 20)
    yield a
    a.close()


@pytest.fixture
def mapper():
    m = Mapper()
    yield m
    m.close()


def _round_trip(docs: list, arena: Arena, mapper: Mapper) -> tuple[list, list]:
    """The documents as a receiver sees them (zero-copy views), and the slots to free."""
    payload, meta, allocs = encode(DocumentArray(docs), arena)
    return list(decode(payload, meta, InputBuffers(payload, mapper))), allocs


def _free(arena: Arena, allocs: list) -> None:
    for slot in allocs:
        arena.free(slot)


def _all_separate(arrays: list) -> bool:
    return all(not np.shares_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])


# -- end to end ------------------------------------------------------------------------------


class SharesOneArray(Executor):
    """Sets one array object as a field of every document (the handler's usual shortcut)."""

    def __init__(self, field: str = 'blob', size: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.field, self.size = field, size

    @requests
    def share(self, docs, **kwargs):
        shared = np.ones(self.size)
        for d in docs:
            setattr(d, self.field, shared)
        if self.field == 'embedding':
            docs[-1].embedding = np.zeros(2)  # another shape: the embeddings are no columnar matrix


class BumpsTheFirst(Executor):
    def __init__(self, field: str = 'blob', **kwargs):
        super().__init__(**kwargs)
        self.field = field

    @requests
    def bump(self, docs, **kwargs):
        value = getattr(docs[0], self.field)
        value += 1  # in place: this document's array only
        return docs


@pytest.mark.parametrize('size', [SIZES['in-pickle'], SIZES['shared-memory']], ids=['in-pickle', 'shared-memory'])
@pytest.mark.parametrize('field', ['blob', 'embedding'])
def test_one_array_set_on_every_document_is_changed_in_place_for_one_document_only(field, size):
    with Flow().add(uses=SharesOneArray, uses_with={'field': field, 'size': size}) \
            .add(uses=BumpsTheFirst, uses_with={'field': field}) as f:
        (r,) = f.post('/', DocumentArray(Document() for _ in range(4)), return_results=True)
    got = [getattr(d, field).tolist() for d in r.docs]
    assert got[0] == [2.0] * size  # the one changed...
    assert got[1:3] == [[1.0] * size] * 2  # ...and not the others
    assert got[3] == ([0.0, 0.0] if field == 'embedding' else [1.0] * size)


# -- the codec -------------------------------------------------------------------------------


@pytest.mark.parametrize('size', list(SIZES.values()), ids=list(SIZES))
@pytest.mark.parametrize('field', ['blob', 'embedding'])
def test_one_array_in_several_documents_decodes_as_one_array_each(arena, mapper, field, size):
    shared = np.arange(size, dtype=np.float32)
    docs = [Document(id=str(i)) for i in range(3)]
    for d in docs:
        setattr(d, field, shared)
    docs.append(Document(id='other', **{field: np.zeros(2, np.float32)}))  # (no columnar matrix)
    got, allocs = _round_trip(docs, arena, mapper)
    arrays = [getattr(d, field) for d in got[:3]]
    assert _all_separate(arrays)
    arrays[0] += 1
    assert [a.tolist() for a in arrays[1:]] == [shared.tolist()] * 2
    assert float(shared[0]) == 0.0  # (and the sender's own array was never written)
    del got, arrays
    _free(arena, allocs)


def test_blob_and_embedding_of_one_object_decode_as_two_arrays(arena, mapper):
    shared = np.ones(5000, np.float32)
    docs = [Document(blob=shared, embedding=shared), Document()]  # (one without: no matrix)
    (d, _), allocs = _round_trip(docs, arena, mapper)
    assert not np.shares_memory(d.blob, d.embedding)
    del d
    _free(arena, allocs)


@pytest.mark.parametrize('size', list(SIZES.values()), ids=list(SIZES))
def test_an_array_shared_with_chunks_matches_and_tags_is_separate_in_every_field(arena, mapper, size):
    shared = np.arange(size, dtype=np.float64)
    docs = []
    for i in range(2):
        d = Document(id=str(i), blob=shared)
        d.chunks.append(Document(blob=shared, embedding=shared))  # a segmenter's whole-blob chunk
        d.matches.append(Document(embedding=shared))
        d.tags['original'] = shared
        docs.append(d)
    got, allocs = _round_trip(docs, arena, mapper)
    fields = [a for d in got for a in (d.blob, d.chunks[0].blob, d.chunks[0].embedding, d.matches[0].embedding)]
    assert _all_separate(fields)
    tags = [d.tags['original'] for d in got]
    assert not any(np.shares_memory(t, a) for t in tags for a in fields)  # a tag never aliases a field
    assert all(a.tolist() == shared.tolist() for a in fields + tags)
    del got, fields, tags
    _free(arena, allocs)


class Sub(Document):
    """A Document subclass: pickled object by object rather than as columns."""


def test_documents_of_a_subclass_get_arrays_of_their_own_too(arena, mapper):
    shared = np.ones(3000, np.float32)
    docs = [Sub(blob=shared) for _ in range(3)]
    got, allocs = _round_trip(docs, arena, mapper)
    assert all(type(d) is Sub for d in got)
    assert _all_separate([d.blob for d in got])
    del got
    _free(arena, allocs)


@pytest.mark.parametrize('make', [
    lambda: np.arange(24, dtype='>i4').reshape(4, 6),  # big-endian, 2-d
    lambda: np.asfortranarray(np.arange(600, dtype=np.int16).reshape(20, 30)),  # F order
    lambda: np.arange(2400, dtype=np.float32).reshape(40, 60)[:, ::2],  # not contiguous
    lambda: np.array(3.5),  # 0-d
    lambda: np.zeros((0, 3), np.uint8),  # no bytes
], ids=['big-endian', 'fortran', 'strided', '0-d', 'empty'])
def test_separated_arrays_keep_dtype_shape_and_layout(arena, mapper, make):
    shared = make()
    got, allocs = _round_trip([Document(blob=shared) for _ in range(2)], arena, mapper)
    for d in got:
        assert d.blob.dtype == shared.dtype and d.blob.shape == shared.shape
        assert np.array_equal(d.blob, shared)
        assert d.blob.flags.f_contiguous == shared.flags.f_contiguous
    if shared.size:
        assert _all_separate([d.blob for d in got])
    del got
    _free(arena, allocs)


def test_columnar_embeddings_still_travel_as_one_matrix_with_row_views(arena, mapper):
    # The hot path: one matrix in shared memory, each document's embedding a view of it.
    docs = DocumentArray(Document(id=str(i)) for i in range(8))
    docs.embeddings = np.arange(8 * 1024, dtype=np.float32).reshape(8, 1024)
    payload, meta, allocs = encode(docs, arena)
    assert len(buffer_refs(payload)) == 1  # the matrix, and nothing else
    inputs = InputBuffers(payload, mapper)
    got = decode(payload, meta, inputs)
    emb = got.embeddings
    assert all(np.shares_memory(d.embedding, emb) for d in got)
    # re-encoding what was only read still names the received buffers, copying nothing
    again, _, more = encode(got, arena, inputs)
    assert more == [] and buffer_refs(again) == buffer_refs(payload)
    del got, emb
    _free(arena, allocs)


def test_separated_arrays_are_named_again_not_copied_by_the_next_stage(arena, mapper):
    shared = np.ones(5000, np.float32)
    payload, meta, allocs = encode(DocumentArray(Document(blob=shared) for _ in range(3)), arena)
    inputs = InputBuffers(payload, mapper)
    got = decode(payload, meta, inputs)
    [d.id for d in got]  # every Document unpickled, nothing changed
    again, _, more = encode(got, arena, inputs)
    assert more == []  # each document's blob lies in a slot of its own: named, not copied
    del got
    _free(arena, allocs)


def test_values_other_than_arrays_are_still_pickled_once(arena, mapper):
    # The memo keeps the pickle small: a long value shared by every document is sent once.
    text = 'x' * 10_000
    docs = [Document(id=str(i), tags={'note': text}) for i in range(50)]
    payload, meta, allocs = encode(DocumentArray(docs), arena)
    assert len(meta) < 2 * len(text)
    _free(arena, allocs)


# -- one Document object in several places ----------------------------------------------------


class IndexesOne(Executor):
    """An indexer's pattern: one stored Document object appended to every query's matches."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stored = Document(id='stored', blob=np.zeros(3000), tags={'meta': {'seen': []}})
        self.stored.chunks.append(Document(id='part', tags={'k': 1}))

    @requests
    def index(self, docs, **kwargs):
        for d in docs:
            d.matches.append(self.stored)


class ScoresEachMatch(Executor):
    """Changes each query's match in place, as a ranker does."""

    @requests
    def score(self, docs, **kwargs):
        for i, d in enumerate(docs):
            m = d.matches[0]
            m.scores['s'] = float(i)
            m.tags['query'] = d.id
            m.tags['meta']['seen'].append(d.id)
            m.blob[0] = i + 1
            m.chunks[0].tags['k'] = i


def test_one_document_appended_as_a_match_of_several_queries_is_a_match_of_its_own_in_each():
    with Flow().add(uses=IndexesOne).add(uses=ScoresEachMatch) as f:
        (r,) = f.post('/', DocumentArray(Document(id=q) for q in 'abc'), return_results=True)
    got = [(d.id, d.matches[0].scores['s'].value, d.matches[0].tags['query'], d.matches[0].tags['meta']['seen'],
            d.matches[0].blob[0], d.matches[0].chunks[0].tags['k']) for d in r.docs]
    assert got == [('a', 0.0, 'a', ['a'], 1.0, 0), ('b', 1.0, 'b', ['b'], 2.0, 1), ('c', 2.0, 'c', ['c'], 3.0, 2)]
    m = r.docs[0].matches[0]
    assert (m.id, m.adjacency, m.chunks[0].parent_id, m.chunks[0].granularity) == ('stored', 1, 'stored', 1)


def _separate_docs(docs: list) -> bool:
    """No two of ``docs`` share the Document or any container or array."""
    parts = [[d, d.tags, d.scores, d.chunks, d.matches] for d in docs]
    ids = [id(p) for ps in parts for p in ps]
    arrays = [d.blob for d in docs if d.blob is not None]
    return len(set(ids)) == len(ids) and _all_separate(arrays)


def test_a_document_in_several_places_decodes_as_one_document_per_place(arena, mapper):
    shared = Document(id='x', blob=np.arange(3000.0), tags={'deep': {'list': [1]}})
    shared.scores['cosine'] = 0.5
    shared.chunks.append(Document(id='xc', blob=np.ones(2000)))
    queries = [Document(id=f'q{i}') for i in range(3)]
    for q in queries:
        q.matches.append(shared)
    queries[0].chunks.append(shared)  # a chunk too
    queries[1].matches.append(queries[2])  # a document of the request that is a match too
    got, allocs = _round_trip(queries, arena, mapper)
    places = [got[0].chunks[0], got[1].matches[1]] + [q.matches[0] for q in got]
    assert _separate_docs(places + [got[2]])
    xs = places[:1] + places[2:]
    assert _separate_docs([x.chunks[0] for x in xs])
    assert {id(x.tags['deep']['list']) for x in xs}.__len__() == len(xs)
    assert {id(x.scores['cosine']) for x in xs}.__len__() == len(xs)
    assert all(x.blob.tolist() == shared.blob.tolist() and x.scores['cosine'].value == 0.5 for x in xs)
    assert [x.chunks[0].id for x in xs] == ['xc'] * 4 and xs[1].adjacency == 1 and xs[1].chunks[0].parent_id == 'x'
    assert got[1].matches[1].id == 'q2'
    del got, places, xs
    _free(arena, allocs)


def test_one_document_twice_in_a_request_decodes_as_two(arena, mapper):
    d = Document(id='twice', tags={'a': [1]})
    d.matches.append(Document(id='m'))
    got, allocs = _round_trip([d, d], arena, mapper)
    assert _separate_docs(got) and _separate_docs([g.matches[0] for g in got])
    assert [g.tags for g in got] == [{'a': [1]}] * 2
    _free(arena, allocs)


class SubMatch(Document):
    """A subclass among matches: kept as its type, and separated as a Document is."""


class OwnReduce(Document):
    """A subclass with a pickling of its own: sent as itself."""

    def __reduce__(self):
        return OwnReduce._from_state, (self._state(),)


def test_subclass_matches_keep_their_type_and_are_separated(arena, mapper):
    sub = SubMatch(id='s', tags={'t': 1})
    q = Document(id='q')
    q.matches.extend([Document(id='p'), sub, OwnReduce(id='o'), sub])
    got, allocs = _round_trip([q], arena, mapper)
    ms = got[0].matches
    assert [(type(m), m.id) for m in ms] == [(Document, 'p'), (SubMatch, 's'), (OwnReduce, 'o'), (SubMatch, 's')]
    assert _separate_docs([ms[1], ms[3]])
    _free(arena, allocs)


class ReportsMatchEmbeddings(Executor):
    """Tags each document with the embeddings of its matches and chunks, as it got them."""

    @requests
    def report(self, docs, **kwargs):
        for d in docs:
            d.tags['m_emb'] = [None if m.embedding is None else m.embedding.tolist() for m in d.matches]
            d.tags['c_emb'] = [None if c.embedding is None else c.embedding.tolist() for c in d.chunks]


@pytest.mark.parametrize('case', ['plain', 'with a subclass', 'one document twice'])
def test_a_request_document_that_is_also_a_match_or_chunk_keeps_its_embedding_there(case):
    # The request's embeddings travel as the matrix, not inside each document; a request
    # document met again as a match (or chunk) of another is sent as a copy, which must
    # carry its embedding however the request is pickled.
    a = Document(id='a', embedding=np.array([1., 2.]))
    b = Document(id='b', embedding=np.array([3., 4.]))
    b.matches.append(a)
    b.chunks.append(a)
    extra = {'plain': [], 'with a subclass': [SubMatch(id='c', embedding=np.array([5., 6.]))],
             'one document twice': [a]}[case]
    with Flow().add(uses=ReportsMatchEmbeddings) as f:
        (r,) = f.post('/', DocumentArray([a, b, *extra]), return_results=True)
    got = {d.id: d for d in r.docs}
    assert got['b'].tags['m_emb'] == [[1., 2.]] and got['b'].tags['c_emb'] == [[1., 2.]]
    assert [d.embedding.tolist() for d in r.docs] == [d.embedding.tolist() for d in [a, b, *extra]]
    assert a.embedding.tolist() == [1., 2.] and b.matches[0].embedding is a.embedding  # (the sender's, as they were)


def _chain(d: Document) -> list:
    """The ids down the first match of each match."""
    out = [d.id]
    while d.matches:
        d = d.matches[0]
        out.append(d.id)
    return out


def test_documents_that_hold_one_another_are_cut_where_a_copy_would_hold_itself(arena, mapper):
    # a <-> b: pickle's memo sent the cycle as it was; a copy in each place cannot be a
    # cycle, so a document met inside a copy of itself is sent there without its matches.
    a, b = Document(id='a'), Document(id='b')
    a.matches.append(b)
    b.matches.append(a)
    (ga, gb), allocs = _round_trip([a, b], arena, mapper)
    assert _chain(ga) == ['a', 'b', 'a', 'b'] and _chain(gb) == ['b', 'a', 'b', 'a']
    assert ga.matches[0] is not gb and ga.matches[0].matches[0] is not ga
    _free(arena, allocs)
    # Every document a match of every other: copies of each simple path would be n!; what
    # is sent grows as a power of n.
    docs = [Document(id=str(i)) for i in range(12)]
    for x in docs:
        x.matches.extend([y for y in docs if y is not x])
    payload, meta, allocs = encode(DocumentArray(docs), arena)
    assert len(meta) < 2_000_000
    got = decode(payload, meta, InputBuffers(payload, mapper))
    assert [[m.id for m in d.matches] for d in got] == [[m.id for m in d.matches] for d in docs]
    del got
    _free(arena, allocs)


def test_matches_named_again_not_copied_by_a_stage_that_only_reads_them(arena, mapper):
    shared = Document(id='x', blob=np.ones(3000))
    queries = [Document(id=f'q{i}') for i in range(3)]
    for q in queries:
        q.matches.append(shared)
    payload, meta, allocs = encode(DocumentArray(queries), arena)
    inputs = InputBuffers(payload, mapper)
    got = decode(payload, meta, inputs)
    [m.blob.sum() for d in got for m in d.matches]  # unpickled, read, not changed
    again, _, more = encode(got, arena, inputs)
    assert more == [] and sorted(buffer_refs(again)) == sorted(buffer_refs(payload))
    del got
    _free(arena, allocs)


# -- many buffers in one request -------------------------------------------------------------


def test_tens_of_thousands_of_arrays_share_a_few_packed_segments(mapper):
    # Past the arena, each buffer had a segment file of its own, which the receiver mapped
    # (a file descriptor each): 60,000 chunks ran the receiving worker out of them. Small
    # buffers are packed, into segments of at most PACK_SEGMENT_MAX (a receiver keeping one
    # array holds its whole segment).
    from runtime.transport.local.codec import PACK_SEGMENT_MAX
    small = Arena(f'shmflow-test-{uuid.uuid4().hex[:8]}', 1 << 16)
    try:
        d = Document(id='a')
        d.chunks.extend(Document(embedding=np.full(130, float(i))) for i in range(60_000))  # 1 KB each
        payload, meta, allocs = encode(DocumentArray([d]), small)
        segments = {(r[0], r[1]) for r in buffer_refs(payload) if r[0] is not None and r[1] < 0}
        packed = -(-60_000 * 1088 // PACK_SEGMENT_MAX)  # (1,040 bytes each, at 64-byte steps)
        assert packed <= len(segments) <= packed + 1 and len([s for s in allocs if s < 0]) == len(segments)
        fds = len(os.listdir('/proc/self/fd'))
        inputs = InputBuffers(payload, mapper)
        assert len(os.listdir('/proc/self/fd')) - fds <= len(segments) + 1
        (got,) = decode(payload, meta, inputs)
        assert [c.embedding[0] for c in got.chunks[::10_000]] == [0.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0,
                                                                   50_000.0]
        again, _, more = encode(DocumentArray([got]), small, inputs)  # named again, in one lookup each
        assert more == []
        del got, inputs
        _free(small, allocs)
        assert small.live == 0
    finally:
        small.close()


def test_a_buffer_over_pack_max_gets_a_segment_of_its_own():
    # Kept by a receiver, an array holds its whole segment: a 40 KB blob packed with a
    # request's others would hold them all.
    from runtime.transport.local.codec import PACK_MAX
    small = Arena(f'shmflow-test-{uuid.uuid4().hex[:8]}', 1 << 16)
    try:
        d = Document(id='a')
        d.chunks.extend(Document(blob=np.full(PACK_MAX // 8 + 1, float(i))) for i in range(20))  # > PACK_MAX each
        payload, _, allocs = encode(DocumentArray([d]), small)
        refs = [r for r in buffer_refs(payload) if r[0] is not None and r[1] < 0]
        assert len({r[1] for r in refs}) == len(refs) >= 16 and all(r[2] == 0 for r in refs)  # (3 fit the arena)
        _free(small, allocs)
    finally:
        small.close()


def test_a_full_dev_shm_is_an_error_not_a_sigbus(monkeypatch):
    # tmpfs takes pages at the first write: through a map, a full /dev/shm is SIGBUS, which
    # kills the process. A segment's pages are reserved when it is made: ENOSPC, an error.
    import errno
    from runtime.transport.local import shm

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(shm.os, 'posix_fallocate', full)
    small = Arena(f'shmflow-test-{uuid.uuid4().hex[:8]}', 1 << 16)
    try:
        d = Document(id='a', blob=np.ones(1 << 16))  # 512 KB: past the arena
        with pytest.raises(Exception, match='No space left on device'):
            encode(DocumentArray([d]), small)
        assert small.live == 0 and not [f for f in os.listdir('/dev/shm') if f.startswith(small.name + '-s')]
    finally:
        small.close()


class SharesOneEmbedding(Executor):
    """A segmenter that puts one embedding object on each of many chunks."""

    @requests
    def segment(self, docs, **kwargs):
        vec = np.ones(130)  # (over 1 KB: out of band)
        for d in docs:
            d.chunks.extend(Document(text=str(i), embedding=vec) for i in range(60_000))


class CountsChunks(Executor):
    @requests
    def count(self, docs, **kwargs):
        for d in docs:
            d.tags['n'] = len(d.chunks)
            d.chunks[-1].embedding[0] = -1.0


def test_a_document_with_sixty_thousand_chunks_goes_through_a_flow():
    with Flow(arena_size=1 << 20).add(uses=SharesOneEmbedding).add(uses=CountsChunks) as f:
        (r,) = f.post('/', DocumentArray([Document(id='a')]), return_results=True)
    (d,) = r.docs
    assert d.tags['n'] == 60_000
    assert d.chunks[-1].embedding[:2].tolist() == [-1.0, 1.0] and d.chunks[0].embedding[:2].tolist() == [1.0, 1.0]


# -- Document subclasses that the workers cannot import by name ---------------------------------


class TagsItsType(Executor):
    @requests
    def tag(self, docs, **kwargs):
        for d in docs:
            d.tags['type'] = type(d).__name__
            d.tags['base'] = isinstance(d, Document)


def _script_class(monkeypatch) -> type:
    # As a class defined in the user's script: module __main__, where the parent finds it
    # by name (and pickle would name it) but a worker does not.
    cls = type('ScriptDoc', (Document,), {'__module__': '__main__', 'kind': lambda self: 'script'})
    monkeypatch.setattr(sys.modules['__main__'], 'ScriptDoc', cls, raising=False)
    return cls


def test_a_document_subclass_of_the_script_is_sent_by_value_and_comes_back_as_itself(monkeypatch):
    script_doc = _script_class(monkeypatch)
    with Flow().add(uses=TagsItsType) as f:
        for _ in range(2):  # (the second request: the class as cached on both sides)
            (r,) = f.post('/', DocumentArray([script_doc(id='a', blob=np.zeros(3000)), Document(id='b')]),
                          return_results=True)
            assert [(type(d), d.tags['type'], d.tags['base']) for d in r.docs] == [
                (script_doc, 'ScriptDoc', True), (Document, 'Document', True)]
            assert r.docs[0].kind() == 'script'
        q = Document(id='q')
        q.matches.append(script_doc(id='m'))
        (r,) = f.post('/', DocumentArray([q]), return_results=True)
        assert type(r.docs[0].matches[0]) is script_doc


def test_a_document_subclass_defined_in_a_function_is_sent_by_value():
    class LocalDoc(Document):  # (no name that another process could import)
        pass

    with Flow().add(uses=TagsItsType) as f:
        (r,) = f.post('/', DocumentArray([LocalDoc(id='b')]), return_results=True)
    assert [(type(d), d.tags['type']) for d in r.docs] == [(LocalDoc, 'LocalDoc')]


def test_plain_and_importable_documents_do_not_pickle_a_class(arena, mapper):
    payload, meta, allocs = encode(DocumentArray([Document(id='a', tags={'x': 1}), Sub(id='b')]), arena)
    assert b'cloudpickle' not in meta and b'Sub' in meta  # Sub by name: tests.test_codec_aliasing.Sub
    _free(arena, allocs)
