"""Shared fixtures: every test must leave no child process, socket directory or
shared-memory file behind."""
from __future__ import annotations

import glob
import os
import tempfile

import psutil
import pytest

from runtime.transport.local.zygote import zygote_pid


# Only this process's flows: other test runs may share the machine. Every file and
# directory of a Flow is named after the pid of the process that started it.
SHM_GLOB = f'/dev/shm/shmflow-{os.getpid()}-*'
IPC_GLOB = os.path.join(tempfile.gettempdir(), f'shmflow-{os.getpid()}-*')


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
