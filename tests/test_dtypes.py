"""Every embedding / blob kind either survives the trip between processes exactly (dtype,
shape, field names, bytes) or is refused where it is set, with the field named."""
from __future__ import annotations

import uuid

import numpy as np
import pytest

from runtime import Document, DocumentArray, Executor, ExecutorError, Flow, requests
from runtime.transport.local.codec import EncodeError, decode, encode
from runtime.transport.local.received import InputBuffers
from runtime.transport.local.shm import Arena, Mapper

N = 4


def _per_doc(make):
    return lambda: [make(i) for i in range(N)]


def _rows(matrix):
    """Embeddings that are row views of one matrix (what ``da.embeddings = X`` gives)."""
    return lambda: list(matrix())


_STRUCT = np.dtype([('a', '<i4'), ('b', '<f4')])
_NESTED_STRUCT = np.dtype([('pos', '<f4', (2,)), ('tag', 'S3'), ('inner', [('x', '<i2'), ('y', 'u1')])])


def _memmap(tmp_path_factory):
    path = tmp_path_factory.mktemp('mm') / 'emb.f32'
    mm = np.memmap(path, dtype=np.float32, mode='w+', shape=(N, 6))
    mm[:] = np.arange(N * 6).reshape(N, 6)
    mm.flush()
    return list(np.memmap(path, dtype=np.float32, mode='r', shape=(N, 6)))


#: name -> function giving N arrays (one per document). Every one must round-trip.
KINDS = {
    'float32': _per_doc(lambda i: np.full(8, i, np.float32)),
    'float64': _per_doc(lambda i: np.linspace(0, i, 5)),
    'float16': _per_doc(lambda i: np.full(3, i / 3, np.float16)),
    'longdouble': _per_doc(lambda i: np.full(3, i / 3, np.longdouble)),
    'int8': _per_doc(lambda i: np.arange(5, dtype=np.int8) - i),
    'int16': _per_doc(lambda i: np.arange(5, dtype=np.int16) * -i),
    'int32': _per_doc(lambda i: np.arange(5, dtype=np.int32) + i),
    'int64': _per_doc(lambda i: np.full(2, 2 ** 62 + i, np.int64)),
    'uint8': _per_doc(lambda i: np.full(7, 250 + i, np.uint8)),
    'uint16': _per_doc(lambda i: np.full(3, 65530 + i, np.uint16)),
    'uint32': _per_doc(lambda i: np.full(3, 2 ** 32 - 1 - i, np.uint32)),
    'uint64': _per_doc(lambda i: np.full(3, 2 ** 64 - 1 - i, np.uint64)),
    'bool': _per_doc(lambda i: np.array([True, False, i % 2 == 0])),
    'complex64': _per_doc(lambda i: np.array([1 + 2j, i - 1j], np.complex64)),
    'complex128': _per_doc(lambda i: np.array([1e300 + 2j, i - 1j])),
    'big-endian float': _per_doc(lambda i: np.arange(4, dtype='>f4') + i),
    'big-endian int': _per_doc(lambda i: np.arange(4, dtype='>i8') * i),
    'nan and inf': _per_doc(lambda i: np.array([np.nan, np.inf, -np.inf, -0.0, i], np.float32)),
    '2-d per document': _per_doc(lambda i: np.arange(6, dtype=np.float32).reshape(2, 3) + i),
    '3-d per document': _per_doc(lambda i: np.arange(24, dtype=np.int16).reshape(2, 3, 4) - i),
    'fortran order': _per_doc(lambda i: np.asfortranarray(np.arange(12.0).reshape(3, 4) + i)),
    'non-contiguous slice': _per_doc(lambda i: np.arange(20, dtype=np.float32)[::3] + i),
    'transposed': _per_doc(lambda i: (np.arange(6, dtype=np.int32).reshape(2, 3) + i).T),
    'rows of a non-contiguous matrix': _rows(lambda: np.arange(N * 10, dtype=np.float32).reshape(N, 10)[:, ::2]),
    'rows of a fortran matrix': _rows(lambda: np.asfortranarray(np.arange(N * 5, dtype=np.float64).reshape(N, 5))),
    'read-only': _per_doc(lambda i: np.frombuffer(bytes(range(i, i + 8)), dtype=np.uint8)),
    '0-d': _per_doc(lambda i: np.array(i + 0.5)),
    '0-d int': _per_doc(lambda i: np.array(i, np.int64)),
    'empty (0,)': _per_doc(lambda i: np.zeros(0, np.float32)),
    'empty (0, 3)': _per_doc(lambda i: np.zeros((0, 3), np.int8)),
    'empty (3, 0)': _per_doc(lambda i: np.zeros((3, 0), np.float64)),
    'large (1, 5000)': _per_doc(lambda i: np.full((1, 5000), i, np.float32)),
    'structured': _per_doc(lambda i: np.array([(i, 0.5), (-i, 1.5)], dtype=_STRUCT)),
    'nested structured': _per_doc(lambda i: np.zeros(2, dtype=_NESTED_STRUCT)),
    'void bytes': _per_doc(lambda i: np.frombuffer(bytes(range(i, i + 16)), dtype='V8')),
    'unicode strings': _per_doc(lambda i: np.array(['ab', 'cde', f'{i}'], dtype='U3')),
    'byte strings': _per_doc(lambda i: np.array([b'ab', b'x' * i], dtype='S4')),
    'datetime64[ns]': _per_doc(lambda i: np.array(['2021-01-01T00:00:00.123456789', 'NaT'], 'M8[ns]') + i),
    'datetime64[D]': _per_doc(lambda i: np.arange('2021-01', '2021-02', dtype='M8[D]')[i:i + 3]),
    'timedelta64[s]': _per_doc(lambda i: np.array([i, -i, 86400], 'm8[s]')),
    'shapes differ between documents': _per_doc(lambda i: np.zeros(i + 1, np.float32)),
    'dtypes differ between documents': _per_doc(lambda i: np.zeros(3, np.float32 if i % 2 else np.float64)),
    'only some documents have one': _per_doc(lambda i: np.ones(3, np.float32) if i % 2 else None),
}


