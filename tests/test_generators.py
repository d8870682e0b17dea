"""Tests of runtime.generators: the documents each generator yields, size / sampling,
laziness, and the errors a user sees for bad arguments and malformed input."""
from __future__ import annotations

import io
import json
import pathlib

import numpy as np
import pytest

from runtime.document import Document
from runtime.generators import from_csv, from_files, from_lines, from_ndarray, from_ndjson


def _ids(docs):
    return [d.id for d in docs]


def _write(path: pathlib.Path, text: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding='utf-8')
    return path


@pytest.fixture
def numbered_csv(tmp_path):
    rows = '\n'.join(f'{i},text {i},{i % 3}' for i in range(100))
    return _write(tmp_path / 'data.csv', 'id,text,group\n' + rows + '\n')


# -- from_csv ----------------------------------------------------------------------------------
def test_csv_fields_id_and_tags():
    fp = io.StringIO('id,question,uri,lang\nq1,why?,http://x,en\nq2,how?,,de\n')
    docs = list(from_csv(fp, field_resolver={'question': 'text'}))
    assert [type(d) for d in docs] == [Document, Document]
    assert _ids(docs) == ['q1', 'q2']
    assert [d.text for d in docs] == ['why?', 'how?']
    assert docs[0].uri == 'http://x'
    assert docs[0].tags == {'lang': 'en'}
    assert 'question' not in docs[0].tags


def test_csv_tag_values_stay_strings_and_numeric_fields_convert():
    fp = io.StringIO('text,n,weight,granularity\na,1,0.5,2\n')
    d = next(from_csv(fp))
    assert d.tags == {'n': '1'}
    assert d.weight == 0.5 and d.granularity == 2


def test_csv_path_quoted_newlines_and_bom(tmp_path):
    path = tmp_path / 'q.csv'
    path.write_bytes('\ufeffid,text\r\na,"two\nlines"\r\n'.encode('utf-8'))
    docs = list(from_csv(str(path)))
    assert docs[0].id == 'a' and docs[0].text == 'two\nlines'
    assert list(from_csv(path))[0].id == 'a'  # PathLike too


def test_csv_empty_id_gets_fresh_id_and_blank_lines_skipped():
    docs = list(from_csv(['id,text\n', ',a\n', '\n', 'x,b\n']))
    assert len(docs) == 2
    assert docs[0].id and docs[0].id != ''
    assert docs[1].id == 'x'


def test_csv_tsv_dialect():
    d = next(from_csv(io.StringIO('text\tk\nhello, world\tv\n'), dialect='excel-tab'))
    assert d.text == 'hello, world' and d.tags == {'k': 'v'}


@pytest.mark.parametrize('size', [1, 7, 100])
def test_csv_size_is_exact(numbered_csv, size):
    assert len(list(from_csv(numbered_csv, size=size))) == size


def test_csv_size_larger_than_input(numbered_csv):
    assert len(list(from_csv(numbered_csv, size=1000))) == 100


def test_csv_sampling_reproducible_and_fraction(numbered_csv):
    a = _ids(from_csv(numbered_csv, sampling_rate=0.3, seed=7))
    b = _ids(from_csv(numbered_csv, sampling_rate=0.3, seed=7))
    assert a == b
    assert 10 <= len(a) <= 50
    assert a == sorted(a, key=int)  # order kept


def test_csv_sampling_then_size(numbered_csv):
    docs = _ids(from_csv(numbered_csv, sampling_rate=0.5, size=5, seed=1))
    assert len(docs) == 5
    assert docs == _ids(from_csv(numbered_csv, sampling_rate=0.5, seed=1))[:5]


def test_csv_is_lazy_path_may_appear_later(tmp_path):
    path = tmp_path / 'later.csv'
    gen = from_csv(path)
    _write(path, 'text\nhi\n')
    assert next(gen).text == 'hi'


def test_csv_does_not_consume_input_before_next():
    consumed = []

    def lines():
        for line in ['text\n', 'a\n', 'b\n']:
            consumed.append(line)
            yield line

    gen = from_csv(lines(), size=1)
    assert consumed == []
    assert next(gen).text == 'a'
    assert consumed == ['text\n', 'a\n']  # stops at size: the next line is not read
    assert list(gen) == []
    assert consumed == ['text\n', 'a\n']


