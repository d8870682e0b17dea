"""Executor: the ``@requests`` decorator, handler signatures and return values, ``uses=``
resolution, metas / runtime_args / workspace, the ``close()`` hook, direct construction,
and executor classes defined in test functions or in a script's ``__main__``."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from runtime import Document, DocumentArray, Executor, ExecutorError, Flow, requests


# Module-level classes are registered by name for ``uses='Name'`` / ``{'jtype': 'Name'}``;
# their names are unique in the test suite.
class RoutedExec(Executor):
    @requests
    def default(self, docs, parameters, **kwargs):
        return {'handler': 'default'}

    @requests(on='/index')
    def on_index(self, docs, parameters, **kwargs):
        return {'handler': 'index'}

    @requests(on=['/a', '/b'])
    def on_a_or_b(self, docs, parameters, **kwargs):
        return {'handler': 'a_or_b'}


class OnlyIndexExec(Executor):
    @requests(on='/index')
    def on_index(self, docs, **kwargs):
        for d in docs:
            d.tags['indexed'] = True


class IntrospectExec(Executor):
    def __init__(self, factor: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    @requests
    def report(self, docs, parameters, **kwargs):
        return {'name': self.metas.name, 'workspace': self.metas.workspace, 'factor': self.factor,
                'replica_id': self.runtime_args.replica_id, 'shard_id': self.runtime_args.shard_id}


class TagByNameExec(Executor):
    def __init__(self, tag: str = 'default', **kwargs):
        super().__init__(**kwargs)
        self.tag = tag

    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.tags.setdefault('seen', []).append(f'{self.metas.name}:{self.tag}')


class CloseRecorderExec(Executor):
    def __init__(self, path: str, **kwargs):
        super().__init__(**kwargs)
        self.path = path

    def close(self):
        with open(f'{self.path}.{self.runtime_args.replica_id}', 'w') as fp:
            fp.write(f'closed {self.metas.name}')


def _results(resp, name):
    return resp.parameters['__results__'][name]


# -- the decorator and handler signatures (no Flow) -------------------------------------------
@pytest.mark.parametrize('src', [
    'def foo(self, x): pass',  # x would get no value
    'def foo(self): pass',  # cannot take docs= / parameters=
    'def foo(self, docs): pass',  # cannot take parameters=
    'def foo(self, docs, /, parameters, **kwargs): pass',  # docs positional-only
    'def foo(self, docs, parameters, needed, **kwargs): pass',
])
def test_bad_handler_signature_fails_when_class_is_defined(src):
    ns = {}
    exec(src, ns)
    with pytest.raises(TypeError) as info:
        type('BadSignatureExec', (Executor,), {'foo': requests(ns['foo'])})
    msg = str(info.value)
    assert 'foo' in msg and 'docs' in msg and 'parameters' in msg


@pytest.mark.parametrize('src', [
    'def foo(self, docs, parameters): return {"ok": 1}',
    'def foo(self, **kwargs): return {"ok": 1}',
    'def foo(self, docs, parameters, extra=3, **kwargs): return {"ok": 1}',
    'def foo(self, docs=None, parameters=None, *args, **kwargs): return {"ok": 1}',
])
def test_good_handler_signatures_are_accepted_and_callable(src):
    ns = {}
    exec(src, ns)
    cls = type('GoodSignatureExec', (Executor,), {'foo': requests(ns['foo'])})
    assert cls().foo(docs=DocumentArray(), parameters={}) == {'ok': 1}


def test_requests_on_must_be_endpoints():
    with pytest.raises(TypeError, match='endpoint'):
        requests(on=[])
    with pytest.raises(TypeError, match='endpoint'):
        requests(on=['/a', 3])


def test_direct_construction_without_flow(tmp_path):
    ex = Executor()
    assert ex.metas.name == 'Executor'
    assert ex.runtime_args.replica_id == 0 and ex.runtime_args.shard_id == 0

    tagger = TagByNameExec(tag='y', metas={'name': 'tagger', 'workspace': str(tmp_path / 'ws')})
    assert tagger.metas.name == 'tagger'
    assert tagger.metas.workspace == str(tmp_path / 'ws')
    assert tagger.tag == 'y'
    # the given workspace is the root of its own folder, as in Jina 2
    assert tagger.workspace == str(tmp_path / 'ws' / 'tagger') and os.path.isdir(tmp_path / 'ws' / 'tagger')

    plain = TagByNameExec()
    assert plain.metas.name == 'TagByNameExec'
    # none given: metas.workspace stays unset (as in Jina 2), the root is ./workspace
    assert plain.metas.workspace is None and plain.runtime_args.workspace == os.path.abspath('workspace')
    docs = DocumentArray([Document(text='x')])
    assert plain.foo(docs=docs, parameters={}) is None
    assert docs[0].tags['seen'] == ['TagByNameExec:default']

    intro = IntrospectExec(factor=2, metas={'name': 'i'}, runtime_args={'replica_id': 3})
    assert intro.report(docs=DocumentArray(), parameters={}) == {
        'name': 'i', 'workspace': intro.metas.workspace, 'factor': 2, 'replica_id': 3, 'shard_id': 0}


# -- uses= resolution errors (no process is started) ------------------------------------------
def test_unknown_jtype_lists_close_matches():
    with pytest.raises(ValueError) as info:
        Flow().add(uses='TagByNameExc')
    assert "'TagByNameExc'" in str(info.value) and 'TagByNameExec' in str(info.value)

    with pytest.raises(ValueError) as info:
        Flow().add(uses={'jtype': 'IntrospectExce', 'with': {'factor': 2}})
    assert 'IntrospectExec' in str(info.value)


def test_uses_rejects_what_is_not_an_executor_class():
    with pytest.raises(TypeError, match='Executor'):
        Flow().add(uses=dict)
    with pytest.raises(TypeError, match='instance'):
        Flow().add(uses=TagByNameExec())
    with pytest.raises(ValueError, match='jtype'):
        Flow().add(uses={'with': {'tag': 'x'}})


# -- in a Flow ---------------------------------------------------------------------------------
def test_endpoint_routing_of_handlers():
    got = []
    with Flow().add(uses=RoutedExec).add(uses=OnlyIndexExec) as f:
        for ep in ('/', '/index', '/a', '/b', '/other'):
            f.post(ep, Document(id=ep), on_done=got.append)

    assert [_results(r, 'RoutedExec')['handler'] for r in got] == \
        ['default', 'index', 'a_or_b', 'a_or_b', 'default']
    # OnlyIndexExec has no default handler: it handles /index only, other requests pass it by
    assert [r.docs[0].tags.get('indexed') for r in got] == [None, True, None, None, None]
    assert [r.docs[0].id for r in got] == ['/', '/index', '/a', '/b', '/other']


def test_handler_return_values_in_flow():
    class InPlace(Executor):
        @requests
        def foo(self, docs, parameters, **kwargs):
            for d in docs:
                d.tags['in_place'] = d.text
                d.embedding = np.arange(3, dtype=np.float32)

    class Replace(Executor):
        @requests
        def foo(self, docs, parameters, **kwargs):
            out = DocumentArray([Document(id=f'new-{d.id}', text=d.tags['in_place'] * 2,
                                          embedding=d.embedding * 2) for d in docs])
            out.append(Document(id='extra', text='z'))
            return out

    class Results(Executor):
        @requests
        def foo(self, docs, parameters):  # no **kwargs: fine, it takes docs and parameters
            for d in docs:
                d.tags['touched'] = True  # in-place changes are kept next to a returned dict
            return {'count': len(docs), 'docs_is_da': isinstance(docs, DocumentArray),
                    'parameters_is_dict': isinstance(parameters, dict)}

    class Bad(Executor):
        @requests
        def foo(self, docs, **kwargs):
            return 42

    got = []
    with Flow().add(uses=InPlace).add(uses=Replace).add(uses=Results, name='res').add(uses=Bad) as f:
        f.post('/', DocumentArray([Document(id='a', text='x'), Document(id='b', text='y')]),
               on_done=got.append, target_executor='InPlace|Replace|res')
        with pytest.raises(ExecutorError) as info:
            f.post('/', Document(), target_executor='Bad')

    (resp,) = got
    assert [d.id for d in resp.docs] == ['new-a', 'new-b', 'extra']
    assert resp.docs.texts == ['xx', 'yy', 'z']
    assert [d.tags.get('touched') for d in resp.docs] == [True, True, True]
    np.testing.assert_array_equal(resp.docs[0].embedding, np.arange(3, dtype=np.float32) * 2)
    # only handlers that returned a dict appear, under the executor's name
    assert resp.parameters['__results__'] == {
        'res': {'count': 3, 'docs_is_da': True, 'parameters_is_dict': True}}
    # any other return value is an error that says what to return
    assert info.value.executor == 'Bad'
    assert 'int' in str(info.value) and 'DocumentArray' in str(info.value)


def test_metas_runtime_args_and_uses_with_in_flow(tmp_path):
    custom_ws = str(tmp_path / 'custom')
    f = (Flow(workspace=str(tmp_path))
         # first, so that both requests are in flight there at once: one per replica
         .add(name='intro-3', uses='IntrospectExec', replicas=2)
         .add(uses=IntrospectExec, uses_with={'factor': 3})
         .add(uses={'jtype': 'IntrospectExec', 'with': {'factor': 4}, 'metas': {'name': 'intro-2'}})
         .add(uses=IntrospectExec, uses_metas={'name': 'intro-4', 'workspace': custom_ws}))
    got = []
    with f:
        f.post('/', [Document(), Document()], request_size=1, on_done=got.append)

    assert len(got) == 2
    first = got[0].parameters['__results__']
    assert sorted(first) == ['IntrospectExec', 'intro-2', 'intro-3', 'intro-4']
    # metas.workspace is what was given (the folder, self.workspace, is <root>/<name>)
    assert first['IntrospectExec'] == {'name': 'IntrospectExec', 'factor': 3, 'replica_id': 0, 'shard_id': 0,
                                       'workspace': None}
    assert first['intro-2'] == {'name': 'intro-2', 'factor': 4, 'replica_id': 0, 'shard_id': 0,
                                'workspace': None}
    assert first['intro-4'] == {'name': 'intro-4', 'factor': 1, 'replica_id': 0, 'shard_id': 0,
                                'workspace': custom_ws}
    replicas = [r.parameters['__results__']['intro-3'] for r in got]
    assert sorted(x['replica_id'] for x in replicas) == [0, 1]
    assert all(x['name'] == 'intro-3' and x['workspace'] is None for x in replicas)
    assert [[h['executor'] for h in r.routes] for r in got] == [['intro-3', 'IntrospectExec', 'intro-2',
                                                                 'intro-4']] * 2
    assert sorted(r.routes[0]['replica'] for r in got) == [0, 1]


def test_close_hook_runs_on_shutdown(tmp_path):
    path = str(tmp_path / 'closed')
    f = Flow().add(uses=CloseRecorderExec, uses_with={'path': path}, name='rec', replicas=2)
    with pytest.raises(KeyError):  # also when the with block raises
        with f:
            f.post('/', Document())
            assert not os.path.exists(f'{path}.0')
            raise KeyError('leave')
    assert open(f'{path}.0').read() == 'closed rec'
    assert open(f'{path}.1').read() == 'closed rec'


def test_uses_forms_in_one_flow():
    suffix = '!'  # a closure: the class travels with cloudpickle, not by import

    class LocalExec(Executor):
        @requests
        def foo(self, docs, **kwargs):
            for d in docs:
                d.text += suffix

    emb = np.random.default_rng(0).random((2, 4)).astype(np.float32)
    docs = DocumentArray([Document(id='1', text='a', embedding=emb[0]),
                          Document(id='2', text='b', embedding=emb[1])])
    got = []
    with Flow().add() as f:  # nothing: documents pass through
        f.post('/', docs, on_done=got.append)
    with (Flow()
          .add(uses='TagByNameExec')
          .add(uses={'jtype': 'TagByNameExec', 'with': {'tag': 'b'}, 'metas': {'name': 'by-dict'}})
          .add(uses=TagByNameExec, name='by-class', uses_with={'tag': 'c'})
          .add(uses=LocalExec)
          .add()) as f:
        f.post('/', docs, on_done=got.append)

    through, chain = got
    assert [d.id for d in through.docs] == ['1', '2'] and through.docs.texts == ['a', 'b']
    np.testing.assert_array_equal(through.docs.embeddings, emb)
    assert chain.docs.texts == ['a!', 'b!']
    assert chain.docs[0].tags['seen'] == ['TagByNameExec:default', 'by-dict:b', 'by-class:c']
    np.testing.assert_array_equal(chain.docs.embeddings, emb)
    assert [h['executor'] for h in chain.routes][:4] == ['TagByNameExec', 'by-dict', 'by-class', 'LocalExec']


def test_jtype_resolves_the_latest_definition():
    class RedefinedExec(Executor):
        @requests
        def foo(self, docs, **kwargs):
            return {'version': 1}

    class RedefinedExec(Executor):  # noqa: F811  (redefined, as when a notebook cell reruns)
        @requests
        def foo(self, docs, **kwargs):
            return {'version': 2}

    got = []
    with Flow().add(uses='RedefinedExec') as f:
        f.post('/', Document(), on_done=got.append)
    assert got[0].parameters['__results__']['RedefinedExec'] == {'version': 2}


def test_class_in_main_of_script_without_guard(tmp_path):
    script = tmp_path / 'shout.py'
    script.write_text(textwrap.dedent('''\
        from runtime import Document, DocumentArray, Executor, Flow, requests


        class Shout(Executor):
            @requests
            def foo(self, docs, **kwargs):
                for d in docs:
                    d.text = d.text.upper() + '!'


        with Flow().add(uses=Shout).add(uses='Shout', name='again') as f:
            resp = f.post('/', DocumentArray([Document(text='hi'), Document(text='yo')]),
                          return_results=True)
        print(resp[0].docs.texts, [r['executor'] for r in resp[0].routes])
        '''))
    proc = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "['HI!!', 'YO!!'] ['Shout', 'again']\n"
    assert 'Traceback' not in proc.stderr


def test_a_script_executors_remote_traceback_shows_its_file_and_lines(tmp_path):
    # A class from __main__ travels by value, and cloudpickle names its code's file
    # '<dynamic-code>': the traceback would show neither the file nor the failing line.
    script = tmp_path / 'failing.py'
    script.write_text(textwrap.dedent('''\
        from runtime import Document, Executor, Flow, requests


        def helper_that_fails(docs):
            return len(docs) / 0


        class Bad(Executor):
            @requests
            def foo(self, docs, **kwargs):
                helper_that_fails(docs)


        class BadInit(Executor):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)
                raise RuntimeError('no index here')


        with Flow().add(uses=Bad) as f:
            try:
                f.post('/', Document())
            except Exception as e:
                print(e.__cause__)
        try:
            with Flow().add(uses=BadInit):
                pass
        except Exception as e:
            print(e.__cause__ or e)
        '''))
    proc = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f'File "{script}", line 5, in helper_that_fails' in out and 'return len(docs) / 0' in out, out
    assert f'File "{script}", line 11, in foo' in out and 'helper_that_fails(docs)' in out, out
    assert f'File "{script}", line 17, in __init__' in out and "raise RuntimeError('no index here')" in out, out
    assert '<dynamic-code>' not in out


class PeaIdExec(Executor):
    @requests
    def report(self, docs, **kwargs):
        return {'pea_id': self.runtime_args.pea_id, 'parallel': self.runtime_args.parallel,
                'workspace': self.metas.workspace}


def test_jina2_pea_id_is_the_shard_id_and_metas_workspace_is_honoured(tmp_path):
    ws = str(tmp_path / 'given')
    f = Flow().add(uses=PeaIdExec, shards=2, polling='all', uses_metas={'workspace': ws})
    with f:
        out = f.post('/', [Document()], return_results=True)
    per_shard = out[0].parameters['__results__']['PeaIdExec']
    assert sorted(r['pea_id'] for r in per_shard) == [0, 1]
    assert all(r['parallel'] == 2 and r['workspace'] == ws for r in per_shard)


def test_executor_built_directly_rejects_unknown_arguments_and_binds_requests():
    with pytest.raises(TypeError, match="unexpected arguments \\['dim'\\]"):
        Executor(dim=3)
    ex = TagByNameExec(tag='t', requests={'/only': 'foo'}, metas={'name': 'n', 'description': 'd'})
    assert ex.metas.description == 'd' and ex._handler_for('/only')[0].__name__ == 'foo'
    with pytest.raises(ValueError, match="'nope' must name a method"):
        TagByNameExec(requests={'/x': 'nope'})


class KwargsOnlyExec(Executor):
    """Jina 2.0's cookbook, "Method Arguments": every argument suppressed into **kwargs."""

    @requests
    def foo(self, **kwargs):
        return {'keys': sorted(kwargs), 'none': sorted(k for k, v in kwargs.items() if v is None),
                'truths': kwargs['groundtruths'].texts if kwargs['groundtruths'] is not None else None}