def _same(a, b) -> bool:
    """Exactly equal: type, dtype (field names included), shape and bytes."""
    if a is None or b is None:
        return a is None and b is None
    return (type(b) is np.ndarray and a.dtype == b.dtype and a.dtype.names == b.dtype.names
            and a.shape == b.shape and a.tobytes() == b.tobytes())


@pytest.fixture
def arena():
    a = Arena(f'shmflow-test-{uuid.uuid4().hex[:8]}', 1 << 20)
    yield a
    a.close()


def _trip(docs, arena, mapper, inputs=None):
    payload, meta, allocs = encode(docs, arena, inputs)
    got = decode(payload, meta, InputBuffers(payload, mapper))
    return got, allocs


@pytest.mark.parametrize('field', ['embedding', 'blob'])
@pytest.mark.parametrize('kind', list(KINDS))
def test_every_kind_round_trips_through_the_codec(kind, field, arena, tmp_path_factory):
    arrays = KINDS[kind]()
    docs = DocumentArray(Document(id=str(i), **{field: a}) for i, a in enumerate(arrays))
    mapper = Mapper()
    try:
        got, allocs = _trip(docs, arena, mapper)
        # a stage that only looks passes the payload on without unpickling
        again, allocs2 = _trip(got, arena, mapper)
        for stage in (got, again):
            assert len(stage) == N
            for want, d in zip(arrays, stage):
                assert _same(want, getattr(d, field)), (kind, want, getattr(d, field))
        for s in allocs + allocs2:
            arena.free(s)
    finally:
        mapper.close()


def test_a_memmap_embedding_round_trips(arena, tmp_path_factory):
    arrays = _memmap(tmp_path_factory)
    docs = DocumentArray(Document(id=str(i), embedding=a) for i, a in enumerate(arrays))
    mapper = Mapper()
    try:
        got, allocs = _trip(docs, arena, mapper)
        for want, d in zip(arrays, got):
            assert _same(np.asarray(want), d.embedding)
        for s in allocs:
            arena.free(s)
    finally:
        mapper.close()


@pytest.mark.parametrize('matrix', [
    np.arange(N * 6, dtype=np.float32).reshape(N, 6)[:, ::2],
    np.asfortranarray(np.arange(N * 3, dtype=np.int16).reshape(N, 3)),
    np.zeros((N, 0), np.float32),
    np.arange(N * 4, dtype=np.int64).reshape(N, 2, 2).astype('M8[s]'),
    np.zeros((N, 2), dtype=_STRUCT),
], ids=['non-contiguous', 'fortran', 'zero-width', 'datetime', 'structured'])
def test_a_matrix_assigned_by_a_handler_round_trips(matrix, arena):
    """``docs.embeddings = X`` on received (not unpickled) documents, then sent on."""
    mapper = Mapper()
    try:
        first, allocs = _trip(DocumentArray(Document(id=str(i)) for i in range(N)), arena, mapper)
        first.embeddings = matrix
        got, allocs2 = _trip(first, arena, mapper)
        for want, d in zip(matrix, got):
            assert _same(want, d.embedding)
        emb = got.embeddings
        assert emb.dtype == matrix.dtype and emb.shape == matrix.shape and emb.tobytes() == matrix.tobytes()
        for s in allocs + allocs2:
            arena.free(s)
    finally:
        mapper.close()


