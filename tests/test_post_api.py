"""Flow building and lifecycle, and ``post``: argument checking, parameters, routing,
errors and callbacks, ordering, Response fields, streaming, and types surviving the trip."""
from __future__ import annotations

import copy
import logging
import os
import threading
import time

import numpy as np
import psutil
import pytest

import runtime

from runtime import (Document, DocumentArray, Executor, ExecutorError, ExecutorStartError, Flow,
                     FlowNotStartedError, RemoteTraceback, Response, Status, requests)
from runtime.transport.local.codec import EncodeError


class CountCalls(Executor):
    """Counts the requests and documents it saw; returns the totals so far."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = self.docs = 0

    @requests
    def foo(self, docs, **kwargs):
        self.calls += 1
        self.docs += len(docs)
        return {'calls': self.calls, 'docs': self.docs}


class EchoParams(Executor):
    """Mutates what it got (which must not reach the caller) and returns it."""

    @requests
    def foo(self, docs, parameters, **kwargs):
        echo = copy.deepcopy(parameters)
        parameters['mutated'] = True  # top level only; nested: see test_parameters_are_per_request
        return {'echo': echo}


class FailOnTag(Executor):
    """Raises ValueError for a request holding a document tagged 'bad'."""

    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            if d.tags.get('bad'):
                raise ValueError(f'bad document {d.id}')


class AppendName(Executor):
    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.tags['seen'] = d.tags.get('seen', []) + [self.metas.name]


class SlowFirst(Executor):
    """The request holding document '0' takes a while; all others return at once."""

    @requests
    def foo(self, docs, **kwargs):
        if any(d.id == '0' for d in docs):
            time.sleep(0.5)  # the work being simulated, not a wait for an event


class InitFails(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        raise RuntimeError('cannot open the index file /nonexistent/idx.bin')


def _exact(value):
    """``value`` with the type of every element spelled out, so 1 != 1.0 != True."""
    if isinstance(value, dict):
        return ('dict', {k: _exact(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_exact(v) for v in value])
    return (type(value).__name__, value)


# -- building a Flow --------------------------------------------------------------------------
def test_add_returns_a_new_flow_and_names_are_unique():
    base = Flow()
    one = base.add(name='a')
    two = one.add(name='b')
    assert isinstance(one, Flow) and one is not base and two is not one
    assert (base.num_executors, one.num_executors, two.num_executors) == (0, 1, 2)

    with pytest.raises(ValueError) as info:
        two.add(name='a')
    assert "'a'" in str(info.value) and 'already' in str(info.value)
    with pytest.raises(ValueError, match="'b'"):
        two.add(uses={'jtype': 'CountCalls', 'metas': {'name': 'b'}})
    with pytest.raises(ValueError, match="'b'"):
        two.add(uses=CountCalls, uses_metas={'name': 'b'})
    assert two.num_executors == 2  # the failed add() changed nothing


def test_flow_kwargs_are_defaults_for_every_executor():
    class Scaled(Executor):
        def __init__(self, factor=1, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        @requests
        def foo(self, docs, **kwargs):
            return {'factor': self.factor}

    got = []
    with Flow(uses=Scaled, uses_with={'factor': 3}).add().add(name='b').add(name='c', uses_with={'factor': 4}) as f:
        f.post('/', Document(), on_done=got.append)
    assert got[0].parameters['__results__'] == {'Scaled': {'factor': 3}, 'b': {'factor': 3}, 'c': {'factor': 4}}


def test_post_outside_with_raises_flow_not_started():
    f = Flow().add()
    for call in (lambda: f.post('/', Document()), lambda: f.index(Document()), lambda: f.search()):
        with pytest.raises(FlowNotStartedError) as info:
            call()
        assert isinstance(info.value, RuntimeError)
        assert '`with' in str(info.value)
    with f:
        f.post('/')
    with pytest.raises(FlowNotStartedError, match='with'):  # after the with block too
        f.post('/')


def test_executor_init_error_makes_enter_raise(capfd):
    f = Flow().add(uses=CountCalls, name='ok').add(uses=InitFails, name='broken-index').add(name='after')
    with pytest.raises(ExecutorStartError) as info:
        with f:
            pytest.fail('the with body must not run')
    err = info.value
    assert err.executor == 'broken-index'
    assert 'broken-index' in str(err) and 'cannot open the index file' in str(err)
    assert isinstance(err.__cause__, RemoteTraceback)
    tb = str(err.__cause__)
    assert 'RuntimeError: cannot open the index file /nonexistent/idx.bin' in tb and '__init__' in tb
    # The Flow can be used no further; the leak fixture checks nothing is left running.
    with pytest.raises(FlowNotStartedError):
        f.post('/')
    assert capfd.readouterr().out == ''


def test_executor_process_exiting_in_init_makes_enter_raise():
    class ExitsInInit(Executor):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            os._exit(3)

    with pytest.raises(ExecutorStartError) as info:
        with Flow().add(uses=ExitsInInit, name='quitter'):
            pytest.fail('the with body must not run')
    assert info.value.executor == 'quitter'
    assert 'quitter' in str(info.value) and 'exit code 3' in str(info.value)


def test_ready_logs_one_info_line_and_prints_nothing(caplog, capfd):
    with caplog.at_level(logging.DEBUG, logger='runtime'):
        with Flow().add(uses=CountCalls).add(name='second') as f:
            ready = [r for r in caplog.records if r.levelno >= logging.INFO]
            f.post('/', [Document() for _ in range(5)], request_size=2)
            f.index(Document())
    assert len(ready) == 1 and ready[0].levelno == logging.INFO and ready[0].name.startswith('runtime')
    assert 'CountCalls' in ready[0].getMessage() and 'second' in ready[0].getMessage()
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == ready  # nothing else at INFO+
    out, err = capfd.readouterr()
    assert out == ''


# -- post: argument checks (all in one Flow) -----------------------------------------------
def test_bad_post_arguments_are_refused_and_nothing_is_sent():
    cases = [
        ('some text', ['str', 'some text', 'Document(text=']),
        (42, ['int', '42', 'Document']),
        (np.float32(3), ['float32', 'Document']),
        ({'text': 'hello'}, ['dict', 'Document(']),
        ([Document(), 3.5], ['float', '3.5', '#1', 'Document']),
        ((Document(), 7), ['int', '7', '#1']),
        (b'raw bytes', ['bytes', 'Document']),
    ]
    parameters = {'k': 1}
    with Flow().add(uses=CountCalls, name='counter') as f:
        for inputs, words in cases:
            with pytest.raises(TypeError) as info:
                f.post('/', inputs, on_done=pytest.fail, on_error=pytest.fail)
            for w in words:
                assert w in str(info.value), (inputs, str(info.value))
            assert 'DocumentArray' in str(info.value)  # says what to pass instead

        for size in (0, -1, 2.5, True, '10'):
            with pytest.raises((ValueError, TypeError), match='request_size') as info:
                f.post('/', Document(), request_size=size)
            assert repr(size) in str(info.value)
        with pytest.raises(TypeError, match='on_done') as info:
            f.post('/', Document(), on_done='print')
        assert 'str' in str(info.value)
        with pytest.raises(TypeError, match='on_error'):
            f.post('/', Document(), on_error=42)
        with pytest.raises(TypeError, match='on_always'):
            f.post('/', Document(), on_always=[])
        with pytest.raises(TypeError, match='parameters'):
            f.post('/', Document(), parameters={'fn': lambda x: x})
        with pytest.raises(TypeError, match='parameters'):
            f.post('/', Document(), parameters=[('a', 1)])
        with pytest.raises(TypeError, match='endpoint'):
            f.post(None, Document())
        # An unknown keyword names the argument it resembles, else lists them all.
        with pytest.raises(TypeError, match=r"^post\(\) got an unexpected argument 'request_szie'; did you mean "
                                            r"'request_size'\?$"):
            f.post('/', Document(), request_szie=10)
        with pytest.raises(TypeError, match="unexpected argument 'data_type'; it takes on, inputs, on_done, "):
            f.post('/', Document(), data_type='auto')  # Jina 2 dropped what it did not know

        got = f.post('/', Document(), parameters=parameters, return_results=True)
    # none of the refused posts reached the executor
    assert got[0].parameters['__results__']['counter'] == {'calls': 1, 'docs': 1}
    assert parameters == {'k': 1}


def test_parameters_keep_exact_types_and_callers_dict_is_untouched():
    params = {
        'i': 1, 'f': 1.0, 'b': True, 'n': None, 's': 'x', 'big': 2 ** 70, 'neg': -3,
        'list': [1, 2.5, False, None, [3, [4.0]]], 'tuple': (1, 2),
        'nested': {'a': {'b': [1, {'c': 2}]}, 'z': 0.0},
        'echo': {'i': 10},  # per-executor values for the executor named 'echo'
    }
    before = copy.deepcopy(params)
    got = []
    with Flow().add(uses=EchoParams, name='echo').add(uses=EchoParams, name='other') as f:
        f.post('/', [Document(), Document()], parameters=params, request_size=1, on_done=got.append)
        f.post('/', Document(), parameters=params, on_done=got.append)

    assert _exact(params) == _exact(before)  # never mutated, at any depth
    assert len(got) == 3
    for resp in got:
        echo = resp.parameters['__results__']['echo']['echo']
        other = resp.parameters['__results__']['other']['echo']
        # each executor gets the parameters as sent (plus the '__results__' of the ones before it),
        # not what an earlier executor changed in its copy
        other.pop('__results__', None)
        assert _exact(other) == _exact(before)
        assert _exact(echo) == _exact(dict(before, i=10))
        assert resp.parameters['i'] == 1 and 'mutated' not in resp.parameters


def test_parameters_are_per_request():
    class Log(Executor):
        @requests
        def foo(self, docs, parameters, **kwargs):
            parameters['log'].append(docs[0].id)
            parameters['top']['seen'] = docs[0].id
            return {'log': list(parameters['log']), 'top': dict(parameters['top'])}

    params = {'log': [], 'top': {}}
    with Flow().add(uses=Log) as f:
        got = f.post('/', [Document(id=str(i)) for i in range(4)], request_size=1, parameters=params,
                     return_results=True, results_in_order=True)
    assert params == {'log': [], 'top': {}}
    assert [r.parameters['__results__']['Log'] for r in got] == [
        {'log': [str(i)], 'top': {'seen': str(i)}} for i in range(4)]
    assert [r.parameters['log'] for r in got] == [[]] * 4


# -- routing -----------------------------------------------------------------------------------
def test_target_executor_by_name_and_regex():
    got = {}
    flow = Flow().add(uses=AppendName, name='enc-a').add(uses=AppendName, name='enc-b').add(uses=AppendName,
                                                                                            name='idx')
    with flow as f:
        for target in (None, 'idx', 'enc-.*', 'enc-b|idx', 'enc', 'enc-a$'):
            got[target] = f.post('/', Document(id='d', text='t'), target_executor=target, return_results=True)[0]
        with pytest.raises(ValueError) as info:
            f.post('/', Document(), target_executor='nope')
        assert "'nope'" in str(info.value) and 'enc-a' in str(info.value)

    assert {k: r.docs[0].tags['seen'] for k, r in got.items()} == {
        None: ['enc-a', 'enc-b', 'idx'], 'idx': ['idx'], 'enc-.*': ['enc-a', 'enc-b'], 'enc-b|idx': ['enc-b', 'idx'],
        'enc': ['enc-a', 'enc-b'], 'enc-a$': ['enc-a']}  # matched at the start of names, as Jina 2 did
    assert all(r.docs[0].id == 'd' and r.docs[0].text == 't' for r in got.values())
    assert [h['executor'] for h in got['idx'].routes] == ['idx']


# -- errors and callbacks --------------------------------------------------------------------
def test_on_error_gets_the_failed_response():
    docs = [Document(id=str(i), tags={'bad': i == 3}) for i in range(10)]
    done, errors, always = [], [], []
    with Flow().add(uses=AppendName, name='first').add(uses=FailOnTag, name='checker') as f:
        result = f.post('/', docs, request_size=1, on_done=done.append, on_error=errors.append,
                        on_always=always.append)
    assert result is None
    assert len(done) == 9 and len(errors) == 1 and len(always) == 10
    (resp,) = errors
    assert resp.status.code == Status.ERROR and resp.is_error
    exc = resp.status.exception
    assert exc.executor == 'checker' and exc.name == 'ValueError'
    assert 'bad document 3' in exc.message
    stacks = ''.join(exc.stacks)
    assert 'Traceback (most recent call last)' in stacks
    assert 'ValueError: bad document 3' in stacks and "f'bad document {d.id}'" in stacks
    assert [d.id for d in resp.docs] == ['3']
    assert all(r.status.code == Status.SUCCESS for r in done)
    assert {r.request_id for r in always} == {r.request_id for r in done + errors}


def test_error_without_on_error_raises_after_inflight_requests_settle():
    docs = [Document(id=str(i), tags={'bad': i == 3}) for i in range(10)]
    done, always = [], []
    with Flow().add(uses=FailOnTag, name='checker') as f:
        with pytest.raises(ExecutorError) as info:
            f.post('/', docs, request_size=1, on_done=done.append, on_always=always.append)
        # the Flow is still usable
        again = f.post('/', docs[:3], request_size=1, return_results=True)
    err = info.value
    assert err.executor == 'checker'
    assert 'checker' in str(err) and 'ValueError' in str(err) and 'bad document 3' in str(err)
    assert isinstance(err.__cause__, RemoteTraceback)
    assert 'ValueError: bad document 3' in str(err.__cause__)
    assert len(done) == 9 and sorted(d.docs[0].id for d in done) == [str(i) for i in range(10) if i != 3]
    assert len(always) == 10
    assert len(again) == 3


def test_raising_on_done_stops_the_post_and_propagates():
    class Stop(Exception):
        pass

    boom = Stop('enough')
    calls = []

    def on_done(resp):
        calls.append(resp)
        raise boom

    with Flow().add(uses=CountCalls) as f:
        with pytest.raises(Stop) as info:
            f.post('/', [Document() for _ in range(10)], request_size=1, on_done=on_done)
        assert info.value is boom
        assert len(calls) == 1
        with pytest.raises(Stop):
            f.post('/', [Document() for _ in range(10)], request_size=1, on_always=on_done)
        # the Flow keeps working afterwards, with exactly the new documents
        after = f.post('/', [Document(id=f'x{i}') for i in range(4)], request_size=2, return_results=True)
    assert len(calls) == 2
    assert sorted(d.id for r in after for d in r.docs) == ['x0', 'x1', 'x2', 'x3']
    assert all(r.status.code == Status.SUCCESS for r in after)


def test_results_in_order():
    docs = [Document(id=str(i)) for i in range(8)]
    with Flow().add(uses=SlowFirst, replicas=2) as f:
        unordered = f.post('/', docs, request_size=1, return_results=True)
        done = []
        ordered = f.post('/', docs, request_size=1, return_results=True, results_in_order=True,
                         on_done=done.append)
    # without the flag, the slow first request comes back after others
    assert [r.docs[0].id for r in unordered][0] != '0'
    assert [r.docs[0].id for r in ordered] == [str(i) for i in range(8)]
    assert [r.docs[0].id for r in done] == [str(i) for i in range(8)]


def test_results_in_order_keeps_at_most_the_window_undelivered():
    # One slow early request: the later ones finish first and wait for it. They still hold
    # their documents, so they count against the window, or the whole input would be read
    # (and held in memory) while the slow one runs.
    state = {'pulled': 0, 'delivered': 0, 'worst': 0}

    def gen(n):
        for i in range(n):
            state['pulled'] += 1
            state['worst'] = max(state['worst'], state['pulled'] - state['delivered'])
            yield Document(id=str(i))

    def on_done(resp):
        state['delivered'] += 1

    with Flow(prefetch=4).add(uses=SlowFirst, replicas=2) as f:
        ids = []
        f.post('/', gen(40), request_size=1, results_in_order=True,
               on_done=lambda r: (on_done(r), ids.append(r.docs[0].id)))
    assert ids == [str(i) for i in range(40)]
    # the document being read counts: at most `prefetch` requests not yet delivered
    assert 1 <= state['worst'] <= 4, state


# -- Response ----------------------------------------------------------------------------------
def test_response_fields():
    got = []
    with Flow().add(uses=AppendName, name='one').add(uses=CountCalls, name='two') as f:
        kids = {p.pid for p in psutil.Process().children(recursive=True)}
        f.post('/search', [Document(id=str(i)) for i in range(6)], request_size=2, parameters={'top_k': 3},
               on_done=got.append)

    assert len(got) == 3 and all(isinstance(r, Response) for r in got)
    assert len({r.request_id for r in got}) == 3 and all(isinstance(r.request_id, str) for r in got)
    for resp in got:
        assert resp.header.exec_endpoint == '/search'
        assert isinstance(resp.docs, DocumentArray) and len(resp.docs) == 2
        assert resp.parameters['top_k'] == 3 and 'two' in resp.parameters['__results__']
        assert resp.status.code == Status.SUCCESS
        assert [h['executor'] for h in resp.routes] == ['one', 'two']
        for hop in resp.routes:
            assert hop['pid'] in kids
            assert hop['received'] <= hop['start'] <= hop['end'] <= hop['sent']
        assert resp.routes[0]['sent'] <= resp.routes[1]['received']
        text = repr(resp)
        assert resp.request_id in text and '/search' in text and 'docs=2' in text
        assert 'one' in text and 'two' in text
    assert sorted(d.id for r in got for d in r.docs) == [str(i) for i in range(6)]


# -- streaming -------------------------------------------------------------------------------
def test_generator_inputs_are_consumed_lazily():
    state = {'pulled': 0, 'completed': 0, 'worst': 0}

    def gen(n):
        for i in range(n):
            state['pulled'] += 1
            state['worst'] = max(state['worst'], state['pulled'] - state['completed'])
            yield Document(id=str(i))

    def on_done(resp):
        state['completed'] += 1
        state['worst'] = max(state['worst'], state['pulled'] - state['completed'])

    with Flow(prefetch=2).add(uses=CountCalls) as f:
        f.post('/', gen(50), request_size=1, on_done=on_done)
        assert state['completed'] == 50 and state['pulled'] == 50
        assert 1 <= state['worst'] <= 2 + 1

        state.update(pulled=0, completed=0, worst=0)
        f.post('/', gen(30), request_size=1, on_done=on_done, prefetch=1)  # post overrides the Flow
        assert state['completed'] == 30 and 1 <= state['worst'] <= 1 + 1

        # A generator runs the caller's code: it is never asked for more before the window
        # has room, however large the window (documents in memory are read ahead).
        state.update(pulled=0, completed=0, worst=0)
        f.post('/', gen(200), request_size=1, on_done=on_done, prefetch=16)
        assert state['completed'] == 200 and 16 <= state['worst'] <= 16 + 1


def test_a_generator_that_paces_itself_by_its_results_is_not_read_ahead():
    # A producer that keeps at most `prefetch` documents outstanding, released by on_done:
    # asking it for one more before a result came back would wait forever.
    outstanding = threading.Semaphore(16)

    def paced():
        for i in range(100):
            assert outstanding.acquire(timeout=10), f'document {i} was asked for before a result freed a place'
            yield Document(id=str(i), embedding=np.zeros(768, np.float32))

    with Flow(prefetch=16).add(uses=SlowReader) as f:
        got = []
        f.post('/', paced(), request_size=1, on_done=lambda r: (got.append(r), outstanding.release()))
    assert len(got) == 100


class SlowReader(Executor):
    """Takes a few milliseconds per request, as a real model would: the post has its window
    full and nothing to do but read ahead."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.docs = 0

    @requests(on='/count')
    def count(self, docs, **kwargs):
        return {'docs': self.docs}

    @requests
    def read(self, docs, **kwargs):
        time.sleep(0.005)
        self.docs += len(docs)


