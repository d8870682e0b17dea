"""Encoding a DocumentArray as (small pickle, arrays in shared memory) and back.

A payload has three parts:

- the embedding matrix, as one (N, D) array in a slot of the sender's arena;
- the documents' other fields, pickled (protocol 5) into a frame that rides in the
  ZeroMQ message, with every other contiguous array (blobs, arrays in tags, embeddings of
  matches) out of band in the arena;
- a small descriptor, ``Payload``, in the message header: the count, where the matrix
  lies, where each out-of-band buffer lies (``BufRef``).

A receiver sees the arrays as zero-copy views of its maps of those arenas, and gets the
documents *lazily*: a handler that only reads ``docs.embeddings`` never unpickles a
Document, and what it did not unpickle it passes on unchanged, without re-pickling. An
array that already lies in a buffer of the request being answered (a matrix a handler only
read, a blob it passed on) is named again instead of copied, so a stage that does not
change the arrays moves none of their bytes. Every document's array fields arrive as
arrays of its own, even where the sender's documents shared one object (``own_arrays``),
and every place a Document object was put (the matches of several queries) arrives as a
document of its own (``_reduce_docs``). The buffers that find no room in the arena go into
one segment for the request (``_Placer``). A Document subclass that the receiving process
cannot import travels by value (``separate._reduce_class``). What a receiver holds (the views, the
lazy documents) is in ``received``.
"""
from __future__ import annotations

import bisect
import pickle
from itertools import repeat
from operator import attrgetter, is_, is_not
from typing import Any

import numpy as np

from ...array import DocumentArray
from ...document import Document
from ...fields import DEFAULTS, INDEX, SLOTS, TABLE
from ...values import describe_dtype
from .received import MIXED, BufRef, InputBuffers, LazyDocumentArray, Payload
from .separate import ARRAY_COLUMNS, DOCS_COLUMNS, SHARED_COLUMNS, EncodeError, dumps_separated, own_arrays
from .shm import Arena

__all__ = ['encode', 'decode', 'EncodeError']

#: Arrays smaller than this ride inside the pickle: a shared-memory slot costs more.
INLINE_MAX = 1024
#: A buffer up to this size (a matrix of a few documents: one 768-d float32 embedding is
#: 3 KB) rides in the message header instead of a slot, while the request's inline bytes
#: stay under ``INLINE_TOTAL_MAX``: copying a few KB through the socket costs less than
#: the slot's allocation, the receiver's page checks and the slot's free (~35 us for a
#: one-document post).
INLINE_BUFFER_MAX = 16 << 10
INLINE_TOTAL_MAX = 32 << 10


# What the codec needs of the Document field table, by column (a field of every document,
# in ``Document._state`` order): how to tell that a column holds only its default, so that
# it is left out.
_PACK = tuple(f.pack for f in TABLE)
_DEFAULTS = DEFAULTS
_EMBEDDING = INDEX['embedding']
# One C-level call returns every field of a Document (in the order above).
_fields = attrgetter(*SLOTS)



def _dumps(doc_list: list, without_embeddings: bool, buffer_callback) -> bytes:
    """Pickle the documents (their embeddings too unless ``without_embeddings``)."""
    try:
        return _dumps_unchecked(doc_list, without_embeddings, buffer_callback)
    except EncodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - find which document, then say so
        raise _culprit(doc_list, exc) from None


def _culprit(doc_list: list, exc: Exception) -> EncodeError:
    for i, d in enumerate(doc_list):
        try:
            pickle.dumps(d, protocol=5)
        except Exception as own:  # noqa: BLE001
            where = _find_field(d)
            return EncodeError(f'document #{i} (id {getattr(d, "id", None)!r}) cannot be sent to another process: '
                               f'{where}{type(own).__name__}: {own}. Documents may hold plain values only (str, '
                               f'numbers, bytes, lists, dicts, numpy arrays of non-object dtype)')
    return EncodeError(f'the documents cannot be sent to another process: {type(exc).__name__}: {exc}')


