"""Topologies: replicas (load balance, ordering, a dead replica), shards with polling
'any' / 'all' and the merge of their parts (default and custom ``reduce``), a sharded
index checked against brute force, ``needs`` DAGs (parallel branches, joins, errors,
``target_executor``), refused topologies, and ``Flow.plot``."""
from __future__ import annotations

import collections
import os
import re
import time
import xml.etree.ElementTree as ET
from html import unescape

import numpy as np
import psutil
import pytest

from runtime.transport.local.zygote import own_children
from runtime import (Document, DocumentArray, Executor, ExecutorError, Flow, Status, WorkerDiedError,
                     requests)
from runtime.control.router import MAX_OUTSTANDING


# -- executors ---------------------------------------------------------------------------------
class Replica(Executor):
    """Tags each document with who handled it; slows down or dies on request."""

    @requests
    def foo(self, docs, parameters, **kwargs):
        rid = self.runtime_args.replica_id
        if rid == 0 and any(d.tags.get('die') for d in docs):
            os._exit(3)
        if rid == 0:
            time.sleep(parameters.get('slow_replica0', 0))  # the work being simulated
        if any(d.tags.get('i') == 0 for d in docs):
            time.sleep(parameters.get('slow_first', 0))  # the work being simulated
        for d in docs:
            d.tags['replica'] = rid


class WhereAmI(Executor):
    """Records the process's shard / replica ids and workspace on every document."""

    @requests
    def foo(self, docs, **kwargs):
        ra = self.runtime_args
        for d in docs:
            d.tags[self.metas.name] = [ra.shard_id, ra.replica_id, ra.shards, ra.replicas, self.workspace]


class ShardMatches(Executor):
    """Each shard adds 4 matches per document, with interleaved scores: shard s, match k
    scores k * 3 + s, so the best of all shards come from every shard."""

    @requests
    def foo(self, docs, parameters, **kwargs):
        sid = self.runtime_args.shard_id
        name = parameters.get('score', 'similarity')
        for d in docs:
            d.tags[f'shard{sid}'] = True
            for k in range(4):
                d.matches.append(Document(id=f'{d.id}-s{sid}-m{k}', scores={name: float(k * 3 + sid)}))


class CustomReduce(Executor):
    """Shards tag the documents; ``reduce`` (run in the parent) keeps one summary doc each."""

    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.tags['shard'] = self.runtime_args.shard_id

    @staticmethod
    def reduce(docs_matrix, parameters):
        if parameters.get('bad_reduce'):
            return [d for docs in docs_matrix for d in docs]  # not a DocumentArray
        out = DocumentArray()
        for i, d in enumerate(docs_matrix[0]):
            shards = sorted(docs[i].tags['shard'] for docs in docs_matrix)
            out.append(Document(id=d.id, tags={'parts': len(docs_matrix), 'shards': shards,
                                               'pid': os.getpid(), 'k': parameters.get('k')}))
        return out


