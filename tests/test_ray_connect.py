"""How a Ray Flow connects: ``ray_address='auto'`` joins ``RAY_ADDRESS`` or the cluster of
``ray start`` on this machine and never another script's private Ray, and a Flow that
would share the process's connection with other ``ray_init_kwargs`` is refused instead of
running without them.

One private Ray for the module, started by a Flow (its own temporary directory), open
throughout: the other script of the 'auto' test sees it running, and the Flows of the
sharing test join it. Every post has a ``timeout``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')  # before Ray is imported anywhere

from runtime import Document, Executor, Flow, requests  # noqa: E402
from runtime.transport.ray.connection import resolve_auto  # noqa: E402

ray = pytest.importorskip('ray')

POST_TIMEOUT = 30.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_KWARGS = {'num_cpus': 2, 'object_store_memory': 100 << 20,
                'runtime_env': {'env_vars': {'SHMFLOW_CONNECT_X': 'first'}}}


class Env(Executor):
    """Says what its actor's environment holds (``runtime_env``'s variable)."""

    @requests
    def env(self, docs, **kwargs):
        return {'x': os.environ.get('SHMFLOW_CONNECT_X')}


def _x(f: Flow) -> str | None:
    return f.post('/', [Document()], return_results=True, timeout=POST_TIMEOUT)[0].parameters['__results__']['env']['x']


@pytest.fixture(scope='module', autouse=True)
def first():
    """The module's Flow, holding the private Ray it started (autouse: it starts before the
    leak check of the first test lists the processes). At its close Ray must stop: a Flow
    refused meanwhile took no share of the connection."""
    if ray.is_initialized():
        pytest.skip('this process is connected to Ray already (a fixture of another module)')
    temp_dir = tempfile.mkdtemp(prefix='ray-')  # short: Ray's socket paths live under it
    f = Flow(backend='ray', ray_init_kwargs={**FIRST_KWARGS, '_temp_dir': temp_dir}).add(name='env', uses=Env)
    try:
        with f:
            yield f
        assert not ray.is_initialized(), 'the private Ray outlived the last Flow that used it'
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


OTHER_SCRIPT = '''
import os, sys
sys.path.insert(0, {root!r})
from runtime import Document, Executor, Flow

def attempt(label):
    try:
        with Flow(backend='ray', ray_address='auto').add(uses=Executor) as f:
            import ray
            f.post('/', [Document()], timeout=30)
            print(label, 'JOINED', ray.get_runtime_context().gcs_address, flush=True)
    except ConnectionError as exc:
        print(label, 'REFUSED', str(exc).replace(chr(10), ' '), flush=True)

attempt('NONE')   # no RAY_ADDRESS, no `ray start` record: only another script's private Ray runs
os.makedirs(os.path.join(os.environ['RAY_TMPDIR'], 'ray'), exist_ok=True)
with open(os.path.join(os.environ['RAY_TMPDIR'], 'ray', 'ray_current_cluster'), 'w') as fp:
    fp.write(sys.argv[1])   # what `ray start` writes
attempt('RECORDED')
'''


def test_auto_never_joins_another_scripts_private_ray_but_the_recorded_cluster(first, tmp_path):
    """Another script's ``ray_address='auto'`` with neither ``RAY_ADDRESS`` nor a ``ray start``
    record fails with the ConnectionError that says how to start a cluster, though this
    process's private Ray runs on the machine (Ray's own 'auto' would join it, and lose its
    actors when this process ends it); with the address recorded as ``ray start`` does,
    it joins that one."""
    gcs = ray.get_runtime_context().gcs_address
    script = tmp_path / 'other.py'
    script.write_text(OTHER_SCRIPT.format(root=ROOT))
    env = {**os.environ, 'RAY_USAGE_STATS_ENABLED': '0', 'RAY_TMPDIR': tempfile.mkdtemp(prefix='ray-')}
    env.pop('RAY_ADDRESS', None)
    try:
        out = subprocess.run([sys.executable, str(script), gcs], capture_output=True, text=True, timeout=60, env=env)
    finally:
        shutil.rmtree(env['RAY_TMPDIR'], ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    said = dict(line.split(' ', 1) for line in out.stdout.splitlines() if line.startswith(('NONE', 'RECORDED')))
    assert said['NONE'].startswith('REFUSED'), f'joined another script\'s private Ray: {said["NONE"]}'
    assert "no Ray cluster found at ray_address='auto'" in said['NONE'] and 'ray start --head' in said['NONE']
    assert said['RECORDED'] == f'JOINED {gcs}', textwrap.shorten(out.stderr, 2000)


def test_resolve_auto_takes_ray_address_then_the_ray_start_record(monkeypatch, tmp_path):
    """``RAY_ADDRESS`` (other than 'auto') first, then the record under Ray's temporary
    directory (``_temp_dir`` where the Flow gives one), else a ConnectionError naming both."""
    monkeypatch.setenv('RAY_TMPDIR', str(tmp_path))
    monkeypatch.delenv('RAY_ADDRESS', raising=False)
    with pytest.raises(ConnectionError, match='RAY_ADDRESS is not set and no `ray start` recorded'):
        resolve_auto()
    (tmp_path / 'ray').mkdir()
    (tmp_path / 'ray' / 'ray_current_cluster').write_text('10.0.0.5:6379\n')
    assert resolve_auto() == '10.0.0.5:6379'
    monkeypatch.setenv('RAY_ADDRESS', 'auto')
    assert resolve_auto() == '10.0.0.5:6379'
    (tmp_path / 'own').mkdir()
    (tmp_path / 'own' / 'ray_current_cluster').write_text('10.0.0.6:6379')
    assert resolve_auto(str(tmp_path / 'own')) == '10.0.0.6:6379'
    monkeypatch.setenv('RAY_ADDRESS', 'ray://head:10001')
    assert resolve_auto() == 'ray://head:10001'


def test_a_second_flow_with_other_ray_init_kwargs_is_refused_not_run_without_them(first):
    """While the module's Flow holds the connection it made, a Flow asking for another
    ``runtime_env`` (or a ``num_cpus`` it was not made with) fails to start naming them and
    what to do, instead of running without them; one that asks for the same ones, or
    none, shares the connection (and its ``runtime_env``)."""
    other = Flow(backend='ray', ray_init_kwargs={'runtime_env': {'env_vars': {'SHMFLOW_CONNECT_X': 'second'}},
                                                 'num_cpus': 2}).add(name='env', uses=Env)
    with pytest.raises(ValueError) as info:
        with other:
            pytest.fail(f'started without its runtime_env: its actors see {_x(other)!r}')
    message = str(info.value)
    assert "ray_init_kwargs 'runtime_env' cannot take effect" in message  # num_cpus is the same: not named
    assert 'Close that Flow before starting this one' in message and 'ray_options' in message
    fewer = Flow(backend='ray', ray_init_kwargs={'num_cpus': 1}).add(name='env', uses=Env)
    with pytest.raises(ValueError, match="ray_init_kwargs 'num_cpus' cannot take effect"):
        with fewer:
            pass
    # The same ones (the private Ray's default of no dashboard included), or none.
    for kwargs in ({'num_cpus': 2, 'runtime_env': dict(FIRST_KWARGS['runtime_env']), 'include_dashboard': False},
                   None):
        with Flow(backend='ray', ray_init_kwargs=kwargs).add(name='env', uses=Env) as same:
            assert _x(same) == 'first'
    assert _x(first) == 'first'
