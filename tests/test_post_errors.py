"""Errors in the middle of a post, from the caller's side: a callback that raises under
``continue_on_error=True`` (logged, the post goes on, as Jina 2's did), and an input that
raises part-way (the requests already sent settle, their callbacks run, then its error is
raised) -- for ``Flow.post`` and for the clients of a Flow served over HTTP."""
from __future__ import annotations

import asyncio
import logging
import socket

import pytest

from runtime import AsyncClient, Client, Document, Executor, Flow, requests

CALLBACKS = ('on_done', 'on_error', 'on_always')


class Ledger(Executor):
    """``/index`` keeps the ids of the documents it saw and fails a request holding one
    tagged 'bad'; ``/count`` returns the ids kept so far."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.ids: list[str] = []

    @requests(on='/index')
    def index(self, docs, **kwargs):
        self.ids += docs.get_attributes('id')
        for d in docs:
            if d.tags.get('bad'):
                raise ValueError(f'bad document {d.id}')

    @requests(on='/count')
    def count(self, docs, **kwargs):
        return {'ids': list(self.ids)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def kept_ids(poster) -> list[str]:
    """The ids the Ledger holds, asked through ``poster`` (a Flow or a Client)."""
    return poster.post('/count', return_results=True)[0].parameters['__results__']['ledger']['ids']


def docs_with_odd_ones_bad(prefix: str) -> list[Document]:
    return [Document(id=f'{prefix}{i}', tags={'bad': i % 2 == 1}) for i in range(10)]


def raising(calls: list):
    def callback(resp):
        calls.append(resp.request_id)
        raise KeyError(f'flaky callback on {resp.request_id}')
    return callback


def logged_callback_errors(caplog, which: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == 'runtime' and r.levelno == logging.ERROR and r.getMessage().startswith(f'{which} raised')]


def check_logged(caplog, which: str, calls: list) -> None:
    """One ERROR per raising call, naming the callback and the request, with the traceback."""
    records = logged_callback_errors(caplog, which)
    assert len(records) == len(calls)
    for record, rid in zip(records, calls):
        assert rid in record.getMessage()
        assert record.exc_info is not None and record.exc_info[0] is KeyError


def rows(bad_at: int, error: BaseException):
    """An input file's rows, the one at ``bad_at`` unreadable."""
    for i in range(30):
        if i == bad_at:
            raise error
        yield Document(id=str(i))


# -- a callback that raises, under continue_on_error ----------------------------------------------
@pytest.mark.parametrize('which', CALLBACKS)
def test_flow_continue_on_error_logs_a_raising_callback_and_delivers_every_request(caplog, which):
    calls: list = []
    with Flow().add(uses=Ledger, name='ledger') as f:
        with caplog.at_level(logging.ERROR, logger='runtime'):
            out = f.post('/index', docs_with_odd_ones_bad(which), request_size=1, return_results=True,
                         continue_on_error=True, **{which: raising(calls)})
        assert len(out) == 10  # every request went on to the end of its delivery
        assert len(calls) == {'on_done': 5, 'on_error': 5, 'on_always': 10}[which]
        check_logged(caplog, which, calls)
        # Without the flag a raising callback still stops the post and propagates.
        with pytest.raises(KeyError, match='flaky callback'):
            f.post('/index', [Document(tags={'bad': which == 'on_error'})], **{which: raising([])})


