"""The asyncio API: AsyncFlow (async for / await / callbacks, the event loop never blocked)
and AsyncClient against a served Flow."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

from runtime import AsyncClient, AsyncFlow, Client, Document, DocumentArray, Executor, ExecutorError, requests
from runtime.errors import FlowNotStartedError
from runtime.serving.client import ServerError
from test_serving import Reshape  # (one executor for the progress tests of both)


class Tag(Executor):
    @requests
    def tag(self, docs: DocumentArray, parameters: dict, **kwargs) -> None:
        for d in docs:
            d.tags['size'] = len(docs)
            d.tags['p'] = parameters.get('p')

    @requests(on='/fail')
    def fail(self, docs: DocumentArray, **kwargs) -> None:
        raise KeyError('no such key, on purpose')

    @requests(on='/slow')
    def slow(self, docs: DocumentArray, parameters: dict, **kwargs) -> None:
        time.sleep(parameters['pause'])  # the workload of this endpoint, not a wait in the test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


async def ticking(stop: asyncio.Event, ticks: list) -> None:
    """Counts turns of the event loop: none while something blocks it."""
    while not stop.is_set():
        ticks.append(time.monotonic())
        await asyncio.sleep(0.005)


def test_async_flow_iterates_awaits_and_runs_callbacks_without_blocking_the_loop():
    async def main() -> dict:
        stop, ticks = asyncio.Event(), []
        ticker = asyncio.create_task(ticking(stop, ticks))
        out: dict = {}
        f = AsyncFlow().add(uses=Tag, replicas=2)
        t0 = time.monotonic()
        async with f:
            out['ticks_during_start'] = sum(1 for t in ticks if t > t0)
            sizes = []
            async for resp in f.post('/index', (Document(id=str(i)) for i in range(1000)), request_size=10,
                                     parameters={'p': 1}):
                sizes.append(len(resp.docs))
                assert resp.docs[0].tags['p'] == 1
            out['sizes'] = sizes
            done, always = [], []
            results = await f.search([Document() for _ in range(25)], request_size=10, on_done=done.append,
                                     on_always=always.append)
            out['awaited'] = [len(r.docs) for r in results]
            out['callbacks'] = (len(done), len(always))
            # Two coroutines posting at once take turns on the Flow.
            a, b = await asyncio.gather(f.post('/', Document(id='a')), f.post('/', Document(id='b')))
            out['gathered'] = (a[0].docs[0].id, b[0].docs[0].id)
        stop.set()
        await ticker
        return out

    out = asyncio.run(main())
    assert out['ticks_during_start'] >= 3  # the loop kept turning while the processes started
    assert sum(out['sizes']) == 1000 and set(out['sizes']) == {10}
    assert sorted(out['awaited']) == [5, 10, 10] and out['callbacks'] == (3, 3)
    assert out['gathered'] == ('a', 'b')


def test_async_flow_errors_early_exit_and_callback_exceptions():
    async def main() -> dict:
        out: dict = {}
        async with AsyncFlow().add(uses=Tag, name='tagger') as f:
            with pytest.raises(ExecutorError, match="'tagger' raised KeyError") as info:
                await f.post('/fail', Document())
            out['tb'] = 'on purpose' in info.value.remote_traceback
            errors = []
            await f.post('/fail', [Document() for _ in range(3)], request_size=1, on_error=errors.append)
            out['errors'] = [r.status.exception.executor for r in errors]
            async for _ in f.post('/', (Document() for _ in range(500)), request_size=1):
                break  # leaving early stops the post ...
            out['after_break'] = len(await f.post('/', [Document(), Document()], request_size=1))  # ... cleanly

            def boom(resp):
                raise RuntimeError('callback failed')
            with pytest.raises(RuntimeError, match='callback failed'):
                await f.post('/', [Document() for _ in range(5)], request_size=1, on_done=boom)
            out['after_callback_error'] = len(await f.post('/', Document()))
            post = f.post('/', Document())
            await post
            with pytest.raises(RuntimeError, match='already consumed'):
                await post
            for bad in (0, 'x'):  # refused at the call, as Flow.post refuses it
                with pytest.raises(ValueError, match='prefetch must be a positive int'):
                    f.post('/', Document(), prefetch=bad)
        with pytest.raises(FlowNotStartedError, match='async with'):
            f.post('/', Document())
        return out

    out = asyncio.run(main())
    assert out == {'tb': True, 'errors': ['tagger'] * 3, 'after_break': 2, 'after_callback_error': 1}


def test_async_client_queries_a_served_async_flow():
    port = free_port()

    async def main() -> dict:
        out: dict = {}
        async with AsyncFlow(port_expose=port, protocol='http').add(uses=Tag, name='tagger'):
            client = Client(port=port, asyncio=True)
            assert isinstance(client, AsyncClient)
            results = await asyncio.gather(*(client.post('/', [Document(id=f'{k}-{i}') for i in range(6)],
                                                         request_size=4, parameters={'p': k})
                                             for k in range(3)))
            out['results'] = [[(len(r.docs), r.docs[0].tags['p']) for r in rs] for rs in results]
            seen = []
            async for resp in client.post('/', [Document(), Document()], request_size=1):
                seen.append(len(resp.docs))
            out['seen'] = seen
            with pytest.raises(ExecutorError, match="'tagger' raised KeyError"):
                await client.post('/fail', Document())
        with pytest.raises(ConnectionError, match='nothing listens'):
            await client.post('/', Document())
        return out

    out = asyncio.run(main())
    assert out['results'] == [[(4, k), (2, k)] for k in range(3)]
    assert out['seen'] == [1, 1]


def test_async_client_honours_every_flow_post_argument_or_refuses_it():
    port = free_port()

    async def main() -> dict:
        out: dict = {}
        async with AsyncFlow(port_expose=port, protocol='http').add(uses=Tag, name='tagger'):
            for make in (lambda: AsyncClient(port=port, bogus=1), lambda: Client(port=port, asyncio=True, bogus=1)):
                with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
                    make()
            with pytest.raises(ValueError, match=r'the synchronous client is Client\(\.\.\.\)'):
                AsyncClient(port=port, asyncio=False)
            client = AsyncClient(port=port)
            # Refused at the call, before anything is awaited or sent.
            with pytest.raises(TypeError, match=r"AsyncClient\.post\(\) got an unexpected argument 'prefech'; "
                                                r"did you mean 'prefetch'\?"):
                client.post('/', Document(), prefech=2)
            with pytest.raises(TypeError, match="unexpected argument 'data_type'"):
                client.index(Document(), data_type='auto')
            with pytest.raises(ValueError, match='prefetch must be a positive int'):
                client.post('/', Document(), prefetch=0)
            with pytest.raises(ValueError, match='timeout must be a positive number'):
                client.post('/', Document(), timeout=-1)
            with pytest.raises(TypeError, match='give target_executor or target_peapod'):
                client.post('/', Document(), target_executor='tagger', target_peapod='tagger')
            status = Client(port=port)  # a second client, to see what the gateway has in flight
            out['sent_by_refused'] = sum(status.status()['requests'].values())

            # prefetch: requests in flight, as the gateway counts them while each answer is handled.
            docs = [Document(id=str(i)) for i in range(5)]
            for prefetch in (1, 3):
                seen: list = []
                results = await client.post('/slow', docs, request_size=1, parameters={'pause': 0.15},
                                            prefetch=prefetch, results_in_order=True,
                                            on_done=lambda r: seen.append(status.status()['requests']['inflight']))
                out[f'inflight_{prefetch}'] = seen
                out[f'order_{prefetch}'] = [r.docs[0].id for r in results]
            anyhow = await client.post('/slow', docs, request_size=1, parameters={'pause': 0.01}, prefetch=3)
            out['as_they_come'] = sorted(r.docs[0].id for r in anyhow)
            async for _ in client.post('/slow', docs, request_size=1, parameters={'pause': 0.1}, prefetch=3):
                break  # leaving early cancels the requests in flight ...
            out['after_break'] = len(await client.post('/', Document()))  # ... and the client goes on

            # timeout: each answer's, for this post, over the client's; worded as Client words it.
            with pytest.raises(TimeoutError, match=f'no answer from http://127.0.0.1:{port} within 0.2 s') as info:
                await client.post('/slow', Document(), parameters={'pause': 0.6}, timeout=0.2)
            with pytest.raises(TimeoutError) as sync_info:  # (waits its turn behind the one that timed out)
                status.post('/slow', Document(), parameters={'pause': 0.01}, timeout=0.2)
            out['same_timeout_words'] = str(info.value) == str(sync_info.value)
            patient = AsyncClient(port=port, timeout=0.2)
            out['post_timeout_wins'] = len(await patient.post('/slow', Document(), parameters={'pause': 0.4},
                                                              timeout=30))
            # return_results: taken; awaiting gets the list either way (async for: one by one).
            out['return_results'] = [len(await client.post('/', Document(), return_results=flag)) for flag in (0, 1)]
            # target_peapod (Jina 2.0's name) reaches the Flow as targetExecutor.
            out['peapod'] = (await client.post('/', Document(), target_peapod='tagger'))[0].docs[0].tags['size']
            with pytest.raises(ServerError, match="target_executor 'nobody' matches no executor"):
                await client.post('/', Document(), target_peapod='nobody')
            status.close()
        return out

    out = asyncio.run(main())
    assert out['sent_by_refused'] == 0
    assert out['inflight_1'] == [0] * 5
    assert out['inflight_3'][0] == 2 and max(out['inflight_3']) == 2 and out['inflight_3'][-1] == 0
    assert out['order_1'] == out['order_3'] == out['as_they_come'] == ['0', '1', '2', '3', '4']
    assert out['after_break'] == 1 and out['same_timeout_words'] and out['post_timeout_wins'] == 1
    assert out['return_results'] == [1, 1] and out['peapod'] == 1


def test_both_clients_word_a_refused_connection_alike():
    port = free_port()
    with pytest.raises(ConnectionError, match='nothing listens') as sync_info, Client(port=port) as client:
        client.search(Document())

    async def main() -> None:
        await AsyncClient(port=port).search(Document())
    with pytest.raises(ConnectionError, match='nothing listens') as async_info:
        asyncio.run(main())
    assert str(sync_info.value) == str(async_info.value)


def test_leaving_async_with_while_a_post_is_half_read_closes_promptly():
    import asyncio
    import time
    from runtime import AsyncFlow, Document

    async def main() -> float:
        async with AsyncFlow(prefetch=2).add() as f:
            it = f.post('/index', [Document() for _ in range(200)], request_size=1).__aiter__()
            await it.__anext__()  # read one response, then leave with the rest unread
            t0 = time.monotonic()
        return time.monotonic() - t0

    assert asyncio.run(asyncio.wait_for(main(), 30)) < 10


# -- show_progress counts the input, as Flow.post does ------------------------------------------
def test_async_flow_and_async_client_progress_count_input_documents_as_flow_post_does(capfd):
    import re
    expected = {
        '/keep': r'/keep: 10 requests, 100 docs done, 50 docs out in ',
        '/split': r'/split: 10 requests, 100 docs done, 300 docs out in ',
        '/fail_odd': r'/fail_odd: 10 requests, 50 docs done, 50 docs failed \(5 requests\) in ',
    }
    port = free_port()
    docs = [Document(id=str(i)) for i in range(100)]

    async def main() -> list:
        lines = []
        async with AsyncFlow(port_expose=port, protocol='http').add(uses=Reshape) as f:
            client = AsyncClient(port=port)
            for on in expected:
                for poster in (f, client):
                    capfd.readouterr()
                    await poster.post(on, docs, request_size=10, show_progress=True, continue_on_error=True)
                    err = capfd.readouterr().err
                    lines.append((on, type(poster).__name__, [ln for ln in re.split(r'[\r\n]', err) if ln.strip()][-1]))
        return lines

    for on, who, line in asyncio.run(main()):
        assert re.search(expected[on], line), (who, line)
