"""Jina 2 YAML configs: executors (``uses='x.yml'``, YAML strings, ``Executor.load_config``
/ ``save_config``, ``py_modules`` relative to the file, ``requests:``, ``!Tag`` form) and
Flows (``Flow.load_config`` / ``save_config``), with errors that name the line."""
from __future__ import annotations

import textwrap

import pytest

from runtime import Document, DocumentArray, Executor, Flow, requests
from runtime.config import ConfigError


class YamlTagger(Executor):
    def __init__(self, tag: str = 'none', times: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.tag, self.times = tag, times

    @requests
    def mark(self, docs, **kwargs):
        for d in docs:
            d.tags['tag'] = self.tag * self.times

    def other(self, docs, **kwargs):
        for d in docs:
            d.tags['other'] = self.metas.name


def _write(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


MODULE = '''
from runtime import Executor, requests

class FromPyModule(Executor):
    def __init__(self, greeting='hi', **kwargs):
        super().__init__(**kwargs)
        self.greeting = greeting

    @requests
    def greet(self, docs, **kwargs):
        for d in docs:
            d.text = self.greeting
'''


def test_executor_config_with_metas_requests_and_env(tmp_path, monkeypatch):
    monkeypatch.setenv('TAG_TIMES', '3')
    path = _write(tmp_path / 'tagger.yml', '''
        jtype: YamlTagger
        with:
          tag: ${{ CONTEXT.tag }}
          times: ${{ ENV.TAG_TIMES }}
        metas:
          name: tagger
          workspace: $HOME/ws
        requests:
          /other: other
    ''')
    ex = Executor.load_config(str(path), context={'tag': 'x'})
    assert isinstance(ex, YamlTagger) and (ex.tag, ex.times) == ('x', 3)  # env values typed as YAML
    assert ex.metas.name == 'tagger' and not ex.metas.workspace.startswith('$')
    docs = DocumentArray([Document()])
    handler, _ = ex._handler_for('/other')
    handler(docs=docs, parameters={})
    assert docs[0].tags['other'] == 'tagger'
    assert ex._handler_for('/anything')[0].__name__ == 'mark'  # the @requests bindings stay


def test_save_config_round_trips(tmp_path):
    ex = YamlTagger('y', times=2, metas={'name': 'saved'})
    path = ex.save_config(str(tmp_path / 'out.yml'))
    back = Executor.load_config(path)
    assert type(back) is YamlTagger and (back.tag, back.times, back.metas.name) == ('y', 2, 'saved')


def test_py_modules_are_relative_to_the_yaml_file(tmp_path, monkeypatch):
    sub = tmp_path / 'conf'
    sub.mkdir()
    (sub / 'greeter.py').write_text(MODULE)
    _write(sub / 'greeter.yml', '''
        !FromPyModule
        with: {greeting: hello}
        metas:
          py_modules: [greeter.py]
    ''')
    monkeypatch.chdir(tmp_path)  # not the YAML's directory
    ex = Executor.load_config('conf/greeter.yml')
    assert type(ex).__name__ == 'FromPyModule' and ex.greeting == 'hello'


def test_flow_from_yaml_runs_executors_from_files_and_strings(tmp_path):
    (tmp_path / 'greeter.py').write_text(MODULE)
    _write(tmp_path / 'greeter.yml', '''
        jtype: FromPyModule
        with: {greeting: hello}
        metas: {py_modules: [greeter.py]}
    ''')
    _write(tmp_path / 'flow.yml', '''
        jtype: Flow
        version: '1'
        with:
          prefetch: 4
        executors:
          - name: greet
            uses: greeter.yml
            replicas: 2
          - name: tag
            uses: |
              jtype: YamlTagger
              with: {tag: t}
            uses_metas: {name: tagger}
            needs: greet
    ''')
    f = Flow.load_config(str(tmp_path / 'flow.yml'))
    with f:
        out = f.post('/', DocumentArray([Document(), Document()]), return_results=True)
    docs = out[0].docs
    assert docs.texts == ['hello', 'hello'] and docs[0].tags['tag'] == 't'
    assert f._specs[0]['replicas'] == 2 and f._specs[1]['metas']['name'] == 'tagger'


def test_flow_save_config_round_trips(tmp_path):
    f = (Flow(prefetch=3)
         .add(name='a', uses=YamlTagger, uses_with={'tag': 'q'}, replicas=2)
         .add(name='b', uses={'jtype': 'YamlTagger', 'with': {'times': 2}}, needs='gateway', shards=2,
              polling='all')
         .add(name='c', needs=['a', 'b'], env={'X': '1'}, timeout_ready=30))
    path = tmp_path / 'saved.yml'
    f.save_config(str(path))
    g = Flow.load_config(str(path))
    keys = ('resolved_name', 'cls', 'kwargs', 'replicas', 'shards', 'polling', 'needs', 'env', 'timeout_ready')
    assert [[s.get(k) for k in keys] for s in g._specs] == [[s.get(k) for k in keys] for s in f._specs]
    assert g._prefetch == 3


@pytest.mark.parametrize('text, line, words', [
    ('jtype: Flow\nexecutors:\n  - name: a\n    uses: [unclosed\n', 5, 'malformed YAML'),
    ('jtype: Flow\nexecutors:\n  - name: a\n  - name: b\n    uses: NoSuchExec\n', 4, 'NoSuchExec'),
    ('jtype: Flow\nexecutors:\n  - name: a\n    replica: 2\n', 3, 'replica'),
    ('jtype: Flow\nexecutor:\n  - name: a\n', 2, 'executor'),
    ('jtype: Flwo\n', 1, 'jtype: Flow'),
])
def test_flow_config_errors_name_the_line(text, line, words):
    with pytest.raises(ConfigError, match=rf'line {line}\b.*{words}|{words}.*line {line}\b'):
        Flow.load_config(text)


@pytest.mark.parametrize('text, line, words', [
    ('metas:\n  name: x\njtype: NoSuchExec\n', 3, 'NoSuchExec.*py_modules'),
    ('jtype: YamlTagger\nwith: [1, 2]\n', 2, 'with: must be a mapping'),
    ('jtype: YamlTagger\nwiht: {tag: a}\n', 2, 'wiht'),
])
def test_executor_config_errors_name_the_line(text, line, words):
    with pytest.raises(ConfigError, match=rf'line {line}: .*{words}'):
        Executor.load_config(text)


def test_missing_files_and_variables_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.yml'):
        Flow().add(uses=str(tmp_path / 'nope.yml'))
    with pytest.raises(FileNotFoundError, match='missing.py'):
        Executor.load_config('jtype: YamlTagger\nmetas: {py_modules: [missing.py]}\n')
    with pytest.raises(ConfigError, match='RUNTIME_TEST_UNSET'):
        Executor.load_config('jtype: YamlTagger\nwith: {tag: "${{ ENV.RUNTIME_TEST_UNSET }}"}\n')
    with pytest.raises(TypeError, match='cannot be written as YAML'):
        Flow().add(uses=YamlTagger, uses_with={'tag': object()}).save_config(str(tmp_path / 'x.yml'))


# -- save_config keeps every add() argument ------------------------------------------------------
class ShardMatch(Executor):
    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.matches.append(Document(id=f'm{self.runtime_args.shard_id}'))


class MarkBefore(Executor):
    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.tags['before'] = True


class FirstShard(Executor):
    @requests
    def foo(self, docs_matrix, **kwargs):
        return docs_matrix[0]


def test_save_config_keeps_uses_before_and_uses_after_as_add_arguments(tmp_path):
    import yaml
    f = (Flow().add(name='idx', uses=ShardMatch, shards=2, polling='all', uses_before=MarkBefore,
                    uses_after=FirstShard)
         .add(name='j', needs=['idx', 'gateway']))
    path = tmp_path / 'flow.yml'
    f.save_config(str(path))
    written = yaml.safe_load(path.read_text())['executors']
    assert [e['name'] for e in written] == ['idx', 'j']  # no head / tail of their own
    assert written[0]['uses_before'] == {'jtype': 'MarkBefore', 'metas': {'py_modules': [__name__]}}
    assert written[1]['needs'] == ['idx', 'gateway']  # idx's tail, by the name add() takes
    g = Flow.load_config(str(path))
    keys = ('resolved_name', 'cls', 'needs', 'shards', 'polling', 'matrix')
    assert [[s.get(k) for k in keys] for s in g._specs] == [[s.get(k) for k in keys] for s in f._specs]
    seen = []
    for flow in (f, g):
        with flow:
            (resp,) = flow.post('/', Document(id='q'), return_results=True)
        d = resp.docs[0]
        seen.append((dict(d.tags), [m.id for m in d.matches], [h['executor'] for h in resp.routes]))
    assert seen[0] == seen[1] == ({'before': True}, ['m0'], ['idx-head', 'idx', 'idx', 'idx-tail'])


SAVED_MODULE = '''
from runtime import Executor, requests

class SavedFromFile(Executor):
    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.tags['workspace'] = self.metas.workspace
'''


def test_save_config_keeps_workspace_py_modules_and_ray_options_with_relative_paths(tmp_path, monkeypatch):
    import subprocess
    import sys

    from childio import script_env
    (tmp_path / 'mods').mkdir()
    (tmp_path / 'mods' / 'saved_mod.py').write_text(SAVED_MODULE)
    (tmp_path / 'conf').mkdir()
    monkeypatch.chdir(tmp_path)  # add() reads the relative paths from here; the config lies elsewhere
    f = Flow().add(name='m', uses='SavedFromFile', py_modules='mods/saved_mod.py', workspace='ws',
                   ray_options={'num_cpus': 1})
    path = tmp_path / 'conf' / 'flow.yml'
    f.save_config(str(path))
    g = Flow.load_config(str(path))
    assert g._specs[0]['ray_options'] == {'num_cpus': 1}
    with g:
        (resp,) = g.post('/', Document(), return_results=True)
    assert resp.docs[0].tags['workspace'] == str(tmp_path / 'ws')
    # In a process that never imported the file, the config alone finds the class.
    code = f'from runtime import Flow; print(Flow.load_config({str(path)!r})._specs[0]["cls"].__name__)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60, cwd='/',
                         env=script_env())
    assert out.stdout.strip() == 'SavedFromFile', out.stderr


def test_save_config_keeps_a_home_relative_py_modules_path(tmp_path, monkeypatch):
    (tmp_path / 'mods').mkdir()
    (tmp_path / 'mods' / 'saved_mod.py').write_text(SAVED_MODULE)
    (tmp_path / 'elsewhere').mkdir()
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.chdir(tmp_path / 'elsewhere')
    f = Flow().add(name='m', uses='SavedFromFile', py_modules=['~/mods/saved_mod.py'])
    path = tmp_path / 'flow.yml'
    f.save_config(str(path))
    assert Flow.load_config(str(path))._specs[0]['cls'].__name__ == 'SavedFromFile'


def test_save_config_refuses_what_yaml_cannot_hold_naming_the_executor_and_argument(tmp_path):
    from runtime.config_save import _SAVED_ADD_KEYS
    from runtime.control.specs import ADD_ARGS
    assert set(_SAVED_ADD_KEYS) == {*ADD_ARGS, 'needs'}  # none left out

    class Shadowed(Executor):
        pass
    first = Shadowed

    class Shadowed(Executor):  # noqa: F811 - a later class of the same name: the config would load it
        pass

    path = tmp_path / 'x.yml'
    for kwargs, where in (({'uses': first}, 'uses='), ({'uses_after': first}, 'uses_after='),
                          ({'uses': {'jtype': first}}, 'uses=')):
        with pytest.raises(TypeError, match=rf"executor 'a', {where} cannot be written as YAML: .*'Shadowed' "
                                            rf"now names another class"):
            Flow().add(name='a', **kwargs).save_config(str(path))
    with pytest.raises(TypeError, match=r"executor 'b', uses_with= cannot be written as YAML: it holds object"):
        Flow().add(name='a').add(name='b', uses_with={'tag': object()}).save_config(str(path))
    assert not path.exists()  # nothing written, rather than a config that loads into another Flow


def test_save_config_keeps_the_flows_backend_and_ray_arguments(tmp_path):
    f = Flow(backend='ray', ray_address='auto', ray_init_kwargs={'num_cpus': 2}).add(name='a')
    f.save_config(str(tmp_path / 'ray.yml'))
    g = Flow.load_config(str(tmp_path / 'ray.yml'))  # nothing started: Ray is not needed here
    assert (g._backend, g._ray_address, g._ray_init_kwargs) == ('ray', 'auto', {'num_cpus': 2})


class CookbookSaveExec(Executor):
    """The Jina 2.0 Executor cookbook's "Load and Save Executor's YAML config" example."""

    def __init__(self, bar: int, **kwargs):
        super().__init__(**kwargs)
        self.bar = bar

    def foo(self, **kwargs):
        pass

    @requests(on='/index')
    def index(self, docs, **kwargs):
        pass


def test_save_config_keeps_the_requests_section(tmp_path):
    import yaml
    ex = Executor.load_config('''
jtype: CookbookSaveExec
with:
  bar: 123
metas:
  name: awesomeness
  description: my first awesome executor
requests:
  /random_work: foo
  /default: foo
''')
    assert ex._handler_for('/random_work')[0].__name__ == 'foo'
    path = ex.save_config(str(tmp_path / 'y.yml'))
    saved = yaml.safe_load(open(path))
    assert saved['requests'] == {'/index': 'index', '/random_work': 'foo', '/default': 'foo'}
    back = Executor.load_config(path)
    assert back.bar == 123 and back.metas.description == 'my first awesome executor'
    for endpoint, method in (('/random_work', 'foo'), ('/index', 'index'), ('/anything', 'foo')):
        assert back._handler_for(endpoint)[0].__name__ == method


class YamlDefaultExec(Executor):
    @requests(on='/index')
    def index(self, docs, **kwargs):
        for d in docs:
            d.tags['by'] = 'index'

    def fallback(self, docs, **kwargs):
        for d in docs:
            d.tags['by'] = 'fallback'


def test_requests_slash_default_in_yaml_binds_the_default_handler():
    uses = 'jtype: YamlDefaultExec\nrequests:\n  /default: fallback\n'
    with Flow().add(uses=uses) as f:
        by = {ep: f.post(ep, Document(), return_results=True)[0].docs[0].tags.get('by')
              for ep in ('/index', '/search', '/default')}
    assert by == {'/index': 'index', '/search': 'fallback', '/default': 'fallback'}


# -- Jina 2.0's own config forms -----------------------------------------------------------------
def test_dollar_variables_alone_are_typed_as_in_jina2(monkeypatch):
    # Jina 2's examples write shards: $JINA_SHARDS and port_expose: $JINA_PORT.
    monkeypatch.setenv('JINA_SHARDS', '2')
    monkeypatch.setenv('TIMES', '3')
    monkeypatch.setenv('TAG', 'true')
    f = Flow.load_config('jtype: Flow\nexecutors:\n  - name: e\n    shards: $JINA_SHARDS\n')
    assert f._specs[0]['shards'] == 2
    e = Executor.load_config('jtype: YamlTagger\nwith:\n  times: ${TIMES}\n  tag: $TAG-x\n')
    assert (e.times, e.tag) == (3, 'true-x')  # (part of a longer text: stays text)
    # Jina 2's rules (int, float, true/false), not YAML 1.1's: '010' is 10, 'no' stays 'no'.
    for value, typed in [('010', 10), ('1e3', 1000.0), ('no', 'no'), ('On', 'On'), ('12:30', '12:30'),
                         ('0x1F', '0x1F'), ('FALSE', False)]:
        monkeypatch.setenv('V', value)
        e = Executor.load_config('jtype: YamlTagger\nwith:\n  tag: $V\n  times: ${{ ENV.V }}\n')
        assert e.tag == typed and e.times == typed and type(e.tag) is type(typed), value


def test_pods_method_and_a_gateway_entry_as_jina2_flow_configs_write_them():
    f = Flow.load_config(textwrap.dedent('''
        jtype: Flow
        version: '1'
        pods:
          - name: gateway
          - name: a
          - name: b
            needs: gateway
          - name: both
            method: needs
            needs: [a, b]
    '''))
    assert [(s['resolved_name'], s['needs']) for s in f._specs] == [('a', ['gateway']), ('b', ['gateway']),
                                                                      ('both', ['a', 'b'])]
    with pytest.raises(ConfigError, match="line 4.*method: 'inspect' is not supported"):
        Flow.load_config('jtype: Flow\npods:\n  - name: a\n  - method: inspect\n')


def test_internal_references_resolve_within_the_config():
    e = Executor.load_config('jtype: YamlTagger\nwith:\n  tag: ${{ root.metas.name }}\n'
                             'metas:\n  name: abc\n  description: my-${{ this.name }}\n')
    assert (e.tag, e.metas.description) == ('abc', 'my-abc')
    with pytest.raises(ConfigError, match='this.nope'):
        Executor.load_config('jtype: YamlTagger\nmetas:\n  name: x-${{ this.nope }}\n')