def _find_field(d: Document) -> str:
    for f, v in zip(TABLE, _fields(d)):
        try:
            pickle.dumps(v, protocol=5)
        except Exception:  # noqa: BLE001
            if isinstance(v, dict):
                for k, item in v.items():
                    try:
                        pickle.dumps(item, protocol=5)
                    except Exception:  # noqa: BLE001
                        return f'its {f.name}[{k!r}] ({type(item).__name__}) does not pickle: '
            return f'its {f.name} does not pickle: '
    return ''


def _dumps_unchecked(doc_list: list, without_embeddings: bool, buffer_callback) -> bytes:
    if not doc_list or set(map(type, doc_list)) == {Document}:
        packed = _pack(doc_list, without_embeddings)
        cols = packed[1]
        # (len first: the usual request, ids and a matrix, is one column and skips the rest)
        if len(cols) == 1 or cols.keys().isdisjoint(SHARED_COLUMNS):
            return pickle.dumps(packed, protocol=5, buffer_callback=buffer_callback)
        seen = set(map(id, doc_list))
        if len(seen) == len(doc_list):  # (else one Document twice: sent as objects, below)
            if cols.keys().isdisjoint(DOCS_COLUMNS):
                return pickle.dumps(packed, protocol=5, buffer_callback=buffer_callback)
            # Chunks or matches: Documents inside, each a document of its own (_reduce_docs);
            # the request's documents are in ``seen`` already, as they may be matches too.
            return dumps_separated(packed, seen, buffer_callback)
    # Subclasses, or one Document object twice in the request: as a list of Documents, whose
    # reduce keeps each document's type and sends a repeated one as a copy (_reduce_docs).
    if not without_embeddings:
        return dumps_separated(DocumentArray._from_list(doc_list), set(), buffer_callback)
    saved = [d._embedding for d in doc_list]

    def restore() -> None:
        for d, e in zip(doc_list, saved):
            d._embedding = e

    # Their embeddings travel as the matrix: None while their own states are taken, and
    # given back before the rest is pickled, so that a copy of one of them met again as a
    # match or chunk (see _fresh_state) carries its embedding, as in the plain case.
    for d in doc_list:
        d._embedding = None
    try:
        return dumps_separated(DocumentArray._from_list(doc_list), set(), buffer_callback, restore)
    finally:
        restore()


def _compile_plain_ids() -> Any:
    # Generated from the field table: one loop testing every field but the id and the
    # embedding of each document, with the column tests of _pack below ('none': is None,
    # 'empty': falsy, 'value': == default), unless the document says it is _plain (a new
    # one, no other field ever written: see Document.__slots__), which saves 15 attribute
    # loads a document, ~0.3 us (Document's __getattr__ keeps them unspecialized). Plain
    # attribute loads cost a third less than attrgetter's, and the loop stops at the
    # first document with more than an id.
    tests = []
    for f in TABLE:
        if f.name in ('id', 'embedding') or f.pack == 'always':
            continue
        tests.append({'none': f'd.{f.slot} is not None', 'empty': f'd.{f.slot}'}.get(
            f.pack, f'd.{f.slot} != {f.default!r}'))
    src = ('def _plain_ids(doc_list):\n    ids = []\n    append = ids.append\n    for d in doc_list:\n'
           f'        if not d._plain and ({" or ".join(tests)}):\n            return None\n'
           f'        append(d.{SLOTS[INDEX["id"]]})\n'
           '    return ids\n')
    namespace: dict = {}
    exec(src, namespace)  # noqa: S102 - our own source, from the field table
    return namespace['_plain_ids']


#: The ids of documents that hold nothing but an id (and an embedding), else None.
_plain_ids = _compile_plain_ids()


def _pack(doc_list: list, without_embeddings: bool) -> tuple:
    """The documents as columns, keeping only columns where some document differs from the
    default: pickling a few lists is several times cheaper than pickling each Document."""
    n = len(doc_list)
    if without_embeddings:
        ids = _plain_ids(doc_list)  # the usual request: ids and a matrix
        if ids is not None:
            return (n, {INDEX['id']: ids})
    cols = {}
    for i, col in enumerate(zip(*map(_fields, doc_list))):
        test = _PACK[i]
        if test == 'none':
            if i in ARRAY_COLUMNS:
                # (== on arrays is elementwise, so no col.count(None) here)
                keep = (i != _EMBEDDING or not without_embeddings) and any(map(is_not, col, repeat(None)))
                if keep:
                    _refuse_objects(doc_list, col, i)
                    col = own_arrays(col)
            else:
                keep = col.count(None) != n
        elif test == 'empty':
            keep = any(col)
        elif test == 'always':
            keep = True
        else:  # 'value': all equal to the default
            keep = col.count(_DEFAULTS[i]) != n
        if keep:
            cols[i] = col
    return (n, cols)


