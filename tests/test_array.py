"""DocumentArray: sequence behaviour, id lookup, columnar embeddings, persistence."""
import copy
import io
import pathlib
import pickle
import tempfile

import numpy as np
import pytest

from runtime import Document, DocumentArray


def make(n, prefix='d'):
    return DocumentArray(Document(id=f'{prefix}{i}', text=f'text {i}') for i in range(n))


def columnar(n=5, d=4, dtype=np.float32):
    da = make(n)
    X = np.arange(n * d, dtype=dtype).reshape(n, d).copy()  # owns its memory: rows' .base is X
    da.embeddings = X
    return da, X


def rich_docs():
    """Documents with every field (each kind of content: text, buffer, blob exclude each
    other), nested chunks / matches and assorted dtypes."""
    docs = []
    for i in range(3):
        content = [{'text': f'text {i}'}, {'buffer': bytes([i, 0, 255])},
                   {'blob': np.arange(6, dtype=np.int16).reshape(2, 3) + i}][i]
        d = Document(
            id=f'doc-{i}', **content, uri=f'file:///{i}.txt', mime_type='text/plain',
            embedding=np.full(3, i, dtype=np.float16),
            tags={'i': i, 'f': i / 2, 'flag': i % 2 == 0, 'nested': {'list': [i, [i, {'k': i}]]}, 'none': None},
            scores={'s': float(i)}, parent_id='p', granularity=i, adjacency=i + 1, weight=0.5 * i,
            modality='text',
            chunks=[Document(id=f'c{i}', text='chunk', embedding=np.ones((2, 2), np.int8) * i)],
            matches=[Document(id=f'm{i}', text='match', scores={'cosine': 0.1 * i})],
        )
        docs.append(d)
    return DocumentArray(docs)


def assert_rich(da):
    assert len(da) == 3
    for i, d in enumerate(da):
        assert d.id == f'doc-{i}'
        if i == 0:
            assert d.text == 'text 0' and d.buffer is None and d.blob is None
        elif i == 1:
            assert d.buffer == bytes([1, 0, 255]) and d.text is None
        else:
            assert d.blob.dtype == np.int16 and d.blob.shape == (2, 3) and d.text is None
            np.testing.assert_array_equal(d.blob, np.arange(6).reshape(2, 3) + i)
        assert d.embedding.dtype == np.float16 and d.embedding.shape == (3,)
        assert d.tags == {'i': i, 'f': i / 2, 'flag': i % 2 == 0, 'nested': {'list': [i, [i, {'k': i}]]},
                          'none': None}
        assert type(d.tags['i']) is int and type(d.tags['flag']) is bool
        assert d.scores == {'s': float(i)}
        assert (d.uri, d.mime_type, d.parent_id, d.granularity, d.adjacency, d.weight, d.modality) == \
            (f'file:///{i}.txt', 'text/plain', 'p', i, i + 1, 0.5 * i, 'text')
        assert isinstance(d.chunks, DocumentArray) and d.chunks[0].id == f'c{i}'
        assert d.chunks[0].embedding.dtype == np.int8 and d.chunks[0].embedding.shape == (2, 2)
        assert d.matches[0].scores == {'cosine': 0.1 * i}
    assert da == rich_docs()


# -- construction and the sequence protocol -------------------------------------------------------
def test_construction():
    assert len(DocumentArray()) == 0 and not DocumentArray()
    d = Document()
    assert list(DocumentArray(d)) == [d]
    da = DocumentArray(Document() for _ in range(3))
    assert len(da) == 3 and da
    copy_ = DocumentArray(da)
    assert copy_ == da and copy_[0] is da[0]
    copy_.append(Document())
    assert len(da) == 3  # its own list


@pytest.mark.parametrize('bad, hint', [
    (np.zeros((2, 3)), 'from_ndarray'), ('text', 'iterable of Documents'), (5, 'iterable of Documents'),
    ([Document(), 'x'], 'takes Documents'), ({'text': 'x'}, 'iterable of Documents'),
])
def test_construction_refuses_non_documents(bad, hint):
    with pytest.raises(TypeError, match=hint):
        DocumentArray(bad)


def test_iteration_len_reversed():
    da = make(4)
    assert [d.id for d in da] == ['d0', 'd1', 'd2', 'd3']
    assert [d.id for d in reversed(da)] == ['d3', 'd2', 'd1', 'd0']
    assert len(da) == 4