class ShardedIndexer(Executor):
    """In-memory index: stores embeddings on /index; cosine top-k on /search; /count adds a
    document per shard telling how many it holds."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.ids, self.embs = [], []

    @requests(on='/index')
    def index(self, docs, **kwargs):
        self.ids.extend(d.id for d in docs)
        self.embs.append(np.array(docs.embeddings, dtype=np.float32, copy=True))

    @requests(on='/search')
    def search(self, docs, parameters, **kwargs):
        if not self.ids:
            return
        k = parameters.get('top_k', 5)
        stored = np.vstack(self.embs)
        stored = stored / np.linalg.norm(stored, axis=1, keepdims=True)
        for q in docs:
            scores = stored @ (q.embedding / np.linalg.norm(q.embedding))
            top = np.argsort(-scores)[:k]
            q.matches = [Document(id=self.ids[i], scores={'cosine': 1 - float(scores[i])}) for i in top]  # a distance, as Jina 2

    @requests(on='/count')
    def count(self, docs, **kwargs):
        docs.append(Document(id=f'shard{self.runtime_args.shard_id}', tags={'n': len(self.ids)}))


class BranchA(Executor):
    @requests
    def foo(self, docs, parameters, **kwargs):
        time.sleep(parameters.get('sleep_a', 0))  # the work being simulated
        if parameters.get('fail_a') and any(d.tags.get('bad') for d in docs):
            raise ValueError('branch a refuses a bad document')
        for d in docs:
            d.tags['a'] = True


class BranchB(Executor):
    @requests
    def foo(self, docs, parameters, **kwargs):
        time.sleep(parameters.get('sleep_b', 0))  # the work being simulated
        for d in docs:
            d.text = 'from b' if d.text is None else d.text.upper()
            if 'k' in d.tags:
                d.tags['k'] = 'from b'


class Side(Executor):
    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.tags['c'] = True


class Join(Executor):
    """Records what it saw of both branches."""

    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.tags['join_saw'] = [bool(d.tags.get('a')), d.text]


def _ids(responses):
    return sorted(d.id for r in responses for d in r.docs)


def _hops(resp, name):
    return [h for h in resp.routes if h['executor'] == name]


# -- replicas ----------------------------------------------------------------------------------
def test_replicas_balance_by_outstanding_and_results_in_order():
    with Flow().add(name='rep', uses=Replica, replicas=2) as f:
        # a slow replica 0 gets fewer requests than a fast replica 1
        done = []
        f.post('/', [Document(id=f'x{i}') for i in range(40)], request_size=1, on_done=done.append,
               parameters={'slow_replica0': 0.03})
        assert len(done) == 40
        by_replica = collections.Counter(d.tags['replica'] for r in done for d in r.docs)
        assert set(by_replica) <= {0, 1} and by_replica[0] >= 1
        assert by_replica[1] >= 2 * by_replica[0], by_replica
        assert {h['replica'] for r in done for h in r.routes} == {0, 1}
        assert len({h['pid'] for r in done for h in r.routes}) == 2

        # every document exactly once, with uneven requests over both replicas
        inputs = [Document(id=f'y{i}') for i in range(150)]
        done = []
        f.post('/', inputs, request_size=7, on_done=done.append)
        assert _ids(done) == sorted(d.id for d in inputs)
        assert len(done) == 22

        # the request of doc 0 is slow: without results_in_order it comes back after others
        docs = [Document(id=str(i), tags={'i': i}) for i in range(6)]
        done = []
        unordered = f.post('/', docs, request_size=1, on_done=done.append, return_results=True,
                           parameters={'slow_first': 0.2})
        assert sorted(r.docs[0].id for r in done) == [str(i) for i in range(6)]
        assert [r.docs[0].id for r in done] != [str(i) for i in range(6)]
        assert [r.docs[0].id for r in unordered] == [r.docs[0].id for r in done]

        done, always = [], []
        ordered = f.post('/', docs, request_size=1, on_done=done.append, on_always=always.append,
                         return_results=True, results_in_order=True, parameters={'slow_first': 0.2})
        assert [r.docs[0].id for r in done] == [str(i) for i in range(6)]
        assert [r.docs[0].id for r in always] == [str(i) for i in range(6)]
        assert [r.docs[0].id for r in ordered] == [str(i) for i in range(6)]
        # the same requests were still served by both replicas, out of order
        assert {r.docs[0].tags['replica'] for r in ordered} == {0, 1}


def test_dead_replica_fails_its_requests_and_the_other_replica_goes_on():
    with Flow().add(name='rep', uses=Replica, replicas=2) as f:
        errors, done = [], []
        # alone in flight, the first request goes to replica 0 (both idle: the first wins)
        f.post('/', Document(id='die', tags={'die': True}), on_error=errors.append, on_done=done.append)
        assert not done and len(errors) == 1
        err = errors[0].status.error
        assert isinstance(err, WorkerDiedError)
        assert err.executor == 'rep' and err.replica == 0 and err.returncode == 3
        assert "'rep'" in str(err) and 'exit code 3' in str(err)
        assert [d.id for d in errors[0].docs] == ['die']

        # later requests all succeed, on replica 1
        done = []
        f.post('/', [Document(id=str(i)) for i in range(10)], request_size=1, on_done=done.append)
        assert _ids(done) == sorted(str(i) for i in range(10))
        assert {h['replica'] for r in done for h in r.routes} == {1}
        assert {d.tags['replica'] for r in done for d in r.docs} == {1}
        assert all(r.status.code == Status.SUCCESS for r in done)


def test_dead_replica_with_requests_in_flight_loses_nothing():
    with Flow().add(name='rep', uses=Replica, replicas=2) as f:
        errors, done = [], []
        docs = [Document(id=str(i), tags={'die': i == 0}) for i in range(8)]
        f.post('/', docs, request_size=1, on_error=errors.append, on_done=done.append)
        failed = [r.docs[0].id for r in errors]
        # the dying request failed, and at most what replica 0 held with it
        assert '0' in failed and len(failed) <= MAX_OUTSTANDING
        assert all(isinstance(r.status.error, WorkerDiedError) for r in errors)
        assert sorted(failed + [d.id for r in done for d in r.docs]) == sorted(str(i) for i in range(8))
        assert {d.tags['replica'] for r in done for d in r.docs} == {1}


# -- shards ------------------------------------------------------------------------------------
def test_shards_times_replicas_processes_ids_and_workspaces(tmp_path):
    flow = (Flow(workspace=str(tmp_path))
            .add(name='sh', uses=WhereAmI, shards=2, replicas=2, polling={'/all': 'all', '*': 'any'})
            .add(name='rep', uses=WhereAmI, replicas=2))
    assert '2 replicas' in flow.mermaid() and '2 shards' in flow.mermaid()
    with flow as f:
        kids = own_children(recursive=True)
        assert len(kids) == 4 + 2

        # 16 requests in flight at once: the first 4 go to the 4 idle processes of 'sh'
        inputs = [Document(id=f'd{i}') for i in range(120)]
        done = []
        f.post('/', inputs, request_size=3, on_done=done.append)
        assert _ids(done) == sorted(d.id for d in inputs)  # polling 'any': each doc once
        sh_hops = [h for r in done for h in _hops(r, 'sh')]
        assert all(len(_hops(r, 'sh')) == 1 and len(_hops(r, 'rep')) == 1 for r in done)
        pairs = {(h['shard'], h['replica']) for h in sh_hops}
        assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1)}
        pids = {h['pid'] for h in sh_hops}
        assert len(pids) == 4 and pids <= {p.pid for p in kids}
        # what each process says of itself matches its route entry
        for r in done:
            (hop,) = _hops(r, 'sh')
            for d in r.docs:
                shard, replica, nshards, nreplicas, ws = d.tags['sh']
                assert (shard, replica, nshards, nreplicas) == (hop['shard'], hop['replica'], 2, 2)
                # each shard its own workspace sub-directory, shared by its replicas
                assert ws == os.path.join(str(tmp_path), 'sh', str(shard))
                assert d.tags['rep'][0] == 0 and d.tags['rep'][2:4] == [1, 2]
                assert d.tags['rep'][4] == os.path.join(str(tmp_path), 'rep')

        # polling 'all': one replica of each shard gets the request, parts joined by id
        done = []
        f.post('/all', [Document(id=f'a{i}') for i in range(6)], request_size=2, on_done=done.append)
        assert _ids(done) == sorted(f'a{i}' for i in range(6))
        for r in done:
            assert sorted(h['shard'] for h in _hops(r, 'sh')) == [0, 1]
    assert os.path.isdir(tmp_path / 'sh' / '0') and os.path.isdir(tmp_path / 'sh' / '1')


def test_polling_all_merges_matches_by_score_and_limit():
    polling = {'/index': 'any', '/search': 'all', '*': 'any'}
    with Flow().add(name='sm', uses=ShardMatches, shards=3, polling=polling) as f:
        def one(endpoint, **kw):
            (resp,) = f.post(endpoint, [Document(id='q1'), Document(id='q2')], return_results=True, **kw)
            assert [d.id for d in resp.docs] == ['q1', 'q2']  # each document once, in order
            return resp

        # 'any' on /index and on the '*' default: one shard, its 4 matches
        for endpoint in ('/index', '/other'):
            resp = one(endpoint)
            assert len(_hops(resp, 'sm')) == 1
            assert all(len(d.matches) == 4 for d in resp.docs)

        # 'all' on /search: every shard, documents merged (each shard's tag survives),
        # matches concatenated and sorted best first (a similarity: descending)
        resp = one('/search')
        assert sorted(h['shard'] for h in _hops(resp, 'sm')) == [0, 1, 2]
        for d in resp.docs:
            assert all(d.tags[f'shard{s}'] for s in range(3))
            assert [m.scores['similarity'] for m in d.matches] == [float(v) for v in range(11, -1, -1)]
            assert len({m.id for m in d.matches}) == 12

        # cut to top_k / limit; the executor's own parameters win over the shared ones
        resp = one('/search', parameters={'top_k': 5})
        for d in resp.docs:
            assert [m.scores['similarity'] for m in d.matches] == [11.0, 10.0, 9.0, 8.0, 7.0]
            assert {m.id.split('-')[1] for m in d.matches} == {'s0', 's1', 's2'}
        resp = one('/search', parameters={'top_k': 5, 'sm': {'limit': 2}})
        assert all([m.scores['similarity'] for m in d.matches] == [11.0, 10.0] for d in resp.docs)

        # a distance: ascending
        resp = one('/search', parameters={'score': 'l2', 'limit': 4})
        for d in resp.docs:
            assert [m.scores['l2'] for m in d.matches] == [0.0, 1.0, 2.0, 3.0]

        # a bad limit is the request's error, naming the executor; the flow goes on
        errors = []
        f.post('/search', Document(), parameters={'limit': 'ten'}, on_error=errors.append)
        assert len(errors) == 1 and errors[0].status.exception.executor == 'sm'
        assert 'limit' in errors[0].status.description
        assert len(one('/search').docs[0].matches) == 12


def test_custom_reduce_replaces_the_merge_and_runs_in_the_parent():
    with Flow().add(name='red', uses=CustomReduce, shards=2, polling='all') as f:
        done = []
        f.post('/', [Document(id=f'r{i}') for i in range(5)], request_size=5, on_done=done.append,
               parameters={'k': 1, 'red': {'k': 2}})
        (resp,) = done
        assert [d.id for d in resp.docs] == [f'r{i}' for i in range(5)]
        for d in resp.docs:
            assert d.tags == {'parts': 2, 'shards': [0, 1], 'pid': os.getpid(), 'k': 2}
        assert sorted(h['shard'] for h in resp.routes) == [0, 1]

        # a reduce that returns something else fails the request, naming the executor
        errors = []
        f.post('/', Document(), parameters={'bad_reduce': True}, on_error=errors.append)
        assert len(errors) == 1
        err = errors[0].status.error
        assert isinstance(err, ExecutorError) and err.executor == 'red'
        assert 'reduce' in str(err) and 'DocumentArray' in str(err)
        done = []
        f.post('/', Document(id='after'), on_done=done.append)
        assert done[0].docs[0].tags['parts'] == 2


class FirstShardAsItCame(Executor):
    """Shard 0 scales the embeddings; ``reduce`` hands on shard 0's documents unchanged."""

    @requests
    def scale(self, docs, **kwargs):
        if self.runtime_args.shard_id == 0:
            docs.embeddings = docs.embeddings * 2

    @staticmethod
    def reduce(docs_matrix, parameters):
        return docs_matrix[0]