class SlowToFail(Executor):
    """FailOnTag, taking its time over the bad document (the post meanwhile has its
    window full and nothing to do but read ahead)."""

    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            if d.tags.get('bad'):
                time.sleep(0.2)
                raise ValueError(f'bad document {d.id}')


@pytest.fixture
def read_ahead(monkeypatch):
    """How many requests were encoded at most and not yet sent (1 between the two steps of
    sending one; 2 or more: the post read ahead)."""
    from runtime.control.router import Router
    state = {'prepared': 0, 'submitted': 0, 'most': 0}
    prepare, submit = Router.prepare, Router.submit

    def spy_prepare(self, docs):
        out = prepare(self, docs)
        state['prepared'] += 1
        state['most'] = max(state['most'], state['prepared'] - state['submitted'])
        return out

    def spy_submit(self, *args, **kwargs):
        state['submitted'] += 1
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(Router, 'prepare', spy_prepare)
    monkeypatch.setattr(Router, 'submit', spy_submit)
    return state


def test_documents_that_cannot_be_sent_fail_in_their_turn_when_read_ahead(read_ahead):
    # Document 60 holds a tag that does not pickle: encoding it, ahead of its turn, fails.
    # The error is raised in its turn, so every document before it is still sent, and its
    # matrix, already written to shared memory when pickling the rest failed, is freed.
    docs = [Document(id=str(i), embedding=np.zeros(768, np.float32)) for i in range(80)]
    docs[60].tags['f'] = lambda: None
    with Flow(prefetch=16).add(uses=SlowReader, name='reader') as f:
        with pytest.raises(EncodeError, match="'60'"):
            f.post('/', docs, request_size=1)
        assert read_ahead['most'] >= 2
        (resp,) = f.post('/count', Document(), return_results=True)  # answered after all the earlier ones
        assert resp.parameters['__results__']['reader']['docs'] == 60
        assert f._rt.transport._arena.live == 0


