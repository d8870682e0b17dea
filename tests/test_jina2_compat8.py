"""Jina 2.0.24 behaviours found missing by the eighth compatibility review: a given
workspace is the root of each executor's own folder, ``matches`` / ``chunks``
``append(document, **kwargs)``, ``load_config(dict)`` and ``Executor.__call__``."""
from __future__ import annotations

import os

import numpy as np
import pytest

from runtime import Document, DocumentArray, Executor, Flow, requests
from runtime.config import ConfigError
from runtime.types.arrays.memmap import DocumentArrayMemmap


# -- workspaces --------------------------------------------------------------------------
class WsIndexer(Executor):
    """Keeps what it indexes in a DocumentArrayMemmap in its workspace, as Jina 2
    indexers did."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._docs = DocumentArrayMemmap(os.path.join(self.workspace, 'index'))

    @requests(on='/index')
    def index(self, docs, **kwargs):
        self._docs.extend(docs)

    @requests(on='/report')
    def report(self, docs, **kwargs):
        return {'workspace': self.workspace, 'count': len(self._docs),
                'root': self.runtime_args.workspace, 'metas': self.metas.workspace}

    def close(self):
        self._docs.close()


def _reports(f: Flow, n_index: int = 4) -> dict:
    f.index([Document(text=str(i)) for i in range(n_index)], request_size=1)
    (resp,) = f.post('/report', Document(), return_results=True)
    return resp.parameters['__results__']


@pytest.mark.parametrize('how', ['uses_metas', 'add', 'yaml'])
def test_executors_given_the_same_workspace_each_get_their_own_folder(tmp_path, monkeypatch, how):
    # Jina 2: self.workspace = abspath(join(metas.workspace, metas.name)); two indexers given
    # one workspace (a Flow YAML setting workspace: $JINA_WORKSPACE on each) did not clash.
    monkeypatch.chdir(tmp_path)
    if how == 'uses_metas':
        given = [{'uses': WsIndexer, 'uses_metas': {'workspace': 'ws'}}] * 2
    elif how == 'add':
        given = [{'uses': WsIndexer, 'workspace': 'ws'}] * 2
    else:
        given = [{'uses': 'jtype: WsIndexer\nmetas:\n  workspace: ws\n'}] * 2
    f = Flow().add(name='a', **given[0]).add(name='b', **given[1])
    with f:
        out = _reports(f)
    ws = str(tmp_path / 'ws')
    assert out['a']['workspace'] == os.path.join(ws, 'a') and out['b']['workspace'] == os.path.join(ws, 'b')
    # each saw every document once (both are on the path of every request)
    assert out['a']['count'] == out['b']['count'] == 4
    assert out['a']['root'] == out['b']['root'] == ws  # runtime_args.workspace: the root, absolute
    assert out['a']['metas'] == 'ws'  # metas.workspace: as given, as in Jina 2


def test_the_flow_workspace_is_the_root_and_metas_workspace_stays_unset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Flow(workspace='fw').add(name='a', uses=WsIndexer).add(name='b', uses=WsIndexer) as f:
        out = _reports(f, 1)
    assert [out[n]['workspace'] for n in 'ab'] == [str(tmp_path / 'fw' / n) for n in 'ab']
    assert out['a']['root'] == str(tmp_path / 'fw') and out['a']['metas'] is None


def test_shards_given_a_workspace_get_a_folder_each_under_their_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = Flow().add(uses=WsIndexer, name='s', shards=2, polling={'/index': 'any', '*': 'all'},
                   uses_metas={'workspace': 'ws2'})
    with f:
        per_shard = _reports(f)['s']
    assert sorted(r['workspace'] for r in per_shard) == [str(tmp_path / 'ws2' / 's' / str(i)) for i in range(2)]
    assert sum(r['count'] for r in per_shard) == 4


def test_an_executor_built_directly_follows_the_same_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ex = WsIndexer(metas={'workspace': 'ws'})
    assert ex.workspace == str(tmp_path / 'ws' / 'WsIndexer') and os.path.isdir(ex.workspace)
    assert ex.runtime_args.workspace == str(tmp_path / 'ws')
    ex.close()
    named = Executor(metas={'name': 'enc'}, runtime_args={'shards': 2, 'shard_id': 1})
    assert named.workspace == str(tmp_path / 'workspace' / 'enc' / '1')  # the default root: ./workspace


# -- chunks / matches append(document, **kwargs) --------------------------------------------
def test_matches_append_sets_the_keyword_arguments_and_returns_the_match():
    q = Document(embedding=np.ones(2), adjacency=1)
    m = q.matches.append(Document(id='m'), scores={'cosine': 0.1})
    assert m is q.matches[0] and m.adjacency == 2
    assert m.scores['cosine'].value == 0.1
    m.scores['euclidean'] = 0.3  # the returned document is the stored one
    assert q.matches[0].scores['euclidean'].value == 0.3


def test_chunks_append_sets_the_keyword_arguments_and_the_parents_mime_type():
    parent = Document(id='p', text='hello world')
    c = parent.chunks.append(Document(id='c'), tags={'a': 1})
    assert c is parent.chunks[0] and c.tags == {'a': 1} and c.parent_id == 'p' and c.granularity == 1
    assert c.mime_type == 'text/plain'  # taken from the parent, which it had none of
    own = parent.chunks.append(Document(id='own', mime_type='image/png'))
    assert own.mime_type == 'image/png'


def test_append_with_an_unknown_attribute_says_so_and_adds_nothing():
    q = Document()
    with pytest.raises(AttributeError, match="'bogus' is not a Document field; valid fields are: id, text"):
        q.matches.append(Document(id='x'), bogus=1)
    assert len(q.matches) == 0
    with pytest.raises(TypeError, match='MatchArray.append sets granularity, adjacency from the document'):
        q.matches.append(Document(id='x'), adjacency=5)


# -- load_config(dict) -----------------------------------------------------------------------
class DictCfgExec(Executor):
    def __init__(self, a=1, **kwargs):
        super().__init__(**kwargs)
        self.a = a

    @requests
    def tag(self, docs, **kwargs):
        for d in docs:
            d.tags['a'] = self.a


def test_executor_load_config_takes_a_dict_as_the_same_yaml(monkeypatch):
    monkeypatch.setenv('COMPAT8_A', '6')
    given = {'jtype': 'DictCfgExec', 'with': {'a': '$COMPAT8_A'}, 'metas': {'name': 'dd'}}
    ex = Executor.load_config(given)
    from_yaml = Executor.load_config('jtype: DictCfgExec\nwith:\n  a: $COMPAT8_A\nmetas:\n  name: dd\n')
    assert (type(ex), ex.a, ex.metas.name) == (type(from_yaml), from_yaml.a, from_yaml.metas.name) == \
        (DictCfgExec, 6, 'dd')
    assert given['with'] == {'a': '$COMPAT8_A'}  # the caller's dict is left as it was
    assert DictCfgExec.load_config({'jtype': 'DictCfgExec'}, uses_with={'a': 9}).a == 9
    with pytest.raises(ConfigError, match="^the config dict: unknown key 'wiht' in an executor config"):
        Executor.load_config({'jtype': 'DictCfgExec', 'wiht': {}})


def test_flow_load_config_takes_a_dict():
    f = Flow.load_config({'jtype': 'Flow', 'executors': [{'name': 'e', 'uses': 'DictCfgExec',
                                                          'uses_with': {'a': 7}}]})
    with f:
        (resp,) = f.post('/', Document(), return_results=True)
    assert resp.docs[0].tags['a'] == 7
    with pytest.raises(ConfigError, match="^the config dict: unknown key 'executor' in a Flow config"):
        Flow.load_config({'jtype': 'Flow', 'executor': []})


# -- Executor.__call__ -----------------------------------------------------------------------
class CallableExec(Executor):
    @requests(on='/x')
    def x(self, docs, **kwargs):
        for d in docs:
            d.tags['h'] = 'x'
        return {'ran': 'x'}

    @requests
    def fallback(self, docs, parameters, **kwargs):
        for d in docs:
            d.tags['h'] = parameters.get('h', 'default')


def test_calling_an_executor_runs_the_handler_of_the_endpoint_or_the_default():
    ex = CallableExec()
    docs = DocumentArray([Document()])
    assert ex('/x', docs=docs) == {'ran': 'x'} and docs[0].tags['h'] == 'x'
    assert ex('/other', docs=docs, parameters={'h': 'y'}) is None and docs[0].tags['h'] == 'y'
    assert Executor()('/x', docs=docs) is None  # no handler at all: nothing runs
