"""A dead executor process fails its requests; nothing hangs and nothing is left behind."""
from __future__ import annotations

import os
import signal

import pytest

from runtime import Document, DocumentArray, Executor, Flow, WorkerDiedError, requests


class Dies(Executor):
    @requests(on='/exit')
    def exit(self, docs, parameters, **kwargs):
        os._exit(parameters.get('code', 3))

    @requests(on='/kill')
    def kill(self, docs, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    @requests
    def fine(self, docs, **kwargs):
        pass


def test_process_exit_fails_its_requests_with_the_exit_code():
    errors, always = [], []
    with Flow().add(name='fragile', uses=Dies) as f:
        f.post('/exit', DocumentArray(Document() for _ in range(3)), on_error=errors.append,
               on_always=always.append, parameters={'code': 7})
        assert len(errors) == 1 and always == errors
        err = errors[0].status.error
        assert isinstance(err, WorkerDiedError)
        assert "'fragile'" in str(err) and 'exit code 7' in str(err) and 'replica 0' in str(err)
        assert errors[0].status.exception.executor == 'fragile'
        assert len(errors[0].docs) == 3  # the documents it held come back with the error
        # the executor is gone: later posts fail at once instead of hanging
        with pytest.raises(WorkerDiedError, match='fragile'):
            f.post('/', Document())


def test_sigkill_without_on_error_raises_naming_the_signal():
    with Flow().add(uses=Dies) as f:
        with pytest.raises(WorkerDiedError, match=r'SIGKILL.*out-of-memory'):
            f.post('/kill', Document())