@pytest.mark.parametrize('dim', [8, 4096], ids=['inline', 'shared-memory'])
def test_a_reduce_may_hand_on_one_shards_documents_as_they_came(dim):
    x = np.arange(3 * dim, dtype=np.float32).reshape(3, dim)
    with Flow().add(uses=FirstShardAsItCame, shards=2, polling='all') as f:
        (r,) = f.post('/', DocumentArray(Document(id=str(i), embedding=row) for i, row in enumerate(x)),
                      return_results=True)
    assert [d.id for d in r.docs] == ['0', '1', '2']
    assert np.array_equal(r.docs.embeddings, x * 2)


def test_sharded_index_search_equals_brute_force():
    rng = np.random.default_rng(7)
    stored = rng.standard_normal((200, 16)).astype(np.float32)
    queries = rng.standard_normal((5, 16)).astype(np.float32)
    flow = Flow().add(name='idx', uses=ShardedIndexer, shards=2,
                      polling={'/index': 'any', '/search': 'all', '/count': 'all'})
    with flow as f:
        indexed = f.index([Document(id=f'doc{i}', embedding=e) for i, e in enumerate(stored)],
                          request_size=10, return_results=True)
        assert all(len(_hops(r, 'idx')) == 1 for r in indexed)  # 'any': one shard each
        (count,) = f.post('/count', None, return_results=True)
        held = {d.id: d.tags['n'] for d in count.docs}
        assert set(held) == {'shard0', 'shard1'} and sum(held.values()) == 200
        assert min(held.values()) > 0  # both shards hold part of the index

        got = f.search([Document(id=f'q{i}', embedding=q) for i, q in enumerate(queries)],
                       parameters={'top_k': 7}, return_results=True)
    (resp,) = got
    norm = stored / np.linalg.norm(stored, axis=1, keepdims=True)
    for q, d in zip(queries, resp.docs):
        scores = norm @ (q / np.linalg.norm(q))
        best = np.argsort(-scores)[:7]
        assert [m.id for m in d.matches] == [f'doc{i}' for i in best]
        np.testing.assert_allclose([m.scores['cosine'] for m in d.matches], 1 - scores[best], rtol=1e-5, atol=1e-6)