def test_a_post_that_stops_on_an_error_frees_what_it_read_ahead(read_ahead):
    docs = [Document(id=str(i), tags={'bad': i == 60}, embedding=np.zeros(768, np.float32)) for i in range(120)]
    with Flow(prefetch=16).add(uses=SlowToFail, name='checker') as f:
        with pytest.raises(ExecutorError, match='bad document 60'):
            f.post('/', docs, request_size=1)
        assert read_ahead['most'] >= 2
        assert f._rt.transport._arena.live == 0  # requests encoded ahead and never sent were freed
        assert len(f.post('/', docs[:3], request_size=1, return_results=True)) == 3


# -- types survive the trip -----------------------------------------------------------------
def test_types_survive_the_trip():
    class Inspect(Executor):
        @requests
        def foo(self, docs, **kwargs):
            return {d.id: {'tags': d.tags, 'blob': None if d.blob is None else (str(d.blob.dtype), d.blob.shape),
                           'emb': None if d.embedding is None else (str(d.embedding.dtype), d.embedding.shape),
                           'buffer': d.buffer} for d in docs}

    rng = np.random.default_rng(1)
    tags = {'n': 1, 'f': 0.5, 'nested': [1, [2, 3], {'k': [True, None]}], 's': 'x'}
    docs = [
        Document(id='blob', blob=np.arange(6, dtype=np.int16).reshape(2, 3), tags=tags),
        Document(id='f16', embedding=rng.random(4).astype(np.float16)),
        Document(id='f64', embedding=rng.random(4)),
        Document(id='i64', embedding=np.arange(5, dtype=np.int64)),
        Document(id='buf', buffer=b'\x00\x01binary\xff'),
    ]
    sent = {d.id: copy.deepcopy(d) for d in docs}
    got = []
    with Flow().add(uses=Inspect, name='first').add(name='pass').add(uses=Inspect, name='last') as f:
        f.post('/', docs, request_size=1, on_done=got.append)  # one kind per request
        f.post('/', docs, on_done=got.append)  # all kinds in one request

    seen = [r.parameters['__results__'][name] for r in got for name in ('first', 'last')]
    for s in seen:
        for doc_id, info in s.items():
            d = sent[doc_id]
            assert _exact(info['tags']) == _exact(d.tags)
            assert info['blob'] == (None if d.blob is None else (str(d.blob.dtype), d.blob.shape))
            assert info['emb'] == (None if d.embedding is None else (str(d.embedding.dtype), d.embedding.shape))
            assert info['buffer'] == d.buffer
    back = {d.id: d for r in got for d in r.docs}
    assert set(back) == set(sent)
    for doc_id, d in back.items():
        orig = sent[doc_id]
        assert _exact(d.tags) == _exact(orig.tags)
        for field in ('blob', 'embedding'):
            a, b = getattr(d, field), getattr(orig, field)
            if b is None:
                assert a is None
            else:
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a, b)
        assert d.buffer == orig.buffer


