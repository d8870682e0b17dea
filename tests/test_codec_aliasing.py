"""One ndarray object held by several documents arrives as one array per document.

Pickle's memo writes an object met twice as a reference to the first, so without care
``for d in docs: d.blob = shared`` in one executor made every document of the next share
one array: an in-place change of one document's blob changed all of them. Jina 2
(protobuf) gave every document its own arrays; so does the codec, for the fields it
carries as arrays (blob, embedding) at any depth (chunks, matches). Values inside tags keep
pickle's sharing among themselves, but never alias an array field.
"""
from __future__ import annotations

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
