"""A fork server for executor processes: ``python -m runtime.transport.local.zygote PARENT_PID FD``.

Starting an executor process with ``python -m runtime.transport.local.worker`` costs
0.2-0.3 s of CPU, nearly all of it importing numpy, pyzmq and the runtime; three of them
on two cores take half a second. The zygote pays that once for all the Flows a process
has open at a time (it ends with the last of them, so that no process outlives the Flows
that needed it): it imports
those modules (and starts nothing: no thread, no ZeroMQ context, so forking it is safe)
and then forks one worker per request from the parent, in a few milliseconds.

Each worker is forked twice (zygote -> short-lived middle -> worker) while the parent is a
child subreaper (``PR_SET_CHILD_SUBREAPER``, set only for the duration of the request):
when the middle process exits, the worker is re-parented to the parent itself. So a
worker is the parent's child exactly as one started by ``subprocess.Popen``: its
``os.getppid()`` names the parent (which is how it notices the parent's death), the parent
reaps it and reads its exit status (the signal that killed it) with ``waitpid``, and
``psutil.Process().children()`` lists it. The zygote is needed only to start workers: one
that dies is started again on the next request.

Per request the parent sends what a fresh process would have inherited at that moment: the
environment (with the executor's ``env=``), the working directory, the umask and its
standard output and error (as file descriptors, so output captured or redirected after the
zygote started still goes where it should). An ``env=`` naming a variable read when a
module the zygote imported is loaded (``OMP_NUM_THREADS``, ``PYTHONHASHSEED``, ...) would
come too late in a forked process; such an executor is started with ``subprocess`` instead,
as is every executor when ``SHMFLOW_ZYGOTE=0`` is set.

The zygote ends when the parent closes its end of the socket (the last open Flow closed, or
the parent exits) or dies (it watches the parent through a pidfd).

Example
-------
>>> proc = spawn_worker(env, [endpoint, prefix, str(os.getpid()), str(arena_size)], identity, secret)
>>> proc.pid, proc.poll()
(12345, None)
"""
from __future__ import annotations

import atexit
import ctypes
import gc
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback

__all__ = ['ForkedProcess', 'enabled', 'spawn_worker', 'zygote_pid', 'shutdown']

logger = logging.getLogger('runtime')

_PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 36, 37
#: How long the parent waits for the zygote's answer: its first one includes its imports,
#: which take seconds on a loaded machine.
ANSWER_TIMEOUT_S = 60.0
#: Environment variables read when numpy, pyzmq, or the interpreter start: an executor
#: whose ``env=`` sets one is started with ``subprocess``, where they take effect.
#: What the parent says before it closes the socket on purpose (an end of file alone means
#: it died).
BYE = b'bye'
_LOAD_TIME_ENV = ('PYTHON', 'LD_', 'OMP_', 'OPENBLAS_', 'MKL_', 'GOTO', 'VECLIB', 'NUMEXPR_', 'NPY_', 'MALLOC_',
                  'ZMQ_', 'GLIBC_')


# -- the parent's side -------------------------------------------------------------------------
class ForkedProcess:
    """A worker the zygote forked: the parts of ``subprocess.Popen`` the pool uses.

    It is this process's child (re-parented to it), so it is reaped with ``waitpid`` like a
    Popen's; signals go through a pidfd, which cannot reach another process that reused
    the pid.

    Parameters
    ----------
    pid : int
        The worker's process id; it must already be this process's child.

    Example
    -------
    >>> p = ForkedProcess(pid); p.kill(); p.wait(timeout=5)
    -9
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd: int | None = os.pidfd_open(pid)
        # Two threads may reap it at once (a Flow still posting from a daemon thread while
        # the interpreter's exit cleanup kills its processes): one must not close the pidfd
        # the other still uses, nor close its number twice (by then another file's). The
        # lock is only ever held for calls that do not block.
        self._lock = threading.Lock()

    def _reap(self, flags: int) -> int | None:
        with self._lock:
            if self.returncode is None:
                try:
                    pid, status = os.waitpid(self.pid, flags)
                except ChildProcessError:  # reaped elsewhere (SIGCHLD ignored): what Popen reports too
                    pid, status = self.pid, 0
                if pid:
                    self.returncode = os.waitstatus_to_exitcode(status)
                    os.close(self._pidfd)
                    self._pidfd = None
            return self.returncode

    def poll(self) -> int | None:
        """The exit status if it has exited (reaping it), else None."""
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to exit; ``subprocess.TimeoutExpired`` after ``timeout`` s."""
        with self._lock:
            if self.returncode is not None:
                return self.returncode
            fd = os.dup(self._pidfd)  # (its own: another thread may reap it and close ours meanwhile)
        try:
            polled = select.poll()  # (not select.select: a pidfd may be numbered past 1023)
            polled.register(fd, select.POLLIN)
            if not polled.poll(None if timeout is None else max(0.0, timeout) * 1000):
                raise subprocess.TimeoutExpired(f'pid {self.pid}', timeout)
        finally:
            os.close(fd)
        return self._reap(0)  # (it has exited: this does not block)

    def kill(self) -> None:
        """SIGKILL, unless it was already reaped."""
        with self._lock:  # (the pidfd is closed once it is reaped)
            if self.returncode is None:
                try:
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                except ProcessLookupError:  # exited, not reaped yet
                    pass


