"""Profiling runs: route timings, the summary, and the Chrome trace."""
from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import pytest

from runtime import Document, DocumentArray, Executor, Flow, requests


#: Wide enough that even 3 documents' embeddings go through shared memory (a matrix of a
#: few KB rides inline in the message, and moves no shared-memory bytes).
DIM = 2048


class Busy(Executor):
    @requests
    def work(self, docs, parameters, **kwargs):
        time.sleep(parameters.get('sleep', 0.01))
        docs.embeddings = np.ones((len(docs), DIM), np.float32) * self.runtime_args.replica_id


class Reader(Executor):
    @requests
    def read(self, docs, **kwargs):
        docs.embeddings.shape


def _docs(n):
    return DocumentArray(Document(id=str(i)) for i in range(n))


def test_routes_carry_every_hop_in_time_order():
    with Flow().add(name='busy', uses=Busy, replicas=2).add(name='reader', uses=Reader) as f:
        res = f.post('/', _docs(20), request_size=5, return_results=True, parameters={'sleep': 0.02})
    pids = set()
    for r in res:
        assert [h['executor'] for h in r.routes] == ['busy', 'reader']
        for h in r.routes:
            assert h['ready'] <= h['dispatched'] <= h['received'] <= h['start'] <= h['end'] <= h['sent']
            assert h['sent'] <= h['returned']
            pids.add((h['executor'], h['pid'], h['replica'], h['shard']))
        busy = r.routes[0]
        assert busy['end'] - busy['start'] >= 0.02  # the handler's own time, measured in its process
        assert busy['shm_bytes'] == 5 * DIM * 4  # the embeddings it wrote
        assert r.routes[1]['shm_bytes'] == 0  # only read them: nothing new in shared memory
        assert r.routes[0]['returned'] <= r.routes[1]['ready']
    assert len({p for p in pids if p[0] == 'busy'}) == 2  # both replicas appear


def test_summary_counts_add_up_and_handler_time_lies_within_the_routes(caplog):
    caplog.set_level(logging.INFO, logger='runtime')
    with Flow(profile=True).add(name='busy', uses=Busy, replicas=2).add(name='reader', uses=Reader) as f:
        res = f.post('/', _docs(40), request_size=4, parameters={'sleep': 0.01}, return_results=True)
        f.post('/', _docs(6), request_size=3)
        whole, last = f.profile_summary(), f.profile_summary(last_post=True)
    assert whole.requests == 12 and whole.docs == 46 and whole.failed == 0
    assert last.requests == 2 and last.docs == 6
    busy = whole.executor('busy')
    assert busy.requests == 12 and busy.docs == 46
    per_process = [e for e in whole.executors if e.executor == 'busy' and e.process]
    assert len(per_process) == 2 and sum(e.requests for e in per_process) == 12
    handler = sorted(1e3 * (h['end'] - h['start']) for r in res for h in r.routes if h['executor'] == 'busy')
    assert handler[-1] <= busy.handler_ms['max'] + 1e-6
    assert 10.0 <= busy.handler_ms['p50'] <= max(handler)
    assert 0 < busy.busy_pct <= 100 and whole.executor('reader').busy_pct < busy.busy_pct
    assert busy.shm_bytes == 46 * DIM * 4
    assert whole.latency_ms['p50'] <= whole.latency_ms['p95'] <= whole.latency_ms['p99']
    assert whole.docs_per_s > 0 and whole.wall_s > 0
    table = str(whole)
    assert 'busy' in table and 'replica 1' in table and 'docs/s' in table
    assert whole.to_dict()['executors'][0]['executor'] == 'busy'
    # each post and the whole run are logged
    assert sum('profile of post' in r.message for r in caplog.records) == 2
    assert any('profile of the whole run' in r.message for r in caplog.records)


def test_chrome_trace_is_valid_and_links_the_hops(tmp_path):
    path = tmp_path / 'run.json'
    with Flow(profile=str(path)).add(name='busy', uses=Busy).add(name='reader', uses=Reader) as f:
        f.post('/', _docs(9), request_size=3, parameters={'sleep': 0.005})
    trace = json.loads(path.read_text())  # written on exit
    events = trace['traceEvents']
    slices = [e for e in events if e['ph'] == 'X']
    assert len(slices) == 6 and {e['name'] for e in slices} == {'busy', 'reader'}
    assert all(e['dur'] > 0 and e['ts'] >= 0 for e in slices)
    names = {e['pid']: e['args']['name'] for e in events if e['ph'] == 'M' and e['name'] == 'process_name'}
    assert any(n.startswith('busy') for n in names.values()) and 'router (parent)' in names.values()
    assert {e['pid'] for e in slices} <= set(names)  # one named track per process
    starts = [e for e in events if e['ph'] == 's']
    ends = [e for e in events if e['ph'] == 'f']
    assert len(starts) == len(ends) == 3  # one arrow per request, busy -> reader
    assert {e['id'] for e in starts} == {e['id'] for e in ends}
    requests_ = [e for e in events if e['ph'] in ('b', 'e')]
    assert len(requests_) == 6 and len({e['id'] for e in requests_}) == 3


