"""The executor process: ``python -m runtime.transport.local.worker ENDPOINT IDENTITY PREFIX PARENT_PID ARENA_SIZE``.

It connects a DEALER socket to the parent's ROUTER, receives its configuration (the
executor class travels with cloudpickle, so classes from ``__main__`` or a test function
work without re-importing the user's script), builds the executor, and then serves
requests until told to stop or until its parent is gone.
"""
from __future__ import annotations

import gc
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
from ...array import DocumentArray, DocumentSequence
from .codec import InputBuffers, decode, encode, held_elsewhere
from .shm import Arena, Mapper, sweep

logger = logging.getLogger('runtime')

#: How often an idle worker checks that its parent lives and that kept arrays were let go.
IDLE_POLL_MS = 200
#: How often the watcher thread checks the parent, and how long it then gives the main
#: loop to exit by itself (it is idle, or its handler is about to return).
WATCH_S, WATCH_GRACE_S = 0.25, 1.0


class Worker:
    """One executor's process-side loop."""

    def __init__(self, endpoint: str, identity: str, prefix: str, parent_pid: int, arena_size: int) -> None:
        self.identity, self.prefix, self.parent_pid = identity, prefix, parent_pid
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IDENTITY, identity.encode())
        self.sock.connect(endpoint)
        self.ipc_dir = os.path.dirname(endpoint[len('ipc://'):])
        self.arena = Arena(f'{prefix}-{identity}', arena_size)
        self.mapper = Mapper()
        self.executor = None
        self.name = identity
        self.replica = 0
        self.pinned: list = []  # (ref, view) of request buffers a handler kept
        self.releases: list = []  # (arena, slot) let go since the last message out

    # -- messaging -------------------------------------------------------------------------
    # The parent batches what it has for us (see protocol.pack); we answer each request on
    # its own as soon as it is done (see serve).
    def send(self, header: tuple, meta=b'') -> None:
        self.sock.send_multipart(P.pack([(header, meta)]), copy=False)

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    def recv(self):
        """The next batch as [(header, meta)], or None when the parent is gone (checked
        while idle)."""
        while True:
            if self.sock.poll(IDLE_POLL_MS):
                return P.unpack(self.sock.recv_multipart(copy=False))
            if not self.parent_alive():
                return None
            self.check_pins()
            if self.releases:
                self.send((P.RELEASE, self._take_releases()))

    # -- lifecycle -------------------------------------------------------------------------
    def configure(self) -> bool:
        self.send((P.HELLO, os.getpid()))
        msg = self.recv()
        if msg is None:
            return False
        (header, blob), *_ = msg
        if header[0] != P.CONFIG:  # stopped before it was configured
            return False
        cfg = header[1]
        self.name, self.replica = cfg['name'], cfg['replica_id']
        try:
            for p in reversed(cfg['sys_path']):
                if p not in sys.path:
                    sys.path.insert(0, p)
            cls = pickle.loads(P.frame_bytes(blob))
            obj = cls.__new__(cls)
            for k, v in cfg['metas'].items():
                setattr(obj.metas, k, v)
            for k in ('replica_id', 'shard_id', 'replicas', 'shards'):
                setattr(obj.runtime_args, k, cfg[k])
            obj.__init__(**cfg['kwargs'])
            self.executor = obj
        except BaseException as exc:  # report everything, even SystemExit from __init__
            self.send((P.INIT_ERROR, type(exc).__qualname__, str(exc), traceback.format_exc()))
            return False
        handled = sorted(k for k in obj._handlers if k != '__default__')
        self.send((P.READY, {'pid': os.getpid(), 'endpoints': handled,
                             'default': '__default__' in obj._handlers}))
        return True

    def serve(self) -> None:
        while True:
            batch = self.recv()
            if batch is None:
                logger.debug('%s: parent %d is gone, exiting', self.name, self.parent_pid)
                self.orphan_cleanup()
                return
            for header, meta in batch:
                kind = header[0]
                if kind == P.REQ:
                    # Answer each request as soon as it is done, not the batch at the end:
                    # the next executor can start on it while this one goes on.
                    reply, out_meta = self.handle(header, meta)
                    self.send(reply, out_meta)
                elif kind == P.FREE:
                    self.free(header[1])
                elif kind == P.STOP:
                    self.free(header[1])
                    return

    def handle(self, header: tuple, meta) -> tuple:
        t_recv = time.time()
        _, rid, endpoint, params_blob, earlier, payload, frees = header
        self.free(frees)
        inputs = InputBuffers(payload, self.mapper)
        reply, out_meta = self.process(rid, endpoint, params_blob, earlier, payload, meta, inputs, t_recv)
        pins = inputs.kept()
        if pins:
            self.pinned.extend((ref, inputs.views[inputs.refs.index(ref)]) for ref in pins)
            pins = [(r[0], r[1]) for r in pins]
        return reply + (pins, self._take_releases(), time.time()), out_meta

    def process(self, rid, endpoint, params_blob, earlier, payload, meta, inputs, t_recv):
        """Run the handler; returns (reply header without pins / releases / send time, meta).

        Kept in its own frame so every reference to the request's documents is gone once
        it returns, which is what lets ``inputs.kept()`` tell whether the handler kept any.
        """
        t_start = t_end = time.time()
        try:
            found = self.executor._handler_for(endpoint)
            if found is None:  # the parent routes around this; pass through all the same
                return (P.OK, rid, payload, [], None, (t_recv, t_start, t_end)), meta
            handler, accepted = found
            docs = decode(payload, meta, inputs)
            params = pickle.loads(params_blob)  # this request's own copy
            if earlier:
                params['__results__'] = earlier  # what the executors before this one returned
            own = params.get(self.name)
            if isinstance(own, dict):
                params.update(own)
            kwargs = {'docs': docs, 'parameters': params}
            if accepted is not None:
                for k in accepted:
                    kwargs.setdefault(k, None)
            t_start = time.time()
            ret = handler(**kwargs)
            t_end = time.time()
            results = None
            if isinstance(ret, dict):
                results = ret
            elif isinstance(ret, DocumentArray):
                docs = ret
            elif isinstance(ret, DocumentSequence) or isinstance(ret, list):
                docs = DocumentArray(ret)
            elif ret is not None:
                raise TypeError(f'handler {type(self.executor).__name__}.{handler.__name__} returned '
                                f'{type(ret).__name__}; return None (docs changed in place), a '
                                f'DocumentArray (replaces the docs) or a dict (results)')
            if results is not None:
                pickle.dumps(results, protocol=5)  # fail here, naming the handler, if it cannot travel
            out, out_meta, allocs = encode(docs, self.arena, inputs)
            return (P.OK, rid, out, allocs, results, (t_recv, t_start, t_end)), out_meta
        except Exception as exc:
            t_end = time.time()
            tb = traceback.format_exc()
            reply = (P.ERR, rid, type(exc).__qualname__, str(exc), tb, (t_recv, t_start, t_end))
            del exc
            gc.collect()  # a traceback's frames may hold documents in a cycle
            return reply, b''

    def free(self, slots) -> None:
        for slot in slots:
            self.arena.free(slot)

    def check_pins(self) -> None:
        """Release request buffers that the executor no longer references."""
        if not self.pinned:
            return
        still = []
        for entry in self.pinned:
            if held_elsewhere(entry, 1):
                still.append(entry)
            else:
                self.releases.append((entry[0][0], entry[0][1]))
        self.pinned = still

    def _take_releases(self) -> list:
        out, self.releases = self.releases, []
        return out

    def close(self) -> None:
        try:
            if self.executor is not None:
                self.executor.close()
        finally:
            self.executor = None
            self.arena.close()
            self.mapper.close()
            self.sock.close(linger=0)
            self.ctx.term()

    def watch_parent(self) -> None:
        """A thread: if the parent dies while the main loop is stuck in a long handler, the
        loop cannot notice; after a grace period for it to exit cleanly, remove the Flow's
        files and end the process from here."""
        while self.parent_alive():
            time.sleep(WATCH_S)
        time.sleep(WATCH_GRACE_S)  # an idle main loop notices within IDLE_POLL_MS and exits cleanly
        logger.debug('%s: parent %d is gone while a handler runs; exiting', self.name, self.parent_pid)
        self.orphan_cleanup()
        os._exit(1)

    def orphan_cleanup(self) -> None:
        """The parent died without stopping us: remove what the whole Flow left behind.

        Every worker does it; unlinking is idempotent and nobody maps the files anew."""
        sweep(self.prefix)
        shutil.rmtree(self.ipc_dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    endpoint, identity, prefix, parent_pid, arena_size = argv
    # Ctrl-C reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=os.environ.get('SHMFLOW_LOG_LEVEL', 'WARNING'))
    worker = Worker(endpoint, identity, prefix, int(parent_pid), int(arena_size))
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
            worker.send((P.FATAL, traceback.format_exc()))
        except Exception:
            pass
        code = 1
    finally:
        worker.close()
    return code


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
