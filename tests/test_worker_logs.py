"""What an executor logs reaches the script's logging, named by its executor: through the
script's handlers and levels, above a progress bar, with tracebacks, also from other
threads of the executor's process and from its ``__init__`` and ``close()``."""
from __future__ import annotations

import io
import os
import logging
import sys
import threading
import warnings

import pytest
import zmq

from runtime import Document, Executor, Flow, requests
from runtime.logging import JinaLogger
from runtime.transport.local.worker_logs import ParentHandler

from test_progress_logging import log_to, screen  # noqa: F401 - (log_to is a fixture)


class Chatty(Executor):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.logger = JinaLogger(self.metas.name)  # (what Jina 2 executors do)
        self.logger.warning('loading the model')

    @requests
    def work(self, docs, **kwargs):
        self.logger.info('got %d docs', len(docs))
        logging.getLogger('chatty.detail').debug('not at this level')
        t = threading.Thread(target=lambda: logging.getLogger('chatty.pool').warning('from a helper thread'))
        t.start()
        t.join()
        warnings.warn('a numpy-ish warning')
        try:
            1 / 0
        except ZeroDivisionError:
            logging.getLogger('chatty').exception('a doc failed')

    def close(self):
        self.logger.warning('index saved')


def _lines(caplog, name: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == name]


def test_an_executors_records_reach_the_scripts_handlers_named_by_its_executor(caplog):
    caplog.set_level(logging.INFO)  # the script's level: executors' INFO records come too
    with Flow().add(name='enc', uses=Chatty, replicas=2) as f:
        f.post('/', [Document() for _ in range(4)], request_size=2)
        by_replica = {r.processName for r in caplog.records if r.name == 'runtime.enc'}
        assert by_replica == {'enc/replica-0', 'enc/replica-1'}
        assert sorted(_lines(caplog, 'runtime.enc')) == sorted(
            [(logging.WARNING, f'enc/replica-{i}: loading the model') for i in (0, 1)]
            + [(logging.INFO, f'enc/replica-{i}: got 2 docs') for i in (0, 1)])
        assert sorted(_lines(caplog, 'chatty.pool')) == [
            (logging.WARNING, f'enc/replica-{i}: from a helper thread') for i in (0, 1)]
        failed = _lines(caplog, 'chatty')
        assert len(failed) == 2 and all(lvl == logging.ERROR for lvl, _ in failed)
        assert all('a doc failed\nTraceback (most recent call last)' in m and 'ZeroDivisionError' in m
                   for _, m in failed)
        assert len(_lines(caplog, 'py.warnings')) == 2
        assert all('UserWarning: a numpy-ish warning' in m for _, m in _lines(caplog, 'py.warnings'))
        assert not _lines(caplog, 'chatty.detail')  # DEBUG: below the script's level
    # What close() logged is in before the Flow's close returns.
    assert sorted(m for _, m in _lines(caplog, 'runtime.enc') if 'saved' in m) == [
        'enc/replica-0: index saved', 'enc/replica-1: index saved']


class Warns(Executor):
    @requests
    def work(self, docs, **kwargs):
        logging.getLogger('runtime.warns').warning('slow disk')


def test_an_executors_warning_is_written_above_the_progress_bar(monkeypatch, log_to):  # noqa: F811
    err = io.StringIO()
    monkeypatch.setattr(sys, 'stderr', err)  # the bar's stream
    log_to(sys.stderr)
    with Flow().add(name='warns', uses=Warns) as f:
        f.post('/', [Document() for _ in range(3)], request_size=1, show_progress=True)
    shown = [ln for ln in screen(err.getvalue()) if ln]
    assert shown[:3] == ['WARNING warns: slow disk'] * 3, shown
    assert shown[-1].startswith('/: 3 requests, 3 docs done'), shown


