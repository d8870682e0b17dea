"""Reliability (issue 12): every scenario is provoked for real and bounded in time.

* #1  a handler that sets an object-dtype embedding, and documents that cannot be read back
      in the parent: the request fails loudly, never a SUCCESS with documents missing;
* #3  ``prefetch=5000`` with a slow handler: finishes; ``post(timeout=)`` fires; Ctrl-C exits;
* #4  a message ZeroMQ drops (a worker whose memory is capped gets a ~200 MB request): the
      worker is ended, restarted, and the post does not hang;
* #5  a hung handler under ``post(timeout=)``: its worker is ended and restarted when
      ``max_restarts`` allows, and left alone when it does not;
* #6  SIGTERM / SIGHUP to a script's process group (``timeout(1)``, systemd, a closed
      terminal), and SIGTERM to the script alone: nothing is left in /dev/shm or /tmp;
* #7  two threads posting on one Flow: both complete, one post after the other;
* #9  bad ``Flow`` / ``add`` arguments get errors at the public boundary;
* #10 a stray peer on the Flow's socket cannot take a worker's place or break the Flow.

Scripts that must be signalled or that could hang run as child processes (written into
``tmp_path``) with a deadline, so a regression fails the test instead of hanging the run.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time

import cloudpickle
import numpy as np
import psutil
import pytest
import zmq

from childio import Lines, reap, script_env
from runtime.transport.local.zygote import own_children
from runtime import (Document, DocumentArray, Executor, ExecutorError, Flow, RequestTimeoutError, WorkerDiedError,
                     requests)
from runtime.transport.local import protocol as P

# The executors travel by value: a worker then does not import this module (and pytest with it).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# -- executors ---------------------------------------------------------------------------------
class Sleepy(Executor):
    """Sleeps ``per_request`` s per request and tags each document with its pid; hangs (60 s)
    on a document tagged ``hang``."""

    def __init__(self, per_request: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.per_request = per_request

    @requests
    def work(self, docs, **kwargs):
        if any(d.tags.get('hang') for d in docs):
            time.sleep(60)
        if self.per_request:
            time.sleep(self.per_request)
        for d in docs:
            d.tags['pid'] = os.getpid()


class ObjectEmbedding(Executor):
    @requests
    def work(self, docs, **kwargs):
        for d in docs:
            d.embedding = np.array([object(), 1], dtype=object)


class UnlinksItsArena(Executor):
    """Writes a new embedding (into its own arena: too large to ride inline in the
    message), then removes its arena's file, so the parent cannot map the memory the result
    lies in."""

    @requests
    def work(self, docs, **kwargs):
        for d in docs:
            d.embedding = np.arange(8192, dtype=np.float32)
        prefix = sys.argv[2]  # the worker's argv: ENDPOINT PREFIX PARENT_PID ARENA_SIZE
        for path in glob.glob(f'/dev/shm/{prefix}-w*'):
            os.unlink(path)


class TakesAnything(Executor):
    def __init__(self, lock=None, **kwargs):
        super().__init__(**kwargs)


def _ids(n: int, prefix: str = '') -> list:
    return [f'{prefix}{i}' for i in range(n)]


def _collect() -> tuple:
    """(done ids, failed responses, on_done, on_error)."""
    done, failed = [], []
    return done, failed, (lambda r: done.extend(d.id for d in r.docs)), failed.append


def _wait_exited(pids: list, timeout: float) -> list:
    """Wait (on pidfds) until every process in ``pids`` has ended; returns those still running."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    try:
        while fds and time.monotonic() < deadline:
            ready, _, _ = select.select(list(fds), [], [], max(0.0, deadline - time.monotonic()))
            for fd in ready:
                del fds[fd]
                os.close(fd)
        return list(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


def _leftovers(prefix: str, ipc_dir: str) -> list:
    return glob.glob(f'/dev/shm/{prefix}*') + ([ipc_dir] if os.path.exists(ipc_dir) else [])


def _clean_child(info: dict) -> None:
    """After a failed check: end the child's workers and remove its files (they are not
    named after this process, so the autouse fixture would not see them)."""
    for pid in info.get('pids', []):
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    _wait_exited(info.get('pids', []), 5)
    if info.get('prefix'):
        for path in glob.glob(f'/dev/shm/{info["prefix"]}*'):
            os.unlink(path)
    if info.get('ipc_dir'):
        shutil.rmtree(info['ipc_dir'], ignore_errors=True)


def _start_script(tmp_path, text: str, *args: str) -> subprocess.Popen:
    script = tmp_path / 'script.py'
    script.write_text(text)
    # A session of its own: a signal to its process group cannot reach pytest.
    return subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=script_env(), cwd=str(tmp_path), start_new_session=True)