def enabled(env: dict | None = None) -> bool:
    """Whether a worker with this ``env=`` is forked by the zygote (else: ``subprocess``).

    Example
    -------
    >>> enabled({'OMP_NUM_THREADS': '1'})
    False
    """
    if os.environ.get('SHMFLOW_ZYGOTE', '1').strip().lower() in ('0', 'false', 'no', 'off'):
        return False
    if _state.broken == os.getpid():
        return False
    return not any(str(k).upper().startswith(_LOAD_TIME_ENV) for k in (env or {}))


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.sock: socket.socket | None = None
        self.owner = 0  # the pid that started it: a forked copy of this process starts its own
        self.broken = 0  # the pid whose zygote could not be started: it spawns instead
        self.users = 0  # open Flows of this process: the zygote ends with the last one
        self.dropped: list = []  # releases that could not take the lock (see release)
        self.load_env: dict = {}  # the start-up-time variables it was started with


_state = _State()
_libc = None


def _prctl(option: int, arg: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if option == _PR_GET_CHILD_SUBREAPER:
        out = ctypes.c_int(0)
        if _libc.prctl(option, ctypes.byref(out), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), 'prctl(PR_GET_CHILD_SUBREAPER) failed')
        return out.value
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f'prctl({option}) failed')
    return 0


def zygote_pid() -> int | None:
    """The pid of this process's zygote, or None when none runs.

    Example
    -------
    >>> zygote_pid() is None or isinstance(zygote_pid(), int)
    True
    """
    s = _state
    if s.proc is None or s.owner != os.getpid() or s.proc.poll() is not None:
        return None
    return s.proc.pid


def own_children(recursive: bool = False) -> list:
    """This process's child processes (``psutil.Process`` objects) but its zygote, which
    lives as long as the process: what its Flows started.

    Example
    -------
    >>> with Flow().add().add() as f:  # doctest: +SKIP
    ...     assert len(own_children()) == 2
    """
    import psutil
    zyg = zygote_pid()
    return [p for p in psutil.Process().children(recursive=recursive) if p.pid != zyg]


def _start(env: dict) -> None:
    s = _state
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        s.proc = subprocess.Popen([sys.executable, '-m', 'runtime.transport.local.zygote', str(os.getpid()),
                                   str(theirs.fileno())], env=env, stdin=subprocess.DEVNULL,
                                  pass_fds=[theirs.fileno()])
    finally:
        theirs.close()
    s.sock, s.owner = ours, os.getpid()
    s.load_env = _load_time(env)


def _load_time(env: dict) -> dict:
    """The variables of ``env`` that take effect only when a process starts."""
    return {k: v for k, v in env.items() if str(k).upper().startswith(_LOAD_TIME_ENV)}


def shutdown() -> None:
    """End this process's zygote (it also ends by itself when this process dies).

    Example
    -------
    >>> shutdown(); zygote_pid() is None
    True
    """
    s = _state
    with s.lock:
        proc, sock, s.proc, s.sock = s.proc, s.sock, None, None
        if proc is None or s.owner != os.getpid():
            return
        try:
            sock.send(BYE)  # a clean end: there is nothing of ours for it to sweep
        except OSError:
            pass
        sock.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def hold() -> None:
    """A Flow of this process opens: the zygote (started on its first spawn) stays for as
    long as some Flow is open, so Flows opened together or one inside another share it."""
    s = _state
    with s.lock:
        s.users = max(0, s.users - _take_dropped(s)) + 1


