"""Document generators: turn CSV, NDJSON, numpy arrays, files on disk and lines of text
into a lazy stream of :class:`~runtime.document.Document`, ready for ``Flow.post`` /
``Flow.index``.

Every function here is a plain (non-generator) function that checks its arguments at
call time -- so ``from_files('*.txt', read_mode='x')`` fails on the line that wrote it --
and then returns a generator that opens and reads nothing until the first ``next()``.

Shared keywords:

``size``
    Yield at most this many documents (a positive int, or None for all). Jina 2 yielded
    ``size + 1``; these yield exactly ``size``.
``sampling_rate``
    Keep each record with this probability, in (0, 1]. Sampling happens before ``size``
    counts, so ``size`` is the number of documents actually yielded.
``seed``
    Makes sampling (and ``from_ndarray(shuffle=True)``) reproducible. Without it,
    sampling draws from the global :func:`random.random`.

>>> import io
>>> [d.text for d in from_csv(io.StringIO('id,text\\n1,hello\\n2,world\\n'))]
['hello', 'world']
"""
from __future__ import annotations

import csv
import glob
import io
import json
import logging
import math
import mimetypes
import numbers
import os
import random
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar, Union

import numpy as np

from .document import Document

__all__ = ['from_csv', 'from_ndjson', 'from_ndarray', 'from_files', 'from_lines']

logger = logging.getLogger('runtime')

T = TypeVar('T')
PathLike = Union[str, 'os.PathLike[str]']
#: What the line-based readers take: a path (opened lazily), an open file, or any
#: iterable of lines.
LinesSource = Union[PathLike, IO, Iterable[str]]

_READ_MODES = (None, 'r', 'rb')
_LINE_FORMATS = (None, 'json', 'csv')
#: Document fields that hold structured values; a CSV cell (always a str) cannot fill them.
_NON_SCALAR_FIELDS = frozenset({'blob', 'embedding', 'buffer', 'chunks', 'matches', 'tags', 'scores'})
#: Scalar Document fields that are numbers; CSV hands them over as str, so convert.
_NUMERIC_FIELDS = {'granularity': int, 'adjacency': int, 'weight': float}


# -- argument checks (run at call time) --------------------------------------------------------
def _check_size(size: Any) -> int | None:
    if size is None:
        return None
    # bool is an int subclass, but size=True is surely a mistake
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f'size must be a positive int (the maximum number of documents) or None for all, '
                        f'got {type(size).__name__} {size!r}')
    if size <= 0:
        raise ValueError(f'size must be a positive int (the maximum number of documents) or None for all, '
                         f'got {size!r}')
    return int(size)


def _check_sampling_rate(rate: Any) -> float | None:
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise TypeError(f'sampling_rate must be a number in (0, 1] (the probability of keeping each record) '
                        f'or None to keep all, got {type(rate).__name__} {rate!r}')
    if math.isnan(rate) or not 0 < rate <= 1:
        raise ValueError(f'sampling_rate must be in (0, 1] (the probability of keeping each record), '
                         f'got {rate!r}; pass None to keep all records')
    return float(rate)


def _check_resolver(field_resolver: Any) -> Mapping[str, str] | None:
    if field_resolver is not None and not isinstance(field_resolver, Mapping):
        raise TypeError(f'field_resolver must be a dict mapping source names to Document fields, '
                        f"e.g. {{'question': 'text'}}, got {type(field_resolver).__name__}")
    return field_resolver


