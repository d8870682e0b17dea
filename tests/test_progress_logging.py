"""Log records written while a progress bar is shown land on lines of their own above it, and
the logging handlers are exactly as they were once the bar is gone."""
from __future__ import annotations

import gc
import io
import logging
import os
import sys
import threading

import pytest

from runtime import Document, Executor, Flow, WorkerDiedError, requests
from runtime.control.progress import Progress


def screen(text: str) -> list[str]:
    """The lines a terminal shows after ``text``: ``\\r`` returns to the start of the line,
    ``\\n`` goes to the next, ESC[A one up (how tqdm draws and clears its bars)."""
    rows: list[list[str]] = [[]]
    r = c = 0
    i = 0
    while i < len(text):
        if text.startswith('\x1b[A', i):
            r, i = max(r - 1, 0), i + 3
            continue
        ch = text[i]
        i += 1
        if ch == '\r':
            c = 0
        elif ch == '\n':
            r, c = r + 1, 0
            if r == len(rows):
                rows.append([])
        else:
            row = rows[r]
            row.extend(' ' * (c + 1 - len(row)))
            row[c] = ch
            c += 1
    return [''.join(row).rstrip() for row in rows]


def snapshot(logger: logging.Logger) -> tuple:
    """What a user could see of a logger's handlers: the list and each handler's state."""
    return list(logger.handlers), [dict(vars(h)) for h in logger.handlers]


@pytest.fixture
def log_to():
    """Adds a StreamHandler on ``stream`` to a logger (``runtime`` unless named) for the test."""
    added = []

    def add(stream, logger: str = 'runtime', level: int = logging.NOTSET) -> logging.Handler:
        h = logging.StreamHandler(stream)
        h.setFormatter(logging.Formatter('%(levelname)s %(message)s'))
        h.setLevel(level)
        logging.getLogger(logger).addHandler(h)
        added.append((logger, h))
        return h

    yield add
    for logger, h in added:
        logging.getLogger(logger).removeHandler(h)


def test_a_record_logged_while_the_bar_is_shown_gets_its_own_line_above_the_bar(log_to):
    out = io.StringIO()
    log_to(out)
    runtime_logger = logging.getLogger('runtime')
    before = snapshot(runtime_logger)
    p = Progress('/index', 10, file=out)
    p.update(3)
    runtime_logger.warning('restarting executor %r', 'enc')
    shown = [ln for ln in screen(out.getvalue()) if ln]
    assert shown[0] == "WARNING restarting executor 'enc'", shown
    assert shown[-1].startswith('/index:') and '3/10' in shown[-1], shown  # the bar, redrawn below it
    p.close()
    assert snapshot(runtime_logger) == before


def test_a_script_with_no_logging_set_up_gets_its_warnings_above_the_bar_too(monkeypatch):
    # No handler on the way: Python's last-resort handler prints the warning on sys.stderr,
    # where the bar is.
    err = io.StringIO()
    monkeypatch.setattr(sys, 'stderr', err)
    lonely = logging.getLogger('test_progress_logging.lonely')
    monkeypatch.setattr(lonely, 'propagate', False)
    p = Progress('/search', 4)
    lonely.warning('request r-1 timed out')
    shown = [ln for ln in screen(err.getvalue()) if ln]
    p.close()
    assert shown[0] == 'request r-1 timed out', shown
    assert shown[-1].startswith('/search:'), shown  # the bar, redrawn below it
    assert 'emit' not in vars(logging.lastResort)