def release(blocking: bool = True) -> None:
    """A Flow of this process closed; with the last one the zygote ends too, so that no
    process outlives the Flows (the next Flow starts a new one, ~0.2 s).

    ``blocking=False``: from the finalizer of a Flow dropped without ``close()``, which a
    garbage collection may run while this very thread holds the lock: when the lock is
    taken, the release is counted by the next ``hold`` or ``release`` instead."""
    s = _state
    if not s.lock.acquire(blocking):
        s.dropped.append(1)
        return
    try:
        s.users = max(0, s.users - 1 - _take_dropped(s))
        last = s.users == 0
    finally:
        s.lock.release()
    if last:
        shutdown()


def _take_dropped(s: _State) -> int:
    n = len(s.dropped)
    del s.dropped[:n]  # (a finalizer may append meanwhile: only these n go)
    return n


def _forget_in_child() -> None:
    """A forked copy of this process must not talk to its parent's zygote."""
    s = _state
    s.lock = threading.Lock()
    s.users = 0
    s.dropped = []
    if s.sock is not None:
        s.sock.close()
    s.proc = s.sock = None


os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(shutdown)


def _request(msg: bytes) -> int:
    s = _state
    fds = []
    for fd in (1, 2):
        try:
            os.fstat(fd)
            fds.append(fd)
        except OSError:  # closed here: the worker gets /dev/null
            fds.append(-1)
    devnull = os.open(os.devnull, os.O_WRONLY) if -1 in fds else -1
    try:
        socket.send_fds(s.sock, [msg], [fd if fd >= 0 else devnull for fd in fds])
    finally:
        if devnull >= 0:
            os.close(devnull)
    if not select.select([s.sock], [], [], ANSWER_TIMEOUT_S)[0]:
        raise TimeoutError(f'the zygote did not answer within {ANSWER_TIMEOUT_S:.0f} s')
    answer = s.sock.recv(1 << 16)
    if len(answer) != 8:
        raise RuntimeError(answer.decode(errors='replace') or 'the zygote exited')
    return struct.unpack('q', answer)[0]


def _umask() -> int:
    """This process's umask, read without setting it (another thread may create files now)."""
    try:
        with open('/proc/self/status') as fp:
            for line in fp:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o077)
    os.umask(umask)
    return umask


def spawn_worker(env: dict, args: list[str], identity: str, secret: str,
                 base_env: dict | None = None) -> ForkedProcess | None:
    """Fork a worker running ``worker.main(args)`` with ``env``; None if the zygote cannot
    (the caller starts one with ``subprocess`` instead).

    Parameters
    ----------
    env : dict
        Its whole environment (the zygote's started from the same one, without ``env=``).
    args : list of str
        ``worker.main``'s arguments: endpoint, prefix, parent pid, arena size.
    identity, secret : str
        Its identity on the Flow's socket and the secret its HELLO proves it with.
    base_env : dict, optional
        The environment to start the zygote with, if it is not running (default: ``env``).

    Example
    -------
    >>> spawn_worker(dict(os.environ), [endpoint, prefix, str(os.getpid()), '33554432'], 'w0-ab', 'cd')
    <ForkedProcess ...>
    """
    s = _state
    umask = _umask()
    msg = pickle.dumps({'env': env, 'cwd': os.getcwd(), 'umask': umask, 'args': args, 'identity': identity,
                        'secret': secret})
    with s.lock:
        try:
            if s.proc is None or s.owner != os.getpid() or s.proc.poll() is not None:
                _start(base_env if base_env is not None else env)
            elif _load_time(base_env if base_env is not None else env) != s.load_env:
                # This Flow's environment differs in what only a fresh start reads (a Flow
                # opened after OMP_NUM_THREADS or PYTHONPATH changed): a fresh process.
                return None
            was = _prctl(_PR_GET_CHILD_SUBREAPER, 0)
            if not was:
                _prctl(_PR_SET_CHILD_SUBREAPER, 1)
            try:
                # The answer comes once the middle process has exited: by then the worker is ours.
                pid = _request(msg)
            finally:
                if not was:
                    _prctl(_PR_SET_CHILD_SUBREAPER, 0)
            return ForkedProcess(pid)
        except (OSError, RuntimeError, TimeoutError) as exc:
            logger.warning('the executor fork server failed (%s); starting executor processes with subprocess', exc)
            _state.broken = os.getpid()
            proc, _state.proc = s.proc, None
            if s.sock is not None:
                s.sock.close()
                s.sock = None
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            return None