def test_int_indexing():
    da = make(3)
    assert da[0].id == 'd0' and da[-1].id == 'd2' and da[np.int64(1)].id == 'd1'
    with pytest.raises(IndexError):
        da[3]


def test_id_indexing():
    da = make(3)
    assert da['d1'] is da[1]
    with pytest.raises(KeyError, match='nope'):
        da['nope']


def test_slicing_returns_a_document_array_of_the_same_documents():
    da = make(5)
    s = da[1:4]
    assert isinstance(s, DocumentArray) and [d.id for d in s] == ['d1', 'd2', 'd3']
    assert s[0] is da[1]
    assert [d.id for d in da[::-2]] == ['d4', 'd2', 'd0']
    s.append(Document())
    assert len(da) == 5
    assert s['d2'] is da[2]


def test_fancy_indexing():
    da = make(4)
    assert [d.id for d in da[[3, 0]]] == ['d3', 'd0']
    assert [d.id for d in da[np.array([1, 2])]] == ['d1', 'd2']
    assert [d.id for d in da[['d2', 'd0']]] == ['d2', 'd0']
    assert [d.id for d in da[[True, False, False, True]]] == ['d0', 'd3']
    assert isinstance(da[[]], DocumentArray) and len(da[[]]) == 0
    with pytest.raises(IndexError, match='boolean mask'):
        da[[True]]
    with pytest.raises(KeyError):
        da[['d0', 'missing']]


@pytest.mark.parametrize('key', [1.5, None, True, {'a': 1}])
def test_bad_index_types(key):
    with pytest.raises(TypeError, match='indices are int, str'):
        make(2)[key]


def test_contains_by_id_or_document():
    da = make(3)
    assert 'd1' in da and da[1] in da and Document(id='d2') in da
    assert 'zz' not in da and Document() not in da
    assert 1 not in da and None not in da
    for _ in range(3):  # repeated misses stay misses
        assert 'zz' not in da


# -- id lookup stays right while the array and its documents change --------------------------------
def test_lookup_after_a_documents_id_changes():
    da = make(3)
    assert da['d1'].id == 'd1'  # builds the index
    da[1].id = 'renamed'
    assert da['renamed'] is da[1]
    assert 'd1' not in da
    with pytest.raises(KeyError):
        da['d1']
    d = Document(id='d1')  # a new document with the old id does not confuse the array
    assert 'd1' not in da and d not in da


def test_lookup_after_ids_are_swapped():
    da = make(2)
    assert 'd0' in da
    da[0].id, da[1].id = 'd1', 'd0'
    assert da['d0'] is da[1] and da['d1'] is da[0]


def test_lookup_after_a_miss_then_rename_to_that_id():
    da = make(2)
    assert 'later' not in da
    da[0].id = 'later'
    assert 'later' in da and da['later'] is da[0]


def test_lookup_after_deletes_inserts_and_other_mutations():
    da = make(5)
    assert 'd4' in da
    del da[0]
    assert da['d4'] is da[3] and 'd0' not in da
    del da['d2']
    assert [d.id for d in da] == ['d1', 'd3', 'd4'] and da['d4'] is da[2]
    da.insert(0, Document(id='new'))
    assert da['new'] is da[0] and da['d4'] is da[3]
    da.append(Document(id='tail'))
    assert da['tail'] is da[-1]
    da.extend([Document(id='e1'), Document(id='e2')])
    assert da['e2'] is da[-1] and da['e1'] is da[-2]
    da[0] = Document(id='replaced')
    assert 'new' not in da and da['replaced'] is da[0]
    da['replaced'] = Document(id='again')
    assert da['again'] is da[0] and 'replaced' not in da
    da.reverse()
    assert da['again'] is da[-1] and da['tail'] is da[2]
    da.sort(key=lambda d: d.id)
    assert [d.id for d in da] == sorted(d.id for d in da)
    assert all(da[d.id] is d for d in da)
    assert da.pop().id == 'tail' and 'tail' not in da
    assert da.pop('again').id == 'again' and 'again' not in da
    del da[1:3]
    assert all(da[d.id] is d for d in da)
    da.clear()
    assert len(da) == 0 and 'd4' not in da