def test_a_kwargs_handler_gets_all_five_arguments_none_where_they_do_not_apply():
    with Flow().add(name='kw', uses=KwargsOnlyExec) as f:
        (plain,) = f.post('/x', Document(), return_results=True)
        (paired,) = f.post('/x', [(Document(text='q'), Document(text='t'))], return_results=True)
    out = plain.parameters['__results__']['kw']
    assert out['keys'] == ['docs', 'docs_matrix', 'groundtruths', 'groundtruths_matrix', 'parameters']
    assert out['none'] == ['docs_matrix', 'groundtruths', 'groundtruths_matrix']
    assert paired.parameters['__results__']['kw']['truths'] == ['t']


def test_run_handler_gives_a_named_signature_only_its_names_and_kwargs_all_of_them():
    from runtime.transport.handling import EMPTY_PARAMS, GROUNDTRUTHS, find_handler, run_handler
    seen = {}

    class ProbeArgsExec(Executor):
        @requests(on='/kw')
        def kw(self, **kwargs):
            seen['kw'] = kwargs

        @requests(on='/named')
        def named(self, docs, parameters, groundtruths, docs_matrix=None):
            seen['named'] = (groundtruths, docs_matrix)

        @requests(on='/plain')
        def plain(self, docs, parameters):
            seen['plain'] = parameters

    ex = ProbeArgsExec()
    docs = DocumentArray([Document(text='a'), Document(text='b')])
    truths = DocumentArray([Document(text='ta'), Document(text='tb')])
    for endpoint in ('/kw', '/named', '/plain'):
        run_handler(ex, 'e', find_handler(ex, endpoint), docs, EMPTY_PARAMS, {GROUNDTRUTHS: truths}, split=(1, 1))
    kw = seen['kw']
    assert sorted(kw) == ['docs', 'docs_matrix', 'groundtruths', 'groundtruths_matrix', 'parameters']
    assert [m.texts for m in kw['docs_matrix']] == [['a'], ['b']] and kw['groundtruths'] is truths
    assert kw['groundtruths_matrix'] is None
    assert seen['named'][0] is truths and [m.texts for m in seen['named'][1]] == [['a'], ['b']]
    assert seen['plain'] == {}


