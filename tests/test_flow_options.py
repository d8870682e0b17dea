"""Jina 2's client options given to ``Flow(...)``: ``return_results``, ``request_size``,
``show_progress`` and ``continue_on_error`` as the defaults of its posts, ``asyncio=True``
for an AsyncFlow, the client options that mean nothing here refused; ``post``'s refusals
of Jina 2 arguments (``request_size=0``, ``shuffle``) saying what to do; and the sharded
merge taking the integral ``top_k`` / ``limit`` values Jina 2 scripts send (``3.0``,
``np.int64(3)``)."""
from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

import runtime.flow
from runtime import Document, DocumentArray, Executor, ExecutorError, Flow, requests
from runtime.control.progress import Progress
from runtime.serving.aflow import AsyncFlow


class Tag(Executor):
    @requests
    def foo(self, docs, **kwargs):
        for d in docs:
            d.tags['seen'] = True


class FailAll(Executor):
    @requests
    def foo(self, docs, **kwargs):
        raise ValueError('no')


class FiveMatches(Executor):
    """Each shard gives every query five matches, scored 0.0 .. 0.4 (cosine: best first)."""

    @requests(on='/search')
    def search(self, docs, **kwargs):
        for d in docs:
            for i in range(5):
                d.matches.append(Document(id=f'{self.runtime_args.shard_id}-{i}', scores={'cosine': i / 10}))


def _docs(n: int) -> DocumentArray:
    return DocumentArray([Document(text=str(i)) for i in range(n)])


# -- Flow(...) client options: the defaults of its posts ------------------------------------------
def test_flow_return_results_is_the_default_of_its_posts():
    # The jina-hub executor tests' idiom: Flow(return_results=True), then post without it.
    with Flow(return_results=True).add(uses=Tag) as f:
        resp = f.post('/index', _docs(3))
        assert [d.tags['seen'] for d in resp[0].docs] == [True] * 3
        assert len(f.search(_docs(1))) == 1  # index / search / ... too
        assert f.post('/index', _docs(3), return_results=False) is None  # the post's own argument wins


def test_flow_request_size_and_continue_on_error_are_defaults_that_survive_add(caplog):
    f = Flow(request_size=2, continue_on_error=True)
    assert f.add(uses=Tag).post_defaults == f.post_defaults  # add() returns a copy: it keeps them
    sizes = []
    with f.add(uses=Tag) as flow:
        flow.post('/', _docs(5), on_done=lambda r: sizes.append(len(r.docs)))
        assert sorted(sizes) == [1, 2, 2]
        sizes.clear()
        flow.post('/', _docs(5), on_done=lambda r: sizes.append(len(r.docs)), request_size=5)
        assert sizes == [5]
    with Flow(continue_on_error=True).add(uses=FailAll) as flow:
        with caplog.at_level(logging.ERROR, logger='runtime'):
            flow.post('/', _docs(2))  # logged, not raised
        assert 'no' in caplog.text
        with pytest.raises(ExecutorError):
            flow.post('/', _docs(2), continue_on_error=False)


def test_asyncflow_takes_the_same_post_defaults():
    async def main() -> None:
        async with AsyncFlow(request_size=2, continue_on_error=True).add(uses=Tag) as f:
            assert sorted(len(r.docs) for r in await f.post('/', _docs(5))) == [1, 2, 2]
            assert [len(r.docs) for r in await f.post('/', _docs(5), request_size=5)] == [5]
        async with AsyncFlow(continue_on_error=True).add(uses=FailAll) as f:
            assert await f.post('/', _docs(2)) == []  # logged, not raised
            with pytest.raises(ExecutorError):
                await f.post('/', _docs(2), continue_on_error=False)
    asyncio.run(main())