# -- mutation ----------------------------------------------------------------------------------------
def test_append_extend_insert_delete_clear():
    da = DocumentArray()
    a, b, c = Document(id='a'), Document(id='b'), Document(id='c')
    da.append(a)
    da.extend([c])
    da.insert(1, b)
    assert [d.id for d in da] == ['a', 'b', 'c']
    del da[1]
    assert [d.id for d in da] == ['a', 'c']
    del da['a']
    assert list(da) == [c]
    da.clear()
    assert len(da) == 0


@pytest.mark.parametrize('call', [
    lambda da: da.append('text'), lambda da: da.insert(0, 5), lambda da: da.extend(['a']),
    lambda da: da.extend(Document()), lambda da: da.extend(5), lambda da: da.__setitem__(0, 'x'),
])
def test_mutators_refuse_non_documents(call):
    da = make(2)
    with pytest.raises(TypeError, match='Document'):
        call(da)
    assert [d.id for d in da] == ['d0', 'd1']


def test_bad_delete_key():
    with pytest.raises(TypeError, match='deletion takes'):
        del make(2)[1.0]


def test_extend_with_itself_does_not_loop():
    da = make(2)
    da.extend(da)
    assert [d.id for d in da] == ['d0', 'd1', 'd0', 'd1']
    da += da
    assert len(da) == 8


def test_plus():
    a, b = make(2, 'a'), make(2, 'b')
    c = a + b
    assert isinstance(c, DocumentArray) and [d.id for d in c] == ['a0', 'a1', 'b0', 'b1']
    assert len(a) == 2 and len(b) == 2
    assert [d.id for d in a + [Document(id='x')]] == ['a0', 'a1', 'x']
    r = [Document(id='x')] + a
    assert isinstance(r, DocumentArray) and [d.id for d in r] == ['x', 'a0', 'a1']
    with pytest.raises(TypeError):
        a + 1
    with pytest.raises(TypeError):
        a + Document()
    a += b
    assert len(a) == 4


def test_equality():
    assert make(3) == make(3)
    assert make(3) != make(2)
    da = make(3)
    assert da == list(da) and da == tuple(da)
    assert da != DocumentArray(reversed(da))
    other = make(3)
    other[1].text = 'changed'
    assert da != other
    assert (da == 'd0') is False
    assert DocumentArray() == DocumentArray()
    with pytest.raises(TypeError):
        hash(da)


def test_repr_is_short():
    assert repr(make(3)) == '<DocumentArray length=3>'
    da, _ = columnar(5, 4)
    assert repr(da) == '<DocumentArray length=5 embeddings=float32[5, 4]>'
    da[0].embedding = np.zeros(4)
    assert repr(da) == '<DocumentArray length=5>'
    assert len(repr(make(10_000))) < 40


# -- embeddings --------------------------------------------------------------------------------------
def test_embeddings_none_when_no_document_has_one():
    assert make(3).embeddings is None
    assert DocumentArray().embeddings is None


def test_embeddings_stack_per_document_arrays():
    da = DocumentArray(Document(embedding=np.full(3, i, np.float64)) for i in range(4))
    E = da.embeddings
    assert E.shape == (4, 3) and E.dtype == np.float64
    np.testing.assert_array_equal(E[:, 0], [0, 1, 2, 3])
    assert not np.shares_memory(E, da[0].embedding)  # a stacked copy
    da2 = DocumentArray(Document(embedding=np.zeros((2, 3), np.int8)) for _ in range(2))
    assert da2.embeddings.shape == (2, 2, 3) and da2.embeddings.dtype == np.int8


def test_embeddings_when_only_some_documents_have_one():
    da = DocumentArray([Document(id='has', embedding=np.zeros(3)), Document(id='lacks')])
    with pytest.raises(ValueError, match="'lacks'.*no embedding"):
        da.embeddings


def test_embeddings_of_different_shapes_or_dtypes():
    da = DocumentArray([Document(id='a', embedding=np.zeros(3)), Document(id='b', embedding=np.zeros(4))])
    with pytest.raises(ValueError, match=r"'b'.*\[4\].*'a'.*\[3\]"):
        da.embeddings
    da = DocumentArray([Document(id='a', embedding=np.zeros(3, np.float32)),
                        Document(id='b', embedding=np.zeros(3, np.float64))])
    with pytest.raises(ValueError, match='float64.*float32'):
        da.embeddings