# -- needs: a DAG ------------------------------------------------------------------------------
def _dag():
    return (Flow()
            .add(name='a', uses=BranchA, needs='gateway')
            .add(name='b', uses=BranchB, needs='gateway')
            .add(name='join', uses=Join, needs=['a', 'b'])
            .add(name='c', uses=Side, needs='gateway'))  # a second sink, joined at the end


def test_needs_branches_run_in_parallel_and_join_by_id():
    with _dag() as f:
        f.post('/', Document())  # warm up: the timed request measures the routing, not first-call costs
        t0 = time.perf_counter()
        (resp,) = f.post('/', Document(id='one'), return_results=True, parameters={'sleep_a': 0.3, 'sleep_b': 0.3})
        wall = time.perf_counter() - t0
        (a,), (b,), (join,), (c,) = (_hops(resp, n) for n in ('a', 'b', 'join', 'c'))
        assert max(a['start'], b['start']) < min(a['end'], b['end']), 'the branches did not overlap'
        assert join['start'] >= max(a['end'], b['end'])  # the join waited for both
        assert wall < 0.5, f'{wall:.2f} s: the branches ran one after the other'
        (d,) = resp.docs
        assert d.id == 'one' and d.tags['a'] and d.text == 'from b' and d.tags['c']
        assert d.tags['join_saw'] == [True, 'from b']

        # many requests: every document once, with every branch's fields
        inputs = [Document(id=f'm{i}') for i in range(60)]
        done = []
        f.post('/', inputs, request_size=4, on_done=done.append)
        assert _ids(done) == sorted(d.id for d in inputs)
        for r in done:
            assert sorted(h['executor'] for h in r.routes) == ['a', 'b', 'c', 'join']
            for d in r.docs:
                assert d.tags['a'] and d.tags['c'] and d.text == 'from b' and d.tags['join_saw'] == [True, 'from b']


