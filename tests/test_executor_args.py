"""What reaches an executor besides its documents: ``metas`` / ``requests`` /
``runtime_args`` for an ``__init__`` that does not take them (Jina 2's cookbook
``def __init__(self, bar): super().__init__()``), ``uses_requests``, ``uses_metas``'s
fields, ``py_modules`` for every form of ``uses``, and Jina 2's polling values."""
from __future__ import annotations

import dataclasses
import logging
import sys
import uuid

import pytest

from runtime import Document, Executor, Flow, requests
from runtime.config import ConfigError


class BarExec(Executor):
    """The Jina 2.0 Flow cookbook's "Add Executor via YAML file" executor: no **kwargs."""

    def __init__(self, bar):
        super().__init__()
        self.bar = bar

    def foo(self, docs, **kwargs):
        for d in docs:
            d.tags['bar'] = self.bar
        return {'name': self.metas.name, 'description': self.metas.description}


class NamesBaseArgs(Executor):
    """An __init__ that names metas and runtime_args (and not requests)."""

    def __init__(self, bar=0, metas=None, runtime_args=None):
        super().__init__(metas=metas)
        self.got = {'metas_name': (metas or {}).get('name'), 'shard': (runtime_args or {}).get('shard_id')}

    @requests
    def report(self, docs, **kwargs):
        return self.got

    def other(self, docs, **kwargs):
        return {'other': True}


class FooExecutor(Executor):
    @requests(on='/foo')
    def foo(self, docs, **kwargs):
        for d in docs:
            d.text = 'foo called'


COOKBOOK_YAML = '''
jtype: BarExec
with:
  bar: 123
metas:
  name: awesomeness
  description: my first awesome executor
requests:
  /random_work: foo
'''


# -- metas / requests / runtime_args for an __init__ that does not take them ----------------
def test_load_config_builds_an_init_without_kwargs_and_applies_metas_and_requests():
    ex = Executor.load_config(COOKBOOK_YAML)
    assert ex.bar == 123
    assert (ex.metas.name, ex.metas.description) == ('awesomeness', 'my first awesome executor')
    assert ex.requests == {'/random_work': BarExec.foo}
    # without a requests: section too
    assert Executor.load_config('jtype: BarExec\nwith:\n  bar: 1\nmetas:\n  name: n\n').metas.name == 'n'


def test_direct_construction_passes_only_what_init_takes_and_applies_the_rest():
    ex = BarExec(bar=2, metas={'name': 'x'}, requests={'/w': 'foo'}, runtime_args={'replica_id': 3})
    assert (ex.bar, ex.metas.name, ex.runtime_args.replica_id) == (2, 'x', 3)
    assert ex._handler_for('/w')[0].__name__ == 'foo'
    with pytest.raises(ValueError, match="'nope' must name a method of BarExec"):
        BarExec(bar=2, requests={'/w': 'nope'})
    # an __init__ that names metas gets it; requests, which it does not name, is bound after
    named = NamesBaseArgs(metas={'name': 'm'}, requests={'/o': 'other'})
    assert named.got['metas_name'] == 'm' and named._handler_for('/o')[0].__name__ == 'other'


def test_flow_yaml_requests_reach_an_init_without_kwargs():
    with Flow().add(uses=COOKBOOK_YAML) as f:
        (r,) = f.post('/random_work', Document(), return_results=True)
    assert r.docs[0].tags['bar'] == 123
    assert r.parameters['__results__']['awesomeness'] == {'name': 'awesomeness',
                                                         'description': 'my first awesome executor'}


def test_flow_init_naming_metas_and_runtime_args_receives_them():
    with Flow().add(name='nb', uses=NamesBaseArgs, shards=2, polling='all') as f:
        (r,) = f.post('/', Document(), return_results=True)
    got = r.parameters['__results__']['nb']
    assert sorted(g['shard'] for g in got) == [0, 1] and all(g['metas_name'] == 'nb' for g in got)


class Configurable:
    """A plain mixin (no Executor) whose __init__, first in the MRO, takes no **kwargs and
    never calls super().__init__()."""

    def __init__(self, bar=0):
        self.bar = bar


class MixinInitExec(Configurable, Executor):
    @requests
    def foo(self, docs, **kwargs):
        return {'who': 'foo', 'bar': self.bar, 'name': self.metas.name}

    def other(self, docs, **kwargs):
        return {'who': 'other', 'bar': self.bar, 'name': self.metas.name}


@dataclasses.dataclass
class DataclassInitExec(Executor):
    """An __init__ written by @dataclass, after the class was created."""

    bar: int = 0

    @requests
    def foo(self, docs, **kwargs):
        return {'who': 'foo', 'bar': self.bar, 'name': self.metas.name}

    def other(self, docs, **kwargs):
        return {'who': 'other', 'bar': self.bar, 'name': self.metas.name}


