"""The messages between the parent (ROUTER) and executor processes (DEALER).

Every message kind is built and read here, by both sides: a header is a plain tuple on
the wire (pickling a class instance costs several times more, on every hop of every
request), and only this module indexes into it.

A ZeroMQ message is a batch, so that what is queued for one process costs one hop: one
pickled list of (header, frame) pairs, where the frame of a request is its payload's
pickle (see ``codec``) or empty, followed by the frames too large to copy into that list
(these ride as ZeroMQ frames of their own, named in the list by their index). Each ZeroMQ
frame costs ~10 us to send on a small machine, so small ones are merged.

Parent -> worker: ``config`` (answer to ``hello``, with the cloudpickled class as its
frame), ``request``, ``free`` (slots of the worker's arena it may reuse), ``forget``
(arenas of dead processes that nothing refers to any more: drop their maps), ``stop``.
Worker -> parent: ``hello``, ``ready`` | ``init_error``, ``ok`` | ``err`` (one per
request), ``release`` (kept buffers the executor let go of), ``log`` (a log record, see
``worker_logs``), ``fatal`` (an error outside any handler, just before exiting), and last,
after its executor's ``close()``: ``close_error`` (it raised) or ``bye``, which the parent
answers with a ``bye`` once it read them (the process may then exit: see
``Worker.await_answer``).
"""
from __future__ import annotations

import pickle
from typing import Any, Iterable

import zmq

HELLO, CONFIG, READY, INIT_ERROR = 'hello', 'config', 'ready', 'init_error'
REQ, OK, ERR, FREE, STOP, RELEASE, FATAL = 'req', 'ok', 'err', 'free', 'stop', 'release', 'fatal'
FORGET, CLOSE_ERROR, LOG, BYE = 'forget', 'close_error', 'log', 'bye'
#: The exit code of a worker whose executor's close() raised (it sent a ``close_error`` first).
CLOSE_FAILED = 3

#: Frames up to this size are copied into the batch's pickle instead of sent on their own.
INLINE_FRAME_MAX = 64 << 10


def kind(h: tuple) -> str:
    """A header's kind: ``REQ``, ``OK``, ``STOP``, ..."""
    return h[0]


# -- parent -> worker ---------------------------------------------------------------------
def config(cfg: dict) -> tuple:
    return (CONFIG, cfg)


def read_config(h: tuple) -> dict:
    return h[1]


def request(rid: int, endpoint: str, params_blob: bytes, earlier: dict | None, payload: tuple,
            frees: list, split: tuple | None) -> tuple:
    """``payload`` is the codec's descriptor; its pickle frame travels beside the header.
    ``split``: the sizes of the parts the handler gets as ``docs_matrix``."""
    return (REQ, rid, endpoint, params_blob, earlier, payload, frees, split)


def read_request(h: tuple) -> tuple:
    """(rid, endpoint, params_blob, earlier, payload, frees, split)"""
    return h[1:]


def free(slots: list) -> tuple:
    return (FREE, slots)


def forget(arenas: list) -> tuple:
    """Drop the maps of these arenas (dead processes'; nothing refers to them any more)."""
    return (FORGET, arenas)


def arenas_of(h: tuple) -> list:
    """The arenas of a ``forget``."""
    return h[1]


def stop(slots: list) -> tuple:
    """Stop after freeing ``slots`` (what the parent still owed it)."""
    return (STOP, slots)


def slots_of(h: tuple) -> list:
    """The slots of a ``free`` or ``stop``."""
    return h[1]


# -- worker -> parent ---------------------------------------------------------------------
def ready(endpoints: list, default: bool, matrix: list) -> tuple:
    return (READY, endpoints, default, matrix)


def init_error(exc_type: str, message: str, tb: str) -> tuple:
    return (INIT_ERROR, exc_type, message, tb)


def ok(rid: int, payload: tuple, allocs: list, results: dict | None, times: tuple, pins: list,
       releases: list, t_send: float) -> tuple:
    """A request done: its output payload, the slots of the worker's arena written for it,
    the handler's results, (received, start, end), buffers it kept and let go of."""
    return (OK, rid, payload, allocs, results, times + (t_send,), pins, releases)


def err(rid: int, exc_type: str, message: str, tb: str, times: tuple, pins: list, releases: list,
        t_send: float) -> tuple:
    return (ERR, rid, exc_type, message, tb, times + (t_send,), pins, releases)


