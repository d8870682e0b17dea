"""The script's own slow code (callbacks, an input generator) during a post.

While a callback or the input generator runs, the Flow's thread cannot read replies: a
request answered in time must not fail for that, an executor that answered must not be
ended as hung (losing its state), and a slow input's results must come as it is read,
not once the window has filled.
"""
import os
import threading
import time

import pytest

from runtime import Document, Executor, Flow, RequestTimeoutError, requests
from runtime.transport.local import zygote


class Counter(Executor):
    """Counts the documents it has seen: a restart would start again from 0."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = 0

    @requests
    def count(self, docs, **kwargs):
        for d in docs:
            self.seen += 1
            d.tags['seen'] = self.seen
            d.tags['pid'] = os.getpid()


def test_a_slow_callback_fails_no_request_and_ends_no_executor(caplog):
    outcomes, pids = [], set()

    def on_done(resp):
        outcomes.append('done')
        pids.update(d.tags['pid'] for d in resp.docs)
        if len(outcomes) == 1:
            time.sleep(1.5)  # the script's own work (writing results out), three timeouts long

    with Flow().add(uses=Counter, name='counter', replicas=2, max_restarts=3) as f:
        f.post('/x', [Document() for _ in range(40)], request_size=2, timeout=0.5, on_done=on_done,
               on_error=lambda r: outcomes.append(r.status.description))
        last = f.post('/x', [Document()], return_results=True)[0].docs[0]
    assert outcomes == ['done'] * 20
    # the same two processes answered throughout: none was ended as hung
    assert len(pids) == 2 and last.tags['pid'] in pids
    assert 'ending' not in caplog.text


def test_a_slow_input_generator_fails_no_request_and_ends_no_executor():
    def rows():  # rows fetched page by page from a slow database
        for i in range(12):
            if i and i % 4 == 0:
                time.sleep(1.2)
            yield Document(id=str(i))

    done, failed = [], []
    with Flow().add(uses=Counter, name='counter', max_restarts=3) as f:
        f.post('/x', rows(), request_size=1, timeout=0.5, on_done=lambda r: done.append(r.docs[0].tags['seen']),
               on_error=lambda r: failed.append(r.status.description))
    assert failed == []
    assert done == list(range(1, 13))  # one process counted all twelve: never restarted


def test_a_slow_input_gets_its_results_as_it_is_read_not_a_window_later():
    read = []
    read_when_done = {}

    def feed():  # a live feed: an item now and then
        for i in range(8):
            if i:
                time.sleep(0.15)
            read.append(i)
            yield Document(id=str(i))

    def on_done(resp):
        read_when_done[resp.docs[0].id] = len(read)

    with Flow().add(uses=Counter) as f:
        f.post('/x', feed(), request_size=1, on_done=on_done)
    assert len(read_when_done) == 8
    # Each result is delivered within two reads of the input after its own, not once the
    # window (16 requests, more than this whole input) has filled or the input has ended.
    late = {i: read_when_done[str(i)] - (i + 1) for i in range(7)}
    assert all(n <= 2 for n in late.values()), late


def test_two_threads_reaping_one_forked_process_at_once(monkeypatch):
    """The exit-time cleanup and a Flow thread may reap the same process together: one
    reaps it, neither raises, its pidfd is closed once."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(7)
    proc = zygote.ForkedProcess(pid)
    pidfd = proc._pidfd
    closed = []
    real_close, real_waitpid = os.close, os.waitpid
    both_in = threading.Barrier(2)

    def waitpid(p, flags):
        # Let both threads reach waitpid before either reaps, where the lock allows it.
        try:
            both_in.wait(timeout=0.5)
        except threading.BrokenBarrierError:
            pass
        return real_waitpid(p, flags)

    def close(fd):
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(zygote.os, 'waitpid', waitpid)
    monkeypatch.setattr(zygote.os, 'close', close)
    errors, codes = [], []

    def reap():
        try:
            codes.append(proc.wait(timeout=10))
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=reap) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == [] and codes == [7, 7]
    assert proc._pidfd is None and pidfd in closed
    proc.kill()  # reaped already: nothing to signal, nothing raised


def test_a_reaped_forked_process_can_still_be_polled_and_killed():
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(3)
    proc = zygote.ForkedProcess(pid)
    assert proc.wait(timeout=10) == 3
    proc.kill()  # (its pidfd is closed: nothing is signalled)
    assert proc.poll() == 3 and proc.wait() == 3


class Sleepy(Executor):
    @requests
    def work(self, docs, parameters, **kwargs):
        time.sleep(parameters.get('sleep', 0) + sum(d.tags.get('s', 0) for d in docs))
        for d in docs:
            d.tags['pid'] = os.getpid()