def test_target_peapod_is_target_executor_and_responses_convert_to_json():
    import json
    with Flow().add(name='a', uses=AppendName).add(name='b', uses=AppendName) as f:
        out = f.post('/', [Document(id='x', text='hi')], target_peapod='b', return_results=True)
        with pytest.raises(TypeError, match='not both'):
            f.post('/', [], target_peapod='a', target_executor='b')
    assert [h['executor'] for h in out[0].routes] == ['b']  # routes are there without profiling
    data = json.loads(out[0].json())
    assert data == out[0].dict()
    assert data['data']['docs'][0]['text'] == 'hi' and data['header']['execEndpoint'] == '/'


def test_unpicklable_uses_with_names_the_executor():
    import threading
    with pytest.raises(TypeError, match="'locked'.*picklable"):
        Flow().add(name='locked', uses_with={'lock': threading.Lock()})


class Evaluate(Executor):
    @requests
    def evaluate(self, docs, groundtruths, **kwargs):
        for d, g in zip(docs, groundtruths):
            d.tags['truth'] = g.text


def test_doc_groundtruth_pairs_reach_every_handler_as_groundtruths():
    pairs = [(Document(text=f'q{i}'), Document(text=f't{i}')) for i in range(7)]
    with Flow().add(uses=Evaluate).add(name='second', uses=Evaluate) as f:
        out = f.post('/', (p for p in pairs), request_size=3, return_results=True)
        with pytest.raises(runtime.BadInputError, match='pairs'):
            f.post('/', [pairs[0], Document()])
    docs = [d for r in out for d in r.docs]
    assert sorted((d.text, d.tags['truth']) for d in docs) == [(f'q{i}', f't{i}') for i in range(7)]


