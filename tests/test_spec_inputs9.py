"""Inputs and outputs as the spec (flow-io.md) and Jina 2.0.24 have them: binary saves
appended to one file load back whole, NDJSON / CSV evaluation pairs reach handlers as
groundtruths, a generator that yields nothing sends nothing, and numpy integers are counts."""
from __future__ import annotations

import asyncio
import io
import json
import sys

import numpy as np
import pytest

from runtime import BadInputError, Document, DocumentArray, Executor, Flow, requests
from runtime.control.inputs import abatches, batched
from runtime.control.post_args import check_prefetch, check_request_size
from runtime.types.document.generators import from_csv, from_files, from_lines, from_ndjson


# -- 1. binary saves appended to one open file ----------------------------------------------------

def test_binary_saves_appended_by_on_always_load_back_every_document(tmp_path):
    # The spec's pattern: each request appends one save to the same open file.
    path = tmp_path / 'out.bin'
    with Flow() as f, open(path, 'wb') as fp:
        f.post('/', [Document(id=str(i), embedding=np.full(3, i, np.float32)) for i in range(25)],
               request_size=10, on_always=lambda r: r.docs.save(fp, file_format='binary'))
    back = DocumentArray.load(path, file_format='binary')
    assert [d.id for d in back] == [str(i) for i in range(25)]
    # The three saves' matrices stack: the whole array is columnar, each row its document's.
    assert back.embeddings.shape == (25, 3)
    assert [d.embedding[0] for d in back] == list(range(25))


def test_binary_saves_of_different_embeddings_keep_each_documents_own():
    buf = io.BytesIO()
    DocumentArray([Document(id='a', embedding=np.ones(3, np.float32))]).save(buf, 'binary')
    DocumentArray().save(buf, 'binary')
    DocumentArray([Document(id='b', embedding=np.zeros(2))]).save_binary(buf)
    DocumentArray([Document(id='c', text='no embedding')]).save(buf, 'binary')
    buf.seek(0)
    back = DocumentArray.load_binary(buf)
    assert [d.id for d in back] == ['a', 'b', 'c']
    assert back[0].embedding.dtype == np.float32 and back[0].embedding.tolist() == [1, 1, 1]
    assert back[1].embedding.dtype == np.float64 and back[1].embedding.tolist() == [0, 0]
    assert back[2].embedding is None and back[2].text == 'no embedding'


def test_one_binary_save_still_loads_columnar_zero_copy():
    buf = io.BytesIO()
    DocumentArray([Document(embedding=np.arange(4.0) + i) for i in range(3)]).save(buf, 'binary')
    buf.seek(0)
    back = DocumentArray.load(buf, 'binary')
    assert back.embeddings is back.embeddings  # the loaded matrix itself, not a stacked copy
    assert back.embeddings[:, 0].tolist() == [0, 1, 2]


def test_bytes_after_a_binary_save_that_are_no_save_are_refused_not_ignored():
    buf = io.BytesIO()
    DocumentArray([Document(id='a')]).save(buf, 'binary')
    one = buf.getvalue()
    with pytest.raises(ValueError, match=r'after save #1 .* not another save'):
        DocumentArray.load(io.BytesIO(one + b'{"text": "json line"}\n'), 'binary')
    with pytest.raises(ValueError, match=r'save #2 is cut short'):
        DocumentArray.load(io.BytesIO(one + one[:-5]), 'binary')


# -- 2. (Document, groundtruth) pairs from NDJSON and CSV -----------------------------------------

class Evaluate(Executor):
    @requests
    def evaluate(self, docs, groundtruths, **kwargs):
        return {'texts': docs.texts, 'truths': None if groundtruths is None else groundtruths.texts}


_PAIR_LINES = [json.dumps({'document': {'text': 'what is jina?'}, 'groundtruth': {'text': 'a framework'}}),
               json.dumps({'document': {'question': 'who made it?'}, 'groundtruth': '{"question": "jina ai"}'})]