def test_flow_show_progress_is_the_default_of_its_posts(monkeypatch):
    bars = []

    class Recorded(Progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(args[0])
    monkeypatch.setattr(runtime.flow, 'Progress', Recorded)
    with Flow(show_progress=True).add(uses=Tag) as f:
        f.post('/index', _docs(3))
        f.post('/quiet', _docs(3), show_progress=False)
    assert bars == ['/index']


def test_flow_post_options_are_checked_when_the_flow_is_made():
    with pytest.raises(ValueError, match=r'request_size must be a positive int .* got 0; Jina 2 read request_size '
                                         r'<= 0 as all inputs in one request: pass request_size=len\(inputs\)'):
        Flow(request_size=0)
    with pytest.raises(TypeError, match="^return_results must be True or False, got str 'yes'$"):
        Flow(return_results='yes')
    with pytest.raises(TypeError, match=r"^Flow\(\) got an unexpected argument 'retrun_results'; did you mean "
                                        r"'return_results'\?$"):
        Flow(retrun_results=True)
    for option in ('proxy', 'https', 'results_as_docarray'):  # Jina 2 client options with no meaning here
        with pytest.raises(TypeError, match=rf'^Flow\({option}=\.\.\.\) .*(remove it|take DocumentArray)'):
            Flow(**{option: True})


def test_flow_post_options_load_from_a_config():
    f = Flow.load_config('jtype: Flow\nwith:\n  return_results: true\n  request_size: 7\nexecutors:\n  - name: a\n')
    assert f.post_defaults == {'request_size': 7, 'show_progress': False, 'return_results': True,
                               'continue_on_error': False}


def test_flow_post_options_survive_save_config(tmp_path):
    f = Flow(return_results=True, request_size=7).add(name='a')
    f.save_config(str(tmp_path / 'flow.yml'))
    assert Flow.load_config(str(tmp_path / 'flow.yml')).post_defaults == f.post_defaults


def test_a_served_flow_draws_no_bar_and_keeps_no_answers_per_http_request(monkeypatch):
    # Flow(show_progress=True, return_results=True) are the defaults of the script's own posts,
    # not of the gateway's: a bar per HTTP request would garble the server's terminal.
    from runtime import Client
    from test_serving import free_port
    bars = []

    class Recorded(Progress):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(args[0])
    monkeypatch.setattr(runtime.flow, 'Progress', Recorded)
    port = free_port()
    with Flow(port_expose=port, protocol='http', show_progress=True, return_results=True).add(uses=Tag) as f:
        got = Client(port=port).post('/index', _docs(3), return_results=True)
        assert [d.tags['seen'] for r in got for d in r.docs] == [True] * 3
        assert bars == []
        assert len(f.post('/index', _docs(2))) == 1 and bars == ['/index']  # the script's own post: both


# -- Flow(asyncio=True) ---------------------------------------------------------------------------
def test_flow_asyncio_true_returns_an_asyncflow():
    af = Flow(asyncio=True, request_size=7).add(uses=Tag)
    assert isinstance(af, AsyncFlow) and af.flow.post_defaults['request_size'] == 7

    async def run():
        async with af as f:
            return await f.post('/', _docs(2))
    resp = asyncio.run(run())
    assert [d.tags['seen'] for d in resp[0].docs] == [True, True]
    assert type(Flow(asyncio=False)) is Flow
    with pytest.raises(TypeError, match="^asyncio must be True or False, got str 'yes'$"):
        Flow(asyncio='yes')

    class MyFlow(Flow):
        pass
    with pytest.raises(TypeError, match=r'MyFlow\(asyncio=True\): an AsyncFlow runs a plain Flow'):
        MyFlow(asyncio=True)


# -- post's refusals of Jina 2 arguments ----------------------------------------------------------
def test_post_refusals_of_jina2_arguments_say_what_to_do():
    with Flow().add(uses=Tag) as f:
        with pytest.raises(ValueError, match=r'got 0; Jina 2 read request_size <= 0 as all inputs in one request: '
                                             r'pass request_size=len\(inputs\)'):
            f.post('/', _docs(2), request_size=0)
        # `jina hello fashion` passes shuffle=True, which Jina 2 dropped without a word.
        with pytest.raises(TypeError, match=r"^post\(\) got an unexpected argument 'shuffle': Jina 2 ignored it .*"
                                            r"remove it"):
            f.post('/', _docs(2), shuffle=True)
        with pytest.raises(TypeError, match=r"remove it: executors read it from the parameters, so pass "
                                            r"parameters=\{'top_k': \.\.\.\}"):
            f.search(_docs(1), top_k=3)


# -- the sharded merge's limit --------------------------------------------------------------------
def test_match_limit_takes_integral_numbers_only():
    from runtime.control.merge import match_limit
    assert [match_limit({'top_k': k}) for k in (3, np.int64(3), np.uint8(3), 3.0, np.float32(3))] == [3] * 5
    assert match_limit({'limit': 2, 'top_k': 9}) == 2 and match_limit({}) is None and match_limit({}, 10) == 10
    for bad in (3.5, -1, -2.0, True, np.bool_(True), float('nan'), float('inf'), '3'):
        with pytest.raises(ValueError, match=r'parameters limit / top_k must be a non-negative int'):
            match_limit({'top_k': bad})


def test_sharded_search_cuts_matches_to_an_integral_top_k():
    with Flow().add(name='idx', uses=FiveMatches, shards=2, polling='all') as f:
        for k in (np.int64(3), 3.0):
            resp = f.search(Document(), parameters={'top_k': k}, return_results=True)
            assert [m.id[2:] for m in resp[0].docs[0].matches] == ['0', '0', '1']
        with pytest.raises(ExecutorError, match=r'limit / top_k must be a non-negative int .*got 3\.5'):
            f.search(Document(), parameters={'top_k': 3.5})