class DefaultByNameExec(Executor):
    @requests(on='/index')
    def index(self, docs, **kwargs):
        return {'by': 'index'}

    @requests(on='/default')
    def fallback(self, docs, **kwargs):
        return {'by': 'fallback'}

    def other(self, docs, **kwargs):
        return {'by': 'other'}


def test_default_endpoint_is_slash_default_as_in_jina2():
    import runtime
    from runtime import __default_endpoint__
    assert __default_endpoint__ == '/default' and '__default_endpoint__' in runtime.__all__
    # @requests(on='/default') is @requests: the fallback of every endpoint without a handler
    ex = DefaultByNameExec()
    assert ex._handler_for('/search')[0].__name__ == 'fallback'
    assert ex._handler_for('/default')[0].__name__ == 'fallback'
    assert RoutedExec.requests['/default'] is RoutedExec.default
    # requests= (YAML requests:) with /default replaces the default handler
    ex = DefaultByNameExec(requests={'/default': 'other'})
    assert ex._handler_for('/search')[0].__name__ == 'other'
    assert ex._handler_for('/index')[0].__name__ == 'index'


class ReadsRequestsExec(Executor):
    def __init__(self, **kwargs):
        self.before = {e: fn.__name__ for e, fn in self.requests.items()}
        super().__init__(**kwargs)
        self.after = {e: fn.__name__ for e, fn in self.requests.items()}

    @requests
    def a(self, docs, **kwargs):
        pass

    @requests(on='/b')
    def b(self, docs, **kwargs):
        pass

    def c(self, docs, **kwargs):
        pass


class OwnRequestsAttrExec(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.requests = 'an HTTP session of its own'

    @requests
    def a(self, docs, **kwargs):
        pass


def test_self_requests_is_the_endpoint_to_function_map_jina2_exposed():
    ex = ReadsRequestsExec(requests={'/c': 'c'})
    assert ex.before == {'/default': 'a', '/b': 'b'}
    assert ex.after == {'/default': 'a', '/b': 'b', '/c': 'c'}
    assert ReadsRequestsExec.requests == {'/default': ReadsRequestsExec.a, '/b': ReadsRequestsExec.b}
    # As in Jina 2.0, requests: adds bindings: a method keeps the endpoints @requests gave it
    ex = ReadsRequestsExec(requests={'/x': 'b'})
    assert ex.after['/b'] == 'b' and ex.after['/x'] == 'b'
    # an attribute of the executor's own by that name does not unbind its handlers
    own = OwnRequestsAttrExec()
    assert own.requests == 'an HTTP session of its own' and own._handler_for('/x')[0].__name__ == 'a'