def test_assigned_matrix_is_returned_without_copy_and_rows_are_views():
    da, X = columnar(5, 4)
    assert da.embeddings is X
    for i, d in enumerate(da):
        assert d.embedding.base is X
        assert np.shares_memory(d.embedding, X)
        np.testing.assert_array_equal(d.embedding, X[i])
    X[2, 1] = -1  # writes show through in both directions
    assert da[2].embedding[1] == -1
    da[3].embedding[0] = -2
    assert X[3, 0] == -2
    assert da.embeddings is X


def test_columnar_view_of_a_view_shares_memory():
    big = np.zeros((10, 8), np.float32)
    da = make(5)
    X = big[::2, :4]  # not contiguous, not owning its memory
    da.embeddings = X
    assert da.embeddings is X
    assert all(np.shares_memory(d.embedding, big) for d in da)


def test_runtime_style_columnar_build():
    # As the runtime does on receipt: documents unpickled without embeddings, then one matrix.
    docs = [pickle.loads(pickle.dumps(Document(id=f'r{i}'))) for i in range(3)]
    X = np.random.default_rng(0).random((3, 16), dtype=np.float32)
    da = DocumentArray._from_list(docs)
    da.embeddings = X
    assert da.embeddings is X and np.shares_memory(da['r1'].embedding, X)


def test_columnar_invalidated_when_a_documents_embedding_is_replaced():
    da, X = columnar(3, 2)
    da[1].embedding = np.array([9, 9], np.float32)
    E = da.embeddings
    assert E is not X and not np.shares_memory(E, X)
    np.testing.assert_array_equal(E, [[0, 1], [9, 9], [4, 5]])
    assert X[1].tolist() == [2, 3]  # the old matrix is left alone


def test_columnar_invalidated_by_append_delete_insert_reorder():
    da, X = columnar(3, 2)
    da.append(Document(embedding=np.array([7, 7], np.float32)))
    E = da.embeddings
    assert E is not X and E.shape == (4, 2) and E[3].tolist() == [7, 7]

    da, X = columnar(3, 2)
    del da[0]
    E = da.embeddings
    assert E is not X and E.tolist() == [[2, 3], [4, 5]]

    da, X = columnar(3, 2)
    da.insert(0, Document())
    with pytest.raises(ValueError, match='no embedding'):
        da.embeddings

    da, X = columnar(3, 2)
    da.reverse()
    assert da.embeddings.tolist() == [[4, 5], [2, 3], [0, 1]]

    da, X = columnar(3, 2)
    da[0] = Document(embedding=np.array([1, 1], np.float32))
    assert da.embeddings.tolist() == [[1, 1], [2, 3], [4, 5]]

    da, X = columnar(3, 2)
    da.append(da[0])  # same length check is not enough: identity of rows is checked
    del da[0]
    assert da.embeddings.tolist() == [[2, 3], [4, 5], [0, 1]]

    da, X = columnar(3, 2)
    da.clear()
    assert da.embeddings is None


def test_setting_embeddings_again_and_none():
    da, X = columnar(3, 2)
    Y = np.ones((3, 5), np.float64)
    da.embeddings = Y
    assert da.embeddings is Y and da[0].embedding.shape == (5,) and da[0].embedding.dtype == np.float64
    da.embeddings = None
    assert da.embeddings is None and all(d.embedding is None for d in da)


def test_setting_embeddings_checks_shape_and_type():
    da = make(3)
    with pytest.raises(ValueError, match=r'N = 3 documents, got shape \(2, 4\)'):
        da.embeddings = np.zeros((2, 4))
    with pytest.raises(ValueError, match='shape'):
        da.embeddings = np.zeros(3)
    with pytest.raises(TypeError, match='numeric'):
        da.embeddings = np.array([['a'], ['b'], ['c']])
    assert da.embeddings is None  # nothing half-assigned
    da.embeddings = [[1, 2], [3, 4], [5, 6]]  # lists are converted
    assert da.embeddings.shape == (3, 2) and da[2].embedding.tolist() == [5, 6]


def test_slice_of_columnar_array_is_a_view():
    da, X = columnar(6, 3)
    s = da[1:5:2]
    E = s.embeddings
    assert np.shares_memory(E, X) and E.tolist() == X[1:5:2].tolist()
    s[0].embedding = np.zeros(3, np.float32)  # replaces that doc's embedding: both fall back
    assert not np.shares_memory(s.embeddings, X)
    assert da.embeddings is not X and da.embeddings[1].tolist() == [0, 0, 0]


