"""Document ids: fresh uuid4 hex strings, made in bulk, and the id-change epoch.

``Document()`` is on every hot path (the codec, generators, executors that make new
documents); a fresh id is most of its cost, so ids are made ahead in batches.

Example
-------
>>> a, b = _new_id(), _new_id()
>>> len(a), a != b, a[12]
(32, True, '4')
"""
from __future__ import annotations

import os

import numpy as np

__all__: list[str] = []

#: Bumped whenever the id of an existing Document changes. A DocumentArray's id index can
#: only go stale through such a change (the Document does not know which arrays hold it),
#: so an array rebuilds its index on a miss only when this moved since it last built it;
#: otherwise ``'absent-id' in da`` would cost O(N) every time.
_ID_EPOCH = [0]


#: Ids made ahead, 1024 at a time: one urandom call and one hex() for all of them costs a
#: fraction of a uuid4 each (on a slow machine uuid4() alone was 5 us, most of an empty
#: Document's construction).
_ID_POOL: list[str] = []
_POOL_SIZE = 1024


def _refill_ids() -> None:
    raw = np.frombuffer(os.urandom(16 * _POOL_SIZE), dtype=np.uint8).reshape(_POOL_SIZE, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    # hex(' ', 16): a space between ids, so that one C-level split makes the strings
    # (a third cheaper than slicing them out one by one in Python).
    _ID_POOL.extend(raw.tobytes().hex(' ', 16).split())


def _new_id() -> str:
    """A fresh id: what uuid.uuid4().hex gives."""
    try:
        return _ID_POOL.pop()
    except IndexError:
        _refill_ids()
        return _ID_POOL.pop()


# A forked process (a worker forked by the zygote) must not hand out its parent's ids.
os.register_at_fork(after_in_child=_ID_POOL.clear)
