"""The directory of a store: creating it (0700, files 0600), telling it from a foreign one,
opening the files of the generation meta.json names, and removing the files of
generations that are no longer current."""
from __future__ import annotations

import os

from typing import TYPE_CHECKING

from ..errors import CorruptStoreError
from .embeddings import EmbeddingStore
from .format import DIR_MODE, GEN_FILE, LOCK, META, META_TMP, file_name, has_store_files, meta_bytes, open_new
from .log import RecordLog

if TYPE_CHECKING:
    from .store import Store

__all__ = ['NotADirectory', 'prepare', 'open_generation', 'remove_stale', 'guess_generation']


class NotADirectory(NotADirectoryError, ValueError):
    """A file stands where the directory should be (both an OSError and a ValueError, so
    either ``except`` catches it)."""


def prepare(path: str, salvage: bool = False) -> None:
    """Create the store at ``path`` if it is new; refuse a file or a foreign directory.
    One whose meta.json is missing while its record files are there is damaged (refused
    with CorruptStoreError), and left as it is for ``salvage`` (``repair``).

    >>> prepare('/tmp/new-store')  # doctest: +SKIP
    """
    if os.path.lexists(path) and not os.path.isdir(path):
        raise NotADirectory(f'DocumentArrayMemmap needs a directory, but {path} is a file; '
                            f'pass the path of a new or empty directory (or one it wrote before)')
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    if os.path.exists(os.path.join(path, META)):
        return  # validated when read
    foreign = [e for e in os.listdir(path) if not _is_fresh_leftover(path, e)]
    if foreign and os.path.exists(os.path.join(path, META)):
        return  # another process created the store meanwhile (replicas opening one folder)
    if foreign and has_store_files(path):
        # (its records are there: damage, such as an interrupted copy, not someone else's folder)
        if salvage:
            return
        raise CorruptStoreError(os.path.join(path, META), 0, 'is missing; the record files are there')
    if foreign:
        shown = ', '.join(sorted(foreign)[:5]) + (', ...' if len(foreign) > 5 else '')
        raise ValueError(f'{path} is not a DocumentArrayMemmap directory: it holds {shown} and no '
                         f'{META}; nothing there is overwritten. Pass a new or empty directory')
    # records.0.bin first, meta.json last: once meta exists, so does the record file.
    os.close(open_new(os.path.join(path, file_name('records', 0))))
    tmp = os.path.join(path, f'{META}.{os.getpid()}.tmp')
    fd = open_new(tmp, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, meta_bytes(0, None))
    finally:
        os.close(fd)
    try:
        os.link(tmp, os.path.join(path, META))  # fails if another process got there first
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _is_fresh_leftover(path: str, name: str) -> bool:
    # What a creation interrupted before meta.json existed can leave: nothing of value.
    if name == LOCK or META_TMP.fullmatch(name):
        return True
    if name == file_name('records', 0):
        return os.path.getsize(os.path.join(path, name)) == 0
    return False


def remove_stale(path: str, gen: int, newer_too: bool) -> None:
    """Remove the files of other generations than ``gen``.

    Older generations are garbage once meta.json moved on; newer ones are the leftovers of
    an interrupted prune, removable only by the writer (``newer_too``: a prune may be under
    way in the writing process otherwise).
    """
    for name in os.listdir(path):
        m = GEN_FILE.fullmatch(name)
        if not m:
            continue
        g = int(m.group(2))
        if g < gen or (newer_too and (g > gen or m.group(4))):
            try:
                os.unlink(os.path.join(path, name))
            except OSError:  # read-only directory or already gone: harmless
                pass


def guess_generation(path: str) -> int:
    """The newest generation with a record file (for ``repair`` when meta.json is damaged)."""
    gens = [int(m.group(2)) for m in map(GEN_FILE.fullmatch, os.listdir(path))
            if m and m.group(1) == 'records' and not m.group(4)]
    return max(gens, default=0)


def open_generation(store: 'Store', salvage: list | None, writable: bool) -> tuple | None:
    """(record log, embedding store or None, generation, layout) as meta.json names them,
    or None when a prune switched generations while they were being opened."""
    try:
        gen, layout = store.read_meta()
    except CorruptStoreError as exc:
        if salvage is None:
            raise
        gen, layout = guess_generation(store.path), None
        salvage.append(('meta', exc))
    # Both files are opened before anything is read: once open, a prune in another
    # process can unlink them but not take them away from us.
    try:
        log = RecordLog(store.file('records', gen), writable)
    except FileNotFoundError:
        log = None
    emb = None
    if log is not None and layout is not None:
        try:
            emb = EmbeddingStore(store.file('embeddings', gen), layout, writable)
        except BaseException as exc:
            # Not store.log yet, so nothing else would close it (PermissionError, EMFILE,
            # a failed map: any error, not only a file pruned away).
            log.close()
            if not isinstance(exc, FileNotFoundError):
                raise
            log = None
    if log is not None:
        return log, emb, gen, layout
    if salvage is not None or store.read_meta()[0] == gen:
        raise CorruptStoreError(os.path.join(store.path, META), 0,
                                f'names generation {gen} but its records / embeddings file is missing',
                                'put the missing file back (from a backup): repair() cannot rebuild it')
    return None