def test_profiling_must_be_asked_for():
    with Flow().add(uses=Reader) as f:
        f.post('/', Document(embedding=np.zeros(2)))
        with pytest.raises(RuntimeError, match='profile=True'):
            f.profile_summary()
    with pytest.raises(TypeError, match='profile takes'):
        Flow(profile=3)


class SplitsInThree(Executor):
    @requests
    def split(self, docs, **kwargs):
        return DocumentArray(Document(id=f'{d.id}-{k}') for d in docs for k in range(3))


class Sleeps(Executor):
    @requests
    def nap(self, docs, parameters, **kwargs):
        time.sleep(parameters.get(self.metas.name, 0))


def test_each_executor_counts_the_documents_it_was_given_and_the_run_those_posted(tmp_path):
    with Flow(profile=True).add(name='split', uses=SplitsInThree).add(name='reader', uses=Sleeps) as f:
        f.post('/', _docs(12), request_size=4)
        summary = f.profile_summary()
    by_name = {e.executor: e.docs for e in summary.executors}
    assert by_name == {'split': 12, 'reader': 36} and summary.docs == 12


def test_trace_arrows_follow_the_graph_never_back_in_time(tmp_path):
    # two branches from the gateway, joined: the join's arrow comes from the slow branch
    # (its last input back), and no arrow links the two branches
    path = tmp_path / 'run.json'
    f = (Flow(profile=str(path)).add(name='slow', uses=Sleeps, needs='gateway')
         .add(name='fast', uses=Sleeps, needs='gateway').add(name='join', uses=Sleeps, needs=['slow', 'fast']))
    with f:
        f.post('/', _docs(1), parameters={'slow': 0.05})
    events = json.loads(path.read_text())['traceEvents']
    names = {e['pid']: e['args']['name'].split(' ')[0] for e in events if e['ph'] == 'M' and e['name'] == 'process_name'}
    starts = {e['id']: e for e in events if e['ph'] == 's'}
    ends = {e['id']: e for e in events if e['ph'] == 'f'}
    arrows = [(names[starts[i]['pid']], names[ends[i]['pid']]) for i in starts]
    assert arrows == [('slow', 'join')]
    assert all(ends[i]['ts'] >= starts[i]['ts'] for i in starts)


def test_a_run_with_no_request_finished_writes_its_own_trace(tmp_path):
    path = tmp_path / 'run.json'
    with Flow(profile=str(path)).add(uses=Sleeps) as f:
        f.post('/', _docs(2))
    assert [e for e in json.loads(path.read_text())['traceEvents'] if e['ph'] == 'X']
    with Flow(profile=str(path)).add(uses=Sleeps):
        pass  # nothing posted: the trace written is this run's (empty), not the last one's
    assert [e for e in json.loads(path.read_text())['traceEvents'] if e['ph'] == 'X'] == []


class Fails(Executor):
    @requests
    def fail(self, docs, **kwargs):
        raise ValueError('bad input')


def test_a_post_that_raised_is_profiled_too(caplog):
    from runtime import ExecutorError
    caplog.set_level(logging.INFO, logger='runtime')
    with Flow(profile=True).add(name='fails', uses=Fails) as f:
        with pytest.raises(ExecutorError):
            f.post('/', _docs(2))
    assert sum('profile of post' in r.message for r in caplog.records) == 1


class WaitsForFile(Executor):
    """Works until the file ``parameters['release']`` exists (the test's callback for the
    request's failure creates it): its answer is sure to come after the request ended."""

    @requests
    def wait(self, docs, parameters, **kwargs):
        path = parameters.get('release')
        give_up = time.monotonic() + 30
        while path and not os.path.exists(path) and time.monotonic() < give_up:
            time.sleep(0.005)  # simulated work, until the test's handshake says stop


