"""AsyncFlow's life cycle around its posts: a post awaited inside ``async for`` over another,
close() while a post runs (a stuck handler, a consumer still reading), Ctrl-C, and a start
that is cancelled."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from childio import Lines, reap, script_env
from runtime import AsyncFlow, Document, DocumentArray, Executor, requests
from runtime.errors import FlowNotStartedError
from runtime.transport.local.zygote import own_children


class Bang(Executor):
    @requests
    def bang(self, docs: DocumentArray, **kwargs) -> None:
        for d in docs:
            d.text = (d.text or '') + '!'


class Stuck(Executor):
    """Its handler says it has begun (a file), then hangs: a model download, a lock."""

    @requests
    def stuck(self, docs: DocumentArray, parameters: dict, **kwargs) -> None:
        open(parameters['began'], 'w').close()
        time.sleep(parameters['hang'])


class GatedInit(Executor):
    """Starts only once the test creates the gate file (a model that takes long to load)."""

    def __init__(self, gate: str, **kwargs) -> None:
        super().__init__(**kwargs)
        deadline = time.monotonic() + 20
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.01)

    @requests
    def noop(self, docs: DocumentArray, **kwargs) -> None:
        pass


async def until_exists(path: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f'{path} was not created within {timeout} s'
        await asyncio.sleep(0.01)


def test_a_post_awaited_inside_async_for_over_another_completes():
    # The outer post has more requests than its window: it used to wait for room that only
    # its consumer could make, while that consumer waited for the inner post queued behind it.
    async def main() -> list:
        async with AsyncFlow(prefetch=4).add(uses=Bang) as f:
            texts = []
            async for resp in f.post('/index', DocumentArray([Document(text=str(i)) for i in range(20)]),
                                     request_size=1):
                for found in await f.post('/search', resp.docs):
                    texts += found.docs.texts
            return texts

    texts = asyncio.run(asyncio.wait_for(main(), 15))
    assert sorted(texts) == sorted(f'{i}!!' for i in range(20))


def test_close_stops_a_post_stuck_in_a_handler_within_timeout_close(tmp_path):
    began = str(tmp_path / 'began')

    async def main() -> float:
        f = AsyncFlow(timeout_close=1).add(uses=Stuck)
        await f.start()
        task = asyncio.create_task(f.post('/', Document(), parameters={'began': began, 'hang': 15})._collect())
        await until_exists(began)
        task.cancel()  # the coroutine that wanted the answer went away
        t0 = time.monotonic()
        await f.close()
        took = time.monotonic() - t0
        with pytest.raises(asyncio.CancelledError):
            await task
        return took

    # timeout_close for the post, then timeout_close for the process; not the 15 s handler.
    assert asyncio.run(main()) < 6


CTRL_C_SCRIPT = '''
import asyncio, signal, sys, threading, time
from runtime import AsyncFlow, Document, Executor, requests

class Stuck(Executor):
    @requests
    def stuck(self, docs, **kwargs):
        print('in handler', flush=True)
        time.sleep(1000)

async def main():
    async with AsyncFlow(timeout_close=1).add(uses=Stuck) as f:
        if sys.argv[1] == 'flow thread':
            # The kernel may hand Ctrl-C to any thread: here, for certain, the Flow's own.
            flow = next(t for t in threading.enumerate() if t.name.startswith('shmflow-asyncflow'))
            def kick():
                sys.stdin.readline()
                signal.pthread_kill(flow.ident, signal.SIGINT)
            threading.Thread(target=kick, daemon=True).start()
        await f.post('/', Document())

asyncio.run(main())
'''


@pytest.mark.parametrize('to', ['process', 'flow thread'])
def test_ctrl_c_ends_a_program_whose_post_waits_on_a_stuck_handler(tmp_path, to):
    # Delivered to the Flow's thread, Ctrl-C once left asyncio.run's loop asleep in select
    # for good (its handler runs only in the main thread, which nothing woke).
    script = tmp_path / 'ctrl_c.py'
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), to], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=script_env(), cwd=str(tmp_path), start_new_session=True)
    kids = []
    try:
        assert Lines(proc).readline() == 'in handler'
        kids = psutil.Process(proc.pid).children(recursive=True)
        if to == 'process':
            proc.send_signal(signal.SIGINT)
        else:
            proc.stdin.write(b'go\n')
            proc.stdin.flush()
        assert proc.wait(timeout=10) == -signal.SIGINT  # asyncio.run re-raises KeyboardInterrupt
        _, alive = psutil.wait_procs(kids, timeout=5)
        assert not alive, f'processes left running: {[p.pid for p in alive]}'
    finally:
        for p in kids:  # (not our children once the script is gone)
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        reap(proc)


def test_close_while_a_post_is_read_raises_in_its_consumer_instead_of_ending_it_early():
    async def main() -> None:
        f = AsyncFlow(prefetch=2).add(uses=Bang)
        await f.start()
        first, closed = asyncio.Event(), asyncio.Event()
        got = []

        async def consumer() -> None:
            async for resp in f.post('/', [Document() for _ in range(200)], request_size=1):
                got.append(resp)
                if len(got) == 1:
                    first.set()
                    await closed.wait()

        task = asyncio.create_task(consumer())
        await first.wait()
        await f.close()  # e.g. a server shutting down
        closed.set()
        with pytest.raises(FlowNotStartedError, match='closed while this post was running'):
            await task
        assert 1 <= len(got) < 200  # what had come back is still handed over, then the error

    asyncio.run(asyncio.wait_for(main(), 15))


def test_a_cancelled_start_leaves_nothing_running_and_can_be_started_again(tmp_path):
    gate = str(tmp_path / 'gate')

    async def main() -> list:
        f = AsyncFlow().add(uses=GatedInit, uses_with={'gate': gate})
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(f.start(), 0.5)  # the executor cannot be ready before the gate opens
        open(gate, 'w').close()  # the start goes on in its thread, and ends
        await f.close()
        # (exited, or about to: the conftest's check gives them 5 s, which is too long here)
        _, alive = psutil.wait_procs(own_children(), timeout=3)
        assert not alive, f'the cancelled start left {[p.pid for p in alive]} running'
        async with f:
            return await f.post('/', Document())

    assert len(asyncio.run(asyncio.wait_for(main(), 18))) == 1