def test_csv_empty_input():
    with pytest.raises(ValueError, match='no header row') as e:
        list(from_csv(io.StringIO('')))
    assert 'first line must name the columns' in str(e.value)


def test_csv_headerless():
    with pytest.raises(ValueError, match='header-less') as e:
        list(from_csv(io.StringIO('1,2.5,3\n4,5,6\n')))
    assert 'add a header line' in str(e.value)


@pytest.mark.parametrize('bad_row, found', [('x,y,z\n', 3), ('x\n', 1)])
def test_csv_wrong_field_count_names_line(bad_row, found):
    gen = from_csv(io.StringIO('text,lang\nok,en\n' + bad_row))
    assert next(gen).text == 'ok'
    with pytest.raises(ValueError) as e:
        next(gen)
    msg = str(e.value)
    assert 'line 3' in msg and f'has {found} fields' in msg and 'header has 2' in msg


def test_csv_columns_colliding_after_resolver():
    with pytest.raises(ValueError, match="both map to 'text'"):
        list(from_csv(io.StringIO('question,text\na,b\n'), field_resolver={'question': 'text'}))


def test_csv_column_for_structured_field():
    with pytest.raises(ValueError, match='Document.embedding'):
        list(from_csv(io.StringIO('embedding\n1\n')))


def test_csv_bad_arguments_raise_at_call_time(tmp_path):
    missing = tmp_path / 'none.csv'
    with pytest.raises(ValueError, match='positive int'):
        from_csv(missing, size=0)
    with pytest.raises(TypeError, match='positive int'):
        from_csv(missing, size=2.5)
    with pytest.raises(TypeError, match='positive int'):
        from_csv(missing, size=True)
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        from_csv(missing, sampling_rate=0)
    with pytest.raises(ValueError, match=r'\(0, 1\]'):
        from_csv(missing, sampling_rate=1.5)
    with pytest.raises(TypeError, match='sampling_rate'):
        from_csv(missing, sampling_rate='0.5')
    with pytest.raises(ValueError, match='unknown CSV dialect'):
        from_csv(missing, dialect='nope')
    with pytest.raises(TypeError, match='field_resolver'):
        from_csv(missing, field_resolver=['text'])
    with pytest.raises(ValueError, match='StringIO'):
        from_csv('text\nhello\n')
    with pytest.raises(TypeError, match='text mode'):
        from_csv(io.BytesIO(b'text\nhi\n'))
    with pytest.raises(TypeError, match='iterable of lines'):
        from_csv(42)


# -- from_ndjson --------------------------------------------------------------------------------
def test_ndjson_docs_types_and_blank_lines(tmp_path):
    path = _write(tmp_path / 'd.ndjson',
                  '{"id": "a", "question": "q?", "n": 1, "f": 0.5, "nested": {"k": [1, 2]}}\n'
                  '\n'
                  '   \n'
                  '{"text": "b", "tags": {"m": 2}}\n')
    docs = list(from_ndjson(path, field_resolver={'question': 'text'}))
    assert len(docs) == 2
    assert docs[0].id == 'a' and docs[0].text == 'q?'
    assert docs[0].tags == {'n': 1, 'f': 0.5, 'nested': {'k': [1, 2]}}
    assert type(docs[0].tags['n']) is int
    assert docs[1].tags == {'m': 2}


def test_ndjson_roundtrips_document_json():
    d = Document(text='x', embedding=np.arange(3, dtype=np.float32), tags={'n': 1})
    out = next(from_ndjson([d.json()]))
    assert out == d


def test_ndjson_size_and_sampling():
    lines = [json.dumps({'id': str(i)}) for i in range(200)]
    assert len(list(from_ndjson(lines, size=3))) == 3
    a = _ids(from_ndjson(lines, sampling_rate=0.25, seed=3))
    assert a == _ids(from_ndjson(lines, sampling_rate=0.25, seed=3))
    assert 25 <= len(a) <= 80


@pytest.mark.parametrize('bad, what', [('{"text": ', 'not valid JSON'), ('[1, 2]', 'JSON list')])
def test_ndjson_bad_line_number(bad, what):
    gen = from_ndjson(['{"text": "ok"}\n', '\n', bad + '\n'])
    assert next(gen).text == 'ok'
    with pytest.raises(ValueError) as e:
        next(gen)
    assert 'line 3' in str(e.value) and what in str(e.value)