def _refuse_objects(doc_list: list, col: tuple, i: int) -> None:
    for d, a in zip(doc_list, col):
        if a is not None and a.dtype.hasobject:
            raise EncodeError(f'document {d.id!r} cannot be sent to another process: its {TABLE[i].name} has dtype '
                              f'{a.dtype} (Python objects, not numbers); set a numeric array instead')


def _matrix_fits(emb: np.ndarray) -> bool:
    """Whether an embedding matrix can travel as one raw array: (N, D...) with bytes in it.
    Otherwise (0-d rows, zero-size rows) each document keeps its own array in the pickle,
    which preserves every shape exactly."""
    return emb.ndim >= 2 and emb.size > 0


def _place_matrix(placer: '_Placer', emb: np.ndarray, doc_list: list | None) -> tuple:
    if emb.dtype.hasobject:
        first = repr(doc_list[0].id) if doc_list else 'of this request'
        raise EncodeError(f'the embeddings (document {first} and the others) have dtype {emb.dtype}: Python '
                          f'objects cannot travel between processes as raw bytes; set numeric embeddings')
    emb = np.ascontiguousarray(emb)
    # A uint8 view: memoryview refuses datetime64 / timedelta64 items, bytes are bytes.
    raw = memoryview(emb.reshape(-1).view(np.uint8))
    dt = emb.dtype
    desc = _DESCRIBED.get(dt)
    if desc is None:
        desc = describe_dtype(dt)
        if type(desc) is str and len(_DESCRIBED) < 256:
            _DESCRIBED[dt] = desc
    return (placer.place(raw), desc, emb.shape)


#: ``describe_dtype`` of the matrices sent (a handful in a process's life), by dtype.
_DESCRIBED: dict[np.dtype, Any] = {}


def _address(buf) -> int:
    return np.frombuffer(buf, dtype=np.uint8).__array_interface__['data'][0]