def test_handlers_keep_their_level_and_those_on_other_streams_and_files_are_left_alone(monkeypatch, log_to,
                                                                                      tmp_path):
    err, other = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, 'stderr', err)
    strict = log_to(sys.stderr, level=logging.ERROR)  # on the bar's stream, but only for errors
    log_to(other)
    file_handler = logging.FileHandler(tmp_path / 'log.txt')
    file_handler.setFormatter(logging.Formatter('%(message)s'))
    root = logging.getLogger()
    root.addHandler(file_handler)
    try:
        runtime_logger = logging.getLogger('runtime')
        before = snapshot(runtime_logger)
        elsewhere = [h for h in runtime_logger.handlers if h is not strict] + [file_handler]
        untouched = [dict(vars(h)) for h in elsewhere]
        p = Progress('/index', 10)
        assert [dict(vars(h)) for h in elsewhere] == untouched
        runtime_logger.warning('below the strict handler level')
        p.close()
        file_handler.flush()
        assert 'below the strict handler level' not in err.getvalue()
        assert other.getvalue() == 'WARNING below the strict handler level\n'
        assert (tmp_path / 'log.txt').read_text() == 'below the strict handler level\n'
        assert snapshot(runtime_logger) == before
    finally:
        root.removeHandler(file_handler)
        file_handler.close()


def test_bars_of_two_threads_closed_out_of_order_leave_the_handlers_as_they_were(log_to):
    out = io.StringIO()
    log_to(out)
    runtime_logger = logging.getLogger('runtime')
    before = snapshot(runtime_logger)
    bars: list[Progress] = []

    def in_thread(fn):
        t = threading.Thread(target=fn)
        t.start()
        t.join()

    in_thread(lambda: bars.append(Progress('/first', 10, file=out)))
    bars.append(Progress('/second', 10, file=out))
    in_thread(bars[0].close)  # the first shown is the first closed: the second is still shown
    runtime_logger.warning('while the second bar is shown')
    shown = screen(out.getvalue())
    assert 'WARNING while the second bar is shown' in shown, shown
    bars[1].close()
    assert snapshot(runtime_logger) == before


def test_many_threads_showing_bars_at_once_leave_the_handlers_as_they_were(log_to):
    out = io.StringIO()
    log_to(out)
    runtime_logger = logging.getLogger('runtime')
    before = snapshot(runtime_logger)
    start = threading.Barrier(4)

    def posts():
        start.wait()
        for _ in range(25):
            p = Progress('/index', 2, file=out)
            runtime_logger.info('not shown: below the level')
            p.update(2)
            p.close()

    threads = [threading.Thread(target=posts) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert snapshot(runtime_logger) == before


def test_a_bar_dropped_without_close_gives_the_handlers_back(log_to):
    out = io.StringIO()
    log_to(out)
    runtime_logger = logging.getLogger('runtime')
    before = snapshot(runtime_logger)
    p = Progress('/index', 10, file=out)
    del p
    gc.collect()
    assert snapshot(runtime_logger) == before


# -- end to end: the Flow's own warnings while f.post shows its bar ------------------------------------

class Dies(Executor):
    @requests
    def exit(self, docs, **kwargs):
        os._exit(3)


def test_the_flows_restart_warning_and_request_error_are_written_above_the_bar(monkeypatch, log_to):
    err = io.StringIO()
    monkeypatch.setattr(sys, 'stderr', err)  # the bar's stream, and the one logging.basicConfig() uses
    log_to(sys.stderr)
    runtime_logger = logging.getLogger('runtime')
    before = snapshot(runtime_logger)
    with Flow().add(name='dies', uses=Dies, max_restarts=1) as f:
        f.post('/', [Document()], show_progress=True, continue_on_error=True)
        shown = [ln for ln in screen(err.getvalue()) if ln]
        # The death, the restart and the failed request, each a line of its own; what is
        # left of the bar is the summary line.
        assert shown[-1].startswith('/: 1 requests, 0 docs done, 1 docs failed'), shown
        assert all(ln.startswith(('ERROR ', 'WARNING ')) for ln in shown[:-1]), shown
        assert any(ln.startswith("WARNING restarting executor 'dies'") for ln in shown), shown
        assert any(ln.startswith('ERROR request ') for ln in shown), shown
        assert snapshot(runtime_logger) == before
        with pytest.raises(WorkerDiedError):  # (no restart left: the post raises)
            f.post('/', [Document()], show_progress=True)
        assert snapshot(runtime_logger) == before