def test_ndjson_lazy_and_call_time_errors(tmp_path):
    path = tmp_path / 'later.ndjson'
    gen = from_ndjson(path)
    _write(path, '{"text": "hi"}\n')
    assert next(gen).text == 'hi'
    with pytest.raises(ValueError, match='positive int'):
        from_ndjson(tmp_path / 'x', size=-1)
    with pytest.raises(ValueError, match='sampling_rate'):
        from_ndjson(tmp_path / 'x', sampling_rate=float('nan'))


def test_ndjson_and_lines_read_files_opened_in_binary_mode(tmp_path):
    # Jina 2 read open(path, 'rb') (json.loads takes bytes): the lines are utf-8 text.
    path = tmp_path / 'b.ndjson'
    path.write_bytes('{"text": "caf\u00e9"}\r\n\n{"text": "b", "n": 1}\n'.encode())
    with open(path, 'rb') as f:
        assert [d.text for d in from_ndjson(f)] == ['caf\u00e9', 'b']
    with open(path, 'rb') as f:
        assert [d.tags for d in from_lines(f)] == [{}, {'n': 1}]
    assert [d.text for d in from_lines(io.BytesIO(b'one\r\n\ntwo\n'), line_format=None)] == ['one', 'two']
    assert _ids(from_lines(io.BytesIO(b'id,text\n1,a\n'), line_format='csv')) == ['1']
    # Bytes that are no utf-8: the error names the line.
    with pytest.raises(ValueError, match='line 2 is not valid utf-8'):
        list(from_ndjson(io.BytesIO(b'{"text": "ok"}\n{"text": "\xff"}\n')))
    with pytest.raises(ValueError, match='line 1 is not valid utf-8'):
        list(from_lines(io.BytesIO(b'\xff\n'), line_format=None))


# -- from_ndarray -------------------------------------------------------------------------------
def test_ndarray_axis0_keeps_dtype_and_views():
    arr = np.arange(12, dtype=np.int16).reshape(4, 3)
    docs = list(from_ndarray(arr))
    assert len(docs) == 4
    for i, d in enumerate(docs):
        assert d.blob.dtype == np.int16 and d.blob.shape == (3,)
        np.testing.assert_array_equal(d.blob, arr[i])
    assert np.shares_memory(docs[0].blob, arr)


def test_ndarray_axis1_and_negative_axis():
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    docs = list(from_ndarray(arr, axis=1))
    assert len(docs) == 3
    assert docs[2].blob.shape == (2, 4) and docs[2].blob.dtype == np.float32
    np.testing.assert_array_equal(docs[2].blob, arr[:, 2])
    last = list(from_ndarray(arr, axis=-1))
    assert len(last) == 4
    np.testing.assert_array_equal(last[1].blob, arr[..., 1])


def test_ndarray_1d_gives_0d_arrays_and_list_input():
    docs = list(from_ndarray(np.array([1.5, 2.5], dtype=np.float64)))
    assert docs[0].blob.shape == () and docs[0].blob.dtype == np.float64
    docs = list(from_ndarray([[1, 2], [3, 4]]))
    np.testing.assert_array_equal(docs[1].blob, [3, 4])


def test_ndarray_size_and_shuffle_permutation():
    arr = np.arange(50)
    assert len(list(from_ndarray(arr, size=5))) == 5
    shuffled = [int(d.blob) for d in from_ndarray(arr, shuffle=True, seed=0)]
    assert sorted(shuffled) == list(range(50))
    assert shuffled != list(range(50))
    assert shuffled == [int(d.blob) for d in from_ndarray(arr, shuffle=True, seed=0)]
    first = [int(d.blob) for d in from_ndarray(arr, shuffle=True, seed=0, size=10)]
    assert first == shuffled[:10]