# A script's first line: its workers, and the names of its Flow's files.
REPORT_FLOW = '''
def report_flow(f):
    print(json.dumps({'pids': [p.pid for p in own_children()], 'prefix': f._rt.transport.prefix,
                      'ipc_dir': f._rt.transport._ipc_dir}), flush=True)
'''


# -- #1 documents that cannot travel fail their request loudly --------------------------------
def test_an_object_dtype_embedding_set_by_a_handler_fails_the_request_naming_the_executor():
    done, failed, on_done, on_error = _collect()
    with Flow().add(name='objemb', uses=ObjectEmbedding) as f:
        f.post('/', DocumentArray(Document(id=i) for i in _ids(6)), request_size=3, on_done=on_done,
               on_error=on_error)
        with pytest.raises(ExecutorError, match="'objemb'.*dtype object") as info:
            f.post('/', Document())
    assert info.value.executor == 'objemb'
    assert done == []  # never a SUCCESS with the documents gone
    assert len(failed) == 2
    for resp in failed:
        assert resp.status.exception.executor == 'objemb'
        assert 'dtype object' in resp.status.description
    # Failed requests carry their documents as they entered the failing executor.
    assert sorted(d.id for r in failed for d in r.docs) == _ids(6)


def test_documents_the_parent_cannot_read_back_fail_the_request_never_a_success():
    """The final decode in the parent fails (the worker's arena file is gone): the request
    is an error naming the last executor, not a SUCCESS with 0 documents."""
    done, failed, on_done, on_error = _collect()
    with Flow().add(name='unlinker', uses=UnlinksItsArena) as f:
        f.post('/', DocumentArray(Document(id=i) for i in _ids(5)), on_done=on_done, on_error=on_error)
    assert done == []
    assert len(failed) == 1
    assert failed[0].status.exception.executor == 'unlinker'
    assert 'could not be read back' in failed[0].status.description


# -- #3 a large window and a slow handler ------------------------------------------------------
N_DEEP = 5000


def test_prefetch_5000_with_a_slow_handler_delivers_every_document():
    """Every request of a 5000-deep window goes to one slow process at once: the parent
    must never block in a send while that process blocks sending replies."""
    done, failed, on_done, on_error = _collect()
    t0 = time.monotonic()
    with Flow(prefetch=N_DEEP).add(name='slow', uses=Sleepy, uses_with={'per_request': 0.0002}) as f:
        f.post('/', (Document(id=i) for i in _ids(N_DEEP)), request_size=1, on_done=on_done, on_error=on_error)
    print(f'\n[prefetch {N_DEEP}] {N_DEEP} requests in {time.monotonic() - t0:.2f} s')
    assert failed == []
    assert sorted(done) == sorted(_ids(N_DEEP))


def test_post_timeout_fires_with_a_5000_deep_window():
    done, failed, on_done, on_error = _collect()
    with Flow(prefetch=N_DEEP, timeout_close=0.3).add(name='slow', uses=Sleepy,
                                                       uses_with={'per_request': 0.002}) as f:
        t0 = time.monotonic()
        f.post('/', (Document(id=i) for i in _ids(N_DEEP)), request_size=1, on_done=on_done, on_error=on_error,
               timeout=0.5)
        took = time.monotonic() - t0
    assert took < 5, f'post(timeout=0.5) returned after {took:.1f} s'
    assert failed, 'a 10 s backlog cannot finish within the timeout'
    assert len(done) + sum(len(r.docs) for r in failed) == N_DEEP
    assert sorted(done + [d.id for r in failed for d in r.docs]) == sorted(_ids(N_DEEP))
    for resp in failed:
        assert isinstance(resp.status.error, RequestTimeoutError)
        assert resp.status.error.executor == 'slow'