def _handler(sent: list, fallback_out: io.StringIO, fail: BaseException | None = None) -> ParentHandler:
    def send(header: tuple) -> None:
        if fail is not None:
            raise fail
        sent.append(header)
    fallback = logging.StreamHandler(fallback_out)
    fallback.setFormatter(logging.Formatter('%(name)s %(message)s'))
    return ParentHandler(send, fallback)


def _record(name: str, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, None, None)


def test_records_of_other_threads_wait_for_the_main_thread_in_order_and_go_to_stderr_when_stale():
    sent, out = [], io.StringIO()
    h = _handler(sent, out)
    t = threading.Thread(target=lambda: [h.emit(_record('t', f'thread {i}')) for i in range(3)])
    t.start()
    t.join()
    assert sent == [] and h.waiting()  # the socket is the main thread's
    h.emit(_record('m', 'main'))  # the main thread sends what waited first
    assert [(s[2], s[3]) for s in sent] == [('t', 'thread 0'), ('t', 'thread 1'), ('t', 'thread 2'), ('m', 'main')]
    # The main thread is stuck in a handler: the watcher writes what waited too long to stderr.
    t = threading.Thread(target=lambda: h.emit(_record('t', 'late')))
    t.start()
    t.join()
    h.write_stale(max_wait_s=0.0)
    assert out.getvalue() == 't late\n' and not h.waiting()
    h.shut()  # the socket closes: every later record goes to stderr
    h.emit(_record('m', 'after close'))
    assert out.getvalue().splitlines()[-1] == 'm after close'
    assert len(sent) == 4


@pytest.mark.parametrize('fail', [zmq.Again(), zmq.ZMQError(zmq.ENOTSOCK)])
def test_a_record_the_parent_cannot_take_is_written_to_stderr_not_dropped(fail):
    sent, out = [], io.StringIO()
    h = _handler(sent, out, fail)
    h.emit(_record('m', 'the pipe is full'))
    assert out.getvalue() == 'm the pipe is full\n'


N_FLOOD = 3000  # (more than ZeroMQ's pipes hold: about a thousand messages each way)


