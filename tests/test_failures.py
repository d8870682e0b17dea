"""A dead executor process fails its requests; nothing hangs and nothing is left behind."""
from __future__ import annotations

import glob
import os
import pickle
import select
import signal
import threading
import time

import numpy as np
import pytest

from runtime import Document, DocumentArray, Executor, ExecutorError, Flow, WorkerDiedError, requests


class Dies(Executor):
    @requests(on='/exit')
    def exit(self, docs, parameters, **kwargs):
        os._exit(parameters.get('code', 3))

    @requests(on='/kill')
    def kill(self, docs, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    @requests
    def fine(self, docs, **kwargs):
        pass


def test_process_exit_fails_its_requests_with_the_exit_code():
    errors, always = [], []
    with Flow().add(name='fragile', uses=Dies) as f:
        f.post('/exit', DocumentArray(Document() for _ in range(3)), on_error=errors.append,
               on_always=always.append, parameters={'code': 7})
        assert len(errors) == 1 and always == errors
        err = errors[0].status.error
        assert isinstance(err, WorkerDiedError)
        assert "'fragile'" in str(err) and 'exit code 7' in str(err) and 'replica 0' in str(err)
        assert errors[0].status.exception.executor == 'fragile'
        assert len(errors[0].docs) == 3  # the documents it held come back with the error
        # the executor is gone: later posts fail at once instead of hanging
        with pytest.raises(WorkerDiedError, match='fragile'):
            f.post('/', Document())


def test_sigkill_without_on_error_raises_naming_the_signal():
    with Flow().add(uses=Dies) as f:
        with pytest.raises(WorkerDiedError, match=r'SIGKILL.*out-of-memory'):
            f.post('/kill', Document())


class WritesThenCrashesOnce(Executor):
    """Writes a new embedding matrix into its arena for every request; the first time it
    sees a document tagged 'crash' (a marker file remembers it across restarts) it dies."""

    def __init__(self, markers: str = '', **kwargs):
        super().__init__(**kwargs)
        self.markers = markers

    @requests
    def write(self, docs, **kwargs):
        for d in docs:
            marker = os.path.join(self.markers, d.id)
            if d.tags.get('crash') and not os.path.exists(marker):
                open(marker, 'w').close()
                os._exit(9)
        docs.embeddings = docs.embeddings + 1


class SlowSum(Executor):
    @requests
    def total(self, docs, **kwargs):
        time.sleep(0.002)  # the requests the first executor answered queue up here
        return {'sums': [float(e.sum()) for e in docs.embeddings]}


def _shm_files(prefix: str) -> set:
    return {os.path.basename(p) for p in glob.glob(f'/dev/shm/{glob.escape(prefix)}-*')}


def test_a_crashed_executors_shared_memory_goes_once_nothing_reads_it_and_its_outputs_arrive(tmp_path):
    # Three crashes, each restarted: the dead processes' arenas must not pile up while the
    # Flow lives, but requests that still carry what a dead process wrote (queued at the
    # next executor) must read it intact first.
    docs = [Document(id=str(i), embedding=np.full(256, i, np.float32), tags={'crash': i in (10, 25, 40)})
            for i in range(60)]
    sums = {}
    with Flow().add(name='writer', uses=WritesThenCrashesOnce, uses_with={'markers': str(tmp_path)},
                    max_restarts=3, max_retries=3).add(name='summer', uses=SlowSum) as f:
        # (max_retries=3: a request in flight at one crash may be in flight at the next too)
        f.post('/', docs, request_size=1,
               on_done=lambda r: sums.update(zip((d.id for d in r.docs),
                                                 r.parameters['__results__']['summer']['sums'])))
        assert sums == {str(i): 256.0 * (i + 1) for i in range(60)}
        transport = f._rt.transport
        live = {transport._arena.name, *(w.arena for w in transport._workers.values())}
        deadline = time.monotonic() + 10
        while _shm_files(transport.prefix) - live and time.monotonic() < deadline:
            f._rt.pump(0.05)
        assert _shm_files(transport.prefix) == live  # the three dead arenas are gone
        # ... and no process maps them any more (their memory is given back)
        # (the writer's arenas are named by generation: g0..g2 died, g3 runs)
        dead = {f'{transport.prefix}-w0s0r0g{g}' for g in range(3)}
        pids = [os.getpid(), *(w.pid for w in transport._workers.values())]
        assert f'{transport.prefix}-w0s0r0g3' in live and not dead & live
        while _mapping(pids, dead) and time.monotonic() < deadline:
            f._rt.pump(0.05)
        assert not _mapping(pids, dead)
        assert len(f.post('/', docs[:5], request_size=1, return_results=True)) == 5  # and nothing missed them


class DiesOnCue(Executor):
    @requests
    def go(self, docs, **kwargs):
        if docs[0].text == 'die':
            os._exit(3)
        for d in docs:
            d.tags['pid'] = os.getpid()


def test_restarts_keep_one_instance_per_replica_and_the_last_death_fails_the_executor():
    # Each restart replaces its dead instance: a Flow restarting an executor all day must not
    # keep (and scan, at every request) every instance that ever died. Once the restarts are
    # used up, the last death is what posts fail with.
    with Flow().add(name='flaky', uses=DiesOnCue, replicas=2, max_restarts=6) as f:
        dep = f._rt.deployments[0]
        pids = set()
        for _ in range(6):
            with pytest.raises(WorkerDiedError):
                f.post('/', Document(text='die'))
            # (the restarted instance gets requests once it is ready: until then the other
            # one answers them all)
            deadline = time.monotonic() + 30
            while not all(w.ready for w in dep.workers) and time.monotonic() < deadline:
                f._rt.pump(0.05)
            pids |= {r.docs[0].tags['pid'] for r in f.post('/', [Document()] * 4, request_size=1, return_results=True)}
            assert len(dep.workers) == 2 and [len(s) for s in dep.by_shard] == [2]
        assert len(pids) >= 6  # the answers came from the restarted instances
        for _ in range(2):  # no restart left: both replicas die for good
            with pytest.raises(WorkerDiedError):
                f.post('/', Document(text='die'))
        with pytest.raises(WorkerDiedError, match="executor 'flaky'"):
            f.post('/', Document())
        assert not any(w.alive for w in dep.workers) and len(dep.workers) == 2


def test_the_death_of_a_shard_names_the_shard():
    with Flow().add(name='sharded', uses=DiesOnCue, shards=2) as f:  # (polling 'any': one shard gets it)
        with pytest.raises(WorkerDiedError, match=r"executor 'sharded' \(replica 0, shard [01], pid \d+\)") as info:
            f.post('/', Document(text='die'))
    assert info.value.shard in (0, 1)
    assert pickle.loads(pickle.dumps(info.value)).shard == info.value.shard  # (it crosses processes)


class ExitsThreeAfterReplying(Executor):
    @requests
    def go(self, docs, **kwargs):
        threading.Timer(0.05, os._exit, (3,)).start()  # (3: the exit code a failed close() uses)


def test_a_process_that_died_before_close_is_reported_as_died_not_as_a_close_that_raised():
    # Its exit code said "my close() raised" and the close waited 2 s for the error, then
    # reported "its close() raised (the details were lost)"; it had died before being told to stop.
    f = Flow().add(name='quits', uses=ExitsThreeAfterReplying)
    with pytest.raises(ExecutorError, match=r"exit code 3.*died before the Flow closed, so its close\(\) did not run"):
        with f:
            f.post('/', Document())
            fd = os.pidfd_open(f._rt.deployments[0].workers[0].pid)
            try:
                assert select.select([fd], [], [], 10)[0]  # gone (not reaped: the Flow does that)
            finally:
                os.close(fd)
            t0 = time.monotonic()
    assert time.monotonic() - t0 < 1.5  # no wait for an error it never sent


def _mapping(pids: list, names: set) -> list:
    """(pid, name) for each of ``names`` that one of ``pids`` still maps."""
    out = []
    for pid in pids:
        with open(f'/proc/{pid}/maps') as fp:
            maps = fp.read()
        out += [(pid, n) for n in names if f'/{n} ' in maps or maps.count(f'/{n}\n')]
    return out


class CloseFails(Executor):
    """An indexer whose close() cannot save (its disk is full, say)."""

    def close(self):
        raise OSError('no space left to save the index')

    @requests
    def index(self, docs, **kwargs):
        pass


def test_an_executors_close_that_raises_fails_the_flows_close_naming_it(caplog):
    from runtime import ExecutorError
    from runtime.errors import RemoteTraceback

    f = Flow().add(uses=CloseFails, name='saver').add(uses=CloseFails, name='other', replicas=2)
    with pytest.raises(ExecutorError) as info:
        with f:
            f.post('/', Document())
    assert info.value.executor == 'saver' and info.value.exc_type == 'OSError'
    assert 'no space left to save the index (in close())' in str(info.value)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "raise OSError('no space left" in str(info.value.__cause__)  # the remote traceback
    # the others are told too; everything is stopped and removed all the same
    assert sum("executor 'other' raised OSError" in r.getMessage() for r in caplog.records) == 2
    assert f._rt is None
    # an error already leaving the block goes on; the close error is logged
    caplog.clear()
    with pytest.raises(ZeroDivisionError):
        with Flow().add(uses=CloseFails, name='saver'):
            1 / 0
    assert any(r.exc_info and getattr(r.exc_info[1], 'executor', None) == 'saver' for r in caplog.records)


# -- a process that dies while the Flow is idle --------------------------------------------------
class Echo(Executor):
    @requests
    def echo(self, docs, **kwargs):
        for d in docs:
            d.tags['pid'] = os.getpid()


def _kill_one_and_wait(f):
    import select
    pid = f._rt.deployments[0].workers[0].pid
    fd = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer does, between posts
        assert select.select([fd], [], [], 10)[0]  # all of it gone (not reaped: the Flow does that)
    finally:
        os.close(fd)
    return pid


@pytest.mark.parametrize('kwargs', [{'max_restarts': 1}, {'replicas': 2}], ids=['restart', 'replica'])
def test_a_process_killed_while_idle_costs_the_next_post_nothing(kwargs):
    with Flow().add(uses=Echo, **kwargs) as f:
        f.post('/', DocumentArray(Document() for _ in range(4)), request_size=1)
        dead = _kill_one_and_wait(f)
        done, failed = [], []
        f.post('/', DocumentArray(Document() for _ in range(8)), request_size=1,
               on_done=done.append, on_error=failed.append)
    assert len(done) == 8 and not failed  # sent to the live replica, or to the restart
    assert dead not in {d.tags['pid'] for r in done for d in r.docs}


def test_restarts_after_crashes_do_not_leak_descriptors():
    def fds():
        return len(os.listdir('/proc/self/fd'))
    with Flow().add(uses=Dies, max_restarts=100) as f:
        with pytest.raises(WorkerDiedError):
            f.post('/exit', Document())
        before = fds()
        for _ in range(20):
            with pytest.raises(WorkerDiedError):
                f.post('/exit', Document())
        assert fds() - before < 3


class CrashesWhileSaving(Executor):
    @requests
    def noop(self, docs, **kwargs):
        pass

    def close(self):
        import ctypes
        ctypes.string_at(0)  # a native index writer that crashes while saving


def test_a_process_that_crashes_in_close_fails_the_flows_close_as_loudly_as_a_raise():
    with pytest.raises(ExecutorError, match=r"'saver'.*SIGSEGV.*its close\(\) did not run to its end"):
        with Flow().add(name='saver', uses=CrashesWhileSaving) as f:
            f.post('/', Document())


class TagsItsName(Executor):
    @requests
    def tag(self, docs, **kwargs):
        for d in docs:
            d.tags[self.metas.name] = 1


class Stalls(Executor):
    @requests
    def stall(self, docs, parameters, **kwargs):
        time.sleep(parameters.get('stall', 0))


def test_a_request_timing_out_in_one_branch_fails_with_the_documents_that_entered_it():
    failed = []
    f = (Flow().add(name='a', uses=TagsItsName).add(name='fast', uses=TagsItsName, needs='a')
         .add(name='slow', uses=Stalls, needs='a').add(name='join', needs=['fast', 'slow']))
    with f:
        f.post('/', Document(id='x'), timeout=0.5, parameters={'stall': 1.0}, on_error=failed.append)
    (r,) = failed
    assert 'slow' in r.status.description and r.docs[0].tags == {'a': 1}  # not the fast branch's output
