"""Child processes in tests: their environment, reading their output line by line (waiting
with select, no sleeps), and reaping them."""
from __future__ import annotations

import os
import select
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_env() -> dict:
    """The environment for a child Python that imports this checkout's ``runtime``."""
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))


def reap(proc: subprocess.Popen) -> None:
    """Kill the child if it still runs, wait for it, close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()


class Lines:
    """Lines from a child's stdout (a pipe), each waited for up to a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.fd, self.buf = proc, proc.stdout.fileno(), b''

    def readline(self, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while b'\n' not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f'no line from the child within {timeout} s{self._stderr()}')
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise EOFError(f'the child exited with {self.proc.wait()} before printing a line'
                                   f'{self._stderr()}')
                self.buf += chunk
        line, self.buf = self.buf.split(b'\n', 1)
        return line.decode()

    def _stderr(self) -> str:
        if self.proc.stderr is None or self.proc.poll() is None:
            return ''
        return '; stderr: ' + self.proc.stderr.read().decode()[-2000:]