def _check_source(fp: Any, name: str, allow_binary: bool) -> None:
    """Refuse at call time what cannot work later: plain text passed as a path, a single
    string as a sequence of lines, a binary file where text is needed, a non-iterable."""
    if isinstance(fp, str):
        if '\n' in fp:
            raise ValueError(f'{name} got a str containing newlines: that looks like the data itself, '
                             f'not a path; pass io.StringIO(text) or text.splitlines() instead')
        return
    if isinstance(fp, os.PathLike):
        return
    if isinstance(fp, (bytes, bytearray)):
        raise TypeError(f'{name} takes a path (str or os.PathLike), an open file or an iterable of lines, '
                        f'got {type(fp).__name__}; decode it and pass io.StringIO(data.decode()) instead')
    mode = getattr(fp, 'mode', '')
    # Some file objects (gzip) keep an int mode, so test the type before looking for 'b'.
    if not allow_binary and (isinstance(fp, (io.RawIOBase, io.BufferedIOBase))
                             or (isinstance(mode, str) and 'b' in mode)):
        raise TypeError(f'{name} needs a file opened in text mode (open(path, newline="")), '
                        f'got a binary file {fp!r}')
    if not isinstance(fp, Iterable):
        raise TypeError(f'{name} takes a path (str or os.PathLike), an open file or an iterable of lines, '
                        f'got {type(fp).__name__}')


def _check_csv_dialect(dialect: Any) -> None:
    if isinstance(dialect, str):
        if dialect not in csv.list_dialects():
            raise ValueError(f'unknown CSV dialect {dialect!r}; valid names are {sorted(csv.list_dialects())} '
                             f'(or pass a csv.Dialect subclass)')
    elif not (isinstance(dialect, csv.Dialect) or (isinstance(dialect, type) and issubclass(dialect, csv.Dialect))):
        raise TypeError(f'dialect must be a csv dialect name such as "excel" or a csv.Dialect, '
                        f'got {type(dialect).__name__}')


# -- shared machinery (runs lazily, inside the generators) ----------------------------------------
def _select(items: Iterable[T], size: int | None, sampling_rate: float | None, seed: Any) -> Iterator[T]:
    """Apply ``sampling_rate`` then ``size`` to a stream of raw records.

    It works on records rather than Documents so that a record sampling drops is never
    turned into a Document (nor, for ``from_files``, read from disk); and it stops pulling
    as soon as ``size`` is reached, so nothing past the last yielded record is read.
    """
    draw: Callable[[], float] = random.Random(seed).random if seed is not None else random.random
    count = 0
    for item in items:
        if sampling_rate is not None and sampling_rate < 1 and draw() >= sampling_rate:
            continue
        yield item
        count += 1
        if size is not None and count >= size:
            return


def _iter_lines(fp: LinesSource, encoding: str, newline: str | None = None,
                binary: bool = False) -> Iterator[Any]:
    """Lines of ``fp``; a path is opened here, i.e. only once iteration starts, and closed
    when the generator finishes or is closed."""
    if isinstance(fp, (str, os.PathLike)):
        if binary:
            with open(fp, 'rb') as f:
                yield from f
        else:
            with open(fp, 'r', encoding=encoding, newline=newline) as f:
                yield from f
    else:
        want = (bytes, bytearray) if binary else str
        for line_num, line in enumerate(fp, start=1):
            if not isinstance(line, want):
                raise ValueError(f'line {line_num} is {type(line).__name__} {line!r:.40}, not '
                                 f'{"bytes" if binary else "str"}: pass an open file, a path, or an iterable '
                                 f'of {"bytes" if binary else "str"} lines')
            yield line


def _with_line(exc: Exception, where: str) -> Exception:
    """The same kind of error, prefixed with where in the input it happened."""
    # Subclasses (JSONDecodeError, AxisError...) take other constructor arguments, so
    # fall back to the plain base type.
    cls = TypeError if isinstance(exc, TypeError) else ValueError
    new = cls(f'{where}: {exc}')
    new.__cause__ = exc
    return new


# -- CSV -------------------------------------------------------------------------------------
def _looks_like_data(header: Sequence[str]) -> bool:
    # Column names are practically never all numbers; data rows often are.
    cells = [c.strip() for c in header]
    if not any(cells):
        return False
    for c in cells:
        try:
            float(c)
        except ValueError:
            return False
    return True