CTRL_C_DEEP = '''
import glob, json, os, signal, sys, tempfile, time
import psutil
from runtime.transport.local.zygote import own_children
from runtime import Document, Executor, Flow, requests

class Slow(Executor):
    @requests
    def slow(self, docs, **kwargs):
        time.sleep(0.002)

    def close(self):
        open(os.environ['CLOSED_FLAG'], 'w').close()

seen, t = [], {}
def on_done(resp):
    seen.append(len(resp.docs))
    if len(seen) == 50:
        t['signal'] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

interrupted = False
try:
    with Flow(prefetch=5000, timeout_close=2).add(name='slow', uses=Slow, env={'CLOSED_FLAG': sys.argv[1]}) as f:
        f.post('/', (Document(id=str(i)) for i in range(10**6)), request_size=1, on_done=on_done)
except KeyboardInterrupt:
    interrupted = True
print(json.dumps({'interrupted': interrupted, 'done': len(seen), 'exit_s': time.monotonic() - t['signal'],
                  'children': [p.pid for p in own_children(recursive=True)],
                  'shm': glob.glob(f'/dev/shm/shmflow-{os.getpid()}-*'),
                  'ipc': glob.glob(os.path.join(tempfile.gettempdir(), f'shmflow-{os.getpid()}-*'))}))
'''


@pytest.fixture(scope='module')
def ctrl_c_deep(tmp_path_factory) -> dict:
    """One run of the script (both tests below read it): Ctrl-C lands 50 requests into a
    post whose 5000-deep window went to one slow process at once."""
    tmp_path = tmp_path_factory.mktemp('ctrl_c_deep')
    closed = tmp_path / 'closed'
    proc = _start_script(tmp_path, CTRL_C_DEEP, str(closed))
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        reap(proc)
    return {'rc': proc.returncode, 'out': out.decode(), 'err': err.decode(), 'closed': closed.exists()}


def test_ctrl_c_with_a_5000_deep_backlog_exits_cleanly(ctrl_c_deep):
    assert ctrl_c_deep['rc'] == 0, ctrl_c_deep['err']
    assert 'Traceback' not in ctrl_c_deep['err']
    report = json.loads(ctrl_c_deep['out'])
    print(f'\n[ctrl-c, 5000 deep] exit took {report["exit_s"]:.2f} s')
    assert report['interrupted'] is True and report['done'] >= 50
    assert report['children'] == [] and report['shm'] == [] and report['ipc'] == []


def test_ctrl_c_with_a_deep_backlog_runs_close_promptly(ctrl_c_deep):
    report = json.loads(ctrl_c_deep['out'])
    assert 'killing it' not in ctrl_c_deep['err']
    assert ctrl_c_deep['closed'], "the executor's close() did not run"
    assert report['exit_s'] < 1.5


