"""The AsyncFlow forms of Jina 2.0's documentation: a plain ``with`` (AsyncFlow was a Flow
there), async generators as inputs (its headline feature; AsyncClient takes them too), and
the building API of Flow (``needs``, ``needs_all``, ``plot``, ``load_config``, ...), each
giving an AsyncFlow."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest

from runtime import AsyncClient, AsyncFlow, Client, Document, DocumentArray, Executor, Flow, requests
from runtime.errors import BadInputError, FlowNotStartedError, RequestTimeoutError
from runtime.flow_build import FlowBuilder


class Mark(Executor):
    @requests
    def mark(self, docs: DocumentArray, **kwargs) -> None:
        for d in docs:
            d.tags['seen'] = True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(coro, timeout: float = 20):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def async_docs(n: int = 10, fail_at: int | None = None, log: list | None = None):
    """``n`` documents, giving the loop a turn before each (as a reader of a socket would)."""
    for i in range(n):
        await asyncio.sleep(0)
        if i == fail_at:
            raise ValueError(f'bad row {i} in the source')
        if log is not None:
            log.append(i)
        yield Document(id=str(i))


def sync_docs(n: int = 10, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f'bad row {i} in the source')
        yield Document(id=str(i))


# -- a plain `with` ---------------------------------------------------------------------------------
def test_plain_with_inside_a_coroutine_runs_the_jina2_cookbook_form():
    async def main() -> tuple[list, AsyncFlow]:
        ids = []
        with AsyncFlow().add(uses=Mark) as f:  # Jina 2's Flow cookbook, "Asynchronous Flow"
            async for resp in f.post('/', async_docs, request_size=3):
                ids += [d.id for d in resp.docs if d.tags['seen']]
        return ids, f

    ids, f = run(main())
    assert sorted(ids, key=int) == [str(i) for i in range(10)]
    with pytest.raises(FlowNotStartedError):  # left `with`: closed
        f.post('/', Document())


def test_plain_with_outside_a_loop_serves_coroutines_of_several_loops():
    async def count(f: AsyncFlow) -> int:
        return sum(len(r.docs) for r in await f.post('/', async_docs(4), request_size=1))

    with AsyncFlow().add(uses=Mark) as f:
        assert [asyncio.run(count(f)) for _ in range(2)] == [4, 4]


def test_leaving_a_plain_with_does_not_wait_on_a_post_reading_its_input_from_the_held_loop():
    # The Flow's thread waits for the next document from the loop, which __exit__ holds:
    # close must stop that wait, not sit out timeout_close twice.
    async def main() -> float:
        reading, never = asyncio.Event(), asyncio.Event()

        async def stalls():
            yield Document()
            reading.set()
            await never.wait()
            yield Document()

        with AsyncFlow(prefetch=1, timeout_close=5).add(uses=Mark) as f:
            task = asyncio.create_task(f.post('/', stalls, request_size=1)._collect())
            await reading.wait()  # the first request went, the second is being read
            t0 = time.monotonic()
        took = time.monotonic() - t0
        with pytest.raises(FlowNotStartedError):
            await task
        return took

    assert run(main()) < 4


# -- async generator inputs -------------------------------------------------------------------------
@pytest.mark.parametrize('form', ['function', 'generator', 'lambda'])
def test_async_generator_inputs_are_sent_in_requests_of_request_size(form):
    inputs = {'function': async_docs, 'generator': async_docs(), 'lambda': lambda: async_docs()}[form]

    async def main() -> list:
        async with AsyncFlow().add(uses=Mark) as f:
            return await f.post('/', inputs, request_size=4)

    responses = run(main())
    assert sorted(len(r.docs) for r in responses) == [2, 4, 4]
    assert sorted((d.id for r in responses for d in r.docs), key=int) == [str(i) for i in range(10)]


def test_an_async_generator_is_read_on_the_loop_which_stays_free():
    # Its second document waits for the first response: reading it on a blocked loop, or
    # all of it before sending, would never finish.
    async def main() -> list:
        first_back = asyncio.Event()

        async def paced():
            yield Document(id='a')
            await first_back.wait()
            yield Document(id='b')

        ids = []
        async with AsyncFlow().add(uses=Mark) as f:
            async for resp in f.post('/', paced, request_size=1):
                ids += resp.docs.get_attributes('id')
                first_back.set()
        return ids

    assert run(main()) == ['a', 'b']


def test_an_async_generator_is_read_no_faster_than_the_window_allows():
    prefetch = 2

    async def main() -> int:
        produced, lead = [], 0
        async with AsyncFlow(prefetch=prefetch).add(uses=Mark) as f:
            consumed = 0
            async for resp in f.post('/', async_docs(200, log=produced), request_size=1):
                consumed += len(resp.docs)
                lead = max(lead, len(produced) - consumed)
                for _ in range(20):  # a slow consumer: the loop turns, the generator could run ahead
                    await asyncio.sleep(0)
        assert consumed == 200
        return lead

    # in flight + unread responses (a window each) + the request being read + the one held
    assert run(main(), 40) <= 2 * prefetch + 2


def test_an_async_generator_error_comes_out_as_a_sync_generators_does():
    async def post(inputs) -> tuple[list, BaseException]:
        acked: list = []
        async with AsyncFlow(prefetch=8).add(uses=Mark) as f:
            with pytest.raises(ValueError) as info:
                async for resp in f.post('/', inputs, request_size=2,
                                         on_done=lambda r: acked.extend(r.docs.get_attributes('id'))):
                    pass
        return sorted(acked, key=int), info

    acked, info = run(post(async_docs(25, fail_at=21)))
    sync_acked, sync_info = run(post(sync_docs(25, fail_at=21)))
    assert str(info.value) == str(sync_info.value) == 'bad row 21 in the source'
    assert acked == sync_acked  # what was sent before the input broke is handled alike
    assert any(entry.name == 'async_docs' for entry in info.traceback)  # where the generator raised


def test_an_async_generator_is_closed_when_the_post_stops_early():
    async def main() -> list:
        events = []
        closed = asyncio.Event()

        async def tracked():
            try:
                for i in range(1000):
                    await asyncio.sleep(0)
                    yield Document(id=str(i))
            finally:
                events.append('closed')
                closed.set()

        async with AsyncFlow(prefetch=2).add(uses=Mark) as f:
            gen = tracked()  # (held here: closed by the post, not by the garbage collector)
            async for _ in f.post('/', gen, request_size=1):
                break
            await closed.wait()
            events.append('still usable')
            assert len(await f.post('/', Document())) == 1
        return events

    assert run(main()) == ['closed', 'still usable']


def test_close_stops_a_post_whose_async_generator_awaits_and_closes_the_generator():
    async def main() -> tuple[float, list]:
        events, never = [], asyncio.Event()

        async def stalls():
            try:
                yield Document()
                events.append('awaiting')
                await never.wait()
                yield Document()
            except asyncio.CancelledError:
                events.append('cancelled')
                raise
            finally:
                events.append('closed')

        f = AsyncFlow(prefetch=1, timeout_close=5).add(uses=Mark)
        await f.start()
        got = asyncio.Event()
        gen = stalls()  # (held here: closed by the post, not by the garbage collector)

        async def consume() -> None:
            async for _ in f.post('/', gen, request_size=1):
                got.set()
        task = asyncio.create_task(consume())
        await got.wait()
        while 'awaiting' not in events:
            await asyncio.sleep(0)
        t0 = time.monotonic()
        await f.close()
        took = time.monotonic() - t0
        with pytest.raises(FlowNotStartedError, match='closed while this post was running'):
            await task
        return took, list(events)  # (as the post ended: asyncio.run's own clean-up comes later)

    took, events = run(main())
    assert took < 4  # not timeout_close twice, waiting for a read nobody will finish
    assert events == ['awaiting', 'cancelled', 'closed']


@pytest.mark.parametrize('how', ['await', 'wait_for', 'gather', 'create_task'])
def test_an_async_generator_may_await_a_post_of_its_own_flow(how):
    # The post it feeds waits for it in the Flow's thread: that post runs there meanwhile.
    async def lookup(f: AsyncFlow, d: Document) -> list:
        post = f.post('/', d)
        if how == 'await':
            return await post
        if how == 'wait_for':
            return await asyncio.wait_for(post, 10)
        if how == 'gather':
            return (await asyncio.gather(post))[0]

        async def get() -> list:
            return await post
        return await asyncio.create_task(get())

    async def main() -> list:
        async with AsyncFlow().add(uses=Mark) as f:
            async def enriched():
                for i in range(3):
                    d = Document(id=str(i))
                    d.tags['looked_up'] = (await lookup(f, d))[0].docs[0].tags['seen']
                    yield d
            return [d.tags['looked_up'] for r in await f.post('/', enriched, request_size=1) for d in r.docs]

    assert run(main(), 15) == [True, True, True]


class SlowFirst(Executor):
    @requests
    def slow(self, docs: DocumentArray, **kwargs) -> None:
        if any(d.id == '0' for d in docs):
            time.sleep(20)  # (the simulated stuck handler: closing the Flow kills it)


def test_a_post_times_out_while_its_async_generator_waits_for_an_answer():
    # The generator's next row waits for the first answer, which only the timeout gives.
    async def main() -> tuple[list, float]:
        answered, failed = asyncio.Event(), []

        async def paced():
            yield Document(id='0')
            await answered.wait()
            yield Document(id='1')

        async with AsyncFlow(timeout_close=1).add(uses=SlowFirst) as f:
            t0 = time.monotonic()
            await f.post('/', paced, request_size=1, timeout=0.5, on_always=lambda r: answered.set(),
                         on_error=lambda r: failed.append((r.docs[0].id, r.status.error)))
            return failed, time.monotonic() - t0

    failed, took = run(main(), 15)
    assert took < 5  # not the 20 s the handler holds it
    assert failed[0][0] == '0' and isinstance(failed[0][1], RequestTimeoutError)


async def endless(log: list):
    """Documents for as long as they are asked for (a socket, a queue)."""
    while True:
        await asyncio.sleep(0)
        log.append(len(log))
        yield Document(id=str(len(log)))


def test_a_post_awaited_inside_async_for_over_an_endless_async_input_is_served_and_the_input_paced():
    prefetch = 2

    async def main() -> tuple[int, int]:
        read, handled, lead = [], 0, 0
        async with AsyncFlow(prefetch=prefetch).add(uses=Mark) as f:
            async for resp in f.post('/search', endless(read), request_size=1):
                stored = await asyncio.wait_for(f.post('/store', resp.docs), 10)
                handled += len(stored)
                lead = max(lead, len(read) - handled)
                if handled == 50:
                    break
        return handled, lead

    handled, lead = run(main(), 30)
    assert handled == 50
    # in flight + unread responses (a window each) + the request being read + the one held
    assert lead <= 2 * prefetch + 2


def test_posts_of_other_coroutines_are_served_while_an_endless_input_keeps_its_window():
    prefetch = 2

    async def main() -> tuple[list, int, list]:
        read, consumed, lead = [], [], 0
        first, tick = asyncio.Event(), asyncio.Event()

        async with AsyncFlow(prefetch=prefetch).add(uses=Mark) as f:
            async def stream() -> None:
                async for resp in f.post('/index', endless(read), request_size=1):
                    consumed.append(resp)
                    first.set()
                    await tick.wait()  # a consumer slower than the executors: one per other post
                    tick.clear()

            task = asyncio.create_task(stream())
            await first.wait()
            results = []
            for i in range(20):
                others = [f.post('/search', Document(text=f'{i}.{j}')) for j in range(3)]
                results += await asyncio.wait_for(asyncio.gather(*others), 10)
                lead = max(lead, len(read) - len(consumed))
                tick.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        # request ids are numbered as requests are sent: the three of a round ran in the order posted
        sent = [int(r[0].request_id.rsplit('-', 1)[1]) for r in results]
        return [r[0].docs[0].text for r in results], lead, sent

    texts, lead, sent = run(main(), 30)
    assert texts == [f'{i}.{j}' for i in range(20) for j in range(3)] and sent == sorted(sent)
    assert lead <= 2 * prefetch + 2  # the window kept while the others ran


def test_a_crawler_feeding_its_input_from_nested_posts_ends():
    # Each response is stored with a nested post, then feeds the input the next document.
    async def main() -> int:
        async with AsyncFlow().add(uses=Mark) as f:
            queue: asyncio.Queue = asyncio.Queue()
            await queue.put(Document(id='0'))

            async def stream():
                while (d := await queue.get()) is not None:
                    yield d
            crawled = 0
            async for resp in f.post('/search', stream, request_size=1):
                crawled += 1
                await f.post('/index', resp.docs)
                await queue.put(Document(id=str(crawled)) if crawled < 5 else None)
            return crawled

    assert run(main(), 15) == 5


def test_close_ends_a_post_waiting_for_its_consumer_and_the_post_running_nested_in_it():
    async def main() -> float:
        f = AsyncFlow(prefetch=1, timeout_close=5).add(uses=Mark)
        await f.start()
        started = [asyncio.Event(), asyncio.Event()]
        release = asyncio.Event()

        async def hold(i: int) -> None:
            async for _ in f.post('/', [Document() for _ in range(5)], request_size=1):
                started[i].set()
                await release.wait()  # reads no more for now: the post waits for room
        outer = asyncio.create_task(hold(0))
        await started[0].wait()
        inner = asyncio.create_task(hold(1))  # runs nested in the outer one's wait
        await started[1].wait()
        t0 = time.monotonic()
        await f.close()
        took = time.monotonic() - t0
        release.set()
        for task in (outer, inner):  # each consumer, reading on, learns its post was cut short
            with pytest.raises(FlowNotStartedError, match='closed while this post was running'):
                await task
        return took

    assert run(main(), 20) < 4  # neither post held the close for timeout_close


def test_an_async_generator_cancelled_from_inside_raises_saying_so_after_the_requests_sent_settle():
    async def main() -> tuple[BaseException, list, int]:
        acked = []

        async def stream():
            yield Document(id='0')
            fut = asyncio.get_running_loop().create_future()
            fut.cancel()  # what it awaits is cancelled: the source closed under it
            await fut
            yield Document(id='1')

        async with AsyncFlow().add(uses=Mark) as f:
            with pytest.raises(RuntimeError) as info:
                await f.post('/', stream, request_size=1, on_done=lambda r: acked.extend(r.docs.get_attributes('id')))
            return info.value, acked, len(await f.post('/', Document()))

    error, acked, after = run(main())
    assert 'async generator given as inputs was cancelled while it was being read' in str(error)
    assert isinstance(error.__cause__, asyncio.CancelledError)
    assert acked == ['0'] and after == 1  # what was sent settled first; the Flow goes on


def test_a_synchronous_post_given_an_async_generator_says_to_use_asyncflow():
    with Flow().add(uses=Mark) as f:
        for inputs in (async_docs, async_docs()):
            with pytest.raises(BadInputError, match=r'async generator.*AsyncFlow'):
                f.post('/', inputs)


def test_async_client_sends_an_async_generator_and_raises_its_error():
    port = free_port()

    async def main() -> tuple[list, list]:
        closed = asyncio.Event()

        async def tracked():
            try:
                async for d in async_docs(100):
                    yield d
            finally:
                closed.set()

        async with AsyncFlow(port_expose=port, protocol='http').add(uses=Mark):
            client = AsyncClient(port=port)
            sizes = [len(r.docs) for r in await client.post('/', async_docs, request_size=4, prefetch=2)]
            ids = []
            gen = tracked()  # (held here: closed by the post, not by the garbage collector)
            async for resp in client.post('/', gen, request_size=1):
                ids += resp.docs.get_attributes('id')
                break
            await closed.wait()  # left early: the generator is closed
            with pytest.raises(ValueError, match='bad row 3'):
                await client.post('/', async_docs(10, fail_at=3), request_size=2)
        return sizes, ids

    sizes, ids = run(main(), 30)
    assert sorted(sizes) == [2, 4, 4]
    assert ids == ['0']


def test_the_sync_client_given_an_async_generator_says_to_use_the_async_api():
    with pytest.raises(BadInputError, match='AsyncClient'):
        Client(port=free_port()).post('/', async_docs())


# -- the building API -------------------------------------------------------------------------------
def test_every_building_method_of_flow_is_on_asyncflow():
    public = {n for n in dir(FlowBuilder) if not n.startswith('_')}
    assert public <= set(dir(AsyncFlow))
    assert type(AsyncFlow(asyncio=True).flow) is Flow  # (Flow(asyncio=True)'s switch, taken as is)


def test_building_methods_give_an_asyncflow_that_runs_the_topology(tmp_path):
    f = AsyncFlow(prefetch=4).add(name='a', uses=Mark).add(name='b', needs='gateway')
    assert isinstance(f.needs(['a', 'b']), AsyncFlow) and f.needs(['a', 'b']).num_executors == 3
    joined = f.needs_all()
    assert isinstance(joined, AsyncFlow) and joined.num_executors == 3
    assert joined.plot() is joined and joined.plot(str(tmp_path / 'flow.mmd')) is joined
    assert (tmp_path / 'flow.mmd').read_text() == joined.mermaid() == joined.flow.mermaid()

    joined.save_config(str(tmp_path / 'flow.yml'))
    loaded = AsyncFlow.load_config(str(tmp_path / 'flow.yml'))
    assert isinstance(loaded, AsyncFlow) and loaded.flow._prefetch == 4  # the Flow's own settings kept
    assert loaded.mermaid() == joined.mermaid()
    assert isinstance(AsyncFlow.load_config('jtype: Flow\nexecutors:\n  - name: x\n'), AsyncFlow)

    async def main() -> list:
        async with loaded as running:
            return [d.tags['seen'] for r in await running.post('/', DocumentArray([Document(), Document()])) for d in r.docs]

    assert run(main()) == [True, True]  # 'a' marked them, the join kept it


def test_load_config_of_an_asyncio_flow_gives_that_asyncflow_and_save_config_writes_asyncio(tmp_path):
    loaded = AsyncFlow.load_config('jtype: Flow\nwith:\n  asyncio: true\n  prefetch: 3\nexecutors:\n  - name: a\n')
    assert type(loaded) is AsyncFlow and type(loaded.flow) is Flow and loaded.flow._prefetch == 3

    path = tmp_path / 'flow.yml'
    loaded.save_config(str(path))
    assert 'asyncio: true' in path.read_text()
    again = Flow.load_config(str(path))  # Jina 2's Flow(asyncio=True) config: an AsyncFlow again
    assert type(again) is AsyncFlow and type(again.flow) is Flow
    assert again.flow._prefetch == 3 and again.mermaid() == loaded.mermaid()

    async def main() -> int:
        async with again:
            return len(await again.post('/', Document()))

    assert run(main()) == 1


def test_more_coroutines_than_the_nesting_cap_each_awaiting_a_post_inside_async_for_all_finish():
    # Past MAX_NESTED posts running one inside another, a queued post cannot run nested: the
    # innermost then hands its responses over without waiting for room (else its consumer,
    # awaiting the queued post, and the post would wait for each other for good).
    from runtime.serving.aturns import MAX_NESTED

    async def handler(f, k):
        stored = 0
        async for resp in f.post('/', [Document(id=f'{k}-{i}') for i in range(5)], request_size=1):
            stored += len(await f.post('/', resp.docs))
        return stored

    async def main() -> list:
        async with AsyncFlow(prefetch=2).add(uses=Mark) as f:
            return await asyncio.wait_for(asyncio.gather(*[handler(f, k) for k in range(MAX_NESTED + 8)]), 60)
    assert asyncio.run(main()) == [5] * (MAX_NESTED + 8)