def _csv_docs(fp: LinesSource, field_resolver: Mapping[str, str] | None, size: int | None,
              sampling_rate: float | None, seed: Any, dialect: Any, encoding: str) -> Iterator[Document]:
    # newline='' is what the csv module asks for, so quoted fields may hold line breaks.
    reader = csv.reader(_iter_lines(fp, encoding, newline=''), dialect)
    try:
        header = next(reader, None)
        # Blank lines before the header are not a header.
        while header == []:
            header = next(reader, None)
    except csv.Error as exc:
        raise ValueError(f'CSV line {reader.line_num}: {exc}') from exc
    if header is None:
        raise ValueError('the CSV has no header row (the input is empty); the first line must name the '
                         'columns, e.g. "id,text,lang"')
    if header and header[0].startswith('\ufeff'):
        # A UTF-8 byte-order mark read as utf-8 would otherwise hide an "id" column.
        header[0] = header[0][1:]
    if _looks_like_data(header):
        raise ValueError(f'the CSV seems header-less: its first line {header!r} looks like data, not column '
                         f'names; add a header line naming the columns (e.g. "id,text") at the top')
    resolver = field_resolver or {}
    names = [resolver.get(c, c) for c in header]
    seen: dict[str, str] = {}
    for column, name in zip(header, names):
        if name in seen:
            raise ValueError(f'CSV columns {seen[name]!r} and {column!r} both map to {name!r}; '
                             f'rename one of them (or change field_resolver)')
        seen[name] = column
        if name in _NON_SCALAR_FIELDS:
            raise ValueError(f'CSV column {column!r} maps to Document.{name}, which a CSV cell (a string) '
                             f'cannot fill; map it elsewhere with field_resolver, e.g. {{{column!r}: "text"}}')
    expected = len(header)

    def rows() -> Iterator[tuple[int, list[str]]]:
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ValueError(f'CSV line {reader.line_num}: {exc}') from exc
            if not row:
                continue  # blank line
            if len(row) != expected:
                raise ValueError(f'CSV line {reader.line_num} has {len(row)} fields but the header has '
                                 f'{expected} ({", ".join(header)}); check for unquoted commas or missing '
                                 f'values on that line')
            yield reader.line_num, row

    for line_num, row in _select(rows(), size, sampling_rate, seed):
        data: dict[str, Any] = {}
        for name, value in zip(names, row):
            if name == 'id' and value == '':
                continue  # an empty id cell: let Document generate a fresh one
            if name in _NUMERIC_FIELDS:
                if value == '':
                    continue
                try:
                    value = _NUMERIC_FIELDS[name](value)
                except ValueError:
                    raise ValueError(f'CSV line {line_num}: column {seen[name]!r} fills Document.{name}, '
                                     f'which needs a number, got {value!r}') from None
            data[name] = value
        try:
            yield Document(data)
        except (TypeError, ValueError) as exc:
            raise _with_line(exc, f'CSV line {line_num}') from exc


def from_csv(fp: LinesSource, field_resolver: Mapping[str, str] | None = None, size: int | None = None,
             sampling_rate: float | None = None, dialect: str | csv.Dialect = 'excel',
             encoding: str = 'utf-8', *, seed: Any = None) -> Iterator[Document]:
    """One Document per row of a CSV with a header row.

    Each column goes to the Document field of the same name (``text``, ``uri``,
    ``mime_type``, ...); a column ``id`` becomes the id; every other column lands in
    ``tags``, as a str (CSV has no types). ``granularity``, ``adjacency`` and ``weight``
    columns are converted to numbers. An empty ``id`` cell gets a fresh id.

    Parameters
    ----------
    fp : str, os.PathLike, text file or iterable of str
        The CSV. A path is opened (with ``encoding``) only when iteration starts.
    field_resolver : dict, optional
        Renames columns to Document fields first, e.g. ``{'question': 'text'}``.
    size : int, optional
        Yield at most this many documents.
    sampling_rate : float, optional
        Keep each row with this probability, in (0, 1].
    dialect : str or csv.Dialect
        The CSV dialect, ``'excel'`` (comma-separated) by default; ``'excel-tab'`` for TSV.
    encoding : str
        Used only when ``fp`` is a path.
    seed : optional
        Makes ``sampling_rate`` reproducible.

    Returns
    -------
    Iterator[Document]
        A lazy generator.

    Raises
    ------
    ValueError
        When iterating: the CSV is empty, seems to have no header row, or a row has more
        or fewer fields than the header (the message names the line).

    Examples
    --------
    >>> import io
    >>> csv_text = io.StringIO('id,question,lang\\nq1,why?,en\\n')
    >>> d = next(from_csv(csv_text, field_resolver={'question': 'text'}))
    >>> d.id, d.text, d.tags
    ('q1', 'why?', {'lang': 'en'})
    """
    _check_source(fp, 'from_csv', allow_binary=False)
    field_resolver = _check_resolver(field_resolver)
    size = _check_size(size)
    sampling_rate = _check_sampling_rate(sampling_rate)
    _check_csv_dialect(dialect)
    return _csv_docs(fp, field_resolver, size, sampling_rate, seed, dialect, encoding)