class _Placer:
    """Puts buffers into the arena (or names them in the inputs), remembering both.

    The pickle's small buffers that find no hole in the arena are not given a segment
    each: a receiver maps each segment (a system call and a map each), and a document
    with tens of thousands of chunks has as many arrays. They wait (``overflow``) until the
    pickle is done, and ``finish`` packs them into segments of up to ``PACK_SEGMENT_MAX``."""

    __slots__ = ('arena', 'inputs', 'refs', 'allocs', 'inline', 'named', 'overflow')

    def __init__(self, arena: Arena, inputs: InputBuffers | None) -> None:
        self.arena, self.inputs, self.refs, self.allocs = arena, inputs, [], []
        self.inline = 0
        # (arena, slot) -> the sorted, disjoint [start, end) of the input buffers' bytes named so far
        self.named: dict = {}
        self.overflow: list | None = None  # (index in refs, raw) of buffers for the overflow segment

    def place(self, raw: memoryview, defer: bool = False) -> BufRef | None:
        """Where ``raw`` goes: inline, named in the inputs, or copied into a slot. With
        ``defer``, None when the arena has no room: the caller leaves it to ``finish``."""
        n = raw.nbytes
        if n <= INLINE_BUFFER_MAX and self.inline + n <= INLINE_TOTAL_MAX:
            self.inline += n
            return (None, bytes(raw), 0, n)
        if self.inputs is not None and self.inputs.ranges:
            ref = self.inputs.find(_address(raw), n)
            if ref is not None and not self._overlaps(ref):
                return ref
        arena = self.arena
        slot = arena.alloc_in_arena(n)
        if slot is None:
            if defer and n <= PACK_MAX:
                return None
            slot = arena.alloc_segment(n)
            self.allocs.append(slot)
            arena.write_segment(slot, [(0, raw)])
        else:
            self.allocs.append(slot)
            arena.array(slot, n)[:] = np.frombuffer(raw, dtype=np.uint8)
        return (arena.name, slot, 0, n)

    def _overlaps(self, ref: BufRef) -> bool:
        # Two arrays over the same bytes (``d.blob = d.embedding``) are one array here, but
        # each executor's documents are its own: named twice, they would be one array in
        # the next process too (an in-place change of one would change the other). The
        # second is copied, as Jina 2 gave every array its own bytes. What was named is
        # kept sorted by slot, so that naming the arrays of thousands of chunks costs a
        # look at the neighbours of each, not at all the others.
        start, end = ref[2], ref[2] + ref[3]
        spans = self.named.get((ref[0], ref[1]))
        if spans is None:
            self.named[(ref[0], ref[1])] = [(start, end)]
            return False
        i = bisect.bisect_left(spans, (start,))
        if (i < len(spans) and spans[i][0] < end) or (i > 0 and spans[i - 1][1] > start):
            return True
        spans.insert(i, (start, end))
        return False

    def finish(self) -> None:
        """Put the buffers left for it into segments of at most ``PACK_SEGMENT_MAX`` bytes,
        one after the other (see the class docstring)."""
        arena, refs, name = self.arena, self.refs, self.arena.name
        group: list = []
        pos = 0
        for i, raw in self.overflow + [(None, None)]:
            size = 0 if raw is None else (raw.nbytes + _OVERFLOW_ALIGN - 1) & ~(_OVERFLOW_ALIGN - 1)
            if group and (raw is None or pos + size > PACK_SEGMENT_MAX):
                slot = arena.alloc_segment(pos)
                self.allocs.append(slot)
                arena.write_segment(slot, [(p, r) for _, p, r in group])
                for j, p, r in group:
                    refs[j] = (name, slot, p, r.nbytes)
                group, pos = [], 0
            if raw is not None:
                group.append((i, pos, raw))
                pos += size
        self.overflow = None

    def undo(self) -> None:
        """Free what was allocated: the encoding failed, and its caller learns of the
        slots only from the value it did not return."""
        for slot in self.allocs:
            self.arena.free(slot)

    def callback(self, pb: pickle.PickleBuffer) -> bool:
        raw = pb.raw()
        if raw.nbytes < INLINE_MAX:
            return True  # in band
        ref = self.place(raw, True)
        if ref is None:
            if self.overflow is None:
                self.overflow = []
            # (the view keeps the array's bytes alive until finish copies them)
            self.overflow.append((len(self.refs), raw))
        self.refs.append(ref)
        return False


#: The buffers that share overflow segments: small ones, which can be many (a document's
#: tens of thousands of chunks). A larger one gets a segment of its own, as does a payload
#: larger than the arena: a receiver that keeps an array holds its whole segment, so packing
#: large ones would hold much more than was kept. Packed segments stay under
#: PACK_SEGMENT_MAX for the same reason.
PACK_MAX = 16 << 10
PACK_SEGMENT_MAX = 1 << 20
#: Where buffers start in an overflow segment: a cache line, which keeps numpy's SIMD
#: loops on their fast path for any dtype. (Not a page, as arena slots are: a segment is
#: never reused, so no slot's pages are ever dropped there, and a page each would more
#: than double the memory of a few-KB array. An array that a receiver changes in place
#: then makes the arrays on the same pages look changed too: they are copied on rather
#: than named, which is always right.)
_OVERFLOW_ALIGN = 64