# -- the zygote's side -------------------------------------------------------------------------
def _wait_reparented(middle: int) -> None:
    """Wait for the middle process to exit: then this one is the parent's child."""
    if os.getppid() != middle:
        return
    try:
        fd = os.pidfd_open(middle)  # still our parent a moment ago: the pid is still its
    except ProcessLookupError:
        return
    try:
        select.select([fd], [], [], 10.0)
    finally:
        os.close(fd)


def _become_worker(req: dict, fds: list[int], keep_out: list[int], middle: int) -> None:
    """In the forked worker: take on what a fresh process would have, then run the worker."""
    code = 1
    try:
        for fd in keep_out:
            os.close(fd)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.chdir(req['cwd'])
        os.umask(req['umask'])
        os.environ.clear()
        os.environ.update(req['env'])
        if 'numpy.random' in sys.modules:  # a fresh process seeds from the OS, not from the zygote
            sys.modules['numpy.random'].seed()
        sys.argv = [sys.modules['runtime.transport.local.worker'].__file__, *req['args']]
        _wait_reparented(middle)
        from . import worker
        try:
            code = worker.main(req['args'], (req['identity'], req['secret']))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        # What interpreter exit does: wait for non-daemon threads, run atexit handlers, and
        # collect what is left (a file an executor kept open in a cycle gets flushed).
        threading._shutdown()
        atexit._run_exitfuncs()
        gc.collect()
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _fork(req: dict, fds: list[int], ctl: int, parent_fd: int) -> int:
    """Fork the worker through a middle process; returns its pid once the middle is gone."""
    r, w = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(r)
            me = os.getpid()
            pid = os.fork()
            if pid == 0:
                _become_worker(req, fds, [w, ctl, parent_fd], me)
            os.write(w, struct.pack('q', pid))
        finally:
            os._exit(0)
    os.close(w)
    try:
        data = os.read(r, 8)
    finally:
        os.close(r)
    os.waitpid(middle, 0)
    if len(data) != 8:
        raise RuntimeError('the middle process died before forking the worker')
    return struct.unpack('q', data)[0]


def _sweep_after(parent: int) -> None:
    """The parent died with Flows open: remove their files. Its workers do the same when
    they see it go, but one killed while closing may have no worker left to do it."""
    import glob
    import shutil
    import tempfile

    from .shm import sweep
    sweep(f'shmflow-{parent}-')
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f'shmflow-{parent}-*')):
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str]) -> int:
    parent, ctl = int(argv[0]), int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group; the parent decides
    try:
        parent_fd = os.pidfd_open(parent)
    except ProcessLookupError:
        return 0
    if os.getppid() != parent:  # it died before we watched it
        return 0
    # What every worker imports, once: a fork gets them for free. Imports only: a thread or
    # a ZeroMQ context alive here would be broken in every forked worker.
    import cloudpickle  # noqa: F401
    import numpy  # noqa: F401
    import zmq  # noqa: F401

    from . import worker  # noqa: F401
    sock = socket.socket(fileno=ctl)
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    poller.register(parent_fd, select.POLLIN)
    while True:
        ready = dict(poller.poll())
        if parent_fd in ready:
            _sweep_after(parent)
            return 0
        msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
        if msg == BYE:
            return 0  # the parent's last Flow closed
        if not msg:  # its end closed without a word: the parent died, maybe leaving files
            _sweep_after(parent)
            return 0
        try:
            req = pickle.loads(msg)
            sys.stdout.flush()
            sys.stderr.flush()
            answer = struct.pack('q', _fork(req, fds, ctl, parent_fd))
        except Exception as exc:
            answer = f'{type(exc).__name__}: {exc}'.encode() or b'?'
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(answer)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