# -- NDJSON ----------------------------------------------------------------------------------
def _ndjson_docs(fp: LinesSource, field_resolver: Mapping[str, str] | None, size: int | None,
                 sampling_rate: float | None, seed: Any, binary: bool = False) -> Iterator[Document]:
    def records() -> Iterator[tuple[int, Any]]:
        for line_num, line in enumerate(_iter_lines(fp, 'utf-8', binary=binary), start=1):
            if line.strip():
                yield line_num, line

    # Parse only what sampling keeps: parsing is the expensive part.
    for line_num, line in _select(records(), size, sampling_rate, seed):
        try:
            obj = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError on bad bytes
            raise ValueError(f'NDJSON line {line_num} is not valid JSON ({exc}); each line must be one '
                             f'JSON object, e.g. {{"text": "hello"}}') from None
        if not isinstance(obj, dict):
            raise ValueError(f'NDJSON line {line_num} is a JSON {type(obj).__name__}, not an object; each '
                             f'line must be one JSON object, e.g. {{"text": "hello"}}')
        try:
            yield Document(obj, field_resolver=field_resolver)
        except (TypeError, ValueError) as exc:
            raise _with_line(exc, f'NDJSON line {line_num}') from exc


def from_ndjson(fp: LinesSource, field_resolver: Mapping[str, str] | None = None, size: int | None = None,
                sampling_rate: float | None = None, *, seed: Any = None) -> Iterator[Document]:
    """One Document per line of newline-delimited JSON (one object per line).

    Each object is passed to ``Document(obj, field_resolver=...)``: keys that are Document
    fields set them, other keys go to ``tags`` with their JSON types (ints stay ints).
    Blank lines are skipped.

    Parameters
    ----------
    fp : str, os.PathLike, file or iterable of str
        The NDJSON. A path is opened (utf-8) only when iteration starts.
    field_resolver : dict, optional
        Renames keys to Document fields first, e.g. ``{'question': 'text'}``.
    size : int, optional
        Yield at most this many documents.
    sampling_rate : float, optional
        Keep each line with this probability, in (0, 1]; dropped lines are not parsed.
    seed : optional
        Makes ``sampling_rate`` reproducible.

    Returns
    -------
    Iterator[Document]
        A lazy generator.

    Raises
    ------
    ValueError
        When iterating: a line is not valid JSON or not a JSON object (the message names
        the line number).

    Examples
    --------
    >>> d = next(from_ndjson(['{"text": "hi", "n": 1}']))
    >>> d.text, d.tags
    ('hi', {'n': 1})
    """
    _check_source(fp, 'from_ndjson', allow_binary=True)
    field_resolver = _check_resolver(field_resolver)
    size = _check_size(size)
    sampling_rate = _check_sampling_rate(sampling_rate)
    return _ndjson_docs(fp, field_resolver, size, sampling_rate, seed)


# -- numpy arrays ------------------------------------------------------------------------------
def _ndarray_docs(array: np.ndarray, axis: int, size: int | None, shuffle: bool,
                  seed: Any) -> Iterator[Document]:
    n = array.shape[axis]
    order: Iterable[int] = np.random.default_rng(seed).permutation(n) if shuffle else range(n)
    # Basic indexing with a trailing Ellipsis gives a view, and a 0-d array (not a numpy
    # scalar) for 1-d input, so the blob keeps its dtype either way.
    head = (slice(None),) * axis
    for i in _select(order, size, None, None):
        yield Document(blob=array[head + (int(i), Ellipsis)])


