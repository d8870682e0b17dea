"""Executor processes forked by the zygote (``runtime/transport/local/zygote.py``) behave as
ones started with ``subprocess``: the parent's children, its environment and directory at
that moment plus ``env=``, deaths named by their signal, nothing left when the parent dies;
``SHMFLOW_ZYGOTE=0`` starts them with ``subprocess``."""
from __future__ import annotations

import ctypes
import glob
import json
import os
import select
import signal
import subprocess
import sys
import time

import psutil
import pytest

from runtime import Document, DocumentArray, Executor, Flow, requests
from runtime.errors import WorkerDiedError
from runtime.transport.local import zygote

from childio import Lines, reap, script_env


@pytest.fixture(autouse=True)
def with_zygote(monkeypatch):
    monkeypatch.setenv('SHMFLOW_ZYGOTE', '1')  # conftest.py turns it off for the other tests
    yield
    zygote.shutdown()  # tests that count this process's children may run next
    assert zygote.zygote_pid() is None


class Where(Executor):
    """Reports what its process inherited."""

    @requests
    def where(self, docs, **kwargs):
        umask = os.umask(0)
        os.umask(umask)
        return {'pid': os.getpid(), 'ppid': os.getppid(), 'cwd': os.getcwd(), 'umask': umask,
                'foo': os.environ.get('ZYG_FOO'), 'bar': os.environ.get('ZYG_BAR'),
                'argv0': sys.argv[0], 'cmdline': ' '.join(psutil.Process().cmdline())}


class Dies(Executor):
    @requests
    def die(self, docs, parameters, **kwargs):
        if parameters.get('how') == 'segv':
            ctypes.string_at(0)  # reads address 0: SIGSEGV
        os.kill(os.getpid(), signal.SIGKILL)


class Talks(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        print('hello from __init__', flush=True)
        print('to stderr', file=sys.stderr, flush=True)


def _reports(f: Flow, executors: list[str]) -> dict:
    out = {}
    for name in executors:
        (resp,) = f.post('/', Document(), target_executor=name, return_results=True)
        out[name] = resp.parameters['__results__'][name]
    return out


def test_workers_are_forked_by_the_zygote_as_children_of_the_parent():
    f = Flow().add(name='a', uses=Where).add(name='b', uses=Where).add(name='c', uses=Where)
    with f:
        got = _reports(f, ['a', 'b', 'c'])
        zyg = zygote.zygote_pid()
        assert zyg is not None
        kids = {p.pid for p in psutil.Process().children()}
        assert {r['pid'] for r in got.values()} | {zyg} == kids
        for r in got.values():
            assert r['ppid'] == os.getpid()  # what the worker watches to notice the parent's death
            assert 'runtime.transport.local.zygote' in r['cmdline']  # forked, not started anew
        # a Flow opened while another is open shares its zygote
        with Flow().add(name='d', uses=Where) as inner:
            assert _reports(inner, ['d'])['d']['ppid'] == os.getpid()
            assert zygote.zygote_pid() == zyg
        assert zygote.zygote_pid() == zyg  # the outer Flow is still open
    # with the last Flow closed, no process is left: not the zygote either
    assert zygote.zygote_pid() is None and not psutil.pid_exists(zyg)
    assert psutil.Process().children() == []


def test_each_worker_gets_its_env_and_the_parents_directory_and_umask_at_start(tmp_path, monkeypatch):
    with Flow().add(name='warm', uses=Where) as f:  # the zygote runs from here on
        _reports(f, ['warm'])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('ZYG_BAR', 'set after the zygote started')
    old = os.umask(0o027)
    try:
        f = (Flow().add(name='one', uses=Where, env={'ZYG_FOO': 'one'})
             .add(name='two', uses=Where, env={'ZYG_FOO': 'two'}).add(name='none', uses=Where))
        with f:
            got = _reports(f, ['one', 'two', 'none'])
    finally:
        os.umask(old)
    assert [got[n]['foo'] for n in ('one', 'two', 'none')] == ['one', 'two', None]
    for r in got.values():
        assert r['bar'] == 'set after the zygote started'
        assert r['cwd'] == str(tmp_path)
        assert r['umask'] == 0o027
        assert r['ppid'] == os.getpid()


def test_an_env_read_at_import_time_starts_that_executor_with_subprocess():
    with Flow().add(name='forked', uses=Where).add(name='fresh', uses=Where, env={'OMP_NUM_THREADS': '1'}) as f:
        got = _reports(f, ['forked', 'fresh'])
    assert 'runtime.transport.local.zygote' in got['forked']['cmdline']
    assert 'runtime.transport.local.worker' in got['fresh']['cmdline']


def test_output_goes_where_the_parent_sends_it_now(capfd):
    with Flow().add(name='warm', uses=Where):
        pass
    capfd.readouterr()
    with Flow().add(name='talks', uses=Talks):
        pass
    out, err = capfd.readouterr()
    assert 'hello from __init__' in out
    assert 'to stderr' in err


@pytest.mark.parametrize('how,signame', [('kill', 'SIGKILL'), ('segv', 'SIGSEGV')])
def test_a_forked_worker_killed_by_a_signal_is_reported_with_it(how, signame):
    with Flow().add(name='dies', uses=Dies) as f:
        with pytest.raises(WorkerDiedError, match=f"'dies'.*signal {signame}") as info:
            f.post('/', Document(), parameters={'how': how})
    assert info.value.returncode == -getattr(signal, signame)


def test_without_the_zygote_workers_are_started_with_subprocess(monkeypatch):
    monkeypatch.setenv('SHMFLOW_ZYGOTE', '0')
    zyg = zygote.zygote_pid()
    with Flow().add(name='a', uses=Where, env={'ZYG_FOO': 'x'}).add(name='b', uses=Where) as f:
        got = _reports(f, ['a', 'b'])
        (resp,) = f.post('/', DocumentArray([Document()]), return_results=True)
    assert len(resp.docs) == 1
    assert zygote.zygote_pid() == zyg  # none started (one from an earlier test may run)
    for r in got.values():
        assert 'runtime.transport.local.worker' in r['cmdline']
        assert r['ppid'] == os.getpid()
    assert got['a']['foo'] == 'x' and got['b']['foo'] is None


PARENT_SCRIPT = '''
import json, sys, time
import psutil
from runtime import Document, Executor, Flow, requests
from runtime.transport.local.zygote import zygote_pid

class Slow(Executor):
    @requests
    def slow(self, docs, parameters, **kwargs):
        if not getattr(self, 'said', False):
            self.said = True
            print('in handler', flush=True)
        time.sleep(parameters['sleep'])

f = Flow().add(name='first', uses=Slow).add(name='second', uses=Slow)
with f:
    print(json.dumps({'pids': [p.pid for p in psutil.Process().children()], 'zygote': zygote_pid(),
                      'prefix': f._rt.transport.prefix, 'ipc_dir': f._rt.transport._ipc_dir}), flush=True)
    if sys.argv[1] == 'exit':
        sys.exit(0)
    if sys.argv[1] == 'workers-first':  # the workers die first: nobody left but the zygote to clean up
        import os, signal
        for pid in [p.pid for p in psutil.Process().children() if p.pid != zygote_pid()]:
            os.kill(pid, signal.SIGKILL)
        print('killed', flush=True)
        time.sleep(60)
    f.post('/', (Document() for _ in range(10**6)), request_size=1, parameters={'sleep': float(sys.argv[1])})
'''


@pytest.mark.parametrize('how', ['sigkill', 'exit', 'workers-first'])
def test_the_parent_gone_leaves_no_zygote_worker_or_file(tmp_path, how):
    script = tmp_path / 'parent.py'
    script.write_text(PARENT_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), {'sigkill': '0.02'}.get(how, how)],
                            stdout=subprocess.PIPE, env=script_env(), cwd=str(tmp_path))
    procs, pidfds, info = [], {}, {}
    try:
        lines = Lines(proc)
        info = json.loads(lines.readline())
        assert info['zygote'] in info['pids'] and len(info['pids']) == 3  # two workers and the zygote
        procs = [psutil.Process(pid) for pid in info['pids']]
        pidfds = {os.pidfd_open(pid): pid for pid in info['pids']}
        if how in ('sigkill', 'workers-first'):
            assert lines.readline() == ('in handler' if how == 'sigkill' else 'killed')
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        else:
            assert proc.wait(timeout=10) == 0
        t0 = time.monotonic()
        waiting = dict(pidfds)
        while waiting and time.monotonic() - t0 < 5:
            ready, _, _ = select.select(list(waiting), [], [], max(0.0, 5 - (time.monotonic() - t0)))
            for fd in ready:
                waiting.pop(fd)
        assert not waiting, f'still running 5 s after the parent ended: {list(waiting.values())}'
        deadline = time.monotonic() + 5
        while (glob.glob(f'/dev/shm/{info["prefix"]}*') or os.path.exists(info['ipc_dir'])) \
                and time.monotonic() < deadline:
            select.select([], [], [], 0.05)  # the last worker out removes them
        assert not glob.glob(f'/dev/shm/{info["prefix"]}*') and not os.path.exists(info['ipc_dir'])
    finally:
        for fd in pidfds:
            os.close(fd)
        for p in procs:  # not our children: end them by pid
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        reap(proc)
        if info:
            for path in glob.glob(f'/dev/shm/{info["prefix"]}*'):
                os.unlink(path)


