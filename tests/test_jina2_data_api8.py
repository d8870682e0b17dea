"""Jina 2.0.24's data and executor API where a reviewer found shmflow differing: pea_id /
parallel in ``runtime_args``, executors as context managers, ``DocumentArrayMemmap.save()``
with no file, ``from_lines(filepath=...)`` choosing the reader by extension, assigning
``scores`` merging, ``set_attributes(matches=[...])`` appending, and smaller names
(``ChunkArray.granularity``, ``DocumentArray.index`` / ``count`` / ``remove``, list steps
in dunder paths, ``non_empty_fields``)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from runtime import Document, DocumentArray, DocumentArrayMemmap, Executor, Flow, requests
from runtime.types.document.generators import from_lines


class ShardStore(Executor):
    """A Jina 2 indexer: a DocumentArrayMemmap in its workspace, ``save()`` in close()."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._docs = DocumentArrayMemmap(os.path.join(self.workspace, 'index'))

    @requests(on='/index')
    def index(self, docs, **kwargs):
        self._docs.extend(docs)

    def stored(self) -> list[str]:
        return sorted(d.id for d in self._docs)

    def close(self):
        self._docs.save()
        self._docs.close()


# -- executors -------------------------------------------------------------------------------
def test_a_shard_built_outside_the_flow_with_pea_id_reads_what_that_shard_stored(tmp_path):
    ws = str(tmp_path)
    # close() calling dam.save() raised TypeError (save wanted a file): the Flow failed to stop.
    with Flow().add(uses=ShardStore, name='idx', shards=2, workspace=ws) as f:
        f.index([Document(id=f'd{i}') for i in range(4)], request_size=1)
    per_shard = {}
    for shard in (0, 1):
        # Jina 2's names: shard 0 also needs the count, as only sharded executors have a /0.
        with ShardStore(metas={'workspace': ws, 'name': 'idx'}, runtime_args={'pea_id': shard, 'parallel': 2}) as s:
            assert s.workspace == os.path.join(ws, 'idx', str(shard))
            assert (s.runtime_args.shard_id, s.runtime_args.pea_id, s.runtime_args.shards) == (shard, shard, 2)
            per_shard[shard] = s.stored()
    assert sorted(per_shard[0] + per_shard[1]) == [f'd{i}' for i in range(4)] and all(per_shard.values())
    # pea_id alone, as Jina hub tests build shard 1: a shard id > 0 means sharded.
    with ShardStore(metas={'workspace': ws, 'name': 'idx'}, runtime_args={'pea_id': 1}) as alone:
        assert alone.workspace == os.path.join(ws, 'idx', '1') and alone.stored() == per_shard[1]


def test_runtime_args_jina2_names_are_checked(tmp_path):
    # Shard 0 alone is the unsharded executor: no /0.
    alone = Executor(metas={'workspace': str(tmp_path)}, runtime_args={'pea_id': 0})
    assert alone.workspace == str(tmp_path / 'Executor')
    with pytest.raises(ValueError, match='pea_id=1 and shard_id=2.*one of them'):
        Executor(runtime_args={'pea_id': 1, 'shard_id': 2})
    with pytest.raises(TypeError, match='shards takes an int'):
        Executor(runtime_args={'parallel': '2'})


def test_an_executor_is_a_context_manager_that_closes():
    closed = []

    class Closing(Executor):
        @requests
        def foo(self, docs, **kwargs):
            for d in docs:
                d.text = 'seen'

        def close(self):
            closed.append(self)

    da = DocumentArray([Document()])
    with Closing() as ex:
        ex.foo(docs=da)
    assert closed == [ex] and da[0].text == 'seen'
    with pytest.raises(RuntimeError):
        with Executor.load_config('jtype: Closing') as ex2:
            raise RuntimeError('inside')
    assert closed == [ex, ex2]