def from_ndarray(array: Any, axis: int = 0, size: int | None = None, shuffle: bool = False,
                 *, seed: Any = None) -> Iterator[Document]:
    """One Document per slice of ``array`` along ``axis``, the slice as its ``blob``.

    The blob is a view into ``array`` (no copy) and keeps its dtype; writing into a blob
    writes into ``array``.

    Parameters
    ----------
    array : numpy.ndarray or array-like
        A numeric array; lists are converted with ``np.asarray``.
    axis : int
        The axis to slice along (negative counts from the end).
    size : int, optional
        Yield at most this many documents.
    shuffle : bool
        Yield the slices in a random order (a permutation: each exactly once).
    seed : optional
        Seed of the numpy random generator, for a reproducible shuffle.

    Returns
    -------
    Iterator[Document]
        A lazy generator.

    Raises
    ------
    TypeError
        At call time, when ``array`` is not a numeric array (or array-like).
    ValueError
        At call time, when ``axis`` is out of range or ``array`` is 0-d.

    Examples
    --------
    >>> docs = list(from_ndarray(np.zeros((4, 3), dtype=np.float32)))
    >>> len(docs), docs[0].blob.shape, docs[0].blob.dtype
    (4, (3,), dtype('float32'))
    """
    if not isinstance(array, np.ndarray):
        if isinstance(array, (str, bytes, Mapping)) or not (isinstance(array, (list, tuple))
                                                            or hasattr(array, '__array__')):
            raise TypeError(f'from_ndarray takes a numpy array (or a list of numbers), got '
                            f'{type(array).__name__}; for an iterator of arrays use '
                            f'(Document(blob=a) for a in ...)')
        try:
            array = np.asarray(array)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise TypeError(f'from_ndarray could not turn the {type(array).__name__} into a numeric '
                            f'array ({exc}); pass np.asarray(...) of numbers') from None
    if array.dtype == object or array.dtype.kind in 'USV':
        raise TypeError(f'from_ndarray takes a numeric array, got an array of dtype {array.dtype}; '
                        f'for text use (Document(text=t) for t in ...)')
    if array.ndim == 0:
        raise ValueError('from_ndarray takes an array with at least one dimension, got a 0-d array; '
                         'wrap it as Document(blob=array) instead')
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f'axis must be an int, got {type(axis).__name__}')
    if not -array.ndim <= axis < array.ndim:
        raise ValueError(f'axis {axis} is out of range for an array with {array.ndim} dimension(s) '
                         f'(shape {array.shape})')
    size = _check_size(size)
    return _ndarray_docs(array, int(axis) % array.ndim, size, bool(shuffle), seed)


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


# -- lines ---------------------------------------------------------------------------------------
def _text_line_docs(source: LinesSource, size: int | None, sampling_rate: float | None, seed: Any,
                    binary: bool) -> Iterator[Document]:
    def kept() -> Iterator[Any]:
        for line in _iter_lines(source, 'utf-8', binary=binary):
            if line.strip():
                yield line

    for line in _select(kept(), size, sampling_rate, seed):
        # Only the line ending is removed: leading / trailing spaces are content.
        if binary:
            yield Document(buffer=line.rstrip(b'\r\n'))
        else:
            yield Document(text=line.rstrip('\r\n'))


def _json_lines(docs: Iterator[Document]) -> Iterator[Document]:
    # Scripts written for plain-text lines meet JSON as the default here (Jina 2's): say how out.
    try:
        yield from docs
    except ValueError as exc:
        raise ValueError(f"{exc} (from_lines reads each line as JSON by default, as Jina 2 did; pass "
                         f"line_format=None for plain text lines)") from None


