"""Jina 2.0.24 config behaviour that a ported project relies on: relative paths found beside
the config, else in the current directory; a relative workspace read from the current
directory; ``add(env=...)`` seen by the executor's own config; a class name as a config;
misspelt ``metas:`` keys refused; a Flow's ``add()`` defaults kept by ``save_config``;
quoted numbers, and ``on`` / ``off`` as text."""
from __future__ import annotations

import sys
import textwrap

import pytest

from runtime import Document, Executor, Flow, requests
from runtime.config import ConfigError, load_executor_config
from runtime.executor import resolve_uses


@pytest.fixture(autouse=True)
def _own_sys_path(monkeypatch):
    """The folders py_modules put on sys.path leave it with the test (not left for the
    tests after it)."""
    monkeypatch.setattr(sys, 'path', list(sys.path))


def _write(path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _module(cls_name: str) -> str:
    return textwrap.dedent(f'''
        from runtime import Executor, requests

        class {cls_name}(Executor):
            @requests
            def f(self, docs, **kwargs):
                for d in docs:
                    d.tags['ws'] = self.workspace
    ''')


# -- 1, 3: relative paths: beside the config, else the current directory --------------------------
def test_paths_in_configs_are_found_beside_them_else_in_the_current_directory(tmp_path, monkeypatch):
    # The jina-ai/examples layout: flows/index.yml names pods/encode.yml, which names
    # pods/encode.py, all from the project root, where the app runs.
    _write(tmp_path / 'pods' / 'encode.py', _module('PathsEnc1'))
    _write(tmp_path / 'pods' / 'encode.yml', 'jtype: PathsEnc1\nmetas:\n  py_modules: [pods/encode.py]\n')
    _write(tmp_path / 'flows' / 'index.yml', '''
        jtype: Flow
        version: '1'
        executors:
          - name: encoder
            uses: pods/encode.yml
    ''')
    monkeypatch.chdir(tmp_path)
    assert Flow.load_config('flows/index.yml')._specs[0]['cls'].__name__ == 'PathsEnc1'
    assert type(Executor.load_config('pods/encode.yml')).__name__ == 'PathsEnc1'
    # Beside the config comes first: a file there wins over one of the same name in the cwd.
    _write(tmp_path / 'flows' / 'pods' / 'encode.yml', 'jtype: Executor\nmetas:\n  name: beside\n')
    assert Flow.load_config('flows/index.yml')._specs[0]['metas']['name'] == 'beside'


def test_a_file_found_in_neither_place_is_reported_naming_both(tmp_path, monkeypatch):
    _write(tmp_path / 'flows' / 'index.yml', 'jtype: Flow\nexecutors:\n  - name: e\n    uses: pods/none.yml\n')
    _write(tmp_path / 'pods' / 'bad.yml', 'jtype: Executor\nmetas:\n  py_modules: [pods/none.py]\n')
    monkeypatch.chdir(tmp_path)
    both = rf"looked for {tmp_path}/flows/pods/none.yml \(beside the config\), {tmp_path}/pods/none.yml " \
           rf"\(the current directory\)"
    with pytest.raises(ConfigError, match=rf"index.yml, line 3: executor 'e': YAML config 'pods/none.yml' not "
                                          rf"found: {both}"):
        Flow.load_config('flows/index.yml')
    with pytest.raises(FileNotFoundError, match=rf"bad.yml, line 3: py_modules: 'pods/none.py' not found: looked "
                                                rf"for {tmp_path}/pods/pods/none.py \(beside the config\), "
                                                rf"{tmp_path}/pods/none.py \(the current directory\)"):
        Executor.load_config('pods/bad.yml')


def test_flow_level_py_modules_are_found_beside_the_config_as_an_executors_are(tmp_path, monkeypatch):
    _write(tmp_path / 'flows' / 'executors.py', _module('PathsEnc3'))
    _write(tmp_path / 'flows' / 'flow.yml', '''
        jtype: Flow
        version: '1'
        with:
          py_modules: [executors.py]
        executors:
          - name: enc
            uses: PathsEnc3
    ''')
    monkeypatch.chdir(tmp_path)
    assert Flow.load_config('flows/flow.yml')._specs[0]['cls'].__name__ == 'PathsEnc3'


# -- 2: a relative workspace is read from the current directory ---------------------------------
class PathsWsExec(Executor):
    @requests
    def f(self, docs, **kwargs):
        for d in docs:
            d.tags['ws'] = self.workspace


def test_a_relative_workspace_in_a_flow_config_is_read_from_the_current_directory(tmp_path, monkeypatch):
    # Jina 2: os.path.abspath(args.workspace or flow.workspace) (flow/base.py), from the cwd.
    _write(tmp_path / 'flows' / 'index.yml', '''
        jtype: Flow
        version: '1'
        with:
          workspace: ./workspace
        executors:
          - name: flow_ws
            uses: PathsWsExec
          - name: own_ws
            uses: PathsWsExec
            workspace: ./own
    ''')
    monkeypatch.chdir(tmp_path)
    with Flow.load_config('flows/index.yml') as f:
        (resp,) = f.post('/', Document(), return_results=True)
    assert resp.docs[0].tags['ws'] == str(tmp_path / 'own' / 'own_ws')  # (own_ws ran last)
    assert (tmp_path / 'workspace' / 'flow_ws').is_dir() and not (tmp_path / 'flows' / 'workspace').exists()


# -- 4: add(env=...) is seen by the executor's own config ---------------------------------------
class PathsEnvExec(Executor):
    def __init__(self, dim=0, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    @requests
    def f(self, docs, **kwargs):
        for d in docs:
            d.tags['dim'] = self.dim


def test_the_executors_env_is_laid_over_the_environment_of_its_config(tmp_path, monkeypatch):
    path = _write(tmp_path / 'enc.yml', 'jtype: PathsEnvExec\nwith:\n  dim: ${{ ENV.ENC_DIM }}\n')
    monkeypatch.setenv('ENC_DIM', '1')  # the parent has another value
    assert load_executor_config(str(path), env={'ENC_DIM': 64})['with'] == {'dim': 64}
    assert resolve_uses(str(path), None, None, env={'ENC_DIM': '64'})[1] == {'dim': 64}
    monkeypatch.delenv('ENC_DIM')  # the parent has none
    assert resolve_uses('jtype: PathsEnvExec\nwith:\n  dim: $ENC_DIM\n', None, None, env={'ENC_DIM': '8'})[1] == \
        {'dim': 8}


def test_add_env_reaches_the_executors_yaml(tmp_path, monkeypatch):
    path = _write(tmp_path / 'enc.yml', 'jtype: PathsEnvExec\nwith:\n  dim: ${{ ENV.ENC_DIM }}\n')
    monkeypatch.delenv('ENC_DIM', raising=False)
    with Flow().add(name='e', uses=str(path), env={'ENC_DIM': '64'}) as f:
        (resp,) = f.post('/', Document(), return_results=True)
    assert resp.docs[0].tags['dim'] == 64


# -- 5: a class name as a config; a Flow config given to Executor.load_config ---------------------
class PathsNamed(Executor):
    @requests
    def f(self, docs, **kwargs):
        pass


def test_executor_load_config_takes_a_class_name_and_points_a_flow_config_to_flow_load_config():
    assert type(Executor.load_config('PathsNamed')) is PathsNamed  # Jina 2 read it as !PathsNamed
    for text in ("jtype: Flow\nversion: '1'\nexecutors:\n  - name: a\n", 'jtype: Flow\nexecutors:\n  - name: a\n'):
        with pytest.raises(ConfigError, match='this is a Flow config; load it with Flow.load_config'):
            Executor.load_config(text)


# -- 6: a misspelt metas key is refused, as in uses_metas -----------------------------------------
def test_a_misspelt_metas_key_is_refused_wherever_it_is_given(tmp_path):
    text = 'jtype: PathsNamed\nmetas:\n  name: idx\n  workspce: /tmp/x\n'
    hint = r"got 'workspce'; did you mean 'workspace'\?"
    with pytest.raises(ConfigError, match=rf'<YAML string>, line 4: a metas: section takes the metas fields name, '
                                          rf'description, workspace, py_modules; {hint}'):
        Executor.load_config(text)
    with pytest.raises(ConfigError, match=rf'line 4: .*{hint}'):
        Flow().add(uses=text)
    with pytest.raises(ValueError, match=hint):
        Flow().add(uses={'jtype': 'PathsNamed', 'metas': {'workspce': '/tmp/x'}})
    with pytest.raises(ValueError, match=rf'uses_metas takes the metas fields .*{hint}'):
        Flow().add(uses='PathsNamed', uses_metas={'workspce': '/tmp/x'})
    # Every metas field Jina 2.0.24 had (jina/executors/metas.py) is taken.
    ex = Executor.load_config('jtype: PathsNamed\nmetas:\n  name: n\n  description: d\n'
                              f'  workspace: {tmp_path}\n  py_modules: []\n')
    assert (ex.metas.name, ex.metas.description, ex.metas.workspace) == ('n', 'd', str(tmp_path))


# -- 7: save_config keeps the Flow's defaults for every add() ---------------------------------------
def test_save_config_keeps_the_flows_add_defaults(tmp_path):
    f = Flow(replicas=2, env={'A': '1'}, timeout_ready=5, uses=PathsNamed).add(name='a')
    path = tmp_path / 'flow.yml'
    f.save_config(str(path))
    g = Flow.load_config(str(path))
    keys = ('replicas', 'env', 'timeout_ready', 'cls')
    after = [flow.add(name='b')._specs[-1] for flow in (f, g)]
    assert [after[1].get(k) for k in keys] == [after[0].get(k) for k in keys] == [2, {'A': '1'}, 5, PathsNamed]


# -- 8: quoted numbers; on / off ---------------------------------------------------------------------
class PathsMode(Executor):
    def __init__(self, mode='x', other=None, **kwargs):
        super().__init__(**kwargs)
        self.mode, self.other = mode, other


def test_quoted_numbers_are_numbers_and_on_off_stay_text_as_in_jina2():
    f = Flow.load_config("jtype: Flow\nversion: '1'\nwith:\n  prefetch: '4'\nexecutors:\n  - name: a\n"
                         "    parallel: '2'\n    replicas: '3'\n    timeout_ready: '-1'\n    max_restarts: '1'\n")
    spec = f._specs[0]
    assert (spec['shards'], spec['replicas'], spec['timeout_ready'], spec['max_restarts'], f._prefetch) == \
        (2, 3, -1, 1, 4)
    with pytest.raises(ConfigError, match=r"line 3: executor 'a': replicas must be a positive int, got 'two'"):
        Flow.load_config("jtype: Flow\nexecutors:\n  - name: a\n    replicas: two\n")
    # Jina 2's loader dropped YAML 1.1's on / off booleans; yes / no / true / false stay.
    for word, value in (('off', 'off'), ('On', 'On'), ('OFF', 'OFF'), ('yes', True), ('no', False),
                        ('true', True)):
        ex = Executor.load_config(f'jtype: PathsMode\nwith:\n  mode: {word}\n  other: [{word}]\n')
        assert ex.mode == value and ex.other == [value], word


def test_a_py_modules_file_does_not_hide_a_package_of_its_name_from_the_executors(tmp_path):
    # Importing a py_modules file puts its folder on sys.path (for its neighbours), after
    # what was there; executor processes must keep that order, or its executors.py hides
    # the `executors` package a class of the Flow comes from.
    from executors.segmenters import TextSegmenter
    from runtime.config import import_py_modules
    _write(tmp_path / 'executors.py', _module('PathsShadow'))
    import_py_modules(['executors.py'], str(tmp_path))
    with Flow().add(uses=TextSegmenter) as f:
        f.post('/index', Document(text='one. two.'))
