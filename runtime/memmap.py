"""DocumentArrayMemmap: a DocumentArray persisted in a directory, embeddings memory-mapped.

The public class only; the layers under it live in :mod:`runtime.store` (record log, index,
embedding matrix, the open directory, prune / verify / repair). Every file is checksummed:
damage is reported as :class:`~runtime.errors.CorruptStoreError` (file and offset), never
returned as a wrong document, and never cut off unless the user asks for ``repair()``.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .array import DocumentArray, DocumentSequence, _check_doc, _stack
from .arrayops import ArrayOps
from .document import Document
from .memmap_jina2 import Jina2MemmapMixin, refuse_options
from .store import maintenance
from .store.log import READ_DOCS
from .store.store import Store

__all__ = ['DocumentArrayMemmap']

logger = logging.getLogger('runtime')


class _ClassOrInstance:
    """A function of a path, callable as ``Cls.fn(path)`` or as ``obj.fn()`` (obj's path)."""

    def __init__(self, fn: Callable[[str | os.PathLike], Any]) -> None:
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __get__(self, obj: Any, owner: type) -> Callable:
        return self.fn if obj is None else functools.partial(self.fn, obj.path)


class DocumentArrayMemmap(Jina2MemmapMixin, DocumentSequence, ArrayOps):
    """A DocumentArray kept on disk in the directory ``path``, with embeddings in one
    ``np.memmap`` matrix.

    Same interface as DocumentArray: ``append`` / ``extend``, ``dam[i]`` (live documents
    only, negative too), ``dam['id']``, slices and lists (-> DocumentArray), iteration
    (streams, constant memory), ``len``, ``in``, ``del dam['id']``, ``dam['id'] = doc``
    (keeps the position), ``.embeddings`` (assignable), ``.texts``, ``.blobs``,
    ``get_attributes``, and Jina 2's ``traverse`` / ``traverse_flat`` / ``find`` / ``sample``
    / ``shuffle`` / ``match`` (:class:`~runtime.arrayops.ArrayOps`). Appending a document
    whose id is already present replaces it in place.

    Every append is on disk (in the OS page cache) when the call returns: another process
    that opens the directory or calls ``reload()`` sees it, and a crash loses at most the
    document being written. ``flush()`` also saves the index, so reopening does not have to
    replay the log. Within one process, every DocumentArrayMemmap on the same directory
    shares one state (a "reopened" one sees the same documents and can write); across
    processes one writes at a time (``flock``; the second gets a clear error) and any
    number read.

    A fetched document is a copy: changing it changes nothing on disk until it is stored
    again with ``dam[doc.id] = doc`` (unlike Jina 2, whose buffer pool kept ``dam[0].text =
    'x'``). Not thread-safe. Files are created 0600. Jina 2's ``save()`` (persist, the same
    as ``flush()``; ``save(file)`` writes a file as DocumentArray's does),
    ``get_doc_by_key(id)`` and ``physical_size`` are here too.

    Parameters
    ----------
    path : str or os.PathLike
        Directory to use; created (0700) if missing. An existing directory must be empty or
        one that a DocumentArrayMemmap wrote.
    verify : bool
        Check every file's checksums on open (``verify()``), not only the records and rows
        as they are read.

    Jina 2's ``key_length`` and ``buffer_pool_size`` are refused with a TypeError that says
    why they are not needed (ids of any length are stored; there is no buffer pool).

    Raises
    ------
    TypeError
        A keyword other than ``verify``.
    ValueError
        The directory holds something else.
    NotADirectoryError
        ``path`` is a file (also a ValueError).
    CorruptStoreError
        A file of the store is damaged (see ``repair``).

    Examples
    --------
    >>> with DocumentArrayMemmap('./my-mmap') as dam:
    ...     dam.extend(Document(text=f'doc {i}', embedding=np.ones(4, np.float32)) for i in range(3))
    ...     dam[0].text, dam.embeddings.shape
    ('doc 0', (3, 4))
    >>> len(DocumentArrayMemmap('./my-mmap'))
    3
    """

    def __init__(self, path: str | os.PathLike, *, verify: bool = False, **jina2_options: Any) -> None:
        self._closed = True  # first, so that close() / __del__ work whatever fails below
        refuse_options(jina2_options)
        self._path = os.path.abspath(os.fspath(path))
        self._store = Store.acquire(path)
        self._closed = False
        if verify:
            try:
                self.verify()
            except BaseException:
                self.close()
                raise

    @property
    def path(self) -> str:
        """The directory (absolute path).

        >>> DocumentArrayMemmap('./my-mmap').path
        '/home/me/my-mmap'
        """
        return self._path

    def _s(self) -> Store:
        if self._closed:
            raise ValueError(f'DocumentArrayMemmap at {self._path} is closed; open it again to use it')
        s = self._store
        if s.closed:  # closed under us: what it holds after a failure is unknown
            s.check_open()
        return s

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """The number of live documents.

        >>> len(dam)
        3
        """
        return len(self._s().ix)

    def _has_id(self, doc_id: str) -> bool:
        return doc_id in self._s().ix.map

    def _read_many(self, slots: Sequence[int]) -> DocumentArray:
        s, docs = self._store, []
        # The result holds every document anyway; windows keep the raw records read beside
        # it to a few MiB.
        for window in s.ix.windows(slots, per_doc=s.row_bytes):
            docs.extend(s.read_slots(window))
        return DocumentArray._from_list(docs)

    def __getitem__(self, key: int | str | slice | Sequence) -> Document | DocumentArray:
        """``dam[i]`` (the i-th live document), ``dam['id']``, ``dam[a:b]`` or
        ``dam[[...ints / ids / bools]]`` (-> DocumentArray). Each call reads from disk,
        checks the checksums of what it read, and returns copies.

        >>> dam[0].text, dam[-1].id in dam
        ('doc 0', True)
        """
        s = self._s()
        ix = s.ix
        if isinstance(key, str):
            slot = ix.map.get(key)
            if slot is None:
                raise KeyError(f'no document with id {key!r} in {self!r}')
            return s.read_slot(slot)
        if isinstance(key, (int, np.integer)):
            return s.read_slot(ix.slot_at(int(key)))
        if isinstance(key, slice):
            return self._read_many(ix.slots_of(range(len(ix))[key]))
        if isinstance(key, (list, tuple, np.ndarray)):
            arr = np.asarray(key)
            if arr.dtype == bool:
                if len(arr) != len(ix):
                    raise IndexError(f'boolean mask has length {len(arr)}, DocumentArrayMemmap has {len(ix)}')
                arr = np.flatnonzero(arr)
            if arr.dtype.kind in 'iu' or arr.size == 0:
                return self._read_many([ix.slot_at(int(i)) for i in arr.tolist()])
            if arr.dtype.kind == 'U':
                return DocumentArray._from_list([self[k] for k in arr.tolist()])
        raise TypeError(f'DocumentArrayMemmap indices are int, str (id), slice, or a list of ints / ids / bools; '
                        f'got {type(key).__name__}')

    def __iter__(self) -> Iterator[Document]:
        """Stream the live documents in order, a window at a time (constant memory: at most
        1,024 documents and 4 MiB of records per window, or one larger document alone).

        >>> for d in dam: print(d.text)
        """
        s = self._s()
        version, start = s.version, 0
        while True:
            if s.version != version or self._closed:
                raise RuntimeError(f'DocumentArrayMemmap at {self._path} was pruned, cleared, reloaded or '
                                   f'closed during iteration')
            ix = s.ix
            n = len(ix.ids)
            if start >= n:
                return
            stop = min(start + READ_DOCS, n)
            alive = ix.alive
            slots = [k for k in range(start, stop) if alive[k]] if ix.n_dead else range(start, stop)
            # Bounded in bytes too: a window of large documents is read a few at a time.
            k = ix.window_len(slots, per_doc=s.row_bytes)
            if k < len(slots):
                slots, stop = slots[:k], slots[k]
            start = stop
            if slots:
                yield from s.read_slots(slots)

    @property
    def embeddings(self) -> np.ndarray | None:
        """The (N, ...) embedding matrix of the live documents.

        A read-only ``np.memmap`` view (no copy, no unpickling) while the live documents'
        rows are exactly the first N rows of the matrix (no deletes or updates since the
        last ``prune()``); a copy gathered from the matrix otherwise. Documents whose
        embedding has another shape / dtype than the first one stored keep it in their
        record: then the embeddings are stacked as DocumentArray does (None when no
        document has one; ValueError when only some have one or shapes differ). The view
        is not checksummed on every access (that would read every byte): ``verify()``
        checks it.

        Assigning an (N, ...) array stores row i as the embedding of the i-th document
        (its dtype kept; a wrong N raises ValueError); None removes every embedding.

        Examples
        --------
        >>> dam.embeddings.shape
        (3, 4)
        >>> dam.embeddings = np.zeros((3, 4), np.float32)
        """
        s = self._s()
        if len(s.ix) == 0:
            return None
        matrix = s.matrix()
        return matrix if matrix is not None else _stack(self, 'embedding')

    @embeddings.setter
    def embeddings(self, value: np.ndarray | None) -> None:
        s = self._s()
        n = len(s.ix)
        if value is not None:
            if not isinstance(value, np.ndarray):
                try:
                    value = np.asarray(value)
                except ValueError as exc:
                    raise ValueError(f'embeddings must be an (N, D) numpy array, got a ragged '
                                     f'{type(value).__name__}: {exc}') from None
            if value.dtype.kind not in 'biufc' or value.dtype.fields:
                raise TypeError(f'embeddings must be a numeric array, got dtype {value.dtype}')
            if value.ndim < 2 or value.shape[0] != n:
                raise ValueError(f'embeddings must have shape (N, ...) with N = {n} documents, '
                                 f'got shape {value.shape}')
        s.ensure_writer()
        slots = s.ix.slots_of(range(n))  # updates replace in place: the slots stay put

        def updated() -> Iterator[Document]:
            k = 0
            for window in s.ix.windows(slots, per_doc=s.row_bytes):
                for d in s.read_slots(window):
                    d._embedding = None if value is None else value[k]
                    k += 1
                    yield d
        s.extend(updated(), _no_check)

    def match(self, darray: Any, *args: Any, **kwargs: Any) -> None:
        """As :meth:`ArrayOps.match <runtime.arrayops.ArrayOps.match>`; the documents here
        get their ``matches`` on disk: they are read, matched and written back in place (so
        this side is held in memory while it runs; the other side, ``darray``, may be a
        DocumentArrayMemmap of any size).

        Examples
        --------
        >>> dam.match(index_dam, metric='cosine', limit=3); len(dam[0].matches)
        3
        """
        left = DocumentArray._from_list(list(self))
        ArrayOps.match(left, darray, *args, **kwargs)
        self._s().extend(left, _no_check)

    def __repr__(self) -> str:
        """``<DocumentArrayMemmap path='/data/dam' length=3>``"""
        if self._closed or self._store.closed:
            return f'<DocumentArrayMemmap path={self._path!r} closed>'
        return f'<DocumentArrayMemmap path={self._path!r} length={len(self)}>'

    # -- writing ---------------------------------------------------------------------------
    def append(self, doc: Document) -> None:
        """Add one Document at the end (or replace the one with the same id, in place).

        Parameters
        ----------
        doc : Document

        Examples
        --------
        >>> dam.append(Document(text='hello'))
        """
        if type(doc) is not Document:
            _check_doc(doc, 'DocumentArrayMemmap.append')
        self._s().put_one(doc, None)

    def extend(self, docs: Iterable[Document]) -> None:
        """Add many Documents at the end, writing them in batches (documents whose id is
        already present replace it in place).

        Parameters
        ----------
        docs : iterable of Document

        Examples
        --------
        >>> dam.extend(Document(text=t) for t in ['a', 'b'])
        """
        if isinstance(docs, Document):
            raise TypeError('DocumentArrayMemmap.extend takes an iterable of Documents; use append for one')
        if docs is self:
            docs = list(self)
        self._s().extend(docs, _check_extend)

    def __setitem__(self, key: int | str, value: Document) -> None:
        """Store ``value`` at the position of ``key`` (an id or an int index).

        >>> d = dam['a']; d.text = 'new'; dam['a'] = d
        """
        _check_doc(value, 'DocumentArrayMemmap item assignment')
        s = self._s()
        s.ensure_writer()  # first: it catches up with other writers, positions may move
        ix = s.ix
        if isinstance(key, str):
            if key not in ix.map:
                raise KeyError(f'no document with id {key!r} in {self!r}')
            old = key
        elif isinstance(key, (int, np.integer)):
            old = ix.ids[ix.slot_at(int(key))]
        else:
            raise TypeError(f'DocumentArrayMemmap assignment takes an int index or str id, got {type(key).__name__}')
        if value.id != old and value.id in ix.map:
            raise ValueError(f'cannot store document {value.id!r} at the position of {old!r}: that id is '
                             f'already at another position and ids are unique here; delete it first')
        s.put_one(value, old)

    def __delitem__(self, key: int | str | slice) -> None:
        """Delete by id, int index or slice (a DEL record is appended; ``prune()`` reclaims
        the space).

        >>> del dam['a']; del dam[0]
        """
        s = self._s()
        s.ensure_writer()  # first: it catches up with other writers, positions may move
        ix = s.ix
        if isinstance(key, str):
            if key not in ix.map:
                raise KeyError(f'no document with id {key!r} in {self!r}')
            ids = [key]
        elif isinstance(key, (int, np.integer)):
            ids = [ix.ids[ix.slot_at(int(key))]]
        elif isinstance(key, slice):
            ids = [ix.ids[k] for k in ix.slots_of(range(len(ix))[key])]
        else:
            raise TypeError(f'DocumentArrayMemmap deletion takes an int index, str id or slice, '
                            f'got {type(key).__name__}')
        if ids:
            s.delete_ids(ids)

    def clear(self) -> None:
        """Remove every Document (switches to a new, empty generation of files).

        Examples
        --------
        >>> dam.clear(); len(dam)
        0
        """
        s = self._s()
        s.ensure_writer()
        maintenance.switch_generation(s, keep=False)

    def prune(self) -> None:
        """Compact: rewrite the live documents, in order, into fresh files, dropping deleted
        and replaced records and making the embedding rows contiguous again (so that
        ``.embeddings`` is a zero-copy view). Every row's checksum is checked on the way.
        Readers that have the old files open keep seeing them until they ``reload()``.

        Examples
        --------
        >>> del dam[0]; dam.prune()
        """
        s = self._s()
        s.ensure_writer()
        maintenance.switch_generation(s, keep=True)

    # -- integrity -------------------------------------------------------------------------
    def verify(self) -> int:
        """Check every checksum of the store: meta.json, every record of the log, and every
        live document's embedding row (which ``.embeddings`` hands out unchecked). Reads
        every byte; records and rows are also checked whenever a document is read.

        Returns
        -------
        int
            The number of live documents checked.

        Raises
        ------
        CorruptStoreError
            Naming the damaged file and the offset of the damage.

        Examples
        --------
        >>> dam.verify()
        3
        """
        return maintenance.verify(self._s())

    @_ClassOrInstance
    def repair(path: str | os.PathLike) -> str | None:
        """Drop what is damaged and keep the rest: records that fail their checksum (and a
        torn tail), documents whose embedding row fails its checksum, and a records file cut
        short below a synced ``flush(sync=True)`` (opening raises CorruptStoreError for it).
        Everything dropped is copied into ``<path>/dropped-<n>/`` first (``records.bin``,
        ``embeddings.bin`` and ``report.json`` with each piece's file, offset and, where
        known, document id; for a cut file, the ids of the documents whose latest records are
        gone, those of them back at an earlier version, and those whose deletion was cut off:
        they stay deleted).

        Call it on the class with the directory (``DocumentArrayMemmap.repair(path)``, also
        when opening fails) or on an open array (``dam.repair()``). Holds the writer lock from
        the check to the end, so no other process writes in between; an array that was
        writing keeps the lock.

        Returns
        -------
        str or None
            The folder holding the copies; None when nothing was damaged.

        Examples
        --------
        >>> DocumentArrayMemmap.repair('./my-mmap')  # doctest: +SKIP
        './my-mmap/dropped-0'
        """
        return maintenance.repair(os.fspath(path))

    # -- flushing and closing --------------------------------------------------------------
    def flush(self, sync: bool = False) -> None:
        """Save the index, so that reopening needs no replay of the record log.

        Documents are on disk (in the OS page cache) as soon as they are appended, so they
        survive the process being killed with or without ``flush``; ``sync=True`` also
        fsyncs the records, the embedding matrix and the index, for an OS crash or power
        loss, and records in the index how many bytes of the records are synced (later
        flushes keep that): a records file later found shorter than that (cut by a copy or a
        truncate) then raises CorruptStoreError on opening instead of losing what was cut
        silently. A reader's flush does nothing.

        Parameters
        ----------
        sync : bool
            fsync / msync the files as well.

        Examples
        --------
        >>> dam.append(Document(text='x')); dam.flush()
        """
        self._s().flush(sync)

    def reload(self) -> None:
        """Re-read the directory from disk, as a fresh open would: a reader sees what the
        writing process appended, deleted or pruned since.

        Examples
        --------
        >>> reader = DocumentArrayMemmap('./my-mmap'); reader.reload(); len(reader)
        3
        """
        self._s().load()

    def close(self) -> None:
        """Flush (when this process writes) and let go of the directory; the last open
        DocumentArrayMemmap on it in this process releases files, maps and the writer lock.
        Arrays handed out by ``.embeddings`` stay valid. Closing twice is fine.

        Examples
        --------
        >>> dam.close()
        """
        # getattr: __del__ runs this also on an object whose __init__ never started (its
        # arguments did not bind), which has no _closed.
        if getattr(self, '_closed', True):
            return
        self._closed = True
        s = self._store
        try:
            if s.lock_fd is not None and s.refs > 1 and s.pid == os.getpid():
                s.flush()
        finally:
            s.release()

    # A copy, or a pickled one unpickled in an executor's process, is another handle on the
    # same directory, opened there by its path: the handle's state (file descriptors, maps,
    # the writer lock) belongs to the process and the handle that opened it, and a copy of
    # it wrote into whatever file later got the same descriptor number, or closed the
    # original's files when it went.
    def __reduce__(self) -> tuple:
        return type(self), (self._path,)

    def __copy__(self) -> 'DocumentArrayMemmap':
        return type(self)(self._path)

    def __deepcopy__(self, memo: dict) -> 'DocumentArrayMemmap':
        return type(self)(self._path)

    def __enter__(self) -> 'DocumentArrayMemmap':
        """``with DocumentArrayMemmap(path) as dam: ...`` closes (and flushes) on exit."""
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Garbage collection flushes too (best effort), so a forgotten close() costs only
        # a longer replay on the next open, never documents.
        try:
            self.close()
        except Exception as exc:  # never raise from a finaliser (often at interpreter exit)
            try:
                logger.warning('DocumentArrayMemmap at %s: flush on garbage collection failed: %s',
                               getattr(self, '_path', '?'), exc)
            except Exception:
                pass


def _check_extend(doc: Any) -> None:
    _check_doc(doc, 'DocumentArrayMemmap.extend')


def _no_check(doc: Any) -> None:
    pass