# -- refused where set ---------------------------------------------------------------------------
@pytest.mark.parametrize('bad', [
    np.array([1, 'a', None], dtype=object),
    np.array([object(), object()]),
    np.zeros(2, dtype=[('a', 'f4'), ('o', 'O')]),
], ids=['object', 'objects', 'structured with an object field'])
def test_arrays_of_python_objects_are_refused_where_they_are_set(bad):
    for field in ('embedding', 'blob'):
        with pytest.raises(TypeError, match=rf'Document.{field} cannot hold an array of dtype .*object'):
            Document(**{field: bad})
        d = Document(id='named')
        with pytest.raises(TypeError, match=f"Document 'named': .{field}|Document.{field}"):
            setattr(d, field, bad)
        assert getattr(d, field) is None
    with pytest.raises(TypeError, match='numeric'):
        DocumentArray([Document(), Document()]).embeddings = np.array([[object()], [object()]])


def test_object_arrays_that_got_in_anyway_are_refused_by_the_codec_naming_the_document(arena):
    d = Document(id='sneaky')
    d._embedding = np.array([1, None], dtype=object)  # past the setter, as a careless library might
    other = Document(id='fine', embedding=np.zeros(2))
    for docs in (DocumentArray([d]), DocumentArray([other, d])):
        with pytest.raises(EncodeError, match="'sneaky'"):
            encode(docs, arena)
    assert arena.live == 0  # nothing was left allocated by the failed encodes
    mapper = Mapper()
    try:
        got, allocs = _trip(DocumentArray([Document(id='a'), Document(id='b')]), arena, mapper)
        with pytest.raises(TypeError, match='numeric'):
            got.embeddings = np.array([[None], [None]], dtype=object)
        for s in allocs:
            arena.free(s)
    finally:
        mapper.close()


def test_tags_that_do_not_pickle_are_refused_where_set_and_named_by_the_codec(arena):
    with pytest.raises(TypeError, match=r"Document.tags\['f'\] holds a function"):
        Document(tags={'f': lambda: 1})
    with pytest.raises(TypeError, match=r"Document.tags\['a'\]\['b'\]\[1\] holds"):
        Document(tags={'a': {'b': [1, lambda: 2]}})
    d = Document(id='later')
    d.tags['f'] = lambda: 1  # a plain dict: only the codec sees this one
    with pytest.raises(EncodeError, match=r"'later'.*tags\['f'\]"):
        encode(DocumentArray([Document(), d]), arena)


# -- through a real Flow -------------------------------------------------------------------------
_FLOW_KINDS = ['structured', '0-d', 'empty (3, 0)', 'datetime64[ns]', 'fortran order',
               'shapes differ between documents', 'rows of a non-contiguous matrix', 'big-endian float']


class SetsEmbeddings(Executor):
    @requests(on='/set')
    def set(self, docs, parameters, **kwargs):
        for d, a in zip(docs, KINDS[parameters['kind']]()):
            d.embedding = a

    @requests(on='/objects')
    def objects(self, docs, **kwargs):
        for d in docs:
            d.embedding = np.array([None, 1], dtype=object)


def test_kinds_set_by_a_handler_come_back_exactly_and_objects_fail_naming_the_executor():
    with Flow().add(uses=SetsEmbeddings, name='setter') as f:
        for kind in _FLOW_KINDS:
            resp = f.post('/set', DocumentArray(Document(id=str(i)) for i in range(N)),
                          parameters={'kind': kind}, return_results=True)
            got = [d for r in resp for d in r.docs]
            assert len(got) == N, kind
            for want, d in zip(KINDS[kind](), got):
                assert _same(want, d.embedding), (kind, want, d.embedding)
        with pytest.raises(ExecutorError, match='setter') as e:
            f.post('/objects', DocumentArray(Document(id=str(i)) for i in range(2)))
        assert 'dtype object' in str(e.value) or 'dtype object' in str(e.value.__cause__)
