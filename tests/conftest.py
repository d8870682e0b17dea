"""Shared fixtures: every test must leave no child process, socket directory or
shared-memory file behind."""
from __future__ import annotations

import glob
import os
import signal
import tempfile

import psutil
import pytest

from runtime.fields import TABLE
from runtime.transport.local import codec
from runtime.transport.local.zygote import zygote_pid


# A suite started in the background of a shell without job control (`make test &`) inherits
# SIGINT ignored, and so would every script the tests start and interrupt: the Ctrl-C tests
# would wait for a KeyboardInterrupt that never comes. A Python handler is not inherited
# across exec, so the scripts start with Python's own again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Only this process's flows: other test runs may share the machine. Every file and
# directory of a Flow is named after the pid of the process that started it.
SHM_GLOB = f'/dev/shm/shmflow-{os.getpid()}-*'
IPC_GLOB = os.path.join(tempfile.gettempdir(), f'shmflow-{os.getpid()}-*')


def _really_plain(d) -> bool:
    return all((getattr(d, f.slot) is None) if f.pack == 'none' else (not getattr(d, f.slot)) if f.pack == 'empty'
               else getattr(d, f.slot) == f.default for f in TABLE if f.name not in ('id', 'embedding'))


def _checked_plain_ids(doc_list, _real=codec._plain_ids):
    # Every encode in the suite's own process (where a script's documents are encoded;
    # workers start from a fresh interpreter) checks that a document marked plain, whose
    # other fields the codec then does not read, holds none.
    for d in doc_list:
        assert not d._plain or _really_plain(d), f'{d!r} is marked plain but sets a field besides id and embedding'
    return _real(doc_list)


codec._plain_ids = _checked_plain_ids


def _leftovers() -> tuple[set, set]:
    return set(glob.glob(SHM_GLOB)), set(glob.glob(IPC_GLOB))


def _started_before(p: psutil.Process, before: set) -> bool:
    """Whether ``p`` or one of its ancestors ran before the test: a service that a fixture
    of wider scope started (a Ray cluster's raylet) and the workers it forks are its own."""
    try:
        return p.pid in before or any(a.pid in before for a in p.parents())
    except psutil.NoSuchProcess:
        return True


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves a child process, an ipc socket directory or a /dev/shm file.

    Children get a few seconds to finish exiting (an event wait, not a sleep); files are
    checked after that, since the last worker out may be the one removing them.
    """
    shm_before, ipc_before = _leftovers()
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    # The executor fork server lives as long as this process; the workers it forks are ours.
    zyg = zygote_pid()
    kids = [p for p in me.children(recursive=True) if p.pid != zyg and not _started_before(p, before - {zyg})]
    _, alive = psutil.wait_procs(kids, timeout=5)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=5)
    shm_after, ipc_after = _leftovers()
    new_shm, new_ipc = shm_after - shm_before, ipc_after - ipc_before
    for path in new_shm:
        os.unlink(path)
    assert not alive, f'child processes left running: {[p.pid for p in alive]}'
    assert not new_shm, f'shared-memory files left behind: {sorted(new_shm)}'
    assert not new_ipc, f'socket directories left behind: {sorted(new_ipc)}'