def release(releases: list) -> tuple:
    return (RELEASE, releases)


def fatal(tb: str) -> tuple:
    return (FATAL, tb)


def close_error(exc_type: str, message: str, tb: str) -> tuple:
    """The executor's ``close()`` raised (sent just before exiting with ``CLOSE_FAILED``)."""
    return (CLOSE_ERROR, exc_type, message, tb)


def log(levelno: int, name: str, text: str, created: float) -> tuple:
    """A log record of the worker: its level, logger name, message (with its traceback)
    and time."""
    return (LOG, levelno, name, text, created)


def bye() -> tuple:
    """From a worker: its executor's ``close()`` returned, nothing more comes from it; the
    parent's answer to that or to a ``close_error``: everything it sent was read."""
    return (BYE,)


def read(h: tuple) -> tuple:
    """The fields of any worker -> parent message after its kind."""
    return h[1:]


# -- batches ------------------------------------------------------------------------------
def pack(items: Iterable[tuple]) -> list:
    """[(header, frame), ...] as the frames of one message."""
    merged, extra = [], []
    for header, frame in items:
        if len(frame) > INLINE_FRAME_MAX:
            extra.append(frame)
            frame = len(extra)  # an int: "the extra frame with this number"
        elif not isinstance(frame, (bytes, bytearray)):
            frame = frame.bytes if hasattr(frame, 'bytes') else bytes(frame)
        merged.append((header, frame))
    return [pickle.dumps(merged, protocol=5), *extra]


# Plain ints: the enum members cost an enum operation on every use, in the busiest loops.
_EVENTS, _POLLIN, _NOBLOCK, _SNDMORE = int(zmq.EVENTS), int(zmq.POLLIN), int(zmq.NOBLOCK), int(zmq.SNDMORE)


def send_to(sock: zmq.Socket, identity: bytes, frames: list) -> None:
    """Send ``frames`` (from ``pack``) to the peer ``identity`` of a ROUTER socket without
    blocking: ``send_multipart`` minus its checks and its enum arithmetic (a third of the
    cost of a small message). Raises ``zmq.Again`` (the peer's pipe is full) or
    ``zmq.ZMQError`` (EHOSTUNREACH: no such peer) at the identity frame, before any of the
    message is queued."""
    sock.send(identity, _NOBLOCK | _SNDMORE)
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        sock.send(frame, _NOBLOCK if i == last else _NOBLOCK | _SNDMORE, copy=False)


def waiting(sock: zmq.Socket) -> bool:
    """Whether a message can be read from ``sock`` now (asking is cheaper than a recv
    that raises Again)."""
    return bool(sock.getsockopt(_EVENTS) & _POLLIN)


def recv_frames(sock: zmq.Socket) -> list:
    """The frames (zero-copy ``zmq.Frame``) of the message ``waiting`` said is there.

    One recv per frame, led by each frame's ``more`` flag: half the cost of
    ``recv_multipart``, which asks the socket for RCVMORE after every frame."""
    frame = sock.recv(_NOBLOCK, copy=False)
    frames = [frame]
    while frame.more:
        frame = sock.recv(_NOBLOCK, copy=False)
        frames.append(frame)
    return frames


def unpack(frames: list) -> list:
    """The (header, frame) pairs of a message received with copy=False."""
    items = pickle.loads(frames[0].buffer)
    if len(frames) > 1:
        items = [(h, frames[f] if isinstance(f, int) else f) for h, f in items]
    return items


def unpack_hello(frames: list) -> tuple:
    """The first message of a peer, read without unpickling anything (a pickle is code,
    and the peer has not proved yet that it is the process the parent started): the
    HELLO as plain text, ``b'hello <pid> <secret>'``."""
    if len(frames) != 1 or len(frames[0].bytes) > 256:
        raise ValueError('not a HELLO')
    kind, pid, secret = frames[0].bytes.decode('ascii').split(' ')
    if kind != HELLO:
        raise ValueError('not a HELLO')
    return (HELLO, int(pid), secret), b''


def pack_hello(pid: int, secret: str) -> list:
    """The frames of a HELLO (see ``unpack_hello``)."""
    return [f'{HELLO} {pid} {secret}'.encode('ascii')]


def frame_bytes(frame: Any) -> Any:
    """A frame as something pickle.loads and len() take (bytes, or a zmq.Frame's buffer)."""
    return frame.buffer if hasattr(frame, 'buffer') else frame
