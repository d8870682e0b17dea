"""The executor process: ``python -m runtime.transport.local.worker ENDPOINT PREFIX PARENT_PID ARENA_SIZE``,
its identity and secret on stdin (argv is readable by every local user).

It connects a DEALER socket to the parent's ROUTER, receives its configuration (the
executor class travels with cloudpickle, so classes from ``__main__`` or a test function
work without re-importing the user's script), builds the executor, and then serves
requests until told to stop or until its parent is gone.
"""
from __future__ import annotations

import collections
import ctypes
import logging
import os
import pickle
import shutil
import signal
import sys
import threading
import time
import traceback

import zmq

from . import protocol as P
from ...procfs import takes_signal
from ..handling import build_executor, find_handler, handled_endpoints, run_handler, use_sys_path
from .codec import decode, encode
from .received import KEPT_ARENA_FRACTION, InputBuffers, held_elsewhere
from .shm import Arena, Mapper, sweep
from .worker_logs import ParentHandler, env_level, install

logger = logging.getLogger('runtime')

#: How often an idle worker checks that its parent lives and that kept arrays were let go.
IDLE_POLL_MS = 200
#: How often a worker with requests queued reads its socket all the same, for a STOP.
LOOK_S = 0.01
#: While requests keep coming, kept buffers are checked for release at most this often (a
#: check costs a reference count per kept buffer: an indexer may keep thousands).
PINS_CHECK_S = 0.02
#: How often the watcher thread checks the parent, and how long it then gives the main
#: loop to exit by itself (it is idle, or its handler is about to return).
WATCH_S, WATCH_GRACE_S = 0.25, 1.0
#: How long a log record waits for room in a full pipe to the parent (see send_log).
LOG_WAIT_MS = 500
#: The longest a closing process waits for the parent's answer to its last message.
ANSWER_WAIT_S = 60.0


