"""Whole-store operations: a new generation (prune / clear), ``verify`` and ``repair``.

A new generation is written beside the old one and switched to by replacing meta.json, so
a crash at any point leaves either the old or the new store, whole. ``repair`` is the only
operation that drops data, and it keeps a copy of every byte it drops.
"""
from __future__ import annotations

import json
import logging
import os
import time
import zlib
from array import array

import numpy as np

from ..errors import CorruptStoreError
from .format import (DIR_MODE, HEAD, META, OP_LAYOUT, OP_PUT, PUT, atomic_write, fsync_dir, layout_payload, open_new,
                     record, write_all)
from .index import Index, snapshot_bytes
from .log import RecordLog
from .store import _OPEN, Store

__all__ = ['switch_generation', 'verify', 'repair']

logger = logging.getLogger('runtime')


def switch_generation(store: Store, keep: bool) -> None:
    """Write the live documents (``keep``) or nothing into generation g + 1 and switch to
    it: records in order, rows contiguous, every row's checksum checked on the way."""
    g = store.gen + 1
    files = [store.file(k, g) for k in ('records', 'embeddings', 'index')]
    for f in files:
        if os.path.exists(f):
            os.unlink(f)
    fd = open_new(files[0], os.O_RDWR | os.O_TRUNC | os.O_APPEND)
    mm = None
    layout = store.layout if keep else None
    switched = False
    try:
        ix = store.ix
        pos = k = 0
        ids: list[str] = []
        off, length, rows = array('q'), array('q'), array('q')
        if layout is not None:
            live_rows = ix.live_rows()
            n_rows = int((live_rows >= 0).sum())
            efd = open_new(files[1], os.O_RDWR)
            try:
                os.ftruncate(efd, n_rows * store.emb.row_nbytes)
            finally:
                os.close(efd)
            if n_rows:
                mm = np.memmap(files[1], dtype=layout[0], mode='r+', shape=(n_rows,) + layout[1])
            head = record(OP_LAYOUT, layout_payload(*layout))
            write_all(fd, head)
            pos = len(head)
        live = (ix.live_slots().tolist() if ix.n_dead else list(range(len(ix.ids)))) if keep else []
        # bounded in bytes: large documents (or embeddings) a few at a time
        for window in ix.windows(live, per_doc=store.row_bytes):
            recs, old_rows, base = [], [], k
            raws = store.log.read([ix.off[s] for s in window], [ix.len[s] for s in window])
            for slot, raw in zip(window, raws):
                doc_id = ix.ids[slot]
                row, crc, id_end, start = store.log.parse_put(raw, ix.off[slot], doc_id)
                new_row = -1
                if row >= 0:
                    store.emb.check(row, crc, doc_id)
                    new_row = k
                    old_rows.append(row)
                    k += 1
                payload = b''.join((PUT.pack(new_row, crc, id_end - HEAD.size, 0), raw[HEAD.size:id_end],
                                    raw[start:]))
                rec = record(OP_PUT, payload)
                recs.append(rec)
                ids.append(doc_id)
                off.append(pos)
                length.append(len(rec))
                rows.append(new_row)
                pos += len(rec)
            if old_rows:
                mm[base:k] = store.emb.mmv[old_rows]
            write_all(fd, b''.join(recs))
        if mm is not None:
            mm.flush()
        os.fsync(fd)  # the old generation is deleted after the switch: the new one must be on disk
        log = RecordLog(files[0], writable=False)
        try:
            blob = snapshot_bytes(g, pos, log.tail_crc(pos), k, (ids, off, length, rows), synced_bytes=pos)
        finally:
            log.close()
        atomic_write(files[2], blob, sync=True)
        old_layout = store.layout
        store.layout = layout
        try:
            store.write_meta(g, sync=True)  # the switch
        except BaseException:
            if not _names_generation(store, g):  # (an interrupt right after the rename did switch)
                store.layout = old_layout
                raise
        switched = True
        fsync_dir(store.path)
    except BaseException:
        os.close(fd)
        mm = None  # (its map goes now)
        if switched:
            # meta.json names the new generation: it is the store now, whatever failed after
            # the switch (a directory fsync the filesystem refuses, an interrupt). Undoing it
            # would delete the only generation meta.json names.
            store.load()
            raise
        for f in files:
            try:
                os.unlink(f)
            except OSError:
                pass
        raise
    del mm
    os.close(fd)
    store.load()  # as a fresh open of the new generation (also removes the old files)