class LogsAtClose(Executor):
    def __init__(self, raise_in_close: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.raise_in_close = raise_in_close

    @requests
    def work(self, docs, **kwargs):
        pass

    def close(self):
        log = logging.getLogger('runtime.closing')
        for i in range(N_FLOOD):
            log.warning('saved part %d', i)
        if self.raise_in_close:
            raise OSError('disk full: index not saved')


def test_an_executor_that_logs_much_in_close_closes_at_once_with_every_record(caplog):
    # Nobody read the socket while the processes were exiting: the pipe filled, the worker
    # waited on it, was killed after timeout_close, and most records were lost.
    f = Flow(timeout_close=30).add(name='saver', uses=LogsAtClose)
    with f:
        f.post('/', Document())
    assert [r.getMessage() for r in caplog.records if r.name == 'runtime.closing'] == [
        f'saver: saved part {i}' for i in range(N_FLOOD)]
    assert not [r for r in caplog.records if r.name == 'runtime' and r.levelno >= logging.WARNING]


def test_a_close_that_raises_after_logging_much_still_raises():
    f = Flow(timeout_close=30).add(name='saver', uses=LogsAtClose, uses_with={'raise_in_close': True})
    with pytest.raises(Exception, match='disk full: index not saved'):
        with f:
            f.post('/', Document())


class KeepsThenChatters(Executor):
    """Keeps a request's array (then lets it go: the idle loop tells the parent) while a
    thread of its own logs a flood while the Flow is idle."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.kept = None
        self.done = threading.Event()

    @requests(on='/keep')
    def keep(self, docs, **kwargs):
        self.kept = docs.embeddings

    @requests(on='/chatter')
    def chatter(self, docs, **kwargs):
        self.kept = None  # let go: the parent hears of it from the idle loop

        def flood():
            for i in range(N_FLOOD):
                logging.getLogger('runtime.bg').warning('tick %d', i)
            self.done.set()
        threading.Thread(target=flood).start()

    @requests(on='/wait')
    def wait(self, docs, **kwargs):
        self.done.wait(30)

    def close(self):
        with open(os.path.join(self.workspace, 'closed'), 'w') as fp:
            fp.write('ok')


def test_a_flood_of_records_while_the_flow_is_idle_does_not_keep_the_executor_from_closing(tmp_path, caplog):
    import numpy as np
    f = Flow(workspace=str(tmp_path), timeout_close=30).add(name='bg', uses=KeepsThenChatters)
    with f:
        f.post('/keep', Document(embedding=np.ones(8, dtype=np.float32)))
        f.post('/chatter', Document())
        f.post('/wait', Document())
    assert (tmp_path / 'bg' / 'closed').read_text() == 'ok'  # its close() ran (it was not killed)
    assert not [r for r in caplog.records if 'did not stop' in r.getMessage()]


def test_a_process_forked_by_the_executor_writes_its_records_to_stderr():
    # It has the handler but not the socket's I/O thread: a record sent there vanished.
    sent, out = [], io.StringIO()
    h = _handler(sent, out)
    h._pid = -1  # (what a forked child sees: another pid than the one that made the handler)
    h.emit(_record('child', 'from a forked child'))
    assert sent == [] and out.getvalue() == 'child from a forked child\n'


def test_sending_what_other_threads_logged_ends_although_they_keep_logging():
    # A thread logging faster than records went out kept the main thread sending for good.
    sent, out = [], io.StringIO()
    h = _handler(sent, out)
    for i in range(3):
        h._queue.append((0.0, _record('t', f'queued {i}')))
    refill = iter(range(1000))

    def send_and_refill(header):  # each send: another thread logs one more meanwhile
        sent.append(header)
        if next(refill, None) is not None:
            h._queue.append((0.0, _record('t', 'meanwhile')))
    h._send = send_and_refill
    h.flush_queue()
    assert [s[3] for s in sent] == ['queued 0', 'queued 1', 'queued 2'] and len(h._queue) == 3


class LogsLevels(Executor):
    @requests
    def work(self, docs, **kwargs):
        logging.getLogger('mylib').debug('detail from mylib')
        logging.getLogger('other').info('not at its level')


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_loggers_own_level_set_by_the_script_applies_in_the_executor_too():
    # Only the root's level went to the executors: the script's DEBUG for 'mylib' was lost.
    kept = _Kept()
    mylib, other = logging.getLogger('mylib'), logging.getLogger('other')
    mylib.setLevel(logging.DEBUG)
    mylib.addHandler(kept)
    other.addHandler(kept)
    try:
        with Flow().add(name='lv', uses=LogsLevels) as f:
            f.post('/', Document())
    finally:
        mylib.setLevel(logging.NOTSET)
        mylib.removeHandler(kept)
        other.removeHandler(kept)
    assert [r.getMessage() for r in kept.records] == ['lv: detail from mylib']


@pytest.mark.parametrize('value, level', [('debug', 10), ('Info', 20), ('15', 15), ('', None), (' ', None)])
def test_shmflow_log_level_takes_names_in_any_case_and_numbers(value, level):
    from runtime.transport.local.worker_logs import env_level
    assert env_level(value) == level


def test_a_bad_shmflow_log_level_is_refused_at_start_saying_what_it_takes(monkeypatch):
    # It killed every executor at start, with an error blaming the executor's own code.
    monkeypatch.setenv('SHMFLOW_LOG_LEVEL', 'verbose')
    with pytest.raises(ValueError, match=r"SHMFLOW_LOG_LEVEL='verbose' is not a logging level: give one of DEBUG"):
        with Flow().add(uses=Chatty):
            pass


def test_shmflow_log_level_in_any_case_reaches_the_executor(monkeypatch, caplog):
    monkeypatch.setenv('SHMFLOW_LOG_LEVEL', 'debug')
    caplog.set_level(logging.DEBUG)
    with Flow().add(name='lv', uses=LogsLevels) as f:
        f.post('/', Document())
    assert 'lv: detail from mylib' in [r.getMessage() for r in caplog.records]