_PAIR_CSV = 'document,groundtruth,split\n"{""text"": ""q""}","{""text"": ""a""}",dev\n'


def test_ndjson_and_csv_document_groundtruth_records_yield_pairs():
    pairs = list(from_ndjson(io.StringIO('\n'.join(_PAIR_LINES) + '\n'), field_resolver={'question': 'text'}))
    assert all(isinstance(p, tuple) and len(p) == 2 for p in pairs)
    # Each side is Document(value, field_resolver): a dict or a JSON string, keys renamed inside.
    assert [(d.text, t.text) for d, t in pairs] == [('what is jina?', 'a framework'), ('who made it?', 'jina ai')]
    assert [d.tags for p in pairs for d in p] == [{}, {}, {}, {}]
    (d, t), = from_csv(io.StringIO(_PAIR_CSV))
    assert (d.text, t.text) == ('q', 'a')
    (d, t), = from_lines(_PAIR_CSV.splitlines(), line_format='csv')
    assert (d.text, t.text) == ('q', 'a')
    # A record with only one of the keys stays a document, as in Jina 2.
    only = next(from_ndjson(['{"document": {"text": "x"}, "lang": "en"}']))
    assert isinstance(only, Document) and only.tags == {'document': {'text': 'x'}, 'lang': 'en'}


def test_a_bad_side_of_a_pair_names_the_line_and_the_key():
    with pytest.raises(TypeError, match=r"NDJSON line 2, 'groundtruth' of a document/groundtruth pair"):
        list(from_ndjson(['{"text": "plain"}', '{"document": {"text": "q"}, "groundtruth": 3}']))
    with pytest.raises(ValueError, match=r"CSV line 2, 'document' of a document/groundtruth pair"):
        list(from_csv(io.StringIO('document,groundtruth\nnot json,"{}"\n')))


def test_posted_pairs_reach_handlers_as_groundtruths(tmp_path):
    jsonl = tmp_path / 'eval.jsonl'
    jsonl.write_text('\n'.join(_PAIR_LINES[:1]) + '\n')
    seen = []
    with Flow().add(uses=Evaluate, name='ev') as f:
        for inputs in (from_ndjson(io.StringIO(_PAIR_LINES[0] + '\n')), from_lines(_PAIR_LINES[:1]),
                       from_lines(filepath=str(jsonl)), from_csv(io.StringIO(_PAIR_CSV))):
            f.post('/eval', inputs, on_done=lambda r: seen.append(r.parameters['__results__']['ev']))
    assert seen == [{'texts': ['what is jina?'], 'truths': ['a framework']}] * 3 + [{'texts': ['q'], 'truths': ['a']}]


# -- 3. an input that yields nothing sends nothing ------------------------------------------------