def test_error_in_one_branch_fails_that_request_and_the_flow_goes_on():
    with _dag() as f:
        done, errors, always = [], [], []
        docs = [Document(id=str(i), tags={'bad': i == 2}) for i in range(5)]
        f.post('/', docs, request_size=1, on_done=done.append, on_error=errors.append, on_always=always.append,
               parameters={'fail_a': True})
        assert len(errors) == 1 and len(always) == 5
        err = errors[0].status.error
        assert isinstance(err, ExecutorError) and err.executor == 'a' and err.exc_type == 'ValueError'
        assert errors[0].status.exception.executor == 'a' and 'refuses' in str(err)
        assert [d.id for d in errors[0].docs] == ['2']
        assert _ids(done) == ['0', '1', '3', '4']
        assert all(d.tags['a'] and d.text == 'from b' for r in done for d in r.docs)
        # without on_error the post raises, naming the branch
        with pytest.raises(ExecutorError, match="'a'"):
            f.post('/', Document(tags={'bad': True}), parameters={'fail_a': True})
        # and a following post works
        (resp,) = f.post('/', Document(id='later'), return_results=True)
        assert resp.status.code == Status.SUCCESS and resp.docs[0].tags['join_saw'] == [True, 'from b']


def test_target_executor_in_a_dag_passes_documents_through_the_others():
    with _dag() as f:
        (resp,) = f.post('/', Document(id='t', text='hi'), target_executor='b', return_results=True)
        assert [h['executor'] for h in resp.routes] == ['b']
        (d,) = resp.docs
        assert d.id == 't' and d.text == 'HI' and 'a' not in d.tags and 'c' not in d.tags
        assert 'join_saw' not in d.tags

        (resp,) = f.post('/', Document(id='t'), target_executor='a|join', return_results=True)
        assert sorted(h['executor'] for h in resp.routes) == ['a', 'join']
        (d,) = resp.docs
        assert d.tags['a'] and d.tags['join_saw'] == [True, None] and d.text is None and 'c' not in d.tags


def test_join_keeps_a_field_changed_by_the_branch_that_finished_first():
    flow = (Flow().add(name='a', uses=BranchA, needs='gateway').add(name='b', uses=BranchB, needs='gateway')
            .add(name='join', uses=Join, needs=['a', 'b']))
    with flow as f:
        # b upper-cases the text at once; a only sets a tag, later, and carries 'hello' on
        (resp,) = f.post('/', Document(id='x', text='hello', tags={'k': 'orig', 'keep': 1}), return_results=True,
                         parameters={'sleep_a': 0.1})
    assert [h['executor'] for h in resp.routes][:2] == ['b', 'a']  # b did finish first
    (d,) = resp.docs
    assert d.tags['a'] is True and d.tags['keep'] == 1
    assert d.text == 'HELLO' and d.tags['k'] == 'from b'
    assert d.tags['join_saw'] == [True, 'HELLO']


# -- refused topologies ------------------------------------------------------------------------
def test_bad_topologies_are_refused_at_add_with_what_to_pass():
    base = Flow().add(name='a')
    with pytest.raises(ValueError) as info:
        base.add(name='x', needs='nope')
    msg = str(info.value)
    assert "'nope'" in msg and 'gateway' in msg and "'a'" in msg and 'before' in msg
    # a forward reference (the only way to write a cycle) is an unknown name
    with pytest.raises(ValueError, match=r"needs='b' must name executors added before this one") as info:
        Flow().add(name='a', needs='b')
    assert "unknown: ['b']" in str(info.value)
    with pytest.raises(ValueError, match='must name executors'):
        base.add(name='x', needs=[])
    with pytest.raises(ValueError, match='each once'):
        base.add(name='x', needs=['a', 'a'])
    with pytest.raises(ValueError, match='each once'):
        base.add(name='x', needs=['gateway', 'a', 'gateway'])

    for kw in ({'replicas': 0}, {'replicas': -1}, {'replicas': '2'}, {'replicas': 1.5}):
        with pytest.raises(ValueError, match='replicas must be a positive int'):
            base.add(**kw)
    for kw in ({'shards': 0}, {'shards': -2}, {'parallel': 0}):
        with pytest.raises(ValueError, match='shards must be a positive int'):
            base.add(**kw)
    with pytest.raises(TypeError, match='parallel'):
        base.add(shards=2, parallel=2)
    for bad in ('sometimes', {'/a': 'x'}, {'/a': 'all', '/b': None}):
        with pytest.raises(ValueError, match="'any' or 'all'") as info:
            base.add(shards=2, polling=bad)
        assert 'sometimes' in str(info.value) or '/' in str(info.value)
    with pytest.raises(TypeError, match="polling must be 'any', 'all' or a dict"):
        base.add(shards=2, polling=3)
    with pytest.raises(ValueError, match='replicas'):
        Flow(replicas=0).add()  # Flow-level defaults are checked too
    assert base.num_executors == 1  # nothing was added by the failed calls

    # what is accepted: Jina 2's spellings
    ok = base.add(name='p', parallel=2, polling='ALL', needs=['gateway', 'a'])
    assert ok._specs[-1]['shards'] == 2 and ok._specs[-1]['polling']['*'] == 'all'