def encode(docs: DocumentArray, arena: Arena, inputs: InputBuffers | None = None) -> tuple[Payload, Any, list]:
    """Returns (payload descriptor, pickle frame, slots of ``arena`` written for it).

    The embedding matrix travels as one array: the documents are pickled without their
    embeddings and the receiver re-attaches row views of it.
    """
    lazy = getattr(docs, '_lazy', None)
    if lazy is not None and not _of_inputs(lazy[2], inputs):
        # Received with an earlier request (an executor kept them and returns them now):
        # the slots they lie in belong to that request and may be reused while this one
        # goes on. They are unpickled and their arrays copied below, into this request's.
        lazy = None
    if lazy is not None:
        # Never unpickled: the documents are as they came; only the matrix may be new.
        (count, emb_desc, refs), meta, views = lazy
        emb = docs._emb
        if emb is None:
            return (count, emb_desc, refs), meta, []
        if _unchanged(docs._emb_in, emb, views, inputs):
            return lazy[0], meta, []
        if _matrix_fits(emb):
            placer = _Placer(arena, inputs)
            try:
                return (count, _place_matrix(placer, emb, None), refs), meta, placer.allocs
            except BaseException:
                placer.undo()
                raise
        # A new matrix that cannot travel as one array: unpickle, then send document by document.
    placer = _Placer(arena, inputs)
    doc_list = docs._docs
    emb_desc = None
    if len(doc_list) == 1 and type(doc_list[0]) is Document and type(doc_list[0]._embedding) is np.ndarray \
            and doc_list[0]._embedding.ndim:
        # One document (an interactive query): its embedding as a (1, ...) view, copied
        # once into the arena below, instead of stacked into a new array first.
        emb = doc_list[0]._embedding[None]
    else:
        try:
            emb = docs.embeddings
        except ValueError:
            emb = None
            emb_desc = MIXED
    try:
        if emb is not None:
            if _matrix_fits(emb):
                emb_desc = _place_matrix(placer, emb, doc_list)
            else:
                emb, emb_desc = None, MIXED
        meta = _dumps(doc_list, emb is not None, placer.callback)
        if placer.overflow is not None:
            placer.finish()
    except BaseException:
        placer.undo()
        raise
    return (len(doc_list), emb_desc, placer.refs), meta, placer.allocs


def _of_inputs(views: list, inputs: Any) -> bool:
    """Whether every buffer that received documents lie in (their decoder's ``views``)
    is one of ``inputs``': the request being answered owns them."""
    if not views:
        return True
    mine = getattr(inputs, 'views', None)
    if not mine:
        return False
    if len(views) == len(mine) and all(map(is_, views, mine)):  # (the usual pass-through)
        return True
    ids = set(map(id, mine))
    return all(id(v) in ids for v in views)


def _unchanged(emb_in: tuple | None, emb: np.ndarray, views: list, inputs: Any) -> bool:
    """Whether ``emb`` is the matrix decoded from ``inputs``' first buffer, with the shape,
    dtype and layout it came with: its descriptor is then the received one, the very
    BufRef that ``inputs.find`` would return for its address (found without asking numpy
    for that address, which costs more than the rest of a pass-through)."""
    return (emb_in is not None and emb_in[0] is emb and inputs is not None and bool(inputs.ranges)
            and bool(views) and getattr(inputs, 'views', None) is not None and views[0] is inputs.views[0]
            and emb.shape == emb_in[1] and emb.dtype == emb_in[2] and emb.flags.c_contiguous
            and inputs.unchanged(0))


#: Dtypes of received matrices by their header string (a handful in a process's life).
_DTYPES: dict[str, np.dtype] = {}


def _dtype(desc: Any) -> np.dtype:
    dt = _DTYPES.get(desc) if type(desc) is str else None
    if dt is None:
        dt = np.dtype(desc)
        if type(desc) is str and len(_DTYPES) < 256:
            _DTYPES[desc] = dt
    return dt


def decode(payload: Payload, meta: Any, buffers: InputBuffers) -> LazyDocumentArray:
    """The documents of a payload, unpickled on first use; with views (not copies) its
    arrays are zero-copy and ``docs.embeddings`` is the matrix itself."""
    # (bytes first: a failed hasattr costs an exception)
    if type(meta) is not bytes and hasattr(meta, 'buffer'):  # a zmq.Frame received with copy=False
        meta = meta.buffer  # (large frames ride alone)
    emb = None
    if isinstance(payload[1], tuple):
        _, dtype, shape = payload[1]
        # (np.ndarray over the view, not frombuffer + reshape: half the cost, and the
        # view is the array's base directly)
        emb = np.ndarray(shape, _dtype(dtype), buffers.views[0])
    return LazyDocumentArray._wrap(payload, meta, buffers.views, emb, buffers)