def from_lines(lines: Iterable[str] | None = None, filepath: PathLike | None = None, read_mode: str = 'r',
               line_format: str | None = 'json', field_resolver: Mapping[str, str] | None = None,
               size: int | None = None, sampling_rate: float | None = None,
               *, seed: Any = None) -> Iterator[Document]:
    """One Document per line, from an iterable of lines or a file.

    With the default ``line_format='json'`` (as in Jina 2) each line is a JSON object read
    as :func:`from_ndjson` does; ``line_format='csv'`` reads the lines as :func:`from_csv`
    does (the first line is the header); ``line_format=None`` makes each line, without its
    line ending, ``Document(text=line)`` (``Document(buffer=line)`` with
    ``read_mode='rb'``), skipping blank or whitespace-only lines.

    Parameters
    ----------
    lines : iterable of str, optional
        The lines (a list, an open file, a generator...). Give this or ``filepath``.
    filepath : str or os.PathLike, optional
        A file to read, opened only when iteration starts. Give this or ``lines``.
    read_mode : {'r', 'rb'}
        How to open ``filepath``: utf-8 text, or bytes (not with ``line_format='csv'``).
    line_format : {'json', 'csv', None}
        How to read each line, see above.
    field_resolver : dict, optional
        For ``'json'`` / ``'csv'``: renames keys / columns to Document fields.
    size : int, optional
        Yield at most this many documents.
    sampling_rate : float, optional
        Keep each line with this probability, in (0, 1].
    seed : optional
        Makes ``sampling_rate`` reproducible.

    Returns
    -------
    Iterator[Document]
        A lazy generator.

    Raises
    ------
    ValueError
        At call time, unless exactly one of ``lines`` / ``filepath`` is given, or for a
        bad ``read_mode`` / ``line_format``; when iterating, as :func:`from_ndjson` /
        :func:`from_csv` for malformed lines.

    Examples
    --------
    >>> next(from_lines(['{"text": "a", "k": 2}'])).tags
    {'k': 2}
    >>> [d.text for d in from_lines(['first\\n', '\\n', 'second\\n'], line_format=None)]
    ['first', 'second']
    """
    if (lines is None) == (filepath is None):
        given = 'both' if lines is not None else 'neither'
        raise ValueError(f'from_lines needs exactly one of lines= (an iterable of str) or filepath= '
                         f'(a path to read), got {given}')
    if line_format not in _LINE_FORMATS:
        raise ValueError(f"line_format must be None (each line is a text document), 'json' (one JSON object "
                         f"per line) or 'csv' (a header line, then rows), got {line_format!r}")
    if read_mode not in ('r', 'rb'):
        raise ValueError(f"read_mode must be 'r' (utf-8 text) or 'rb' (bytes), got {read_mode!r}")
    if lines is not None:
        if isinstance(lines, (str, bytes, bytearray)):
            raise TypeError(f'from_lines(lines=...) takes an iterable of lines, got a single '
                            f'{type(lines).__name__}; pass text.splitlines(), or filepath= for a file')
        if not isinstance(lines, Iterable):
            raise TypeError(f'from_lines(lines=...) takes an iterable of lines, got {type(lines).__name__}')
        source: LinesSource = lines
        binary = False
    else:
        if not isinstance(filepath, (str, os.PathLike)):
            raise TypeError(f'from_lines(filepath=...) takes a path (str or os.PathLike), got '
                            f'{type(filepath).__name__}; pass an open file or a list as lines=')
        source = filepath
        binary = read_mode == 'rb'
        if binary and line_format == 'csv':
            raise ValueError("line_format='csv' reads text; use read_mode='r' with it")
    field_resolver = _check_resolver(field_resolver)
    size = _check_size(size)
    sampling_rate = _check_sampling_rate(sampling_rate)
    if line_format == 'json':
        return _json_lines(_ndjson_docs(source, field_resolver, size, sampling_rate, seed, binary=binary))
    if line_format == 'csv':
        return _csv_docs(source, field_resolver, size, sampling_rate, seed, 'excel', 'utf-8')
    return _text_line_docs(source, size, sampling_rate, seed, binary)