def test_bool_or_float_replicas_are_refused():
    for kw in ({'replicas': True}, {'shards': True}, {'replicas': 1.0}):
        with pytest.raises(ValueError, match='must be a positive int'):
            Flow().add(**kw)


def test_needs_of_the_wrong_type_says_what_to_pass():
    with pytest.raises(TypeError, match='needs'):
        Flow().add(name='a', needs=3)


def test_executor_named_gateway_is_refused():
    with pytest.raises(ValueError, match='gateway'):
        Flow().add(name='gateway')


# -- plot --------------------------------------------------------------------------------------
_NODE = re.compile(r'^\s*([A-Za-z_][\w-]*)\s*(?:\(\((.*)\)\)|\["(.*)"\])\s*$')
_EDGE = re.compile(r'^\s*([A-Za-z_][\w-]*)\s*-->\s*([A-Za-z_][\w-]*)\s*$')


def _parse_mermaid(text):
    """({(shape, first label line): node id}, [(from id, to id)]), shape 'round' for the
    gateway and the end, 'box' for executors; asserts each id is declared once."""
    lines = text.strip().splitlines()
    assert lines[0].strip() == 'graph LR'
    nodes, edges = {}, []
    for line in lines[1:]:
        m = _NODE.match(line)
        if m:
            node_id = m.group(1)
            assert node_id not in nodes.values(), f'node id {node_id!r} declared twice'
            key = ('round', m.group(2)) if m.group(2) is not None else ('box', unescape(m.group(3).split('<br/>')[0]))
            assert key not in nodes, f'{key} drawn twice'
            nodes[key] = node_id
            continue
        m = _EDGE.match(line)
        assert m, f'unexpected Mermaid line {line!r}'
        edges.append(m.groups())
    ids = set(nodes.values())
    assert all(a in ids and b in ids for a, b in edges)
    assert all(i.lower() != 'end' for i in ids), "'end' is a Mermaid keyword, not a usable node id"
    return nodes, edges


def _check_edges(flow, text):
    """Every needs edge, and an edge from every sink to the end, and nothing else."""
    nodes, edges = _parse_mermaid(text)
    ident = {label: node_id for (shape, label), node_id in nodes.items() if shape == 'box'}
    ident['gateway'] = nodes[('round', 'gateway')]
    end = nodes[('round', 'end')]
    assert set(ident.values()) | {end} == set(nodes.values())
    names = [s['resolved_name'] for s in flow._specs]
    assert set(ident) == set(names) | {'gateway'}
    want = {(ident[n], ident[s['resolved_name']]) for s in flow._specs for n in s['needs']}
    sinks = set(names) - {n for s in flow._specs for n in s['needs']}
    want |= {(ident[s], end) for s in sinks} or {(ident['gateway'], end)}
    assert set(edges) == want and len(edges) == len(want)


def test_plot_svg_markdown_and_mermaid(tmp_path):
    flow = (Flow()
            .add(name='enc', replicas=2, needs='gateway')
            .add(name='idx', uses=ShardedIndexer, shards=3, polling={'/index': 'any', '/search': 'all'},
                 needs='gateway')
            .add(name='x&y', needs=['enc', 'idx'])
            .add(name='side', needs='gateway'))

    svg = tmp_path / 'flow.svg'
    assert flow.plot(str(svg)) is flow  # as in Jina 2, so calls chain
    root = ET.parse(svg).getroot()  # well-formed XML, even with '&' in a name
    assert root.tag == '{http://www.w3.org/2000/svg}svg'
    words = ' '.join(t.text or '' for t in root.iter('{http://www.w3.org/2000/svg}text'))
    for name in ('enc', 'idx', 'x&y', 'side', 'ShardedIndexer', 'gateway', '2 replicas', '3 shards'):
        assert name in words, name

    md = tmp_path / 'flow.md'
    flow.plot(str(md))
    body = md.read_text(encoding='utf-8')
    assert body.startswith('```mermaid\n') and body.rstrip().endswith('```')
    mermaid = body.strip()[len('```mermaid'):-3]
    assert '-->' in mermaid and '2 replicas' in mermaid and '3 shards' in mermaid
    _check_edges(flow, mermaid)

    mmd = tmp_path / 'flow.mmd'
    flow.plot(str(mmd))
    raw = mmd.read_text(encoding='utf-8')
    assert raw == flow.mermaid()
    assert '```' not in raw
    _check_edges(flow, raw)

    # a plain chain and an empty flow draw too
    chain = Flow().add(name='one').add(name='two')
    _check_edges(chain, chain.mermaid())
    _parse_mermaid(Flow().mermaid())
    Flow().plot(str(tmp_path / 'empty.svg'))
    ET.parse(tmp_path / 'empty.svg')

    with pytest.raises(ValueError, match=r'\.svg'):
        flow.plot(str(tmp_path / 'flow.png'))
    assert not (tmp_path / 'flow.png').exists()
    with pytest.raises(TypeError):
        flow.plot(42)