# -- #4 a message ZeroMQ drops -----------------------------------------------------------------
class Capped(Executor):
    """Caps its own address space 100 MB above what it uses: a ~200 MB message cannot be
    allocated, so ZeroMQ drops it and the connection (the process stays alive)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        import resource
        cap = psutil.Process().memory_info().vms + (100 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    @requests
    def work(self, docs, **kwargs):
        for d in docs:
            d.tags['pid'] = os.getpid()


def _huge() -> Document:
    # Tags travel inside the request's pickle, so this is one ~200 MB ZeroMQ frame.
    return Document(id='huge', tags={'blob': 'x' * (200 << 20)})


def test_a_worker_that_lost_its_connection_is_ended_and_restarted():
    """The ~200 MB message is dropped with the connection (the process lives on). The next
    message to that process cannot be delivered: its request fails at once with a
    WorkerDiedError saying so, the process is ended and restarted, and serves again."""
    done, failed, on_done, on_error = _collect()
    with Flow(timeout_close=1).add(name='capped', uses=Capped, max_restarts=1) as f:
        first = f._rt.deployments[0].workers[0]
        t0 = time.monotonic()
        f.post('/', _huge(), on_done=on_done, on_error=on_error, timeout=10)
        assert done == [] and len(failed) == 1  # the message never arrived
        # The empty message the router sends a silent worker that holds requests finds
        # the lost connection long before the timeout: the request fails saying so.
        error = failed[0].status.error
        assert isinstance(error, WorkerDiedError) and 'lost its connection' in str(error), error
        assert "'capped'" in str(error) and time.monotonic() - t0 < 5
        assert not first.alive
        res = f.post('/', DocumentArray(Document(id=i) for i in _ids(3)), return_results=True)
        pids = {d.tags['pid'] for r in res for d in r.docs}
        assert len(pids) == 1 and first.pid not in pids
        assert sorted(d.id for r in res for d in r.docs) == _ids(3)


LOST_MESSAGE = '''
import json, os, sys, time
import psutil
from runtime.transport.local.zygote import own_children
from runtime import Document, Executor, Flow, WorkerDiedError, requests
''' + REPORT_FLOW + '''
import resource

class Capped(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        cap = psutil.Process().memory_info().vms + (100 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    @requests
    def work(self, docs, **kwargs):
        for d in docs:
            d.tags['pid'] = os.getpid()

with Flow(timeout_close=1).add(name='capped', uses=Capped, max_restarts=1) as f:
    report_flow(f)
    t0 = time.monotonic()
    try:  # no timeout: nothing but the Flow itself can end this post
        f.post('/', Document(id='huge', tags={'blob': 'x' * (200 << 20)}))
        outcome = 'success'
    except Exception as exc:
        outcome = f'{type(exc).__name__}: {exc}'
    took = time.monotonic() - t0
    res = f.post('/', Document(id='after'), return_results=True)
    print(json.dumps({'outcome': outcome, 'took': took, 'after': res[0].docs[0].tags['pid']}), flush=True)
'''


def test_a_dropped_message_fails_the_post_instead_of_hanging(tmp_path):
    proc = _start_script(tmp_path, LOST_MESSAGE)
    info: dict = {}
    try:
        lines = Lines(proc)
        info = json.loads(lines.readline())
        try:
            report = json.loads(lines.readline(timeout=4))
        except TimeoutError:
            proc.send_signal(signal.SIGTERM)  # the Flow closes on SIGTERM
            proc.wait(timeout=15)
            raise AssertionError('post() without timeout= still waits 4 s after its message was dropped')
        assert 'capped' in report['outcome'] and report['outcome'].startswith('WorkerDiedError')
        assert report['took'] < 5
        assert report['after'] not in info['pids']  # served by the restarted process
        assert proc.wait(timeout=15) == 0
    finally:
        reap(proc)
        if info:
            assert not _wait_exited(info['pids'], 5)
            leftovers = _leftovers(info['prefix'], info['ipc_dir'])
            _clean_child(info)
            assert leftovers == []


# -- #5 a hung handler -------------------------------------------------------------------------
def _hang() -> Document:
    return Document(id='hang', tags={'hang': True})


def test_a_hung_worker_is_ended_after_the_grace_and_restarted_when_restarts_are_left(caplog):
    """``timeout=0.3``: the hung request fails at 0.3 s; its worker is ended max(1 s, timeout)
    later and restarted; the requests that waited behind it are retried there, and the
    executor has its full capacity again."""
    with Flow(timeout_close=0.5).add(name='hangs', uses=Sleepy, max_restarts=1, max_retries=1) as f:
        hung = f._rt.deployments[0].workers[0]
        t0 = time.time()
        with pytest.raises(RequestTimeoutError, match="'hangs'"):
            f.post('/', _hang(), timeout=0.3)
        deadline = t0 + 0.3
        assert hung.alive
        with caplog.at_level(logging.WARNING, logger='runtime'):
            res = f.post('/', DocumentArray(Document(id=i) for i in _ids(3)), return_results=True, timeout=5)
        ended = [r for r in caplog.records if r.getMessage().startswith('ending ')]
        assert len(ended) == 1
        assert 1.0 - 0.05 <= ended[0].created - deadline <= 2.5, ended[0].created - deadline
        assert not hung.alive and not psutil.pid_exists(hung.pid)
        pids = {d.tags['pid'] for r in res for d in r.docs}
        assert len(pids) == 1 and hung.pid not in pids
        # Capacity is back: a post without a timeout is served at once.
        t1 = time.monotonic()
        again = f.post('/', DocumentArray(Document(id=i) for i in _ids(5)), request_size=1, return_results=True)
        assert len(again) == 5 and time.monotonic() - t1 < 2


def test_without_restarts_left_a_hung_worker_is_left_alone():
    """Documented: a hung worker whose executor has no restarts left keeps running (ending it
    would lose the executor for good); its later requests time out too, until close()."""
    with Flow(timeout_close=0.3).add(name='hangs', uses=Sleepy) as f:
        hung = f._rt.deployments[0].workers[0]
        with pytest.raises(RequestTimeoutError, match="'hangs'"):
            f.post('/', _hang(), timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(RequestTimeoutError, match="'hangs'"):
            f.post('/', Document(), timeout=1.5)
        assert time.monotonic() - t0 >= 1.5  # well past the 1 s grace
        assert hung.alive and psutil.pid_exists(hung.pid)


HUNG_THEN_UNTIMED = '''
import json, os, sys, time
import psutil
from runtime.transport.local.zygote import own_children
from runtime import Document, Executor, Flow, RequestTimeoutError, requests
''' + REPORT_FLOW + '''

class Hangs(Executor):
    @requests
    def work(self, docs, **kwargs):
        if any(d.tags.get('hang') for d in docs):
            time.sleep(60)
        for d in docs:
            d.tags['pid'] = os.getpid()

with Flow(timeout_close=0.5).add(name='hangs', uses=Hangs, max_restarts=1, max_retries=1) as f:
    report_flow(f)
    try:
        f.post('/', Document(tags={'hang': True}), timeout=0.3)
    except RequestTimeoutError:
        pass
    t0 = time.monotonic()
    res = f.post('/', Document(id='after'), return_results=True)  # no timeout
    print(json.dumps({'took': time.monotonic() - t0, 'pid': res[0].docs[0].tags['pid']}), flush=True)
'''


def test_a_hung_worker_is_ended_even_while_the_next_post_has_no_timeout(tmp_path):
    proc = _start_script(tmp_path, HUNG_THEN_UNTIMED)
    info: dict = {}
    try:
        lines = Lines(proc)
        info = json.loads(lines.readline())
        try:
            report = json.loads(lines.readline(timeout=5))
        except TimeoutError:
            proc.send_signal(signal.SIGTERM)  # the Flow closes on SIGTERM
            proc.wait(timeout=15)
            raise AssertionError('a post without timeout= still waits 5 s behind a hung worker')
        assert report['took'] < 3
        assert report['pid'] not in info['pids']  # served by the restarted process
        assert proc.wait(timeout=15) == 0
    finally:
        reap(proc)
        if info:
            assert not _wait_exited(info['pids'], 5)
            leftovers = _leftovers(info['prefix'], info['ipc_dir'])
            _clean_child(info)
            assert leftovers == []


def test_only_as_many_hung_replicas_are_ended_as_restarts_are_left():
    with Flow(timeout_close=0.3).add(name='hangs', uses=Sleepy, replicas=2, max_restarts=1) as f:
        hung = list(f._rt.deployments[0].workers)
        failed = []
        f.post('/', DocumentArray([_hang(), Document(id='hang2', tags={'hang': True})]), request_size=1,
               timeout=0.3, on_error=failed.append)
        assert len(failed) == 2
        # A post whose requests wait past the grace (the hung ones get them, as nothing else
        # is free): one of them is ended and restarted.
        f.post('/', DocumentArray(Document(id=i) for i in _ids(2)), request_size=1, timeout=2.5,
               on_error=failed.append)
        assert sum(w.alive for w in hung) == 1, 'a hung replica without a restart left was ended'
        assert sum(w.alive for w in f._rt.deployments[0].workers) == 2


# -- #6 stopped by a signal --------------------------------------------------------------------
SIGNALLED = '''
import json, os, signal, sys, time
import psutil
signal.signal(signal.SIGHUP, signal.SIG_DFL)  # (as from a terminal, even if the tests run under nohup)
from runtime.transport.local.zygote import own_children
from runtime import Document, Executor, Flow, requests
''' + REPORT_FLOW + '''

class Slow(Executor):
    @requests
    def slow(self, docs, **kwargs):
        if not getattr(self, 'said', False):
            self.said = True
            print('in handler', flush=True)
        time.sleep(0.01)

    def close(self):
        open(f'closed-{self.metas.name}', 'w').close()  # (in the script's cwd)

with Flow().add(name='first', uses=Slow).add(name='second', uses=Slow) as f:
    report_flow(f)
    f.post('/', (Document() for _ in range(10**6)), request_size=1)
'''


@pytest.mark.parametrize('target,signum', [
    pytest.param('group', signal.SIGTERM, id='SIGTERM-group'),  # timeout(1), a systemd stop
    pytest.param('group', signal.SIGHUP, id='SIGHUP-group'),  # a closed terminal
    pytest.param('parent', signal.SIGTERM, id='SIGTERM-parent'),
])
def test_a_stop_signal_mid_post_leaves_nothing_and_the_script_dies_of_it(tmp_path, target, signum):
    proc = _start_script(tmp_path, SIGNALLED)
    info: dict = {}
    try:
        lines = Lines(proc)
        info = json.loads(lines.readline())
        assert len(info['pids']) == 2
        assert lines.readline() == 'in handler'
        assert _leftovers(info['prefix'], info['ipc_dir'])  # the Flow's files exist now
        if target == 'group':
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        assert proc.wait(timeout=15) == -signum
        assert 'Traceback' not in proc.stderr.read().decode()
        # Stopped as on Ctrl-C, even where the signal reached the executors too: their
        # close() ran (an index saved there is whole).
        assert sorted(p.name for p in tmp_path.glob('closed-*')) == ['closed-first', 'closed-second']
        assert _wait_exited(info['pids'], 10) == []
        # Every process that could remove them has ended: they must be gone now.
        assert _leftovers(info['prefix'], info['ipc_dir']) == []
    finally:
        reap(proc)
        if info:
            _clean_child(info)


class Pid(Executor):
    @requests
    def pid(self, docs, **kwargs):
        for d in docs:
            d.tags['pid'] = os.getpid()


def _signal_leaves_it_serving(signum: int) -> None:
    """Send ``signum`` to a Flow's one executor alone: it must go on serving, the same
    process (its state whole)."""
    with Flow().add(name='alone', uses=Pid) as f:
        pid = int(f.post('/', Document(), return_results=True)[0].docs[0].tags['pid'])
        pidfd = os.pidfd_open(pid)  # (waits without reaping it: the Flow reaps its own)
        try:
            os.kill(pid, signum)
            assert not select.select([pidfd], [], [], 1.0)[0], f'it died of {signal.Signals(signum).name}'
        finally:
            os.close(pidfd)
        assert int(f.post('/', Document(), return_results=True)[0].docs[0].tags['pid']) == pid


def test_an_executor_signalled_alone_is_left_to_its_flow():
    # The Flow (which catches SIGTERM while it runs) decides when its executors stop.
    _signal_leaves_it_serving(signal.SIGTERM)


def test_an_executor_ignores_a_signal_its_parent_ignores():
    # Under nohup (or the program's own SIG_IGN) a closed terminal's SIGHUP leaves the Flow
    # running: its executors must not die of it either.
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        _signal_leaves_it_serving(signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, old)


# -- #7 threads --------------------------------------------------------------------------------
def test_two_threads_posting_on_one_flow_both_complete_one_after_the_other():
    got = {'a': [], 'b': []}
    times = {'a': [], 'b': []}
    errors = []
    with Flow().add(name='slow', uses=Sleepy, uses_with={'per_request': 0.001}) as f:
        barrier = threading.Barrier(2)

        def poster(tag):
            def on_done(resp):
                got[tag].extend(d.id for d in resp.docs)
                times[tag].append(time.monotonic())
            try:
                barrier.wait(timeout=10)
                f.post('/', (Document(id=i) for i in _ids(300, tag)), request_size=5, on_done=on_done)
            except BaseException as exc:
                errors.append(exc)
        threads = [threading.Thread(target=poster, args=(tag,)) for tag in 'ab']
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads), 'a post hangs'
    assert errors == []
    for tag in 'ab':
        assert sorted(got[tag]) == sorted(_ids(300, tag))
    first, second = sorted('ab', key=lambda tag: times[tag][0])
    assert max(times[first]) < min(times[second]), 'the two posts ran interleaved'


# -- #9 bad Flow / add arguments ---------------------------------------------------------------
@pytest.mark.parametrize('kwargs,match', [
    ({'timeout_close': 'x'}, r"timeout_close .*seconds.*'x'"),
    ({'timeout_close': -1}, r'timeout_close .*>= 0'),
    ({'workspace': 123}, r'workspace .*folder path.*123'),
])
def test_bad_flow_arguments_are_refused_at_construction(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        Flow(**kwargs)


def test_an_unpicklable_uses_with_is_refused_naming_the_executor():
    with pytest.raises(Exception) as info:
        with Flow().add(name='locked', uses=TakesAnything, uses_with={'lock': threading.Lock()}):
            pass
    assert 'locked' in str(info.value) and 'uses_with' in str(info.value)


# -- #10 peers on the Flow's socket ------------------------------------------------------------
def test_a_worker_identity_is_unguessable_and_nothing_public_reveals_it_or_its_secret():
    """What another process can see (command lines, environments, file names under /dev/shm
    and the socket directory) reveals neither a worker's identity nor its secret; the
    socket directory is 0700 and the shared-memory files 0600."""
    with Flow().add(name='a', uses=Sleepy, replicas=2) as f:
        transport = f._rt.transport
        assert stat.S_IMODE(os.stat(transport._ipc_dir).st_mode) == 0o700
        shm = glob.glob(f'/dev/shm/{transport.prefix}*')
        names = os.listdir(transport._ipc_dir) + [os.path.basename(p) for p in shm]
        for path in shm:
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
        for w in f._rt.deployments[0].workers:
            assert re.fullmatch(rb'w0s0r\dg0-[0-9a-f]{16}', w.identity), w.identity
            assert len(w.secret) >= 32
            random_part = w.identity.decode().split('-')[1]
            proc = psutil.Process(w.pid)
            visible = ' '.join(proc.cmdline() + list(proc.environ().values()) + names)
            assert w.secret not in visible and random_part not in visible


def _stray(endpoint: str, identity: bytes | None) -> tuple:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    sock.connect(endpoint)
    return ctx, sock


def test_a_stray_peer_sending_garbage_cannot_break_the_flow_or_take_a_restart(caplog):
    """Strays on the Flow's socket: one with no identity sending garbage, one claiming the
    name of the next restart with a HELLO without its secret. They are logged and ignored;
    posts keep working, and the worker, once killed, is restarted and serves again."""
    strays = []
    with Flow(timeout_close=1).add(name='a', uses=Sleepy, max_restarts=1, max_retries=1) as f:
        transport = f._rt.transport
        endpoint = f'ipc://{transport._ipc_dir}/router'
        first = f._rt.deployments[0].workers[0]
        try:
            strays.append(_stray(endpoint, None))
            strays.append(_stray(endpoint, first.identity.split(b'-')[0][:-1] + b'1'))  # 'w0s0r0g1'
            strays[0][1].send_multipart([b'garbage', os.urandom(64)])
            strays[1][1].send_multipart(P.pack_hello(os.getpid(), 'a guess'))
            deadline = time.monotonic() + 10
            with caplog.at_level(logging.WARNING, logger='runtime'):
                # Posts keep working while the strays' messages arrive (asynchronously).
                while caplog.text.count('unknown peer') < 2 and time.monotonic() < deadline:
                    res = f.post('/', Document(id='x'), return_results=True)
                    assert res[0].docs[0].tags['pid'] == first.pid
            assert caplog.text.count('unknown peer') >= 2, caplog.text
            # The worker dies: its restart is not confused by the stray claiming its name.
            os.kill(first.pid, signal.SIGKILL)
            res = f.post('/', DocumentArray(Document(id=i) for i in _ids(4)), return_results=True)
            pids = {d.tags['pid'] for r in res for d in r.docs}
            assert len(pids) == 1 and first.pid not in pids
            restarted = f._rt.deployments[0].workers[-1]
            assert restarted.greeted and restarted.pid in pids
        finally:
            for ctx, sock in strays:
                sock.close(linger=0)
                ctx.term()


def test_a_peer_using_a_dead_workers_identity_is_ignored(caplog):
    with Flow().add(name='a', uses=Sleepy, max_restarts=1, max_retries=1) as f:
        dead = f._rt.deployments[0].workers[0]
        os.kill(dead.pid, signal.SIGKILL)
        f.post('/', Document())  # retried on the restarted process
        assert not dead.alive
        ctx, sock = _stray(f'ipc://{f._rt.transport._ipc_dir}/router', dead.identity)
        try:
            sock.send_multipart([b'garbage'])
            # Once the Flow has read it, it says so in a log record with 'ignored' in it (at
            # any level: a dead worker's late messages are routine).
            ignored = lambda: any('ignored' in r.getMessage() for r in caplog.records)  # noqa: E731
            deadline = time.monotonic() + 5
            with caplog.at_level(logging.DEBUG, logger='runtime'):
                while not ignored() and time.monotonic() < deadline:
                    res = f.post('/', Document(id='x'), return_results=True)
                    assert res[0].docs[0].tags['pid'] != dead.pid
            assert ignored()
        finally:
            sock.close(linger=0)
            ctx.term()


# -- start-up and restart deadlines; requests after a hung handler ------------------------------
class HangsInInit(Executor):
    """Sleeps in ``__init__`` (as a lost GPU or a held lock would); ``mark``: only from its
    second start on (its first start made the file)."""

    def __init__(self, mark: str = '', **kwargs):
        super().__init__(**kwargs)
        if not mark or os.path.exists(mark):
            time.sleep(60)
        open(mark, 'w').close()

    @requests
    def work(self, docs, **kwargs):
        if any(d.tags.get('die') for d in docs):
            os._exit(1)


def test_each_executor_is_held_to_its_own_timeout_ready_and_the_late_one_is_named():
    """'patient' (timeout_ready=20, added first) and 'late' (timeout_ready=1) both hang in
    __init__: the start fails after about 1 s naming 'late', not after the larger limit
    naming whichever executor comes first."""
    from runtime import ExecutorStartError
    t0 = time.monotonic()
    with pytest.raises(ExecutorStartError, match=r"'late'.*timeout_ready=1 s"):
        with (Flow(timeout_close=0.3).add(name='patient', uses=HangsInInit, timeout_ready=20)
              .add(name='late', uses=HangsInInit, timeout_ready=1)):
            pass
    assert time.monotonic() - t0 < 1 + 0.3 + 2.5  # its timeout_ready + timeout_close + slack


def test_a_restart_that_hangs_in_init_is_ended_after_timeout_ready_and_fails_the_request(tmp_path):
    """The instance dies on a request; its restart hangs in __init__. After timeout_ready the
    restart is ended, and the request (retried, waiting for it) fails naming the executor,
    instead of the post waiting forever; the executor is dead for later posts."""
    mark = str(tmp_path / 'started')
    with Flow(timeout_close=0.3).add(name='fragile', uses=HangsInInit, uses_with={'mark': mark}, max_restarts=1,
                                     max_retries=1, timeout_ready=1) as f:
        t0 = time.monotonic()
        # (timeout=8 only bounds the test when the restart is not ended)
        with pytest.raises(WorkerDiedError, match=r"'fragile'.*timeout_ready=1 s"):
            f.post('/', Document(tags={'die': True}), timeout=8)
        assert time.monotonic() - t0 < 1 + 2.5
        restart = f._rt.deployments[0].workers[-1]
        assert not restart.alive and not psutil.pid_exists(restart.pid)
        with pytest.raises(WorkerDiedError, match="'fragile'"):
            f.post('/', Document())


def test_a_post_right_after_a_hung_one_is_served_by_the_restart_not_failed_with_the_hung_process():
    """One instance, max_restarts=1 and no retries: a request hangs past post(timeout=1).
    The next post, sent at once (within the grace before the Flow ends the hung process),
    must not go to that process and die with it: it waits for the restarted instance and
    is served there; so is the one after."""
    with Flow(timeout_close=0.3).add(name='hangs', uses=Sleepy, max_restarts=1) as f:
        hung = f._rt.deployments[0].workers[0]
        with pytest.raises(RequestTimeoutError, match="'hangs'"):
            f.post('/', _hang(), timeout=1)
        t0 = time.monotonic()
        res = f.post('/', Document(id='next'), timeout=20, return_results=True)
        assert time.monotonic() - t0 < 1 + 3  # the grace, then a restart
        assert res[0].docs[0].tags['pid'] != hung.pid and not hung.alive
        again = f.post('/', Document(id='after'), timeout=20, return_results=True)
        assert again[0].docs[0].tags['pid'] == res[0].docs[0].tags['pid']