def _names_generation(store: Store, gen: int) -> bool:
    try:
        return store.read_meta()[0] == gen
    except (CorruptStoreError, ValueError, OSError):
        return False


def verify(store: Store) -> int:
    """Check every byte of the store that holds data: meta.json, every record of the log
    (live or not), and every live document's embedding row. Return the number of live
    documents checked; raise CorruptStoreError at the first damage."""
    store.check_open()
    gen, layout = store.read_meta()
    if gen == store.gen and layout != store.layout and store.layout is not None:
        raise CorruptStoreError(os.path.join(store.path, META), 0, 'names another layout than the open store')
    check = Index()
    # Up to what this store has read: a writer in another process may be appending.
    store.log.scan(0, check.put, check.delete, lambda payload, off: None, stop=store.end)
    ix = store.ix
    live = ix.live_slots().tolist() if ix.n_dead else range(len(ix.ids))
    live = list(live)
    if [ix.ids[s] for s in live] != [check.ids[s] for s in check.live_slots().tolist()]:
        raise CorruptStoreError(store.file('index'), 0, 'does not match the record log')
    for window in ix.windows(live, per_doc=store.row_bytes):
        store.read_slots(window)  # checks each record and each row
    return len(live)


def repair(path: str) -> str | None:
    """Drop what is damaged in the store at ``path`` and rewrite the rest as a new
    generation; return the folder holding a copy of everything dropped (None when nothing
    was damaged).

    The writer lock is held from before the store is read for the check until the new
    generation is in place, so no other process writes between the check and the repair.
    A store this process has open is repaired in place (its handles see the result at
    once); one that was writing keeps the lock afterwards (unless the repair fails: then it
    is a reader until its next write).

    >>> repair('./my-mmap')  # doctest: +SKIP
    './my-mmap/dropped-0'
    """
    key = os.path.realpath(os.path.abspath(path))
    shared = _OPEN.get(key)
    if shared is not None and not shared.closed and shared.pid == os.getpid():
        return _repair_open(shared)
    salvage: list = []
    store = Store(path, lock=True, salvage=salvage)
    try:
        where = _repair(store, salvage)
    except BaseException:
        # Give the lock back first: close() would flush an index of what is in memory, which
        # may lack documents dropped there but not copied yet, and hide them for good.
        store.release_lock()
        store.close()
        raise
    store.close()
    return where


def _repair_open(store: Store) -> str | None:
    was_writer = store.lock_fd is not None
    if was_writer:
        store.flush()  # and keep the lock: giving it back would let another writer in here
    else:
        store.take_lock()
    salvage: list = []
    try:
        store.load(salvage)  # with the lock held: opened for writing
        where = _repair(store, salvage)
    except BaseException as exc:
        # A failed repair leaves the store a reader, whatever it was: what load(salvage) and
        # the repair left in memory is no state to write from (a torn tail kept, documents
        # dropped). Another process may then take the lock and write; that is harmless, as
        # our next write goes through ensure_writer, which takes the lock and re-reads under
        # it whatever was written meanwhile.
        store.release_lock()
        store.reread_after(exc, 'repairing')
        raise
    if not was_writer:
        store.release_lock()
        store.load()  # a reader again, as before
    # else: switch_generation's load, or load(salvage) of an undamaged log (no torn tail:
    # that would be damage), left it a valid writer.
    return where


def _repair(store: Store, salvage: list) -> str | None:
    # The store is open with the lock held and read with ``salvage`` collecting the damage.
    _undo_cut_deletions(store, salvage)
    dropped = _drop_damaged_rows(store, salvage)
    if not salvage:
        return None
    where = _keep_copies(store, salvage, dropped)
    switch_generation(store, keep=True)
    logger.warning('%s: repaired; what was dropped is kept in %s', store.path, where)
    return where