def test_plot_executor_named_end_is_its_own_node():
    flow = Flow().add(name='end').add(name='x', needs=['end', 'gateway'])
    _check_edges(flow, flow.mermaid())


class _ShardCount(Executor):
    @requests
    def count(self, docs, **kwargs):
        return {'shard': self.runtime_args.shard_id, 'n': len(docs)}


def test_results_of_every_shard_polled_all_are_kept():
    with Flow().add(name='sc', uses=_ShardCount, shards=3, polling='all') as f:
        (resp,) = f.post('/', [Document(), Document()], return_results=True)
    assert resp.parameters['__results__']['sc'] == [{'shard': s, 'n': 2} for s in range(3)]


def test_flow_needs_and_needs_all_join_the_open_ends():
    flow = Flow().add(name='a').add(name='b', needs='gateway').add(name='c', needs='gateway').needs_all()
    assert flow._specs[-1]['needs'] == ['a', 'b', 'c']
    chained = Flow().add(name='a').add(name='b', needs='gateway').needs(['a', 'b'], name='j').add(name='after')
    assert [s['needs'] for s in chained._specs][-2:] == [['a', 'b'], ['j']]
    with chained as f:
        out = f.post('/', [Document(id=str(i)) for i in range(3)], return_results=True)
    assert sorted(d.id for r in out for d in r.docs) == ['0', '1', '2']  # joined by id, not doubled


# -- needs naming an executor and its uses_after tail --------------------------------------------
class _Merger(Executor):
    @requests
    def merge(self, docs_matrix, **kwargs):
        return docs_matrix[0]


def test_needs_naming_an_executor_and_its_tail_is_refused_at_add():
    # 'idx' means idx's tail: both named, the join would wait forever for a second input.
    base = Flow().add(name='idx', shards=2, uses_after=_Merger)
    for needs in (['idx', 'idx-tail'], ['idx-tail', 'gateway', 'idx']):
        with pytest.raises(ValueError, match="'idx' and 'idx-tail', which are the same input") as info:
            base.add(name='j', needs=needs)
        assert "name it once" in str(info.value)
    # either name alone is that one input
    assert base.add(name='j', needs='idx')._specs[-1]['needs'] == ['idx-tail']
    with base.add(name='j', needs=['idx-tail', 'gateway']) as f:
        (resp,) = f.post('/', Document(id='q'), return_results=True, timeout=30)
    assert [d.id for d in resp.docs] == ['q']


def test_merge_by_id_keeps_one_content_per_document():
    # Content is one of text / blob / buffer: merged as one field, so the merged document
    # never holds one part's blob next to another's text (its JSON would not load back).
    from runtime.control.merge import merge_by_id, merge_shards

    def parts():
        return [DocumentArray([Document(id='x', blob=np.zeros(2))]), DocumentArray([Document(id='x', text='orig')])]

    m = merge_by_id(parts())[0]  # without a snapshot, the later part's content wins, whole
    assert (m.content_type, m.text) == ('text', 'orig') and m.blob is None
    assert Document(m.json()) == m
    m = merge_by_id(parts()[::-1])[0]
    assert m.content_type == 'blob' and m.text is None and Document(m.json()) == m
    assert merge_shards(parts(), {})[0].text == 'orig'
    # A part without content leaves the content alone.
    m = merge_by_id([DocumentArray([Document(id='x', buffer=b'b')]), DocumentArray([Document(id='x', weight=2.0)])])[0]
    assert (m.buffer, m.weight) == (b'b', 2.0)
    # With the snapshot: the branch that changed the content wins, even when it comes first
    # and the other branch carried the old text on.
    before = DocumentArray([Document(id='x', text='orig')])

    def branch(**fields):
        d = before[0].copy()
        d.set_attributes(**fields)
        return DocumentArray([d])

    m = merge_by_id([branch(tags__k=1), branch(blob=np.ones(2))], before)[0]
    assert m.text is None and m.blob.tolist() == [1.0, 1.0] and m.tags == {'k': 1}
    assert Document(m.json()) == m
    m = merge_by_id([branch(blob=np.ones(2)), branch(text='new')], before)[0]
    assert (m.content_type, m.text) == ('text', 'new') and m.blob is None and Document(m.json()) == m


class _Prepares(Executor):
    @requests
    def prep(self, docs, **kwargs):
        for d in docs:
            d.tags.update(tmp='scratch', keep=1)
            for i in range(5):
                d.matches.append(Document(id=f'm{i}', scores={'cosine': i / 10}))
            d.chunks.append(Document(id='c-junk', text='junk'))


