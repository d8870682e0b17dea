"""Message kinds between the parent (ROUTER) and executor processes (DEALER).

A message is a batch, so that requests headed for the same process at once cost one hop:
one pickled list of (header, frame) pairs, where the frame of a request is its payload's
pickle (see ``codec``) or empty, followed by the frames too large to copy into that
list (these ride as ZeroMQ frames of their own, named in the list by their index). Each
ZeroMQ frame costs ~10 us to send on a small machine, so small ones are merged.
Headers stay small: ids, endpoint, parameters, where the payload's buffers lie.

Parent -> worker:
    (CONFIG, cfg) + cloudpickled class   answer to HELLO
    (REQ, rid, endpoint, pickled parameters, earlier results, payload, frees) + meta
    (FREE, slots)                         slots of the worker's arena it may reuse
    (STOP, slots)
Worker -> parent:
    (HELLO, pid)
    (READY, info) | (INIT_ERROR, exc_type, message, traceback)
    (OK, rid, payload, allocs, results, times, pins, releases, t_send) + meta
    (ERR, rid, exc_type, message, traceback, times, pins, releases, t_send)
    (RELEASE, releases)                   kept buffers the executor let go of
    (FATAL, traceback)                    an error outside any handler, just before exiting
"""
from __future__ import annotations

import pickle
from typing import Any, Iterable

HELLO, CONFIG, READY, INIT_ERROR = 'hello', 'config', 'ready', 'init_error'
REQ, OK, ERR, FREE, STOP, RELEASE, FATAL = 'req', 'ok', 'err', 'free', 'stop', 'release', 'fatal'

#: Frames up to this size are copied into the batch's pickle instead of sent on their own.
INLINE_FRAME_MAX = 64 << 10


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


def unpack(frames: list) -> list:
    """The (header, frame) pairs of a message received with copy=False."""
    items = pickle.loads(frames[0].buffer)
    if len(frames) > 1:
        items = [(h, frames[f] if isinstance(f, int) else f) for h, f in items]
    return items


def frame_bytes(frame: Any) -> Any:
    """A frame as something pickle.loads and len() take (bytes, or a zmq.Frame's buffer)."""
    return frame.buffer if hasattr(frame, 'buffer') else frame