# -- DocumentArrayMemmap ---------------------------------------------------------------------
def test_memmap_save_without_a_file_persists_and_with_one_writes_it(tmp_path):
    dam = DocumentArrayMemmap(tmp_path / 'dam')
    dam.extend(Document(id=f'd{i}', text=f't{i}') for i in range(3))
    before = dam.physical_size
    assert not any(n.startswith('index.') for n in os.listdir(tmp_path / 'dam'))
    dam.save()  # Jina 2's save(): persist (the index, so reopening needs no replay)
    assert any(n.startswith('index.') for n in os.listdir(tmp_path / 'dam'))
    assert dam.physical_size > before > 0
    dam.save(tmp_path / 'docs.json')
    assert DocumentArray.load(tmp_path / 'docs.json').texts == ['t0', 't1', 't2']
    assert dam.get_doc_by_key('d1').text == 't1'
    with pytest.raises(KeyError):
        dam.get_doc_by_key('nope')
    with pytest.raises(TypeError, match='dam\\[i\\]'):
        dam.get_doc_by_key(0)
    dam.close()


# -- from_lines(filepath=...) ----------------------------------------------------------------
def test_from_lines_filepath_picks_the_reader_by_extension(tmp_path):
    (tmp_path / 'qa.csv').write_text('question,answer\nwhat is jina?,a framework\n')
    (tmp_path / 'qa.tcsv').write_text('text\nrow\n')
    (tmp_path / 'lines.txt').write_text('first line\nsecond line\n')
    (tmp_path / 'docs.jsonl').write_text('{"text": "j1", "k": 1}\n')
    (tmp_path / 'docs.ldjson').write_text('{"text": "j2"}\n')
    got = list(from_lines(filepath=tmp_path / 'qa.csv', field_resolver={'question': 'text'}))
    assert [d.text for d in got] == ['what is jina?'] and got[0].tags == {'answer': 'a framework'}
    assert [d.text for d in from_lines(filepath=str(tmp_path / 'qa.tcsv'))] == ['row']
    assert [d.text for d in from_lines(filepath=tmp_path / 'lines.txt')] == ['first line', 'second line']
    assert [d.buffer for d in from_lines(filepath=tmp_path / 'lines.txt', read_mode='rb')] == [b'first line',
                                                                                              b'second line']
    docs = list(from_lines(filepath=tmp_path / 'docs.jsonl'))
    assert docs[0].text == 'j1' and docs[0].tags == {'k': 1}
    assert [d.text for d in from_lines(filepath=tmp_path / 'docs.ldjson', line_format='json')] == ['j2']
    # lines= keep line_format (JSON by default), as in Jina 2.
    assert next(from_lines(['{"text": "x"}'])).text == 'x'


def test_from_lines_filepath_refuses_a_line_format_its_extension_contradicts(tmp_path):
    (tmp_path / 'lines.txt').write_text('{"text": "a"}\n')
    with pytest.raises(ValueError, match=r"\.txt file as plain text lines.*line_format='json'.*lines=open"):
        from_lines(filepath=tmp_path / 'lines.txt', line_format='json')
    with pytest.raises(ValueError, match="read_mode='r'"):
        from_lines(filepath=tmp_path / 'x.csv', read_mode='rb')


# -- scores, set_attributes --------------------------------------------------------------------
def test_assigning_scores_or_evaluations_merges_as_jina2_did():
    m = Document(id='m', scores={'cosine': 0.12}, evaluations={'recall': 0.5})
    held = m.scores
    m.scores = {'relevance': 0.9}
    assert dict(m.scores) == {'relevance': 0.9, 'cosine': 0.12}
    assert list(m.scores) == ['relevance', 'cosine']  # the names given first: a merge sorts by it
    assert held is m.scores
    m.evaluations = {'precision': 1.0}
    assert dict(m.evaluations) == {'recall': 0.5, 'precision': 1.0}
    m2 = Document(id='m2', scores={'cosine': 0.12})
    m2.set_attributes(scores={'relevance': 0.9, 'cosine': 0.3})
    assert dict(m2.scores) == {'relevance': 0.9, 'cosine': 0.3}
    # Copied in, as Jina 2 copied: no score object shared between two documents.
    m2.scores = m.scores
    m2.scores['relevance'].value = 0.1
    assert m.scores['relevance'].value == 0.9
    m2.scores = None  # clears (to replace: clear, then assign)
    assert dict(m2.scores) == {}
    # update() replaces, as Jina 2's cleared the field first.
    m.update(Document(scores={'bm25': 2.0}), ['scores'])
    assert dict(m.scores) == {'bm25': 2.0}