class FailsIfAsked(Executor):
    @requests
    def maybe_fail(self, docs, parameters, **kwargs):
        if parameters.get('fail'):
            raise ValueError('bad input')


def _late_hops(f):
    return [h for r in f._profile.records for h in r.late]


def test_work_on_a_request_that_timed_out_is_in_the_profile_marked_late(tmp_path):
    release = str(tmp_path / 'release')
    seen = []

    def timed_out(resp):
        seen.append(resp)
        open(release, 'w').close()  # only now may the executor finish: its answer is late

    trace = tmp_path / 'run.json'
    with Flow(profile=str(trace)).add(name='slow', uses=WaitsForFile) as f:
        f.post('/', _docs(2), parameters={'release': release}, timeout=0.1, on_error=timed_out)
        assert 'timeout' in seen[0].status.description
        # The next request goes to the same process, behind the late one: once it is back,
        # the late answer has been booked.
        f.post('/', _docs(3))
        summary = f.profile_summary()
        first = summary.executor('slow')
        assert f._rt._requests == {}  # nothing left in the request table
        late = _late_hops(f)
        record = next(r for r in f._profile.records if not r.ok)
    assert summary.requests == 2 and summary.failed == 1
    assert first.requests == 2 and first.late == 1 and first.docs == 5
    assert len(late) == 1 and late[0]['late'] is True and late[0]['docs_in'] == 2
    assert late[0]['end'] > record.finished  # the work went on after the request ended
    assert first.handler_ms['max'] >= 1e3 * (late[0]['end'] - late[0]['start']) - 1e-6
    assert 0 < first.busy_pct <= 100
    assert seen[0].routes == []  # what the callback got is unchanged: no hop came back in time
    assert 'late' in str(summary)
    slices = [e for e in json.loads(trace.read_text())['traceEvents'] if e['ph'] == 'X']
    assert sorted(e['args'].get('late', False) for e in slices) == [False, True]


def test_a_late_answer_of_the_last_post_is_booked_when_the_summary_is_asked_for(tmp_path):
    # No post runs after it, so nothing read the answer: profile_summary reads what is back.
    release = str(tmp_path / 'release')
    with Flow(profile=True).add(name='slow', uses=WaitsForFile) as f:
        f.post('/', _docs(2), parameters={'release': release}, timeout=0.1,
               on_error=lambda resp: open(release, 'w').close())
        deadline = time.monotonic() + 10
        while not _late_hops(f) and time.monotonic() < deadline:
            f.profile_summary()  # (each call reads the answers back by then)
        summary = f.profile_summary()
        assert summary.executor('slow').late == 1 and summary.executor('slow').requests == 1
        assert f._rt._requests == {}


def test_a_branch_still_running_when_the_other_failed_is_in_the_profile(tmp_path):
    release = str(tmp_path / 'release')
    seen = []

    def failed(resp):
        seen.append(resp)
        open(release, 'w').close()

    f = (Flow(profile=True).add(name='fails', uses=FailsIfAsked, needs='gateway')
         .add(name='slow', uses=WaitsForFile, needs='gateway').add(name='join', uses=Sleeps, needs=['fails', 'slow']))
    with f:
        f.post('/', _docs(2), parameters={'release': release, 'fail': True}, on_error=failed)
        assert 'bad input' in seen[0].status.description
        f.post('/', _docs(1))  # behind the late branch on 'slow': back once that was booked
        summary = f.profile_summary()
        assert f._rt._requests == {}
        late = _late_hops(f)
    assert summary.requests == 2 and summary.failed == 1
    assert summary.executor('slow').requests == 2 and summary.executor('slow').late == 1
    assert summary.executor('fails').late == 0 and summary.executor('join').requests == 1
    assert [h['executor'] for h in late] == ['slow'] and late[0]['late'] is True
    assert [h['executor'] for h in seen[0].routes] == ['fails']  # the callback's Response: unchanged


def test_without_profiling_late_answers_are_only_booked():
    with Flow().add(name='fails', uses=FailsIfAsked, needs='gateway').add(
            name='other', uses=Sleeps, needs='gateway').add(name='join', uses=Sleeps, needs=['fails', 'other']) as f:
        errors = []
        f.post('/', _docs(2), parameters={'fail': True, 'other': 0.05}, on_error=errors.append)
        f.post('/', _docs(1))
        assert f._rt._requests == {} and f._rt.profile is None
    assert [h['executor'] for h in errors[0].routes] == ['fails']