def test_an_instance_that_answered_during_a_slow_callback_is_not_ended_as_hung(caplog):
    """An instance taken for hung (it held a timed-out request) that answers while the
    script's callback runs was only slow: its answer is read before the Flow decides to end
    it, however long the callback took."""
    def pids_of(f):
        return {r.docs[0].tags['pid'] for r in f.post('/x', [Document() for _ in range(8)], request_size=1,
                                                       return_results=True)}

    with Flow().add(uses=Sleepy, name='sleepy', replicas=2, max_restarts=1) as f:
        before = pids_of(f)
        with pytest.raises(RequestTimeoutError):
            f.post('/x', [Document()], parameters={'sleep': 0.8}, timeout=0.3)
        # Its grace (1 s past the deadline) passes while this callback sleeps; it answered
        # meanwhile (after 0.8 s), so it is not ended.
        f.post('/x', [Document()], on_done=lambda r: time.sleep(1.5))
        after = pids_of(f)
    assert len(before) == 2 and after <= before  # no process was replaced
    assert 'ending' not in caplog.text


def test_a_slow_callback_does_not_use_up_the_grace_of_an_instance_that_answers_within_it(caplog):
    """Taken for hung (its request timed out), an instance has a grace to answer in; a
    callback running meanwhile does not use it up."""
    def on_done(resp):
        time.sleep(1.5)  # past the slow one's grace (1 s after its deadline), in real time

    with Flow(prefetch=1).add(uses=Sleepy, name='sleepy', replicas=2, max_restarts=1) as f:
        errors = []
        # the first request takes 0.6 s (timeout 0.3 s: it fails, its instance is marked);
        # the second's callback runs while that instance answers, inside its grace
        f.post('/x', [Document(tags={'s': 0.6}), Document()], request_size=1, timeout=0.3, on_done=on_done,
               on_error=lambda r: errors.append(r.status.description))
        f.post('/x', [Document() for _ in range(4)], request_size=1)  # (its answer is booked by now)
    assert len(errors) == 1 and 'timeout=0.3' in errors[0]
    assert 'ending' not in caplog.text and 'restart' not in caplog.text


def test_a_post_inside_a_callback_does_not_count_its_callbacks_time_twice():
    """The time the script's code holds the Flow is taken out of a timeout once, however
    deep the posts inside callbacks go."""
    t0 = time.monotonic()
    failed_at = []

    def inner_done(resp):
        time.sleep(1.0)

    def outer_done(resp):
        f.post('/x', [Document()], on_done=inner_done)

    with Flow().add(uses=Sleepy, name='sleepy', replicas=2) as f:
        f.post('/x', [Document(tags={'s': 3.0}), Document()], request_size=1, timeout=0.5, on_done=outer_done,
               on_error=lambda r: failed_at.append(time.monotonic() - t0))
        assert len(failed_at) == 1
        # 0.5 s, plus the callback's 1 s once: ~1.5 s (counted twice, it came at ~2.5 s)
        assert failed_at[0] < 2.2, failed_at


def test_a_post_inside_a_callback_does_not_count_its_own_callbacks_time():
    def post_with_a_slow_callback(f) -> list:
        errors = []

        def on_done(resp):
            if not resp.docs[0].tags.get('s'):
                time.sleep(0.8)  # while the other request takes 1 s
        f.post('/x', [Document(), Document(tags={'s': 1.0})], request_size=1, timeout=0.6, on_done=on_done,
               on_error=lambda r: errors.append(r.status.description))
        return errors

    nested = []
    with Flow().add(uses=Sleepy, name='sleepy', replicas=2) as f:
        top = post_with_a_slow_callback(f)
        f.post('/x', [Document()], on_done=lambda r: nested.append(post_with_a_slow_callback(f)))
    assert top == [] and nested == [[]]


class Hangs(Executor):
    @requests
    def work(self, docs, **kwargs):
        if any(d.tags.get('hang') for d in docs):
            time.sleep(60)  # (ended by the Flow, long before)


def test_an_asyncflow_reading_a_slow_input_still_ends_a_hung_instance(caplog):
    """Waiting for an async input, the Flow's thread pumps the router: that time is the
    Flow's, so a hung instance's grace runs out and it is ended, as in any post."""
    import asyncio
    from runtime import AsyncFlow

    async def main():
        async def feed():  # a live feed: an item every 0.4 s
            yield Document(tags={'hang': True})
            for i in range(6):
                await asyncio.sleep(0.4)
                yield Document(id=str(i))
        async with AsyncFlow().add(uses=Hangs, name='hangs', replicas=2, max_restarts=1) as f:
            async for _ in f.post('/x', feed, request_size=1, timeout=0.3, continue_on_error=True):
                pass
    asyncio.run(main())
    assert "ending 'hangs' (replica" in caplog.text