def test_clients_continue_on_error_log_a_raising_callback_and_send_every_request(caplog):
    port = free_port()
    with Flow(port_expose=port, protocol='http').add(uses=Ledger, name='ledger'), Client(port=port) as client:
        for which in CALLBACKS:
            calls: list = []
            caplog.clear()
            with caplog.at_level(logging.ERROR, logger='runtime'):
                out = client.post('/index', docs_with_odd_ones_bad(f'c-{which}-'), request_size=1,
                                  return_results=True, continue_on_error=True, **{which: raising(calls)})
            assert len(out) == 10
            assert len(calls) == {'on_done': 5, 'on_error': 5, 'on_always': 10}[which]
            check_logged(caplog, which, calls)
        assert len([i for i in kept_ids(client) if i.startswith('c-')]) == 30  # every document was sent

        # AsyncClient (and AsyncFlow) run their callbacks through the same code.
        async def async_post() -> list:
            return await AsyncClient(port=port).post('/index', docs_with_odd_ones_bad('a-'), request_size=1,
                                                     prefetch=3, continue_on_error=True, on_done=raising(calls))
        calls = []
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger='runtime'):
            assert len(asyncio.run(async_post())) == 5  # the successful responses
        assert len(calls) == 5
        check_logged(caplog, 'on_done', calls)

        # Without the flag the first raise stops the post: nothing more is sent.
        with pytest.raises(KeyError, match='flaky callback'):
            client.post('/index', docs_with_odd_ones_bad('s-'), request_size=1, on_done=raising([]))
        assert [i for i in kept_ids(client) if i.startswith('s-')] == ['s-0']


# -- an input that raises part-way ----------------------------------------------------------------
@pytest.mark.parametrize('in_order', [False, True])
def test_an_input_error_is_raised_once_the_requests_already_sent_have_settled(in_order):
    acked: list = []
    with Flow(prefetch=16).add(uses=Ledger, name='ledger') as f:
        with pytest.raises(ValueError, match='bad row 25') as info:
            f.index(rows(25, ValueError('bad row 25 in the source file')), request_size=2,
                    results_in_order=in_order, on_done=lambda r: acked.extend(r.docs.get_attributes('id')))
        # Every document that reached the executor was acknowledged: a resume knows where to start.
        assert sorted(acked, key=int) == sorted(kept_ids(f), key=int) == [str(i) for i in range(24)]
    # The input's own exception, with the traceback down to where the input raised it.
    assert any(entry.name == 'rows' for entry in info.traceback)


def test_an_input_error_after_a_failed_request_raises_the_input_error_and_logs_the_other(caplog):
    def mixed():
        yield Document(id='bad', tags={'bad': True})
        raise OSError('the source file went away')

    with Flow().add(uses=Ledger, name='ledger') as f:
        with caplog.at_level(logging.ERROR, logger='runtime'), pytest.raises(OSError, match='went away'):
            f.index(mixed, request_size=1)
    assert any('bad document bad' in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


def test_ctrl_c_in_the_input_still_stops_the_post_at_once():
    acked: list = []
    with Flow(prefetch=16).add(uses=Ledger, name='ledger') as f:
        with pytest.raises(KeyboardInterrupt):
            f.index(rows(25, KeyboardInterrupt()), request_size=2,
                    on_done=lambda r: acked.extend(r.docs.get_attributes('id')))
        assert acked == []  # nothing waited for the requests in flight
        assert f.post('/index', Document(id='after'), return_results=True)[0].docs[0].id == 'after'


def test_client_input_error_is_raised_after_every_request_sent_was_answered():
    acked: list = []
    port = free_port()
    with Flow(port_expose=port, protocol='http').add(uses=Ledger, name='ledger'), Client(port=port) as client:
        with pytest.raises(ValueError, match='bad row 25') as info:
            client.index(rows(25, ValueError('bad row 25 in the source file')), request_size=2,
                         on_done=lambda r: acked.extend(r.docs.get_attributes('id')))
        assert sorted(acked, key=int) == sorted(kept_ids(client), key=int) == [str(i) for i in range(24)]
    assert any(entry.name == 'rows' for entry in info.traceback)


def test_async_client_input_error_is_raised_after_the_requests_in_flight_were_answered():
    acked: list = []
    port = free_port()

    async def index() -> None:
        await AsyncClient(port=port).index(rows(25, ValueError('bad row 25')), request_size=2, prefetch=4,
                                           on_done=lambda r: acked.extend(r.docs.get_attributes('id')))
    with Flow(port_expose=port, protocol='http').add(uses=Ledger, name='ledger'), Client(port=port) as client:
        with pytest.raises(ValueError, match='bad row 25'):
            asyncio.run(index())
        assert sorted(acked, key=int) == sorted(kept_ids(client), key=int)

