"""The smaller parts of Jina 2's surface a script reaches for: ``runtime_args.name`` /
``.workspace``, ``Response.groundtruths``, and the module paths ``jina.clients`` and
``jina.excepts`` (here ``runtime.clients`` / ``runtime.excepts``)."""
from __future__ import annotations

import os
import pickle

import pytest

import runtime
from runtime import Document, DocumentArray, Executor, Flow, requests
from runtime.response import Response, Status


class RuntimeArgsProbe(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.at_init = (self.runtime_args.name, self.runtime_args.workspace)

    @requests
    def report(self, docs, **kwargs):
        return {'at_init': list(self.at_init), 'metas_workspace': self.metas.workspace, 'workspace': self.workspace}


def test_runtime_args_have_jina2s_name_and_workspace(tmp_path):
    # Jina 2: the executor's workspace is runtime_args.workspace / metas.name
    with Flow(workspace=str(tmp_path)).add(name='probe', uses=RuntimeArgsProbe) as f:
        (resp,) = f.post('/', Document(), return_results=True)
    out = resp.parameters['__results__']['probe']
    assert out['at_init'] == ['probe', str(tmp_path)]
    assert out['workspace'] == os.path.join(str(tmp_path), 'probe')
    assert out['metas_workspace'] is None  # none given, as Jina 2 left it
    # built outside a Flow: its name, and the folder its default workspace is in
    ex = RuntimeArgsProbe(metas={'name': 'alone'})
    assert ex.at_init == ('alone', os.path.join(os.getcwd(), 'workspace'))


def test_response_groundtruths_as_jina2s_request_had_them():
    truths = DocumentArray([Document(text='t')])
    given = Response._from_blob('r-1', DocumentArray([Document(text='q')]), '/', pickle.dumps({}), None,
                                Status(), [], groundtruths=truths)
    assert given.groundtruths is truths and given.groundtruths.texts == ['t']
    none = Response('r-2', DocumentArray(), '/', {}, Status(), [])
    assert isinstance(none.groundtruths, DocumentArray) and len(none.groundtruths) == 0
    none.groundtruths = truths
    assert none.groundtruths is truths


class BrokenInitExec(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        raise RuntimeError('no model file')


def test_jina2_module_paths_clients_and_excepts():
    from runtime.clients import Client
    from runtime.excepts import BadClientInput, ConfigError, ExecutorError, RuntimeFailToStart
    assert Client is runtime.Client and ExecutorError is runtime.ExecutorError
    assert RuntimeFailToStart is runtime.ExecutorStartError and BadClientInput is runtime.BadInputError
    assert ConfigError is runtime.config.ConfigError
    with pytest.raises(RuntimeFailToStart, match='no model file'):
        with Flow().add(uses=BrokenInitExec):
            pass
    with Flow().add() as f:
        with pytest.raises(BadClientInput, match='int 42'):
            f.post('/', 42)
    with pytest.raises(ImportError, match='RuntimeTerminated'):
        from runtime.excepts import RuntimeTerminated  # noqa: F401 - a Jina 2 name runtime has no use for


def test_every_module_path_the_readme_lists_imports():
    import importlib
    import re
    readme = open(os.path.join(os.path.dirname(__file__), '..', 'README.md'), encoding='utf-8').read()
    start = readme.index('A script written for Jina 2 runs')
    passage = readme[start:readme.index('tests/test_jina2_scripts.py', start)]
    paths = set()
    for name in re.findall(r'`(runtime(?:\.\w+)+(?:\(\.\w+\))?)`', passage):
        base, _, optional = name.partition('(')
        paths.add(base)
        if optional:
            paths.add(base + optional.rstrip(')'))
    assert {'runtime.clients', 'runtime.excepts', 'runtime.executors.decorators'} <= paths
    for path in sorted(paths):
        importlib.import_module(path)


def test_a_posts_groundtruths_reach_the_callbacks_response():
    with Flow().add(uses=Executor) as f:
        got = f.post('/eval', [(Document(text='q1'), Document(text='a1')), (Document(text='q2'), Document(text='a2'))],
                     request_size=1, return_results=True, results_in_order=True)
        plain = f.post('/eval', Document(text='q'), return_results=True)
    assert [(r.docs.texts, r.groundtruths.texts) for r in got] == [(['q1'], ['a1']), (['q2'], ['a2'])]
    assert len(plain[0].groundtruths) == 0


class ReadsInitKwargs(Executor):
    """The shape of Jina 2 hub executors: reads runtime_args / metas from **kwargs."""

    def __init__(self, dump_path=None, **kwargs):
        super().__init__(**kwargs)
        self.seen = {'dump_path': dump_path or kwargs.get('runtime_args').get('dump_path'),
                     'shard': kwargs['runtime_args']['pea_id'], 'name': kwargs['metas']['name']}

    @requests
    def report(self, docs, **kwargs):
        return self.seen


def test_init_kwargs_carry_metas_and_runtime_args_as_jina2_passed_them():
    with Flow().add(name='hub', uses=ReadsInitKwargs, shards=2, polling='all') as f:
        (r,) = f.post('/', return_results=True)
    seen = r.parameters['__results__']['hub']
    assert sorted(s['shard'] for s in seen) == [0, 1]
    assert all(s['name'] == 'hub' and s['dump_path'] is None for s in seen)


class Configured(Executor):
    def __init__(self, bar=1, **kwargs):
        super().__init__(**kwargs)
        self.bar = bar

    @requests(on='/a')
    def a(self, docs, **kwargs):
        pass

    def b(self, docs, **kwargs):
        pass


def test_load_config_takes_jina2s_override_names():
    text = 'jtype: Configured\nwith:\n  bar: 2\nmetas:\n  name: c\n'
    e = Executor.load_config(text, override_with={'bar': 3}, override_metas={'name': 'd'},
                             override_requests={'/b': 'b'})
    assert (e.bar, e.metas.name, sorted(e.requests)) == (3, 'd', ['/a', '/b'])


def test_hub_and_docker_uses_say_they_are_not_supported():
    for uses in ('jinahub://FaissSearcher', 'jinahub+docker://FaissSearcher', 'docker://my/image'):
        with pytest.raises(ValueError, match='Jina Hub and docker executors are not supported'):
            Flow().add(uses=uses)