def _undo_cut_deletions(store: Store, salvage: list) -> None:
    """Delete again the documents whose deletion a cut file lost, and tell, in each 'cut'
    entry of ``salvage``, which documents it set back to an earlier version.

    The whole log that is left was replayed; the snapshot that proved the cut lists the
    documents alive at a later point. One alive now but not listed there was deleted (or
    replaced by a put at its position) after the cut, and the deletion was written, so it
    stays deleted: a cut must not bring back a document the user had removed.
    """
    ix = store.ix
    for k, (kind, what) in enumerate(salvage):
        if kind != 'cut':
            continue
        exc, listed, lost = what
        listed = set(listed)
        live = ix.live_slots().tolist() if ix.n_dead else range(len(ix.ids))
        undeleted = [doc_id for doc_id in (ix.ids[s] for s in live) if doc_id not in listed]
        for doc_id in undeleted:
            ix.delete(doc_id)
        salvage[k] = ('cut', (exc, lost, [doc_id for doc_id in lost if doc_id in ix.map], undeleted))


def _drop_damaged_rows(store: Store, salvage: list) -> list[tuple[str, int, bytes, int]]:
    """Kill the live documents whose record or row fails its check; return (id, offset, raw
    record, row) of each."""
    ix, out = store.ix, []
    live = ix.live_slots().tolist() if ix.n_dead else list(range(len(ix.ids)))
    for slot in live:
        doc_id, off = ix.ids[slot], ix.off[slot]
        raw = os.pread(store.log.fd, ix.len[slot], off)
        try:
            row, crc, _, _ = store.log.parse_put(raw, off, doc_id)
            if row >= 0:
                if store.emb is None:
                    raise CorruptStoreError(store.log.path, off, 'no matrix')
                store.emb.check(row, crc, doc_id)
            continue
        except CorruptStoreError as exc:
            salvage.append(('document', exc))
            row = HEAD.unpack_from(raw)[5] if len(raw) >= HEAD.size else -1
        out.append((doc_id, off, raw, row))
        ix.delete(doc_id)
    return out


def _keep_copies(store: Store, salvage: list, dropped: list) -> str:
    n = 0
    while os.path.exists(os.path.join(store.path, f'dropped-{n}')):
        n += 1
    where = os.path.join(store.path, f'dropped-{n}')
    os.mkdir(where, DIR_MODE)
    report: list[dict] = []
    recs, rows = bytearray(), bytearray()
    for kind, what in salvage:
        if kind == 'records':
            lo, hi = what
            report.append({'file': store.log.path, 'offset': lo, 'length': hi - lo,
                           'what': 'damaged or torn records', 'copy': 'records.bin', 'copy_offset': len(recs)})
            recs += os.pread(store.log.fd, hi - lo, lo)
        elif kind == 'cut':  # the bytes are gone: only which documents they held can be told
            exc, lost, earlier, undeleted = what
            report.append({'file': exc.file, 'offset': exc.offset, 'what': exc.problem, 'copy': None,
                           'ids': lost, 'earlier_version': earlier, 'deleted_again': undeleted,
                           'note': 'ids: documents whose latest version was cut off: gone, or back at the '
                                   'earlier version left before the cut (those in earlier_version); '
                                   'deleted_again: documents whose deletion was cut off, deleted again'})
        elif kind == 'meta':
            missing = not os.path.exists(os.path.join(store.path, META))
            report.append({'file': what.file, 'offset': 0, 'what': str(what), 'copy': None if missing else 'meta.json'})
            if not missing:
                with open(os.path.join(store.path, META), 'rb') as fp:
                    _write(os.path.join(where, 'meta.json'), fp.read())
    for doc_id, off, raw, row in dropped:
        item = {'file': store.log.path, 'offset': off, 'length': len(raw), 'id': doc_id,
                'what': 'document whose record or embedding row is damaged', 'copy': 'records.bin',
                'copy_offset': len(recs)}
        recs += raw
        if row >= 0 and store.emb is not None and row < store.emb.cap:
            item.update(embedding_file=store.emb.path, embedding_offset=row * store.emb.row_nbytes,
                        embedding_copy='embeddings.bin', embedding_copy_offset=len(rows))
            rows += store.emb.mmv[row].tobytes()
        report.append(item)
    _write(os.path.join(where, 'records.bin'), bytes(recs))
    if rows:
        _write(os.path.join(where, 'embeddings.bin'), bytes(rows))
    _write(os.path.join(where, 'report.json'),
           json.dumps({'time': time.time(), 'crc_of_records_copy': zlib.crc32(recs), 'dropped': report},
                      indent=1).encode())
    return where


def _write(path: str, data: bytes) -> None:
    fd = open_new(path, os.O_WRONLY | os.O_TRUNC)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)

