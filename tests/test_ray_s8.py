"""The Ray backend as the local one, where it differed: an actor killed while the Flow is
idle is noticed (and restarted) before the next post, arrays in groundtruths and in the
Documents of returned dicts are writable, a Flow's actors start in the script's cwd and
environment of the Flow's start, and ``ray_options`` that Ray refuses only at an actor's
creation are refused at ``add()`` or fail the start naming the executor.

One Ray cluster for the module (as in test_ray.py: a head of 2 CPUs, its own temporary
directory, no dashboard); few Flows, each checking several things.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import time

import numpy as np
import psutil
import pytest

os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')  # before Ray is imported anywhere

from runtime import Document, DocumentArray, Executor, Flow, requests  # noqa: E402
from runtime.errors import ExecutorStartError  # noqa: E402

ray = pytest.importorskip('ray')

POST_TIMEOUT = 30.0


@pytest.fixture(scope='module', autouse=True)
def cluster():
    """A Ray cluster for the module, this process connected to it as the driver (autouse:
    it starts before the leak check of the first test lists the processes)."""
    from ray.cluster_utils import Cluster
    temp_dir = tempfile.mkdtemp(prefix='ray-')  # short: Ray's socket paths live under it
    c = Cluster(initialize_head=True, head_node_args={
        'num_cpus': 2, 'include_dashboard': False, 'temp_dir': temp_dir})
    try:
        ray.init(address=c.address, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_actors_left(cluster):
    """Each test leaves no actor alive in the cluster (as test_ray.py's ``ray_cluster``)."""
    yield
    # Ray's actor table without the dashboard's state API: a private call, so where a Ray
    # release moves it the check is left out rather than failing every test.
    table = getattr(getattr(getattr(ray, '_private', None), 'state', None), 'actors', None)
    if table is not None:  # ray.kill is asynchronous: the table says DEAD a moment later
        _wait_until(lambda: all(a['State'] == 'DEAD' for a in table().values()), 'no actor left alive', timeout=10)


def _wait_until(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'not within {timeout} s: {what}'
        time.sleep(0.02)


# -- executors (module level: pickled by reference, imported by the actors) -------------------
class Pid(Executor):
    """Says which process served the request."""

    @requests
    def pid(self, docs, parameters, **kwargs):
        time.sleep(parameters.get('pause', 0))
        return {'pid': os.getpid()}


class Best(Executor):
    """Returns Documents (with chunks and matches), a DocumentArray and a plain array."""

    @requests
    def best(self, docs, **kwargs):
        best = Document(id='best', embedding=np.zeros(4), chunks=[Document(embedding=np.zeros(2))])
        best.matches.append(Document(id='m', blob=np.zeros(3)))
        return {'best': best, 'top': DocumentArray([Document(id='t', embedding=np.zeros(2))]), 'plain': np.zeros(3)}


class Eval(Executor):
    """Writes in place into its groundtruths and into what ``best`` returned."""

    @requests
    def evaluate(self, docs, groundtruths, parameters, **kwargs):
        got = parameters['__results__']['best']
        g = groundtruths[0]
        writes = {
            'groundtruth': lambda: g.embedding.__itruediv__(2),  # g.embedding /= 2
            'groundtruth chunk': lambda: g.chunks[0].embedding.__iadd__(1),
            'Document': lambda: got['best'].embedding.__iadd__(1),
            'Document chunk': lambda: got['best'].chunks[0].embedding.__iadd__(1),
            'Document match blob': lambda: got['best'].matches[0].blob.__iadd__(1),
            'DocumentArray': lambda: got['top'][0].embedding.__iadd__(1),
            'plain': lambda: got['plain'].__iadd__(1),
        }
        failed = {}
        for what, write in writes.items():
            try:
                write()
            except ValueError as exc:  # 'assignment destination is read-only'
                failed[what] = str(exc)
        return {'failed': failed, 'groundtruth': g.embedding.tolist()}


class Where(Executor):
    """Says its process's cwd and one variable of its environment."""

    @requests
    def where(self, docs, **kwargs):
        return {'cwd': os.getcwd(), 'model_dir': os.environ.get('SHMFLOW_S8_MODEL_DIR')}


# -- an actor killed while the Flow is idle --------------------------------------------------------
def test_an_actor_killed_while_idle_is_restarted_before_the_next_post(caplog):
    f = (Flow(backend='ray')
         .add(name='solo', uses=Pid, max_restarts=1)
         .add(name='pair', uses=Pid, replicas=2, max_restarts=1))
    with f:
        first = f.post('/', DocumentArray(Document() for _ in range(4)), request_size=1, parameters={'pause': 0.05},
                       return_results=True, timeout=POST_TIMEOUT)
        solo = first[0].parameters['__results__']['solo']['pid']
        pair = first[0].parameters['__results__']['pair']['pid']
        with caplog.at_level(logging.WARNING, logger='runtime'):
            # One instance of each dies while nothing is posted (an OOM kill, an operator's kill).
            for pid in (solo, pair):
                os.kill(pid, signal.SIGKILL)
            psutil.wait_procs([psutil.Process(pid) for pid in (solo, pair) if psutil.pid_exists(pid)], timeout=10)

            def noticed() -> bool:
                # The gateway's /status books deaths as a post does (Router.notice_deaths);
                # Ray tells this process within milliseconds: polled, not a fixed sleep.
                f._down_executors()
                return sum('restarting executor' in r.getMessage() for r in caplog.records) >= 2

            _wait_until(noticed, 'both deaths noticed while idle')
        served = []
        f.post('/', DocumentArray(Document() for _ in range(6)), request_size=1,
               on_done=lambda r: served.append(r.parameters['__results__']), timeout=POST_TIMEOUT)
    assert len(served) == 6  # none sent to a dead actor
    assert all(s['solo']['pid'] != solo and s['pair']['pid'] != pair for s in served)


# -- writable arrays, the script's cwd and environment -----------------------------------------------
def test_arrays_are_writable_and_actors_start_in_the_scripts_cwd_and_env(tmp_path, monkeypatch):
    with Flow(backend='ray').add(name='best', uses=Best).add(name='eval', uses=Eval) as f:
        truth = Document(id='g', embedding=np.array([3.0, 4.0]), chunks=[Document(embedding=np.zeros(2))])
        (r,) = f.post('/', [(Document(id='q'), truth)], return_results=True, timeout=POST_TIMEOUT)
        results = r.parameters['__results__']
        assert results['eval'] == {'failed': {}, 'groundtruth': [1.5, 2.0]}
        best = results['best']
        # The caller's view of returned Documents: its own arrays, as locally.
        assert best['best'].embedding.flags.writeable and best['best'].chunks[0].embedding.flags.writeable
        assert best['best'].matches[0].blob.flags.writeable and best['top'][0].embedding.flags.writeable
        assert best['plain'].flags.writeable

        # A second Flow opened meanwhile shares the Ray whose workers started elsewhere.
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv('SHMFLOW_S8_MODEL_DIR', '/models/v2')
        g = (Flow(backend='ray').add(name='here', uses=Where)
             .add(name='own', uses=Where, env={'SHMFLOW_S8_MODEL_DIR': '/from/env'}))
        with g:
            (r,) = g.post('/', Document(), return_results=True, timeout=POST_TIMEOUT)
    assert r.parameters['__results__']['here'] == {'cwd': str(tmp_path), 'model_dir': '/models/v2'}
    assert r.parameters['__results__']['own']['model_dir'] == '/from/env'  # add(env=...) wins, as locally


# -- ray_options Ray refuses only when it creates the actor ---------------------------------------
def test_runtime_env_mistakes_fail_at_add_or_name_the_executor_at_start(tmp_path, monkeypatch):
    from runtime.transport.ray import options

    def add(f: Flow, runtime_env: dict) -> Flow:
        return f.add(name='enc', uses=Pid, ray_options={'runtime_env': runtime_env})

    with pytest.raises(TypeError, match=r"'enc': bad ray_options\['runtime_env'\]: env_vars must map str to str, "
                                        r"got 'THREADS': 4; write the value as a string \(\{'THREADS': '4'\}\)"):
        add(Flow(backend='ray'), {'env_vars': {'THREADS': 4}})
    with pytest.raises(ValueError, match=r"'enc': bad ray_options\['runtime_env'\]: py_modules path "
                                         r"'/nonexistent/mypkg' does not exist"):
        add(Flow(backend='ray'), {'py_modules': ['/nonexistent/mypkg']})
    pkg = tmp_path / 'mypkg'
    pkg.mkdir()
    with pytest.raises(ValueError, match=r"py_modules '.*mypkg' is a local path, which Ray takes for the whole job "
                                         r"only.*ray_init_kwargs=\{'runtime_env': \{'py_modules'"):
        add(Flow(backend='ray'), {'py_modules': [str(pkg)]})

    # What add() could not check (a Ray release whose checks it lacks): the start fails
    # naming the executor and its option, and leaves nothing running (see no_actors_left).
    monkeypatch.setattr(options, '_check_runtime_env', lambda executor, runtime_env: None)
    f = add(Flow(backend='ray').add(name='first', uses=Pid), {'py_modules': [str(pkg)]})
    with pytest.raises(ExecutorStartError) as info:
        with f:
            pass
    msg = str(info.value)
    assert msg.startswith("executor 'enc' failed to start: Ray could not create its actor with ray_options=")
    assert str(pkg) in msg and 'py_modules' in msg
