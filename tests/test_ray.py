"""The Ray backend, on a real Ray (no mocks): the same Flows give the same answers on both
backends, executors pinned to nodes run there, and a killed actor, a removed node or
resources no node has end in errors that name the executor (and the node, the resources).

One Ray cluster (``ray.cluster_utils.Cluster``: a head of 2 CPUs, its own
temporary directory, no dashboard, no usage stats) serves the whole module; the
multi-node test adds nodes to it and removes them. Every post has a ``timeout``, so a
lost request fails the test instead of hanging it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import psutil
import pytest

os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')  # before Ray is imported anywhere

from runtime import Document, DocumentArray, Executor, Flow, requests  # noqa: E402
from runtime.errors import ExecutorError, ExecutorStartError, WorkerDiedError  # noqa: E402

ray = pytest.importorskip('ray')

POST_TIMEOUT = 30.0
BACKENDS = ['local', 'ray']


@pytest.fixture(scope='module', autouse=True)
def cluster():
    """A Ray cluster for the module, this process connected to it as the driver.

    Autouse, so that it starts before the leak check of the first test takes its list of
    processes: the cluster's raylet and GCS (and the workers they fork) are not a test's.
    """
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


@pytest.fixture
def ray_cluster(cluster):
    """The cluster, and a check that the test left no actor alive in it."""
    yield cluster
    # Ray's actor table without the dashboard's state API: a private call, so where a Ray
    # release moves it the check is left out rather than failing every test.
    table = getattr(getattr(getattr(ray, '_private', None), 'state', None), 'actors', None)
    if table is None:
        return
    deadline = time.monotonic() + 10
    while True:  # ray.kill is asynchronous: the table says DEAD a moment later
        alive = [a for a in table().values() if a['State'] != 'DEAD']
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not alive, f'actors left running: {[(a["ActorClassName"], a["State"]) for a in alive]}'


@pytest.fixture(params=BACKENDS)
def flow_kwargs(request):
    """``Flow(**flow_kwargs)`` for each backend (the Ray one on the module's cluster)."""
    if request.param == 'ray':
        request.getfixturevalue('ray_cluster')
        return {'backend': 'ray'}
    return {}


# -- executors (module level: pickled by reference, imported by the actors) -------------------
class Embed(Executor):
    """A deterministic 8-d embedding of each text, written in place into a writable matrix."""

    @requests(on=['/index', '/search', '/'])
    def embed(self, docs, parameters, **kwargs):
        x = np.zeros((len(docs), 8), np.float32)
        for i, d in enumerate(docs):
            x[i, len(d.text) % 8] = 1.0
            x[i, int(d.tags.get('i', 0)) % 8] += 0.5
        docs.embeddings = x
        docs.embeddings *= parameters.get('scale', 1.0)  # in place: the arrays are writable
        return {'pid': os.getpid(), 'n': len(docs)}


class Tag(Executor):
    """Sets one tag (its own name) on every document: branches of a DAG each add theirs."""

    @requests
    def tag(self, docs, **kwargs):
        for d in docs:
            d.tags[self.metas.name] = self.runtime_args.replica_id


class ShardIndex(Executor):
    """Keeps the documents of its shard; a search returns its matches, scored by dot product."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.docs = DocumentArray()

    @requests(on='/index')
    def index(self, docs, **kwargs):
        self.docs.extend(docs)
        return {'shard': self.runtime_args.shard_id, 'kept': len(self.docs)}

    @requests(on='/search')
    def search(self, docs, **kwargs):
        for q in docs:
            for d in self.docs:
                m = Document(id=d.id, text=d.text)
                m.scores['score'] = float(q.embedding @ d.embedding)
                q.matches.append(m)


class Slow(Executor):
    """Takes ``pause`` seconds per request and says which process it ran in."""

    @requests
    def wait(self, docs, parameters, **kwargs):
        time.sleep(parameters.get('pause', 0.05))
        return {'pid': os.getpid()}


class Exit(Executor):
    """Its process ends in the middle of every request."""

    @requests
    def exit(self, docs, **kwargs):
        os._exit(3)


def _docs(n: int) -> DocumentArray:
    return DocumentArray(Document(id=f'd{i}', text='x' * (i % 5 + 1), tags={'i': i}) for i in range(n))


# -- the same Flows on both backends ---------------------------------------------------------------
def test_ray_missing_says_how_to_install(monkeypatch):
    from runtime.transport.ray import import_ray
    monkeypatch.setitem(sys.modules, 'ray', None)  # what `import ray` meets where it is not installed
    with pytest.raises(ImportError, match=r"backend='ray'.*pip install 'shmflow\[ray\]'"):
        import_ray()


def test_ray_options_are_checked_where_given():
    from runtime.transport.ray import check_ray_options
    assert check_ray_options('enc', {'num_gpus': 0.5, 'resources': {'big_mem': 1}}) == \
        {'num_gpus': 0.5, 'resources': {'big_mem': 1}}
    with pytest.raises(ValueError, match=r"'enc': ray_options 'max_restarts' is set by the Flow; use add\(\.\.\., max_restarts"):
        check_ray_options('enc', {'max_restarts': 2})
    with pytest.raises(ValueError, match=r"'enc': bad ray_options: .*num_cpu"):
        check_ray_options('enc', {'num_cpu': 1})  # a typo of num_cpus
    with pytest.raises(TypeError, match=r"ray_options must be a dict .*got list"):
        check_ray_options('enc', ['num_cpus'])


def test_spec_examples_on_both_backends(flow_kwargs):
    from typing import Optional

    class MyExecutor(Executor):  # defined in a test: travels by value (cloudpickle)
        def __init__(self, default_param: int = 1, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.default_param = default_param

        @requests
        def foo(self, docs: Optional[DocumentArray], parameters: dict, **kwargs):
            param = parameters.get('param', self.default_param)
            return {'param': param, 'type': type(param).__name__, 'n': len(docs)}

        @requests(on='/search')
        def search(self, docs, **kwargs):
            for d in docs:
                d.tags['searched_by'] = self.metas.name

        @requests(on='/boom')
        def boom(self, **kwargs):
            raise ValueError('no luck')

    got, errors = [], []
    with (Flow(**flow_kwargs)
            .add(uses={'jtype': 'MyExecutor', 'metas': {'name': 'my-executor-1'}})
            .add(uses={'jtype': 'MyExecutor', 'metas': {'name': 'my-executor-2'}})) as f:
        f.post(on='/endpoint', inputs=DocumentArray([Document()]),
               parameters={'param': 5, 'my-executor-1': {'param': 10}}, on_done=got.append, timeout=POST_TIMEOUT)
        found = f.search(Document(text='q'), return_results=True, timeout=POST_TIMEOUT)
        sized = f.post('/', (Document() for _ in range(100)), request_size=10, return_results=True,
                       timeout=POST_TIMEOUT)
        always = []
        f.post('/boom', Document(text='kept'), on_error=errors.append, on_always=always.append, timeout=POST_TIMEOUT)

    assert got[0].parameters['__results__'] == {'my-executor-1': {'param': 10, 'type': 'int', 'n': 1},
                                                'my-executor-2': {'param': 5, 'type': 'int', 'n': 1}}
    assert [r['executor'] for r in got[0].routes] == ['my-executor-1', 'my-executor-2']
    assert found[0].docs[0].tags['searched_by'] == 'my-executor-2'
    assert [len(r.docs) for r in sized] == [10] * 10 and len({r.request_id for r in sized}) == 10
    assert len(errors) == 1 and [d.text for d in always[0].docs] == ['kept']
    assert 'no luck' in errors[0].status.description and errors[0].status.exception.executor == 'my-executor-1'


def _replicas_shards_needs(flow_kwargs: dict) -> dict:
    """Index then search through replicas, a needs-DAG and polling-'all' shards."""
    f = (Flow(**flow_kwargs)
         .add(name='embed', uses=Embed, replicas=2)
         .add(name='left', uses=Tag, needs='embed')
         .add(name='right', uses=Tag, needs='embed', replicas=2)
         .add(name='index', uses=ShardIndex, needs=['left', 'right'], shards=2, polling={'/search': 'all'}))
    with f:
        indexed = f.post('/index', _docs(40), request_size=5, return_results=True, timeout=POST_TIMEOUT)
        found = f.post('/search', DocumentArray([Document(text='xx', tags={'i': 1}), Document(text='xxx')]),
                       return_results=True, timeout=POST_TIMEOUT)
    return {
        'ids': sorted(d.id for r in indexed for d in r.docs),
        'tags': sorted((d.id, sorted(d.tags)) for r in indexed for d in r.docs),
        'embeddings': {d.id: d.embedding.tolist() for r in indexed for d in r.docs},
        # Which shard kept a document depends on timing: compare matches as sets, ties by id.
        'matches': [sorted((-round(m.scores['score'].value, 5), m.id) for m in q.matches) for q in found[0].docs],
        'embed_pids': len({r.parameters['__results__']['embed']['pid'] for r in indexed}),
    }


def test_replicas_shards_needs_give_the_same_answers_on_both_backends(ray_cluster):
    local = _replicas_shards_needs({})
    remote = _replicas_shards_needs({'backend': 'ray'})
    assert remote['ids'] == [f'd{i}' for i in sorted(range(40), key=lambda i: f'd{i}')]
    assert all(t == ['i', 'left', 'right'] for _, t in remote['tags'])
    assert remote['embed_pids'] == 2  # both replicas of 'embed' served
    for key in ('ids', 'tags', 'embeddings', 'matches'):
        assert remote[key] == local[key], key
    assert len(remote['matches'][0]) == 40  # every shard's documents, merged


# -- Ray only ------------------------------------------------------------------------------------
def test_handler_error_env_and_writable_arrays_on_ray(ray_cluster):
    class EnvReader(Executor):
        @requests(on='/env')
        def env(self, docs, **kwargs):
            docs.embeddings += 1  # in place, on what came through Ray's object store
            return {'foo': os.environ.get('SHMFLOW_TEST_FOO')}

        @requests(on='/boom')
        def boom(self, docs, **kwargs):
            raise KeyError('missing-thing')

        @requests(on='/interrupt')
        def interrupt(self, docs, **kwargs):
            raise KeyboardInterrupt('stop here')  # a BaseException, not an Exception

        @requests(on='/scores')
        def scores(self, docs, **kwargs):
            return {'scores': np.zeros(3)}

        def close(self):
            raise OSError('could not save')

    class Bumper(Executor):
        @requests(on='/scores')
        def bump(self, docs, parameters, **kwargs):
            s = parameters['__results__']['env']['scores']
            s += 1  # in place, as a ranker adding to an earlier executor's scores does locally
            return {'bumped': s.tolist()}

    x = np.arange(300 * 64, dtype=np.float32).reshape(300, 64)  # 75 KB: through the object store
    da = DocumentArray(Document() for _ in range(300))
    da.embeddings = x
    f = (Flow(backend='ray').add(name='a', uses=Embed).add(name='env', uses=EnvReader, env={'SHMFLOW_TEST_FOO': 'bar'})
         .add(name='bump', uses=Bumper))
    with pytest.raises(ExecutorError, match=r"'env' raised OSError: could not save \(in close\(\)\)") as closing:
        with f:
            r = f.post('/env', da, request_size=300, return_results=True, timeout=POST_TIMEOUT)[0]
            assert r.parameters['__results__']['env'] == {'foo': 'bar'}
            # 'a' has no '/env' handler: the documents pass it by; 'env' added 1 in place.
            np.testing.assert_array_equal(r.docs.embeddings, x + 1)
            assert r.docs.embeddings.flags.writeable
            with pytest.raises(ExecutorError, match=r"'env' raised KeyError") as info:
                f.post('/boom', Document(text='q'), timeout=POST_TIMEOUT)
            with pytest.raises(ExecutorError, match=r"'env' raised KeyboardInterrupt: stop here") as stopped:
                f.post('/interrupt', Document(text='q'), timeout=POST_TIMEOUT)
            assert ', in interrupt' in stopped.value.remote_traceback
            # Arrays in returned dicts are writable downstream and for the caller, as locally.
            (r,) = f.post('/scores', Document(text='q'), return_results=True, timeout=POST_TIMEOUT)
            results = r.parameters['__results__']
            assert results['bump'] == {'bumped': [1.0, 1.0, 1.0]} and results['env']['scores'].flags.writeable
    assert 'missing-thing' in info.value.remote_traceback and ', in boom' in info.value.remote_traceback
    assert ', in close' in closing.value.remote_traceback  # as on the local backend


def test_sigkill_of_an_actor_mid_post_names_it_and_restarts_retry(ray_cluster):
    def kill_first(victims):
        def on_done(resp):
            pid = resp.parameters['__results__']['slow']['pid']
            if not victims:
                victims.append(pid)
                os.kill(pid, signal.SIGKILL)
        return on_done

    victims = []
    with Flow(backend='ray').add(name='slow', uses=Slow) as f:
        with pytest.raises(WorkerDiedError) as info:
            f.post('/', _docs(12), request_size=1, parameters={'pause': 0.05}, on_done=kill_first(victims),
                   timeout=POST_TIMEOUT)
    msg = str(info.value)
    assert "executor 'slow'" in msg and 'replica 0' in msg and f'pid {victims[0]}' in msg and 'node ' in msg

    victims, seen = [], []
    with Flow(backend='ray').add(name='slow', uses=Slow, max_restarts=1, max_retries=1) as f:
        done = kill_first(victims)
        f.post('/', _docs(12), request_size=1, parameters={'pause': 0.05},
               on_done=lambda r: (seen.extend(d.id for d in r.docs), done(r)),
               timeout=POST_TIMEOUT)
    assert sorted(seen) == sorted(f'd{i}' for i in range(12))  # each document exactly once


def test_an_actor_dead_for_good_fails_every_later_request_with_rays_account(ray_cluster):
    from runtime.transport.ray import RayWorkerDiedError

    # max_retries=1 but no restart: the request it held finds no instance to retry on.
    with Flow(backend='ray').add(name='exit', uses=Exit, max_retries=1) as f:
        errors = []
        for _ in range(2):  # the request it held, then a post to the executor it left dead
            with pytest.raises(WorkerDiedError) as info:
                f.post('/', Document(), timeout=POST_TIMEOUT)
            errors.append(info.value)
    for e in errors:
        assert isinstance(e, RayWorkerDiedError), repr(e)
        assert (e.executor, e.replica, e.shard) == ('exit', 0, 0) and e.node and e.pid
        assert 'died' in e.reason and 'still running' not in str(e)
    assert str(errors[0]) == str(errors[1]) and errors[0] is not errors[1]


def test_resources_no_node_has_fail_at_timeout_ready_naming_them(ray_cluster):
    t0 = time.monotonic()
    with pytest.raises(ExecutorStartError) as info:
        with Flow(backend='ray').add(name='greedy', uses=Tag, timeout_ready=2,
                                     ray_options={'resources': {'tpu_v9': 4}}):
            pass
    msg = str(info.value)
    assert "'greedy'" in msg and "'tpu_v9': 4" in msg and 'no node' in msg
    assert time.monotonic() - t0 < 20


def test_class_from_a_module_the_cluster_cannot_import(ray_cluster, tmp_path):
    pkg = tmp_path / 'only_here_mod.py'
    pkg.write_text('from runtime import Executor\n\nclass Hidden(Executor):\n    pass\n')
    sys.path.insert(0, str(tmp_path))
    try:
        import only_here_mod
    finally:
        sys.path.remove(str(tmp_path))  # the actors get this process's sys.path: now without it
    try:
        with pytest.raises(ExecutorStartError, match=r"module 'only_here_mod' is not importable.*py_modules"):
            with Flow(backend='ray').add(uses=only_here_mod.Hidden):
                pass
    finally:
        del sys.modules['only_here_mod']


def _node_of(r) -> list:
    return [(h['executor'], (h['node'].split() or [''])[0]) for h in r.routes]  # 'id-prefix (ip)'


def test_executors_pinned_to_two_nodes_then_a_node_removed_mid_post(ray_cluster, tmp_path):
    local = _pipeline_answers({})
    nodes = [ray_cluster.add_node(num_cpus=1, resources={name: 1})
             for name in ('node_a', 'node_b')]
    removed: list = []
    try:
        ray_cluster.wait_for_nodes()
        ids = {n.node_id[:8] for n in nodes}
        trace = tmp_path / 'trace.json'
        remote = _pipeline_answers({'backend': 'ray', 'profile': str(trace)}, pin=True)
        assert remote['answers'] == local['answers']
        events = json.loads(trace.read_text())['traceEvents']
        tracks = {e['pid'] for e in events if e.get('cat') == 'handler'}
        labels = {e['pid']: e['args']['name'] for e in events if e.get('name') == 'process_name'}
        assert len(tracks) == 2  # one track per actor, each named with its pid and node
        assert {int(labels[t].split('pid ')[1].split(',')[0]) for t in tracks} == remote['pids']
        assert all('node ' in labels[t] for t in tracks)
        hops = remote['nodes']
        assert hops['embed'] != hops['index'] and {hops['embed'], hops['index']} == ids

        # node_b goes away while it holds requests: they fail naming the executor and a node.
        with Flow(backend='ray').add(name='far', uses=Slow, ray_options={'resources': {'node_b': 0.5}}) as f:
            def on_done(resp):
                if not removed:
                    removed.append(True)
                    ray_cluster.remove_node(nodes[1], allow_graceful=False)
            with pytest.raises(WorkerDiedError) as info:
                f.post('/', _docs(10), request_size=1, parameters={'pause': 0.1}, on_done=on_done,
                       timeout=POST_TIMEOUT)
        assert "executor 'far'" in str(info.value) and nodes[1].node_id[:8] in str(info.value)
    finally:
        for n in nodes[:1 if removed else 2]:
            ray_cluster.remove_node(n)


def _pipeline_answers(flow_kwargs: dict, pin: bool = False) -> dict:
    opts = (lambda res: {'ray_options': {'resources': {res: 0.5}}}) if pin else (lambda res: {})
    f = (Flow(**flow_kwargs).add(name='embed', uses=Embed, **opts('node_a'))
         .add(name='index', uses=ShardIndex, **opts('node_b')))
    with f:
        f.post('/index', _docs(20), request_size=4, timeout=POST_TIMEOUT)
        found = f.post('/search', DocumentArray([Document(text='xx', tags={'i': 3})]), return_results=True,
                       timeout=POST_TIMEOUT)
    hops = dict(_node_of(found[0]))
    return {'answers': sorted((-m.scores['score'].value, m.id) for m in found[0].docs[0].matches), 'nodes': hops,
            'pids': {h['pid'] for h in found[0].routes}}


SCRIPT = '''
import os, signal, sys, threading, time
sys.path.insert(0, {root!r})
import numpy as np
import psutil
from runtime import Document, DocumentArray, Executor, Flow, requests

class Double(Executor):  # in __main__: only cloudpickle can ship it
    @requests
    def double(self, docs, **kwargs):
        docs.embeddings *= 2

    @requests(on='/slow')
    def slow(self, **kwargs):
        time.sleep(0.05)

if __name__ == '__main__':
    da = DocumentArray(Document() for _ in range(4))
    da.embeddings = np.ones((4, 3), np.float32)
    first = Flow(backend='ray', ray_init_kwargs={{'num_cpus': 1}}).add(uses=Double)
    first.start()  # starts the private Ray
    try:
        with Flow(backend='ray').add(uses=Double) as f:  # a second Flow meanwhile: the same Ray
            first.close()  # the Flow that started it closes first: Ray stays for f
            out = f.post('/', da, return_results=True, timeout=30)
            print('SUM', float(out[0].docs.embeddings.sum()), flush=True)
            ray_procs = psutil.Process().children(recursive=True)
            print('RAY-PIDS', ' '.join(str(p.pid) for p in ray_procs), flush=True)
            threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C mid-post
            f.post('/slow', (Document() for _ in range(2000)), request_size=1, timeout=60)
    except KeyboardInterrupt:
        print('INTERRUPTED', flush=True)
    finally:
        first.close()
    # Stopped by the last Flow's close, not only by the interpreter's exit.
    print('LEFT', len(psutil.wait_procs(ray_procs, timeout=15)[1]), flush=True)
'''


def test_a_script_starts_a_private_ray_and_ctrl_c_leaves_nothing_running(tmp_path):
    """Two Flows share the private Ray the first started; it stays while the second runs
    after the first closed, and goes with the last one (here at Ctrl-C)."""
    script = tmp_path / 'job.py'
    script.write_text(SCRIPT.format(root=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = {**os.environ, 'RAY_USAGE_STATS_ENABLED': '0', 'RAY_TMPDIR': tempfile.mkdtemp(prefix='ray-')}
    env.pop('RAY_ADDRESS', None)
    try:
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        lines = dict((line + ' ').split(' ', 1) for line in out.stdout.splitlines()
                     if line.startswith(('RAY-PIDS', 'SUM', 'INTERRUPTED', 'LEFT')))
        assert float(lines['SUM']) == 24.0 and 'INTERRUPTED' in lines and int(lines['LEFT']) == 0
        ray_pids = [int(p) for p in lines['RAY-PIDS'].split()]
        assert ray_pids  # the private instance's raylet, GCS, workers
        procs = []
        for pid in ray_pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=15)
        assert not alive, f'Ray processes of the script still running: {textwrap.shorten(str(alive), 300)}'
    finally:
        shutil.rmtree(env['RAY_TMPDIR'], ignore_errors=True)


INTERRUPTED_INIT = '''
import sys, time
sys.path.insert(0, {root!r})
import psutil
import ray._private.services as services
from runtime import Executor, Flow

real_get_node = services.get_node

def interrupted(*args, **kwargs):
    # ray.init has started the GCS and the raylet, which forks its agents: Ctrl-C now.
    real_get_node(*args, **kwargs)
    me, deadline = psutil.Process(), time.monotonic() + 20
    while time.monotonic() < deadline:
        procs = me.children(recursive=True)
        titles = ' '.join(' '.join(p.cmdline()) for p in procs if p.is_running())
        if 'DashboardAgent' in titles and 'RuntimeEnvAgent' in titles:
            break
        time.sleep(0.1)
    print('RAY-PIDS', ' '.join(str(p.pid) for p in procs), flush=True)
    raise KeyboardInterrupt

services.get_node = interrupted
try:
    with Flow(backend='ray', ray_init_kwargs={{'num_cpus': 1}}).add(uses=Executor):
        print('STARTED', flush=True)
except KeyboardInterrupt:
    print('INTERRUPTED', flush=True)
'''


def test_ctrl_c_while_the_private_ray_starts_leaves_nothing_running(tmp_path):
    """Interrupted inside ray.init (before Ray registers its own cleanup), the Flow stops
    the half-started Ray: no agent the raylet forked lingers."""
    script = tmp_path / 'job.py'
    script.write_text(INTERRUPTED_INIT.format(root=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    env = {**os.environ, 'RAY_USAGE_STATS_ENABLED': '0', 'RAY_TMPDIR': tempfile.mkdtemp(prefix='ray-')}
    env.pop('RAY_ADDRESS', None)
    procs = []
    try:
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50, env=env)
        assert out.returncode == 0, out.stderr[-3000:]
        lines = dict((line + ' ').split(' ', 1) for line in out.stdout.splitlines()
                     if line.startswith(('RAY-PIDS', 'STARTED', 'INTERRUPTED')))
        assert 'INTERRUPTED' in lines and 'STARTED' not in lines
        for pid in map(int, lines['RAY-PIDS'].split()):
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)  # (left alone, the agents stay a minute)
        assert not alive, f'Ray processes of the script still running: {textwrap.shorten(str(alive), 300)}'
    finally:
        for p in procs:  # a failed check must not leave them to the next test
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(env['RAY_TMPDIR'], ignore_errors=True)