@pytest.mark.parametrize('cls', [MixinInitExec, DataclassInitExec], ids=['mixin', 'dataclass'])
def test_an_init_from_a_mixin_or_dataclass_is_built_alike_by_every_path(cls, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yaml = f'jtype: {cls.__name__}\nwith:\n  bar: 5\nmetas:\n  name: awesome\nrequests:\n  /other: other\n'
    loaded = Executor.load_config(yaml)
    direct = cls(bar=5, metas={'name': 'awesome'}, requests={'/other': 'other'}, runtime_args={'shard_id': 2})
    for ex in (loaded, direct):
        assert (type(ex), ex.bar, ex.metas.name) == (cls, 5, 'awesome')
        assert ex._handler_for('/other')[0].__name__ == 'other' and ex._handler_for('/')[0].__name__ == 'foo'
    assert loaded.workspace == str(tmp_path / 'workspace' / 'awesome')  # the default, as Executor's
    assert direct.workspace == str(tmp_path / 'workspace' / 'awesome' / '2')  # (shard 2's folder)
    assert direct.runtime_args.shard_id == 2
    plain = cls(bar=1)  # without Executor's arguments too
    assert (plain.bar, plain.workspace) == (1, str(tmp_path / 'workspace' / cls.__name__))
    with Flow().add(uses=yaml) as f:  # the worker builds it the same way
        (r,) = f.post('/other', Document(), return_results=True)
    assert r.parameters['__results__']['awesome'] == {'who': 'other', 'bar': 5, 'name': 'awesome'}


# -- uses_requests / uses_metas --------------------------------------------------------------
def test_add_uses_requests_binds_a_method_to_an_endpoint():
    # Jina 2.x test_override_requests
    with Flow().add(uses=FooExecutor, uses_requests={'/non_foo': 'foo'}) as f:
        (r,) = f.post('/non_foo', Document(text=''), return_results=True)
    assert r.docs[0].text == 'foo called'
    with Flow().add(uses=BarExec, uses_with={'bar': 5}, uses_requests={'/w': 'foo'}) as f:
        (r,) = f.post('/w', Document(), return_results=True)
    assert r.docs[0].tags['bar'] == 5


@pytest.mark.parametrize('bad, error, match', [
    ({'/x': 'nope'}, ValueError, r"uses_requests: '/x': 'nope' must name a method of FooExecutor \(one of \['foo'\]\)"),
    ({1: 'foo'}, TypeError, r"uses_requests: 1: 'foo': endpoints and method names are str, e.g. \{'/index': 'foo'\}"),
    ({'/x': 3}, TypeError, 'endpoints and method names are str'),
    (['/x', 'foo'], TypeError, r'uses_requests takes a dict \{endpoint: method name\}'),
])
def test_add_uses_requests_refuses_what_binds_nothing(bad, error, match):
    with pytest.raises(error, match=match):
        Flow().add(uses=FooExecutor, uses_requests=bad)


def test_uses_metas_refuses_keys_that_are_not_metas_fields():
    with pytest.raises(ValueError, match="uses_metas takes the metas fields name, description, workspace, "
                                         "py_modules; got '/non_foo' .*uses_requests="):
        Flow().add(uses=FooExecutor, uses_metas={'/non_foo': 'foo'})
    Flow().add(uses=FooExecutor, uses_metas={'name': 'n', 'description': 'd'})  # the fields are taken


class TwoMethods(Executor):
    @requests
    def foo(self, docs, **kwargs):
        pass

    def bar(self, docs, **kwargs):
        pass


def test_a_wrong_binding_is_named_by_where_it_came_from():
    yaml = 'jtype: TwoMethods\nrequests:\n  /ok: bar\n  /q: fooo\n'
    in_file = r"<YAML string>, line 4: requests: '/q': 'fooo' must name a method of TwoMethods"
    for call in (lambda: Executor.load_config(yaml, uses_requests={'/bar': 'bar'}),
                 lambda: Flow().add(uses=yaml, uses_requests={'/bar': 'bar'})):
        with pytest.raises(ConfigError, match=in_file) as info:
            call()
        assert 'uses_requests' not in str(info.value)  # the argument given was right
    # the dict form's requests, and uses_requests itself, each under its own name
    with pytest.raises(ValueError, match=r"^requests: '/q': 'fooo' must name a method of TwoMethods"):
        Flow().add(uses={'jtype': 'TwoMethods', 'requests': {'/q': 'fooo'}}, uses_requests={'/bar': 'bar'})
    with pytest.raises(ValueError, match=r"^uses_requests: '/b': 'barr' must name a method of TwoMethods"):
        Flow().add(uses={'jtype': 'TwoMethods', 'requests': {'/q': 'foo'}}, uses_requests={'/b': 'barr'})


def test_flow_refuses_uses_requests_as_a_default_for_every_executor(tmp_path):
    with pytest.raises(TypeError, match=r"Flow\(uses_requests=...\) is not a default for every executor: .*pass it "
                                        r"to add\(\) for the executor it binds"):
        Flow(uses_requests={'/bar': 'bar'})
    path = tmp_path / 'flow.yml'
    path.write_text('jtype: Flow\nwith:\n  uses_requests: {/bar: bar}\nexecutors:\n  - uses: TwoMethods\n')
    with pytest.raises(ConfigError, match=r'flow.yml, line 2: with: Flow\(uses_requests=...\) .*pass it to add'):
        Flow.load_config(str(path))
    # given to add(), it binds that executor only: one without uses (or another class) builds
    f = (Flow().add(name='a', uses=TwoMethods, uses_requests={'/bar': 'bar'})
         .add(name='b').add(name='c', uses=FooExecutor))
    assert f._specs[0]['kwargs']['requests'] == {'/bar': 'bar'}
    assert 'requests' not in f._specs[1]['kwargs'] and 'requests' not in f._specs[2]['kwargs']
    f.save_config(str(path))
    assert Flow.load_config(str(path))._specs[0]['kwargs']['requests'] == {'/bar': 'bar'}


def test_uses_requests_is_written_back_by_save_config(tmp_path):
    path = str(tmp_path / 'flow.yml')
    Flow().add(name='foo', uses=FooExecutor, uses_requests={'/non_foo': 'foo'}).save_config(path)
    with Flow.load_config(path) as f:
        (r,) = f.post('/non_foo', Document(text=''), return_results=True)
    assert r.docs[0].text == 'foo called'


# -- py_modules, whatever uses is ------------------------------------------------------------
class ModuleProbe(Executor):
    @requests
    def probe(self, docs, parameters, **kwargs):
        return {'loaded': _loaded(parameters['token'])}


def _loaded(token: str) -> bool:
    return any(getattr(m, 'PROBE_TOKEN', None) == token for m in list(sys.modules.values()))


@pytest.mark.parametrize('uses', [ModuleProbe, None, 'ModuleProbe'], ids=['class', 'none', 'class-name'])
def test_a_missing_py_modules_file_is_reported_for_every_uses_form(uses, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="py_modules: 'nowhere.py' not found"):
        Flow().add(uses=uses, py_modules='nowhere.py')


def test_py_modules_are_imported_in_the_flow_and_the_executor_process_for_a_class(tmp_path):
    token = uuid.uuid4().hex
    helper = tmp_path / f'helper_{token}.py'
    helper.write_text(f'PROBE_TOKEN = {token!r}\n')
    with Flow().add(name='p', uses=ModuleProbe, py_modules=[str(helper)]) as f:
        (r,) = f.post('/', Document(), parameters={'token': token}, return_results=True)
    assert _loaded(token)  # here
    assert r.parameters['__results__']['p'] == {'loaded': True}  # and in the executor's process


def test_a_py_module_that_raises_on_import_names_the_file_line_and_executor(tmp_path):
    from runtime.config import PyModuleImportError
    bad = tmp_path / f'bad_{uuid.uuid4().hex}.py'
    bad.write_text("raise RuntimeError('boom in bad module')\n")
    flow_yml = tmp_path / 'flow.yml'
    flow_yml.write_text(f'jtype: Flow\nexecutors:\n  - name: e\n    uses:\n      jtype: ModuleProbe\n'
                        f'      metas:\n        py_modules: [{bad.name}]\n')
    what = rf"py_modules: importing '{bad}' raised RuntimeError: boom in bad module"
    calls = [(lambda: Flow.load_config(str(flow_yml)), ConfigError, rf"flow.yml, line 3: executor 'e': {what}"),
             (lambda: Executor.load_config(f'jtype: ModuleProbe\nmetas:\n  py_modules: [{bad}]\n'), ConfigError,
              rf'<YAML string>, line 3: {what}'),
             (lambda: Flow().add(uses='ModuleProbe', py_modules=[str(bad)]), PyModuleImportError,
              rf"executor 'ModuleProbe': {what}"),
             (lambda: Flow().add(name='p', uses=ModuleProbe, uses_metas={'py_modules': [str(bad)]}),
              PyModuleImportError, rf"executor 'p': {what}")]
    for call, error, match in calls:
        with pytest.raises(error, match=match) as info:
            call()
        assert 'fix the module, or remove it from py_modules' in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)  # with the module's traceback
    assert info.value.path == str(bad)
    with pytest.raises(ImportError, match=r"py_modules: importing module 'no_such_mod_x' raised ModuleNotFoundError"):
        Flow().add(py_modules=['no_such_mod_x'])


def test_py_modules_missing_in_the_executor_process_is_logged(tmp_path, caplog):
    # (a Ray node without the file: the class arrived by value, only the import is lost)
    from runtime.transport.handling import _import_py_modules
    with caplog.at_level(logging.WARNING, logger='runtime'):
        _import_py_modules([str(tmp_path / 'elsewhere.py')])
    assert 'elsewhere.py is not on this machine' in caplog.text


# -- polling ---------------------------------------------------------------------------------
def test_polling_all_async_is_refused_saying_what_to_use():
    with pytest.raises(ValueError, match="polling 'ALL_ASYNC' .* is not supported; use 'all' .* or 'any'"):
        Flow().add(name='p1', parallel=3, polling='ALL_ASYNC')
    with pytest.raises(ValueError, match="use 'all'"):
        Flow().add(name='p1', shards=3, polling={'/search': 'all_async'})