def test_copy_of_columnar_array_stays_zero_copy_until_changed():
    da, X = columnar(3, 2)
    c = DocumentArray(da)
    assert c.embeddings is X
    c.append(Document(embedding=np.zeros(2, np.float32)))
    assert c.embeddings.shape == (4, 2) and da.embeddings is X


def test_missing_and_empty_embedding_rows():
    da = make(0)
    da.embeddings = np.zeros((0, 4), np.float32)
    assert da.embeddings.shape == (0, 4)


# -- texts, blobs, get_attributes -----------------------------------------------------------------------
def test_texts():
    da = make(3)
    assert da.texts == ['text 0', 'text 1', 'text 2']
    da.texts = ['a', 'b', 'c']
    assert [d.text for d in da] == ['a', 'b', 'c']
    with pytest.raises(ValueError, match='2 texts for 3 documents'):
        da.texts = ['a', 'b']
    with pytest.raises(TypeError, match='str'):
        da.texts = [1, 2, 3]
    da.append(Document())
    assert da.texts[-1] is None


def test_blobs():
    da = make(3)
    assert da.blobs is None
    B = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    da.blobs = B
    assert da[1].blob.shape == (2, 2) and da[1].blob.dtype == np.uint8
    # as d.blob = ... does: the blob replaces the text (content is one of them), so the
    # array saves and loads back
    assert da.texts == [None, None, None] and da[0].content_type == 'blob'
    buf = io.StringIO()
    da.save(buf)
    buf.seek(0)
    assert DocumentArray.load(buf)[2].blob.tolist() == B[2].tolist()
    got = da.blobs
    assert got.shape == (3, 2, 2) and got.tolist() == B.tolist()
    with pytest.raises(ValueError, match='N = 3'):
        da.blobs = np.zeros((2, 2))
    da.append(Document(id='noblob'))
    with pytest.raises(ValueError, match='noblob'):
        da.blobs
    one_d = DocumentArray([Document(buffer=b'x'), Document()])
    one_d.blobs = np.arange(2.0)
    assert isinstance(one_d[1].blob, np.ndarray) and one_d[1].blob.shape == () and one_d[0].buffer is None


def test_get_attributes():
    da = DocumentArray([Document(text='a', tags={'k': 1, 'n': {'x': 'y'}}), Document(text='b', tags={'k': 2})])
    assert da.get_attributes('text') == ['a', 'b']
    assert da.get_attributes('text', 'tags__k', 'tags__n__x') == [['a', 'b'], [1, 2], ['y', None]]
    assert da.get_attributes('nope') == [None, None]
    assert DocumentArray().get_attributes('text', 'id') == [[], []]


# -- persistence ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('fmt', ['json', 'binary'])
@pytest.mark.parametrize('path_type', [str, pathlib.Path])
def test_save_load_paths_round_trip_every_field(tmp_path, fmt, path_type):
    da = rich_docs()
    path = path_type(tmp_path / f'docs.{fmt}')
    da.save(path, file_format=fmt)
    assert_rich(DocumentArray.load(path, file_format=fmt))


@pytest.mark.parametrize('fmt', ['json', 'binary'])
def test_save_load_binary_file_objects(fmt):
    buf = io.BytesIO()
    rich_docs().save(buf, fmt)
    buf.seek(0)
    assert_rich(DocumentArray.load(buf, fmt))


def test_save_load_json_text_file_objects(tmp_path):
    sio = io.StringIO()
    rich_docs().save(sio, 'json')
    lines = sio.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith('{')  # one JSON document per line
    sio.seek(0)
    assert_rich(DocumentArray.load(sio))
    path = tmp_path / 'docs.jsonl'
    with open(path, 'w', encoding='utf-8') as f:
        rich_docs().save(f)
    with open(path, encoding='utf-8') as f:
        assert_rich(DocumentArray.load(f))
    with tempfile.NamedTemporaryFile('w+', suffix='.jsonl') as f:  # a wrapper, not a TextIOBase
        rich_docs().save(f)
        f.seek(0)
        assert_rich(DocumentArray.load(f))


def test_jina2_alias_methods(tmp_path):
    da = rich_docs()
    da.save_json(tmp_path / 'a.jsonl')
    da.save_binary(tmp_path / 'a.bin')
    assert_rich(DocumentArray.load_json(tmp_path / 'a.jsonl'))
    assert_rich(DocumentArray.load_binary(tmp_path / 'a.bin'))