def test_ndarray_bad_input():
    with pytest.raises(TypeError, match='got dict'):
        from_ndarray({'a': 1})
    with pytest.raises(TypeError, match='got generator'):
        from_ndarray(x for x in range(3))
    with pytest.raises(TypeError, match='dtype object'):
        from_ndarray(np.array([{}, 1], dtype=object))
    with pytest.raises(TypeError, match='numeric'):
        from_ndarray(np.array(['a', 'b']))
    with pytest.raises(TypeError, match='list'):
        from_ndarray([[1, 2], [3]])
    with pytest.raises(ValueError, match='0-d'):
        from_ndarray(np.float32(1))
    with pytest.raises(ValueError, match='out of range'):
        from_ndarray(np.zeros((2, 2)), axis=2)
    with pytest.raises(ValueError, match='positive int'):
        from_ndarray(np.zeros(3), size=0)


# -- from_files ---------------------------------------------------------------------------------
@pytest.fixture
def tree(tmp_path):
    _write(tmp_path / 'a.txt', 'alpha')
    _write(tmp_path / 'b.json', '{}')
    _write(tmp_path / 'sub' / 'c.txt', 'gamma')
    _write(tmp_path / 'sub' / 'deep' / 'd.txt', 'delta')
    _write(tmp_path / 'noext', 'x')
    (tmp_path / 'sub' / 'dir.txt').mkdir()  # a directory whose name matches *.txt
    (tmp_path / 'bin.dat').write_bytes(b'\xff\xfe\x00binary')
    return tmp_path


def test_files_uri_mime_and_no_read(tree):
    docs = list(from_files(str(tree / '*.txt')))
    assert [d.uri for d in docs] == [str(tree / 'a.txt')]
    assert docs[0].mime_type == 'text/plain'
    assert docs[0].text is None and docs[0].buffer is None
    assert next(from_files(str(tree / 'b.json'))).mime_type == 'application/json'
    assert next(from_files(str(tree / 'noext'))).mime_type == ''


def test_files_recursive_sorted_and_directories_skipped(tree):
    uris = [d.uri for d in from_files(str(tree / '**' / '*.txt'))]
    expected = sorted(str(tree / p) for p in ('a.txt', 'sub/c.txt', 'sub/deep/d.txt'))
    assert uris == expected
    flat = [d.uri for d in from_files(str(tree / '**' / '*.txt'), recursive=False)]
    assert flat == [str(tree / 'sub' / 'c.txt')]  # ** acts as * without recursive


def test_files_read_modes_keep_uri(tree):
    d = next(from_files(str(tree / 'a.txt'), read_mode='r'))
    assert d.text == 'alpha' and d.uri == str(tree / 'a.txt') and d.mime_type == 'text/plain'
    d = next(from_files(tree / 'bin.dat', read_mode='rb'))
    assert d.buffer == b'\xff\xfe\x00binary' and d.uri == str(tree / 'bin.dat')


def test_files_decode_error_suggests_rb(tree):
    with pytest.raises(ValueError) as e:
        list(from_files(str(tree / 'bin.dat'), read_mode='r'))
    assert 'bin.dat' in str(e.value) and "read_mode='rb'" in str(e.value)


def test_files_pattern_list_dedup_size_and_sampling(tree):
    patterns = [str(tree / '*.txt'), str(tree / '**' / '*.txt')]
    uris = [d.uri for d in from_files(patterns)]
    assert len(uris) == len(set(uris)) == 3
    assert uris[0] == str(tree / 'a.txt')
    assert len(list(from_files(patterns, size=2))) == 2
    for i in range(30):
        _write(tree / 'many' / f'{i:02d}.txt', str(i))
    pattern = str(tree / 'many' / '*.txt')
    a = [d.uri for d in from_files(pattern, sampling_rate=0.5, seed=11)]
    assert a == [d.uri for d in from_files(pattern, sampling_rate=0.5, seed=11)]
    assert 5 <= len(a) <= 25


def test_files_lazy(tmp_path):
    gen = from_files(str(tmp_path / '*.txt'), read_mode='r')
    _write(tmp_path / 'new.txt', 'fresh')
    assert next(gen).text == 'fresh'


def test_files_bad_arguments_raise_at_call_time(tmp_path):
    with pytest.raises(ValueError) as e:
        from_files('*.txt', read_mode='w')
    assert "'r'" in str(e.value) and "'rb'" in str(e.value) and 'None' in str(e.value)
    with pytest.raises(ValueError, match='positive int'):
        from_files('*.txt', size=0)
    with pytest.raises(ValueError, match='sampling_rate'):
        from_files('*.txt', sampling_rate=-0.1)
    with pytest.raises(ValueError, match='empty list'):
        from_files([])
    with pytest.raises(TypeError, match='glob'):
        from_files(3)