def test_a_worker_started_after_its_flow_gave_up_on_it_leaves_the_flows_files_alone(tmp_path):
    # A fork the Flow stopped waiting for (its fork server answered too late) runs under
    # another parent while the Flow lives on: it must not take the Flow for dead and remove
    # the Flow's files, as a worker whose parent died does.
    prefix = f'shmflow-stray{os.getpid()}'
    flow_file = f'/dev/shm/{prefix}-parent'
    ipc_dir = tmp_path / 'ipc'
    ipc_dir.mkdir()
    with open(flow_file, 'wb'):
        pass
    try:
        # The child is told its Flow is this process's parent: alive, and not its parent.
        flow_pid = os.getppid()
        code = ('import sys; from runtime.transport.local import worker; '
                f'sys.exit(worker.main(["ipc://{ipc_dir}/s", "{prefix}", "{flow_pid}", "1048576"], ("w0-ab", "cd")))')
        proc = subprocess.run([sys.executable, '-c', code], env=script_env(), capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 1, proc.stderr
        assert 'gave up on it' in proc.stderr
        assert os.path.exists(flow_file) and ipc_dir.exists()
        assert glob.glob(f'/dev/shm/{prefix}*') == [flow_file]  # it made no arena of its own either
    finally:
        os.unlink(flow_file)


def test_every_executor_process_is_named_after_its_executor():
    # A forked worker's command line is the fork server's: its process name (top, ps -o
    # comm) says which executor it runs.
    from runtime.transport.local.zygote import own_children
    with Flow().add(name='encoder', uses=Executor).add(name='a_very_long_indexer_name', uses=Executor) as f:
        names = sorted(open(f'/proc/{p.pid}/comm').read().strip() for p in own_children())
    assert names == ['a_very_long_ind', 'encoder']
