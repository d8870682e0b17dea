"""Generator of documents from files on disk: ``from_files`` (glob patterns, one Document
per file, its content read lazily or left as a ``uri``).

Re-exported by ``runtime.generators`` (which see for the shared keywords).

Example
-------
>>> docs = from_files('/no/such/dir/*.txt')  # checked now, globbed on first next()
>>> list(docs)
[]
"""
from __future__ import annotations

import glob
import mimetypes
import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .document import Document
from .gen_common import _READ_MODES, PathLike, _check_sampling_rate, _check_size, _select, logger

__all__ = ['from_files']

# -- files on disk -------------------------------------------------------------------------------
def _file_docs(patterns: list[str], recursive: bool, size: int | None, sampling_rate: float | None,
               seed: Any, read_mode: str | None) -> Iterator[Document]:
    def paths() -> Iterator[str]:
        # A file matched by two patterns is still one file: yield it once.
        seen: set[str] = set()
        for pattern in patterns:
            for path in sorted(glob.glob(pattern, recursive=recursive)):
                if path not in seen and os.path.isfile(path):
                    seen.add(path)
                    yield path
        if not seen:
            logger.warning('from_files: no file matches %s', patterns)

    # Sample paths, not documents, so dropped files are never read.
    for path in _select(paths(), size, sampling_rate, seed):
        doc = Document(uri=path)
        mime_type = mimetypes.guess_type(path)[0]
        if mime_type:
            doc.mime_type = mime_type
        if read_mode == 'r':
            try:
                with open(path, 'r', encoding='utf-8') as f:
                    doc.text = f.read()
            except UnicodeDecodeError as exc:
                raise ValueError(f'from_files: {path!r} is not utf-8 text ({exc}); '
                                 f"pass read_mode='rb' to read it as bytes into .buffer") from None
        elif read_mode == 'rb':
            with open(path, 'rb') as f:
                doc.buffer = f.read()
        yield doc


def from_files(patterns: PathLike | Sequence[PathLike], recursive: bool = True, size: int | None = None,
               sampling_rate: float | None = None, read_mode: str | None = None,
               *, seed: Any = None) -> Iterator[Document]:
    """One Document per file matching one or more glob patterns.

    Every Document has ``uri`` set to the path (also when the content is read; Jina 2
    dropped it then) and ``mime_type`` guessed from the file name when it can be.
    Directories are skipped; files come in sorted order within each pattern, and a file
    that several patterns match is yielded once.

    Parameters
    ----------
    patterns : str, os.PathLike or list of them
        Glob patterns, e.g. ``'docs/**/*.txt'``.
    recursive : bool
        Let ``**`` match any number of directories.
    size : int, optional
        Yield at most this many documents.
    sampling_rate : float, optional
        Keep each file with this probability, in (0, 1]; dropped files are not read.
    read_mode : {None, 'r', 'rb'}
        None: only ``uri`` / ``mime_type``; ``'r'``: also read the file as utf-8 into
        ``text``; ``'rb'``: read its bytes into ``buffer``.
    seed : optional
        Makes ``sampling_rate`` reproducible.

    Returns
    -------
    Iterator[Document]
        A lazy generator: the file system is searched only when iteration starts.

    Raises
    ------
    ValueError
        At call time for a bad ``read_mode``, ``size`` or ``sampling_rate``; when
        iterating with ``read_mode='r'``, for a file that is not utf-8 text.

    Examples
    --------
    >>> for d in from_files('docs/**/*.txt', read_mode='r'):  # doctest: +SKIP
    ...     print(d.uri, d.mime_type, len(d.text))
    docs/a.txt text/plain 42
    """
    if isinstance(patterns, (str, os.PathLike)):
        pattern_list = [os.fspath(patterns)]
    elif isinstance(patterns, Iterable) and not isinstance(patterns, (bytes, bytearray, Mapping)):
        pattern_list = list(patterns)
        bad = [p for p in pattern_list if not isinstance(p, (str, os.PathLike))]
        if bad:
            raise TypeError(f'from_files patterns must be str or os.PathLike, got {type(bad[0]).__name__} '
                            f'{bad[0]!r}')
        if not pattern_list:
            raise ValueError("from_files got an empty list of patterns; pass at least one glob, "
                             "e.g. 'docs/**/*.txt'")
        pattern_list = [os.fspath(p) for p in pattern_list]
    else:
        raise TypeError(f'from_files takes a glob pattern (str) or a list of them, got {type(patterns).__name__}')
    if read_mode not in _READ_MODES:
        raise ValueError(f"read_mode must be one of None (do not read), 'r' (utf-8 text into .text) or "
                         f"'rb' (bytes into .buffer), got {read_mode!r}")
    size = _check_size(size)
    sampling_rate = _check_sampling_rate(sampling_rate)
    return _file_docs(pattern_list, bool(recursive), size, sampling_rate, seed, read_mode)