class Calls(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    @requests
    def count(self, docs, **kwargs):
        self.calls += 1
        return {'calls': self.calls, 'docs': len(docs)}


def _empty_gen():
    yield from ()


def test_a_generator_that_yields_nothing_sends_no_request(tmp_path):
    header_only = tmp_path / 'empty.csv'
    header_only.write_text('question,answer\n')
    with Flow().add(uses=Calls, name='c') as f:
        for inputs in (_empty_gen(), _empty_gen, iter([]), from_files(str(tmp_path / '*.jpg')),
                       from_csv(str(header_only))):
            called = []
            assert f.post('/', inputs, return_results=True, on_always=called.append) == []
            assert called == []
        # Then what Jina 2 sent as one request: None, an empty list / tuple / DocumentArray,
        # a function returning one, a parameters-only post. The handler ran on each.
        got = [f.post('/', inputs, return_results=True)
               for inputs in (None, [], (), DocumentArray(), lambda: [])]
        got.append(f.post('/', parameters={'k': 1}, return_results=True))
    assert [[r.parameters['__results__']['c'] for r in rs] for rs in got] == \
        [[{'calls': n, 'docs': 0}] for n in range(1, 7)]


def test_batching_an_empty_iterable_makes_no_batch_but_an_empty_sequence_one():
    assert list(batched(iter([]), 10)) == []
    assert [len(d) for d, _ in batched([], 10)] == [0]

    async def nothing():
        if False:
            yield Document()

    async def collect():
        return [len(b) async for b in abatches(nothing(), 10)]
    assert asyncio.run(collect()) == []


def test_progress_of_a_post_that_sent_nothing_says_so(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, 'stderr', err)
    with Flow() as f:
        f.post('/index', _empty_gen(), show_progress=True)
    last = [ln for ln in err.getvalue().replace('\r', '\n').splitlines() if ln.strip()][-1]
    assert last.startswith('/index: 0 requests, 0 docs done in '), last


# -- 4. numpy integers are counts ---------------------------------------------------------------

def test_numpy_integer_request_size_and_prefetch_are_taken():
    assert check_request_size(np.int64(25)) == 25 and type(check_request_size(np.int64(25))) is int
    assert check_prefetch(np.int32(4)) == 4 and type(check_prefetch(np.uint8(4))) is int
    docs = [Document() for _ in range(100)]
    request_size = np.ceil(len(docs) / 4).astype(int)
    with Flow(prefetch=np.int64(2)) as f:
        assert [len(r.docs) for r in f.post('/', docs, request_size=request_size, return_results=True)] == [25] * 4
        assert len(f.post('/', iter(docs), request_size=np.int64(30), prefetch=np.int64(2),
                          return_results=True)) == 4


@pytest.mark.parametrize('bad', [True, np.True_, 2.0, np.float64(2.0), '2', np.int64(0), np.int64(-3), np.array(3)])
def test_bools_floats_and_non_positive_numpy_ints_are_still_refused(bad):
    with pytest.raises(ValueError, match='request_size must be a positive int'):
        check_request_size(bad)
    with pytest.raises(ValueError, match='prefetch must be a positive int'):
        check_prefetch(bad)


# -- raw content as Jina 2's client wrapped it (data_type AUTO) ------------------------------------
class Describe(Executor):
    @requests
    def describe(self, docs, groundtruths=None, **kwargs):
        for i, d in enumerate(docs):
            d.tags['got'] = [d.text, None if d.blob is None else list(d.blob.shape), d.buffer,
                             groundtruths[i].text if groundtruths is not None else None]


def test_raw_content_items_are_wrapped_as_jina2s_client_wrapped_them():
    with Flow().add(uses=Describe) as f:
        def got(inputs):
            return [d.tags['got'] for r in f.post('/', inputs, return_results=True) for d in r.docs]

        # (a str is always text, even one holding JSON: its text is never lost)
        assert got(['plain text', '{"text": "json"}', {'text': 'dict fields'}, b'raw', np.str_('np')]) == [
            ['plain text', None, None, None], ['{"text": "json"}', None, None, None],
            ['dict fields', None, None, None], [None, None, b'raw', None], ['np', None, None, None]]
        assert len(f.post('/', np.zeros((0, 4)), return_results=True)) == 1  # (no row: one empty request, as [])
        assert got(np.zeros((3, 4), dtype=np.float32)) == [[None, [4], None, None]] * 3  # an array: its rows
        assert got(iter([np.zeros(2)])) == [[None, [2], None, None]]
        assert got([('query', 'answer')]) == [['query', None, None, 'answer']]  # a pair: a groundtruth
        with pytest.raises(BadInputError, match=r'inputs item #1 got int 7'):
            f.post('/', ['text', 7])
        with pytest.raises(BadInputError, match=r'inputs item #0: a dict of Document fields .*text'):
            f.post('/', [{'text': 1}])
        with pytest.raises(BadInputError, match='one text is no sequence of inputs'):
            f.post('/', 'text')