class TruthIfAny(Executor):
    @requests
    def foo(self, docs, groundtruths=None, **kwargs):
        for i, d in enumerate(docs):
            d.tags['truth'] = groundtruths[i].text if groundtruths else None


def test_a_tuple_of_two_documents_is_two_documents_and_a_pair_is_an_item():
    # Jina 2 iterates the inputs: a tuple is a sequence of documents, whatever its length;
    # only its items are read as (doc, groundtruth) pairs.
    with Flow().add(uses=TruthIfAny) as f:
        (two,) = f.post('/', (Document(text='a'), Document(text='b')), return_results=True)
        (one,) = f.post('/', [(Document(text='q'), Document(text='t'))], return_results=True)
    assert [(d.text, d.tags['truth']) for d in two.docs] == [('a', None), ('b', None)]
    assert [(d.text, d.tags['truth']) for d in one.docs] == [('q', 't')]


class KeepEven(Executor):
    @requests
    def keep(self, docs, **kwargs):
        return DocumentArray(d for d in docs if int(d.id) % 2 == 0)


class SplitInThree(Executor):
    @requests
    def split(self, docs, **kwargs):
        return DocumentArray(Document(id=f'{d.id}-{k}') for d in docs for k in range(3))


class FailOddRequests(Executor):
    @requests
    def fail(self, docs, **kwargs):
        if int(docs[0].id) // 10 % 2:
            raise ValueError('odd request')