# -- from_lines ---------------------------------------------------------------------------------
def test_lines_json_is_the_default_as_in_jina2():
    docs = list(from_lines(['{"text": "hello", "k": 1}\n', '\n', '{"text": "b"}']))
    assert [d.text for d in docs] == ['hello', 'b'] and docs[0].tags == {'k': 1}
    # A script written for plain-text lines is told what to pass.
    with pytest.raises(ValueError, match=r'line 1.*line_format=None'):
        list(from_lines(['hello']))


def test_lines_text_with_line_format_none():
    docs = list(from_lines(['hello\n', '\n', '  spaced  \r\n', '   \n', 'last'], line_format=None))
    assert [d.text for d in docs] == ['hello', '  spaced  ', 'last']


def test_lines_from_filepath_text_and_binary(tmp_path):
    path = _write(tmp_path / 'l.txt', 'one\ntwo\n')
    assert [d.text for d in from_lines(filepath=path, line_format=None)] == ['one', 'two']
    assert [d.buffer for d in from_lines(filepath=str(path), read_mode='rb', line_format=None)] == [b'one', b'two']


def test_lines_json_and_csv_formats(tmp_path):
    docs = list(from_lines(['{"question": "q", "n": 3}'], line_format='json', field_resolver={'question': 'text'}))
    assert docs[0].text == 'q' and docs[0].tags == {'n': 3}
    path = _write(tmp_path / 'l.csv', 'id,text\n1,a\n2,b\n')
    assert _ids(from_lines(filepath=path, line_format='csv')) == ['1', '2']
    with pytest.raises(ValueError, match='line 2'):
        list(from_lines(['{}', 'nope'], line_format='json'))


def test_lines_size_sampling_and_laziness(tmp_path):
    lines = [f'line {i}' for i in range(100)]
    assert len(list(from_lines(lines, size=4, line_format=None))) == 4
    a = [d.text for d in from_lines(lines, sampling_rate=0.2, seed=5, line_format=None)]
    assert a == [d.text for d in from_lines(lines, sampling_rate=0.2, seed=5, line_format=None)]
    assert 5 <= len(a) <= 45
    consumed = []

    def gen():
        for line in lines:
            consumed.append(line)
            yield line

    docs = from_lines(gen(), size=2, line_format=None)
    assert consumed == []
    assert [d.text for d in docs] == ['line 0', 'line 1']
    assert consumed == ['line 0', 'line 1']
    path = tmp_path / 'later.txt'
    docs = from_lines(filepath=path, line_format=None)
    _write(path, 'x\n')
    assert next(docs).text == 'x'


def test_lines_bad_arguments_raise_at_call_time(tmp_path):
    with pytest.raises(ValueError, match='exactly one of lines= .* or filepath=.*neither'):
        from_lines()
    with pytest.raises(ValueError, match='both'):
        from_lines(['a'], filepath=tmp_path / 'x')
    with pytest.raises(ValueError, match='line_format'):
        from_lines(['a'], line_format='xml')
    with pytest.raises(ValueError, match='read_mode'):
        from_lines(filepath=tmp_path / 'x', read_mode='w')
    with pytest.raises(TypeError, match='splitlines'):
        from_lines('one\ntwo')
    with pytest.raises(ValueError, match='positive int'):
        from_lines(['a'], size=0)
    with pytest.raises(ValueError, match="read_mode='r'"):
        from_lines(filepath=tmp_path / 'x', read_mode='rb', line_format='csv')


def test_sampling_rate_one_keeps_everything():
    assert len(list(from_lines([str(i) for i in range(20)], sampling_rate=1, line_format=None))) == 20


def test_sampling_without_seed_uses_global_random():
    import random
    lines = [str(i) for i in range(50)]
    random.seed(42)
    a = [d.text for d in from_lines(lines, sampling_rate=0.5, line_format=None)]
    random.seed(42)
    assert a == [d.text for d in from_lines(lines, sampling_rate=0.5, line_format=None)]