class Worker:
    """One executor's process-side loop."""

    def __init__(self, endpoint: str, identity: str, secret: str, prefix: str, parent_pid: int,
                 arena_size: int) -> None:
        self.identity, self.secret, self.prefix, self.parent_pid = identity, secret, prefix, parent_pid
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IDENTITY, identity.encode())
        self.sock.connect(endpoint)
        # One poller for the process's life: Socket.poll() builds a new one on every call.
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.ipc_dir = os.path.dirname(endpoint[len('ipc://'):])
        # Named without the identity's secret part: file names under /dev/shm are public.
        self.arena = Arena(f'{prefix}-{identity.split("-")[0]}', arena_size)
        self.mapper = Mapper()
        self.reused_views: dict = {}  # see InputBuffers
        self.executor = None
        self.name = identity
        self.replica = 0
        self.pinned: list = []  # (ref, view) of request buffers a handler kept
        self.pinned_bytes = 0  # what they hold: past a share of an arena, inputs are copied
        self.releases: list = []  # (arena, slot) let go since the last message out
        self.pins_checked = 0.0  # (time.time()) when ``pinned`` was last checked
        self.logs: ParentHandler | None = None  # once configured, records go to the parent
        self.log_stalled = False  # a log record found no room in vain (see send_log)
        self.stopped = False  # told STOP: the parent waits for this process's last words

    # -- messaging -------------------------------------------------------------------------
    # The parent batches what it has for us (see protocol.pack); we answer each request as
    # soon as it is done (see serve).
    def send(self, header: tuple, meta=b'') -> None:
        frames = P.pack([(header, meta)])
        if len(frames) == 1:  # the usual message: what send_multipart would do, minus its checks
            self.sock.send(frames[0], copy=False)
        else:
            self.sock.send_multipart(frames, copy=False)

    def send_reply(self, reply: tuple) -> None:
        """``handle``'s reply, stamped with the time it leaves."""
        build, fields, frame = reply
        self.send(build(*fields, time.time()), frame)

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    def send_log(self, header: tuple) -> None:
        """A ``log`` message; raises ``zmq.Again`` when the parent does not take it (see
        ``worker_logs``: the record then goes to stderr).

        A full pipe means the parent is behind (it logs each record again) or reads
        nothing (no post is running): the first wait for room lasts ``LOG_WAIT_MS``, and
        once one was in vain, records go to stderr at once until the parent is heard from
        again (``recv`` and ``take_in`` clear ``log_stalled``): a flood of records from an
        idle executor's thread costs no wait each."""
        frame = P.pack([(header, b'')])[0]
        try:
            self.sock.send(frame, zmq.NOBLOCK, copy=False)
            return
        except zmq.Again:
            if self.log_stalled:
                raise
        if self.sock.poll(LOG_WAIT_MS, zmq.POLLOUT):
            self.sock.send(frame, zmq.NOBLOCK, copy=False)
            return
        self.log_stalled = True
        raise zmq.Again()

    def recv(self):
        """The next batch as [(header, meta)], or None when the parent is gone (checked
        while idle)."""
        logs = self.logs
        while True:
            if logs is not None and logs.waiting():  # (what other threads logged meanwhile)
                logs.flush_queue()
            # (zmq_poll returns at once when a message is waiting: no need to ask before)
            if self.poller.poll(IDLE_POLL_MS):
                self.log_stalled = False
                return P.unpack(P.recv_frames(self.sock))
            if not self.parent_alive():
                return None
            self.check_pins()
            if self.releases:
                taken = self._take_releases()
                try:
                    # Never blocking: while the Flow is idle nobody reads this process's pipe,
                    # which its executor's log records may have filled; a blocked send here
                    # would keep the process from hearing STOP.
                    self.sock.send(P.pack([(P.release(taken), b'')])[0], zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    self.releases = taken + self.releases  # (told with a later message)

    # -- lifecycle -------------------------------------------------------------------------
    def configure(self) -> bool:
        # The first message proves this is the process the parent started (the secret came
        # over stdin), in plain text: the parent unpickles nothing from an unproven peer.
        self.sock.send_multipart(P.pack_hello(os.getpid(), self.secret))
        msg = self.recv()
        if msg is None:
            return False
        (header, blob), *_ = msg
        if P.kind(header) != P.CONFIG:  # stopped before it was configured
            return False
        cfg = P.read_config(header)
        self.name, self.replica = cfg['name'], cfg['replica_id']
        _name_process(self.name)
        self.logs = install(self.send_log, cfg.get('log_levels'), self.name)  # (before __init__: it may log)
        try:
            use_sys_path(cfg)
            self.executor = build_executor(pickle.loads(P.frame_bytes(blob)), cfg)
        except BaseException as exc:  # report everything, even SystemExit from __init__
            self.send(P.init_error(type(exc).__qualname__, str(exc), traceback.format_exc()))
            return False
        self.send(P.ready(*handled_endpoints(self.executor)))
        return True

    def serve(self) -> None:
        queue: collections.deque = collections.deque()
        looked = time.perf_counter()  # when the socket was last read for what waits there
        while True:
            if not queue:
                batch = self.recv()
                if batch is None:
                    logger.debug('%s: parent %d is gone, exiting', self.name, self.parent_pid)
                    self.orphan_cleanup()
                    return
                queue.extend(batch)
            header, meta = queue.popleft()
            kind = P.kind(header)
            if kind == P.REQ:
                # Answer each request as soon as it is done: the next executor can start on
                # it while this one goes on, and a reply never waits on another handler (a
                # request done is not late for its timeout). A reply is handed to ZeroMQ's
                # I/O thread, not yet written: a crash of the process right after it (the
                # next handler's os._exit) can still lose it, and the request then fails or
                # is retried with the others it held.
                self.send_reply(self.handle(header, meta))
                t1 = time.perf_counter()
                # What arrived meanwhile is queued behind what is already here, so while
                # requests wait here, reading the socket changes nothing but how soon a STOP
                # is seen: it is read then only every LOOK_S (asking costs a system call).
                # With nothing queued, recv() asks anyway.
                stop = False
                if queue and t1 - looked > LOOK_S:
                    stop = self.take_in(queue)
                    looked = t1
                if stop:
                    self.stopped = True
                    return
            elif kind == P.FREE:
                self.free(P.slots_of(header))
            elif kind == P.FORGET:
                self.forget(P.arenas_of(header))
            elif kind == P.STOP:
                self.free(P.slots_of(header))
                self.stopped = True
                return

    def take_in(self, queue: collections.deque) -> bool:
        """Queue what arrived meanwhile; True if it holds a STOP. A caller that gave up
        (Ctrl-C, an error) stops the Flow while a deep backlog of its requests may wait
        here: those are dropped, so the executor's close() runs in time."""
        sock = self.sock
        stop = False
        while P.waiting(sock):
            self.log_stalled = False
            items = P.unpack(P.recv_frames(sock))
            stop = stop or any(P.kind(h) == P.STOP for h, _ in items)
            queue.extend(items)
        return stop

    def handle(self, header: tuple, meta) -> tuple:
        """One request: its reply as (``P.ok`` or ``P.err``, the fields but the send time,
        the frame), for ``send_reply``."""
        t_recv = time.time()
        rid, endpoint, params_blob, earlier, payload, frees, split = P.read_request(header)
        if frees:
            self.free(frees)
        # A handler that keeps what it is given (an in-memory indexer) gets copies once what
        # it keeps holds a share of an arena (see received.KEPT_ARENA_FRACTION).
        copy = self.pinned_bytes * KEPT_ARENA_FRACTION >= self.arena.size
        try:
            inputs = InputBuffers(payload, self.mapper, copy=copy, reuse=self.reused_views)
        except OSError as exc:  # (not mapped: this request fails, not the process)
            fields = (rid, type(exc).__qualname__, f'its input could not be mapped: {exc}', traceback.format_exc(),
                      (t_recv, t_recv, t_recv))
            return P.err, (*fields, [], self._take_releases()), b''
        build, fields, out_meta = self.process(rid, endpoint, params_blob, earlier, payload, meta, inputs, t_recv,
                                               split)
        pins = [] if copy else inputs.kept()
        inputs.done(self.mapper, pins)
        if pins:
            refs, views = inputs.refs, inputs.views
            self.pinned.extend((refs[i], views[i]) for i in pins)
            self.pinned_bytes += sum(refs[i][3] for i in pins)
            pins = [(refs[i][0], refs[i][1]) for i in pins]
        if self.pinned and t_recv - self.pins_checked > PINS_CHECK_S:
            # Not only when idle: under a steady stream of requests the buffers an executor
            # let go of (an indexer that flushes its buffer) would otherwise stay held, and
            # the arenas fill up while no request needs them.
            self.pins_checked = t_recv
            self.check_pins()
        return build, (*fields, pins, self._take_releases()), out_meta

    def process(self, rid, endpoint, params_blob, earlier, payload, meta, inputs, t_recv, split):
        """Run the handler; returns (``P.ok`` or ``P.err``, its fields but the pins,
        releases and send time, which are known only after this returns; the reply's frame).

        Kept in its own frame so every reference to the request's documents is gone once
        it returns, which is what lets ``inputs.kept()`` tell whether the handler kept any.
        """
        t_start = t_end = time.time()
        try:
            found = find_handler(self.executor, endpoint)
            if found is None:  # the parent routes around this; pass through all the same
                return P.ok, (rid, payload, [], None, (t_recv, t_start, t_end)), meta
            docs = decode(payload, meta, inputs)
            docs, results, t_start, t_end = run_handler(self.executor, self.name, found, docs, params_blob,
                                                        earlier, split)
            out, out_meta, allocs = encode(docs, self.arena, inputs)
            return P.ok, (rid, out, allocs, results, (t_recv, t_start, t_end)), out_meta
        except Exception as exc:
            t_end = max(time.time(), t_start)
            tb = traceback.format_exc()
            fields = (rid, type(exc).__qualname__, str(exc), tb, (t_recv, t_start, t_end))
            # The traceback's frames hold the documents (a handler's locals): clear them, so
            # the kept-buffers check sees only what the executor really kept. (A full
            # gc.collect() here cost ~15 ms per failed request.)
            traceback.clear_frames(exc.__traceback__)
            del exc
            return P.err, fields, b''

    def free(self, slots) -> None:
        for slot in slots:
            self.arena.free(slot)

    def forget(self, arenas: list) -> None:
        """Drop what maps the arenas of dead processes (between requests: no view of them is
        in use, and none is kept, or the parent would not have said so)."""
        gone = set(arenas)
        for arena in gone:
            self.mapper.forget(arena)
        for ref in [r for r in self.reused_views if r[0] in gone]:
            del self.reused_views[ref]

    def check_pins(self) -> None:
        """Release request buffers that the executor no longer references."""
        if not self.pinned:
            return
        still = []
        for entry in self.pinned:
            if held_elsewhere(entry, 1):
                still.append(entry)
            else:
                self.pinned_bytes -= entry[0][3]
                self.releases.append((entry[0][0], entry[0][1]))
        self.pinned = still

    def _take_releases(self) -> list:
        out, self.releases = self.releases, []
        return out

    def close(self) -> bool:
        """Close the executor and everything of this process; False if the executor's
        ``close()`` raised (the parent was told, so that the Flow's close raises it: an index
        that was not saved must not go unnoticed)."""
        last = None
        try:
            if self.executor is not None:
                last = P.bye()
                try:
                    self.executor.close()
                except Exception as exc:  # noqa: BLE001 - reported to the parent
                    last = P.close_error(type(exc).__qualname__, str(exc), traceback.format_exc())
                    return False
        finally:
            said = False
            if self.logs is not None:
                self.logs.shut()  # (later records, of the lines below or of other threads, go to stderr)
            if last is not None and self.parent_alive():
                # The parent reads the log records sent by close() until this arrives.
                try:
                    self.send(last)
                    said = True
                    if self.stopped:  # (else it is dying of an error, which the parent sees as such)
                        self.await_answer()
                except Exception:  # noqa: BLE001 - the parent is gone: nobody to tell
                    pass
            self.executor = None
            self.arena.close()
            self.mapper.close()
            self.sock.close(linger=1000 if said else 0)  # (what was said must get out first)
            self.ctx.term()
        return True

    def await_answer(self) -> None:
        """Wait for the parent's ``bye``, its answer to this process's last message. What a
        process sent is lost if it exits while its messages still wait in the socket (the
        parent had them in its pipe's backlog, after a flood of log records): only the
        answer tells that the parent read everything. Bounded: a parent that does not
        answer kills the process after its ``timeout_close``, and one that is gone is
        noticed within ``IDLE_POLL_MS``."""
        deadline = time.monotonic() + ANSWER_WAIT_S
        while time.monotonic() < deadline and self.parent_alive():
            if self.poller.poll(IDLE_POLL_MS):
                if any(P.kind(h) == P.BYE for h, _ in P.unpack(P.recv_frames(self.sock))):
                    return

    def watch_parent(self) -> None:
        """A thread: if the parent dies while the main loop is stuck in a long handler, the
        loop cannot notice; after a grace period for it to exit cleanly, remove the Flow's
        files and end the process from here."""
        while self.parent_alive():
            time.sleep(WATCH_S)
            if self.logs is not None:
                self.logs.write_stale()  # (the main thread, stuck in a handler, cannot send them)
        time.sleep(WATCH_GRACE_S)  # an idle main loop notices within IDLE_POLL_MS and exits cleanly
        logger.debug('%s: parent %d is gone while a handler runs; exiting', self.name, self.parent_pid)
        self.orphan_cleanup()
        os._exit(1)

    def on_signal(self, signum: int, frame) -> None:
        """SIGTERM / SIGHUP (a systemd stop, timeout(1), a closed terminal).

        Those signal the whole process group, the parent too. While the parent lives and
        takes the signal (catches it: a Flow, which then stops this process as on Ctrl-C so
        that the executor's ``close()`` runs, or the program's own handler; or ignores it:
        ``nohup``), the parent decides, and this process goes on until told to stop. Once
        told to stop (a second signal during ``close()``), or where the parent does not take
        it (it dies of it), or with the parent gone: the process's own arena, and the whole
        Flow's files if the parent is gone, go now, and it dies of the signal as if it had
        not been caught."""
        # (unknown, without /proc: taken as not, so as not to outlive a parent dying of it)
        if self.parent_alive() and not self.stopped and takes_signal(self.parent_pid, signum):
            return
        self.arena.close()
        if not self.parent_alive():
            self.orphan_cleanup()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def orphan_cleanup(self) -> None:
        """The parent died without stopping us: remove what the whole Flow left behind.

        Every worker does it; unlinking is idempotent and nobody maps the files anew."""
        sweep(self.prefix)
        shutil.rmtree(self.ipc_dir, ignore_errors=True)


#: prctl's option that names the calling thread (the process's main thread: its comm).
_PR_SET_NAME = 15


def _name_process(name: str) -> None:
    """Show the executor's name as this process's name (``top``, ``ps -o comm``,
    ``/proc/<pid>/comm``; 15 bytes at most): a forked worker's command line is its fork
    server's, which tells the executors apart no more than a bare 'python' does."""
    if sys.platform != 'linux':
        return
    try:
        ctypes.CDLL(None).prctl(_PR_SET_NAME, name.encode('utf-8', 'replace')[:15], 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the name is only a convenience
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: it exists
        return True
    return True


def main(argv: list[str], credentials: tuple[str, str] | None = None) -> int:
    """Run one worker; ``credentials`` (identity, secret) are read from stdin if not given
    (the zygote, which forks this process, gives them)."""
    endpoint, prefix, parent_pid, arena_size = argv
    identity, secret = credentials if credentials is not None else sys.stdin.readline().split()
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        level = env_level(os.environ.get('SHMFLOW_LOG_LEVEL'))
    except ValueError:  # (install() says so, once the parent hears this process)
        level = None
    logging.basicConfig(level=level or logging.WARNING)
    if os.getppid() != int(parent_pid) and _alive(int(parent_pid)):
        # Not the child of the Flow that asked for it, which lives on: a fork the Flow gave
        # up waiting for (its fork server answered too late) and started otherwise. Taking
        # that Flow for dead would remove its files from under it: this process just ends.
        logger.warning('%s: started after its Flow (pid %s) gave up on it; exiting', identity.split('-')[0],
                       parent_pid)
        return 1
    worker = Worker(endpoint, identity, secret, prefix, int(parent_pid), int(arena_size))
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, worker.on_signal)
    threading.Thread(target=worker.watch_parent, name='parent-watch', daemon=True).start()
    code = 0
    try:
        if worker.configure():
            worker.serve()
    except SystemExit:
        raise
    except BaseException:
        # An error outside any handler (or a BaseException out of one): tell the parent why
        # before dying of it, so the error it raises carries this traceback.
        try:
            worker.send(P.fatal(traceback.format_exc()))
        except Exception:
            pass
        code = 1
    finally:
        if not worker.close() and code == 0:
            code = P.CLOSE_FAILED
    return code


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