def test_set_attributes_appends_a_list_of_chunks_or_matches():
    q = Document(id='q', adjacency=1)
    q.matches.append(Document(id='a'))
    q.set_attributes(matches=[Document(id='b')], chunks=(Document(id='c'),))
    assert [x.id for x in q.matches] == ['a', 'b'] and q.matches[1].adjacency == 2
    assert [c.id for c in q.chunks] == ['c'] and q.chunks[0].parent_id == 'q'
    q.set_attributes(matches=DocumentArray([Document(id='z')]))  # not a list: replaces, as in Jina 2
    assert [x.id for x in q.matches] == ['z']


# -- smaller names ---------------------------------------------------------------------------
def test_chunk_and_match_arrays_say_the_granularity_and_adjacency_they_give():
    d = Document(granularity=1, adjacency=2)
    assert (d.chunks.granularity, d.chunks.adjacency) == (2, 2)
    assert (d.matches.granularity, d.matches.adjacency) == (1, 3)
    d.chunks.append(Document())
    d.matches.append(Document())
    assert d.chunks[0].granularity == d.chunks.granularity and d.matches[0].adjacency == d.matches.adjacency


def test_document_array_index_count_and_remove():
    a, b = Document(id='a', text='x'), Document(id='b')
    da = DocumentArray([a, b, Document(id='a', text='x')])
    assert da.index(Document(id='a', text='x')) == 0 and da.index(a, 1) == 2 and da.index('b') == 1
    assert da.count(a) == 2 and da.count(Document(id='a')) == 0 and da.count('a') == 2
    da.remove(a)
    assert [d.id for d in da] == ['b', 'a'] and da['a'] is da[1]
    with pytest.raises(ValueError, match="'b'.*not in this DocumentArray"):
        da.index(Document(id='b', text='other'))
    with pytest.raises(ValueError, match="no document with id 'q'"):
        da.remove('q')
    with pytest.raises(TypeError, match='a Document or a document id'):
        da.count(3)


def test_dunder_paths_index_into_lists():
    d = Document(tags={'a': {'b': [10, 20]}}, embedding=np.zeros(2))
    d.matches.append(Document(id='m0', text='hit'))
    assert d.get_attributes('tags__a__b__1', 'matches__0__id', 'matches__0__text', 'matches__4__id',
                            'tags__a__b__-1') == [20, 'm0', 'hit', None, 20]
    assert d.matches__0__id == 'm0' and d.tags__a__b__0 == 10
    assert DocumentArray([d]).get_attributes('matches__0__id') == ['m0']


def test_non_empty_fields_lists_what_differs_from_a_new_document():
    assert Document().non_empty_fields == ('id',)
    d = Document(id='a', text='hi', tags={'k': 1}, weight=2.0)
    d.matches  # reading a container leaves it empty: not listed
    assert d.non_empty_fields == ('id', 'text', 'mime_type', 'tags', 'weight')


def test_setting_through_a_list_path_sets_the_item_and_refuses_a_bad_index():
    # The list was replaced by a dict ({'1': 99}) without a word.
    d = Document(tags={'a': {'b': [10, 20]}, 'c': [{'x': 1}]})
    d.set_attributes(tags__a__b__1=99, tags__c__0__x=2)
    assert d.tags == {'a': {'b': [10, 99]}, 'c': [{'x': 2}]}
    with pytest.raises(IndexError, match=r'tags__a__b__5: index 5 is out of range of the list there \(2 items\)'):
        d.set_attributes(tags__a__b__5=1)
    with pytest.raises(IndexError, match=r"tags__a__b__x: 'x' steps into a list there, which takes an int index"):
        d.set_attributes(tags__a__b__x=1)
    assert d.tags == {'a': {'b': [10, 99]}, 'c': [{'x': 2}]}