def _final_progress_line(capfd) -> str:
    import re
    err = capfd.readouterr().err
    lines = [ln for ln in re.split(r'[\r\n]', err) if ln.strip()]
    return lines[-1]


@pytest.mark.parametrize('uses, expected', [
    (KeepEven, r'10 requests, 100 docs done, 50 docs out in '),
    (SplitInThree, r'10 requests, 100 docs done, 300 docs out in '),
    (FailOddRequests, r'10 requests, 50 docs done, 50 docs failed \(5 requests\) in '),
])
def test_the_progress_summary_counts_input_documents_done_and_failed_apart_from_output(capfd, uses, expected):
    import re
    with Flow().add(uses=uses) as f:
        capfd.readouterr()
        f.post('/', [Document(id=str(i)) for i in range(100)], request_size=10, show_progress=True,
               continue_on_error=True)
    line = _final_progress_line(capfd)
    assert re.search(expected, line), line


def test_a_raising_callback_leaves_no_request_or_busy_replica_behind():
    calls = []

    def on_done(resp):
        calls.append(resp)
        if len(calls) == 1:
            raise RuntimeError('callback failed')

    with Flow().add(name='two', uses=AppendName, replicas=2) as f:
        with pytest.raises(RuntimeError, match='callback failed'):
            f.post('/', [Document() for _ in range(8)], request_size=1, on_done=on_done)
        out = f.post('/', [Document() for _ in range(8)], request_size=1, return_results=True)
        assert len(out) == 8
        rt = f._rt
        # The second post may have run on one replica while the other still answers the
        # first post's abandoned requests: let the router read those answers (bounded).
        deadline = time.monotonic() + 10
        while rt._requests and time.monotonic() < deadline:
            rt.pump(0.05)
        assert rt._requests == {}  # every request of both posts was booked and released
        assert [w.outstanding for w in rt.deployments[0].workers] == [0, 0]
        assert rt.transport.ledger.by_request == {}


def test_closing_the_flow_from_a_callback_is_refused_saying_what_to_do():
    with Flow().add(uses=AppendName) as f:
        with pytest.raises(RuntimeError, match='called from a callback of a post that is still running'):
            f.post('/', [Document() for _ in range(5)], request_size=1, on_done=lambda r: f.close())
        (r,) = f.post('/', Document(), return_results=True)  # the Flow is still whole
        assert r.docs[0].tags['seen'] == ['AppendName']