@pytest.mark.parametrize('fmt', ['json', 'binary'])
def test_columnar_embeddings_round_trip(fmt):
    da, X = columnar(4, 3, dtype=np.float16)
    buf = io.BytesIO()
    da.save(buf, fmt)
    buf.seek(0)
    back = DocumentArray.load(buf, fmt)
    assert back == da
    E = back.embeddings
    assert E.dtype == np.float16 and E.shape == (4, 3) and E.tolist() == X.tolist()
    if fmt == 'binary':  # one matrix in the file, so the loaded array is columnar
        assert back.embeddings is E and np.shares_memory(back[0].embedding, E)
        E[0, 0] = 100  # and writable
        assert back[0].embedding[0] == 100


@pytest.mark.parametrize('fmt', ['json', 'binary'])
def test_mixed_and_missing_embeddings_round_trip(fmt):
    da = DocumentArray([Document(id='a', embedding=np.zeros(3, np.int32)), Document(id='b'),
                        Document(id='c', embedding=np.ones((2, 2), np.float64)),
                        Document(id='d', embedding=np.array([np.nan, 1.0]))])
    buf = io.BytesIO()
    da.save(buf, fmt)
    buf.seek(0)
    back = DocumentArray.load(buf, fmt)
    assert back == da
    assert back['a'].embedding.dtype == np.int32 and back['b'].embedding is None
    assert back['c'].embedding.shape == (2, 2)


@pytest.mark.parametrize('fmt', ['json', 'binary'])
def test_empty_array_round_trip(fmt):
    buf = io.BytesIO()
    DocumentArray().save(buf, fmt)
    buf.seek(0)
    back = DocumentArray.load(buf, fmt)
    assert isinstance(back, DocumentArray) and len(back) == 0


def test_save_load_errors(tmp_path):
    da = make(2)
    with pytest.raises(ValueError, match="'json' or 'binary'"):
        da.save(tmp_path / 'x', file_format='csv')
    with pytest.raises(ValueError, match="'json' or 'binary'"):
        DocumentArray.load(tmp_path / 'x', file_format='pickle')
    with pytest.raises(TypeError, match='binary mode'):
        da.save(io.StringIO(), 'binary')
    with pytest.raises(TypeError, match='binary mode'):
        DocumentArray.load(io.StringIO('x'), 'binary')
    da.save(tmp_path / 'a.jsonl', 'json')
    with pytest.raises(ValueError, match='file_format="json"'):
        DocumentArray.load(tmp_path / 'a.jsonl', 'binary')
    da.save(tmp_path / 'a.bin', 'binary')
    with pytest.raises(ValueError, match="file_format='binary'"):
        DocumentArray.load(tmp_path / 'a.bin', 'json')
    with pytest.raises(FileNotFoundError):
        DocumentArray.load(tmp_path / 'missing.jsonl')


def test_load_json_reports_the_bad_line():
    good = Document(id='a').json()
    with pytest.raises(ValueError, match='line 2: not a JSON document'):
        DocumentArray.load(io.StringIO(good + '\n{broken\n'))
    with pytest.raises(ValueError, match='line 3: expected a JSON object'):
        DocumentArray.load(io.StringIO(good + '\n\n[1, 2]\n'))
    with pytest.raises(ValueError, match='line 1: not a valid document'):
        DocumentArray.load(io.StringIO('{"text": 5}\n'))
    # blank lines are skipped
    assert len(DocumentArray.load(io.StringIO('\n' + good + '\n\n'))) == 1


# -- pickle and copies -------------------------------------------------------------------------------------
def test_pickle_round_trip():
    da = rich_docs()
    back = pickle.loads(pickle.dumps(da, protocol=5))
    assert isinstance(back, DocumentArray)
    assert_rich(back)
    assert back['doc-1'] is back[1]
    cda, X = columnar(3, 2)
    cback = pickle.loads(pickle.dumps(cda))
    assert cback == cda and cback.embeddings.tolist() == X.tolist()


def test_copy_module():
    da = make(2)
    shallow = copy.copy(da)
    assert shallow == da and shallow[0] is da[0]
    shallow.append(Document())
    assert len(da) == 2  # its own list
    deep = copy.deepcopy(rich_docs())
    assert_rich(deep)
    src = rich_docs()
    deep = copy.deepcopy(src)
    deep[0].tags['nested']['list'].append(1)
    deep[0].embedding[0] = 5
    assert_rich(src)