class _Trims(Executor):  # a ranker / cleaner: removes things
    @requests
    def trim(self, docs, **kwargs):
        for d in docs:
            del d.tags['tmp']
            del d.matches[2:]  # the top 2
            d.chunks.clear()


class _Enriches(Executor):  # adds a tag, carries the rest on as it came
    @requests
    def enrich(self, docs, **kwargs):
        for d in docs:
            d.tags['b'] = True


@pytest.mark.parametrize('order', [['trim', 'enrich'], ['enrich', 'trim']])
def test_what_one_branch_removed_stays_removed_after_a_join(order):
    f = (Flow().add(name='prep', uses=_Prepares).add(name='trim', uses=_Trims, needs='prep')
         .add(name='enrich', uses=_Enriches, needs='prep').add(name='join', needs=order))
    with f:
        (r,) = f.post('/', Document(id='q'), return_results=True)
    d = r.docs[0]
    assert d.tags == {'keep': 1, 'b': True}
    assert [m.id for m in d.matches] == ['m0', 'm1'] and len(d.chunks) == 0


class _Reranks(Executor):  # rescores, re-sorts and keeps the top 2
    @requests
    def rerank(self, docs, **kwargs):
        new = {'m0': 0.2, 'm1': 0.8, 'm2': 1.0}
        for d in docs:
            for m in d.matches:
                m.scores['rerank'] = new[m.id]
            d.matches.sort(key=lambda m: -m.scores['rerank'].value)
            del d.matches[2:]


@pytest.mark.parametrize('order', [['rerank', 'enrich'], ['enrich', 'rerank']])
def test_a_join_keeps_the_order_a_reranking_branch_gave(order):
    q = Document(id='q', matches=[Document(id=f'm{i}', scores={'cosine': s}) for i, s in enumerate([.1, .5, .9])])
    f = (Flow().add(name='enrich', uses=_Enriches, needs='gateway').add(name='rerank', uses=_Reranks, needs='gateway')
         .add(name='join', needs=order))
    with f:
        (r,) = f.post('/', q, return_results=True)
    assert [m.id for m in r.docs[0].matches] == ['m2', 'm1'] and r.docs[0].tags == {'b': True}


def test_a_join_keeps_a_change_over_a_removal():
    from runtime.control.merge import merge_by_id
    before = DocumentArray([Document(id='x', tags={'k': 1}, matches=[Document(id='m', text='a')])])
    removed, changed = before[0].copy(), before[0].copy()
    del removed.tags['k']
    removed.matches.clear()
    changed.tags['k'] = 2
    changed.matches[0].text = 'b'
    for parts in ([removed, changed], [changed, removed]):
        m = merge_by_id([DocumentArray([p.copy()]) for p in parts], before)[0]
        assert m.tags == {'k': 2} and [x.text for x in m.matches] == ['b']


# -- target_executor and an executor's uses_after ---------------------------------------------
class _ShardMatch(Executor):
    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.matches.append(Document(id=f'm{self.runtime_args.shard_id}'))


class _KeepFirstShard(Executor):
    @requests
    def foo(self, docs_matrix, **kwargs):
        return docs_matrix[0]


def test_targeting_an_executor_runs_its_uses_after_merger():
    f = Flow().add(name='idx', uses=_ShardMatch, shards=2, polling='all', uses_after=_KeepFirstShard).add(
        name='other', uses=_ShardMatch)
    with f:
        (r,) = f.post('/', Document(id='q'), target_executor='idx', return_results=True)
    assert [m.id for m in r.docs[0].matches] == ['m0']  # merged by idx's own merger, not by id
    assert [h['executor'] for h in r.routes] == ['idx', 'idx', 'idx-tail']


# -- documents that share an id ------------------------------------------------------------------
class _MarkName(Executor):
    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.tags[self.metas.name] = d.text


def test_documents_sharing_an_id_stay_apart_through_joins_and_shards():
    docs = [Document(id='same', text='first'), Document(id='same', text='second'), Document(id='other', text='x')]
    flows = [Flow().add(name='a', uses=_MarkName).add(name='b', uses=_MarkName, needs='gateway').add(
        name='j', needs=['a', 'b']), Flow().add(name='s', uses=_MarkName, shards=2, polling='all')]
    expected_tags = ([{'a': 'first', 'b': 'first'}, {'a': 'second', 'b': 'second'}],  # both branches'
                     [{'s': 'first'}, {'s': 'second'}])
    for flow, tags in zip(flows, expected_tags):
        with flow as f:
            (r,) = f.post('/', docs, return_results=True)
        assert [(d.id, d.text) for d in r.docs] == [('same', 'first'), ('same', 'second'), ('other', 'x')]
        assert [dict(d.tags) for d in r.docs][:2] == tags
