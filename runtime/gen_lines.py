"""Generators of documents from line-based text: CSV (``from_csv``), NDJSON
(``from_ndjson``) and lines of text or JSON (``from_lines``).

Re-exported by ``runtime.generators`` (which see for the shared keywords); the argument
checks and the reading machinery are in ``runtime.gen_common``.

Example
-------
>>> import io
>>> [d.text for d in from_csv(io.StringIO('id,text\\n1,hello\\n2,world\\n'))]
['hello', 'world']
"""
from __future__ import annotations

import csv
import json
import os
from typing import Any, Iterable, Iterator, Mapping, Sequence, Tuple, Union

from .document import Document
from .gen_common import (_LINE_FORMATS, LinesSource, PathLike, _check_csv_dialect, _check_resolver,
                         _check_sampling_rate, _check_size, _check_source, _iter_lines, _select, _with_line)

__all__ = ['from_csv', 'from_ndjson', 'from_lines']

#: Document fields that hold structured values; a CSV cell (always a str) cannot fill them.
_NON_SCALAR_FIELDS = frozenset({'blob', 'embedding', 'buffer', 'chunks', 'matches', 'tags', 'scores'})
#: Scalar Document fields that are numbers; CSV hands them over as str, so convert.
_NUMERIC_FIELDS = {'granularity': int, 'adjacency': int, 'weight': float}


#: A record with both keys (an NDJSON object, a CSV header) is an evaluation pair, as in
#: Jina 2.0.24's generators: it yields (Document, groundtruth Document), and ``Flow.post``
#: hands handlers the second as ``groundtruths``.
_PAIR_KEYS = ('document', 'groundtruth')
#: What the generators below yield: a Document, or a (Document, groundtruth) pair.
Item = Union[Document, Tuple[Document, Document]]


def _pair(record: Mapping[str, Any], field_resolver: Mapping[str, str] | None,
          where: str) -> tuple[Document, Document]:
    """(Document, groundtruth Document) of a record's ``document`` / ``groundtruth`` values,
    each a dict or a JSON object string, made as Jina 2 made them: ``Document(value,
    field_resolver)`` (the resolver renames the keys inside each). Other keys are not read."""
    sides = []
    for key in _PAIR_KEYS:
        try:
            sides.append(Document(record[key], field_resolver=field_resolver))
        except (TypeError, ValueError) as exc:
            raise _with_line(exc, f'{where}, {key!r} of a document/groundtruth pair') from exc
    return sides[0], sides[1]


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


def _csv_fields(header: list[str], field_resolver: Mapping[str, str] | None) -> tuple[list[str], dict[str, str]]:
    """The field each column fills, and field -> column; refuses two columns that map to
    one field and a column that maps to a field no CSV cell (a str) can fill."""
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
    return names, seen


def _csv_docs(fp: LinesSource, field_resolver: Mapping[str, str] | None, size: int | None,
              sampling_rate: float | None, seed: Any, dialect: Any, encoding: str) -> Iterator[Item]:
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
    # Jina 2 told a pair by the raw column names: each of the two cells then holds one
    # side as a JSON object, which field_resolver renames inside; the columns map nowhere.
    pairs = all(k in header for k in _PAIR_KEYS)
    if pairs:
        cells, names, seen = [header.index(k) for k in _PAIR_KEYS], [], {}
    else:
        cells, (names, seen) = [], _csv_fields(header, field_resolver)
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
        if pairs:
            yield _pair(dict(zip(_PAIR_KEYS, (row[i] for i in cells))), field_resolver, f'CSV line {line_num}')
            continue
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
             encoding: str = 'utf-8', *, seed: Any = None) -> Iterator[Item]:
    """One Document per row of a CSV with a header row.

    Each column goes to the Document field of the same name (``text``, ``uri``,
    ``mime_type``, ...); a column ``id`` becomes the id; every other column lands in
    ``tags``, as a str (CSV has no types). ``granularity``, ``adjacency`` and ``weight``
    columns are converted to numbers. An empty ``id`` cell gets a fresh id.

    A CSV with both a ``document`` and a ``groundtruth`` column holds evaluation pairs, as
    in Jina 2: each row yields ``(Document(row['document']), Document(row['groundtruth']))``,
    each cell a JSON object (``field_resolver`` renames the keys inside it; other columns
    are not read). Posted, the second goes to handlers as ``groundtruths``.

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
    Iterator[Document] or Iterator[tuple[Document, Document]]
        A lazy generator (of pairs for a document/groundtruth CSV).

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
    >>> pairs = io.StringIO('document,groundtruth\\n"{""text"": ""q""}","{""text"": ""a""}"\\n')
    >>> [(d.text, truth.text) for d, truth in from_csv(pairs)]
    [('q', 'a')]
    """
    _check_source(fp, 'from_csv', allow_binary=False)
    field_resolver = _check_resolver(field_resolver)
    size = _check_size(size)
    sampling_rate = _check_sampling_rate(sampling_rate)
    _check_csv_dialect(dialect)
    return _csv_docs(fp, field_resolver, size, sampling_rate, seed, dialect, encoding)


# -- NDJSON ----------------------------------------------------------------------------------
def _ndjson_docs(fp: LinesSource, field_resolver: Mapping[str, str] | None, size: int | None,
                 sampling_rate: float | None, seed: Any, binary: bool = False) -> Iterator[Item]:
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
        if all(k in obj for k in _PAIR_KEYS):
            yield _pair(obj, field_resolver, f'NDJSON line {line_num}')
            continue
        try:
            yield Document(obj, field_resolver=field_resolver)
        except (TypeError, ValueError) as exc:
            raise _with_line(exc, f'NDJSON line {line_num}') from exc


def from_ndjson(fp: LinesSource, field_resolver: Mapping[str, str] | None = None, size: int | None = None,
                sampling_rate: float | None = None, *, seed: Any = None) -> Iterator[Item]:
    """One Document per line of newline-delimited JSON (one object per line).

    Each object is passed to ``Document(obj, field_resolver=...)``: keys that are Document
    fields set them, other keys go to ``tags`` with their JSON types (ints stay ints).
    Blank lines are skipped. An object with both a ``document`` and a ``groundtruth`` key
    is an evaluation pair, as in Jina 2: it yields ``(Document(obj['document']),
    Document(obj['groundtruth']))`` (each a JSON object, or a str of one; other keys are
    not read), whose second ``Flow.post`` hands handlers as ``groundtruths``.

    Parameters
    ----------
    fp : str, os.PathLike, file or iterable of str
        The NDJSON. A path is opened (utf-8) only when iteration starts; a file opened in
        binary mode is read as utf-8.
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
    Iterator[Document] or Iterator[tuple[Document, Document]]
        A lazy generator (a pair for each document/groundtruth line).

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
    >>> d, truth = next(from_ndjson(['{"document": {"text": "q"}, "groundtruth": {"text": "a"}}']))
    >>> d.text, truth.text
    ('q', 'a')
    """
    _check_source(fp, 'from_ndjson', allow_binary=True)
    field_resolver = _check_resolver(field_resolver)
    size = _check_size(size)
    sampling_rate = _check_sampling_rate(sampling_rate)
    return _ndjson_docs(fp, field_resolver, size, sampling_rate, seed)


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


def _json_lines(docs: Iterator[Item]) -> Iterator[Item]:
    # Scripts written for plain-text lines meet JSON as the default here (Jina 2's): say how out.
    try:
        yield from docs
    except ValueError as exc:
        raise ValueError(f"{exc} (from_lines reads each line as JSON by default, as Jina 2 did; pass "
                         f"line_format=None for plain text lines)") from None


class _DefaultFormat(str):
    """The type of ``from_lines``'s default ``line_format``: a str equal to ``'json'`` that
    tells "not given" (which a ``filepath=`` extension overrides) from ``'json'`` given."""


_DEFAULT_LINE_FORMAT = _DefaultFormat('json')
#: Extensions that choose the reader of ``from_lines(filepath=...)``, Jina 2.0.24's
#: (types/document/generators.py); any other file is read as plain lines.
_FILE_FORMATS = {**dict.fromkeys(('.jsonlines', '.ndjson', '.jsonl', '.jl', '.ldjson'), 'json'),
                 '.csv': 'csv', '.tcsv': 'csv'}


def _file_format(filepath: PathLike, line_format: str | None) -> str | None:
    """How ``from_lines`` reads ``filepath``: by its extension, as Jina 2 did; a
    ``line_format`` given that says otherwise is refused rather than ignored."""
    ext = os.path.splitext(os.fspath(filepath))[1].lower()
    chosen = _FILE_FORMATS.get(ext)
    if line_format is not _DEFAULT_LINE_FORMAT and line_format != chosen:
        kind = {'json': 'NDJSON', 'csv': 'CSV', None: 'plain text lines'}[chosen]
        what = f'a {ext}' if ext else 'an extensionless'
        raise ValueError(f'from_lines(filepath=...) reads {what} file as {kind}, by its '
                         f'extension as Jina 2 did (.csv/.tcsv: CSV; .jsonl/.ndjson/.jsonlines/.jl/.ldjson: '
                         f'NDJSON; others: plain lines), but line_format={line_format!r} was given; drop '
                         f'line_format, or pass the open file as lines=open(path) to choose the format')
    return chosen


def from_lines(lines: Iterable[str] | None = None, filepath: PathLike | None = None, read_mode: str = 'r',
               line_format: str | None = _DEFAULT_LINE_FORMAT, field_resolver: Mapping[str, str] | None = None,
               size: int | None = None, sampling_rate: float | None = None,
               *, seed: Any = None) -> Iterator[Item]:
    """One Document per line, from an iterable of lines or a file.

    With ``lines=`` and the default ``line_format='json'`` (as in Jina 2) each line is a
    JSON object read as :func:`from_ndjson` does; ``line_format='csv'`` reads the lines as
    :func:`from_csv` does (the first line is the header); ``line_format=None`` makes each
    line, without its line ending, ``Document(text=line)`` (``Document(buffer=line)`` with
    ``read_mode='rb'``), skipping blank or whitespace-only lines.

    With ``filepath=`` the file's extension chooses, as in Jina 2: ``.csv`` / ``.tcsv`` are
    CSV, ``.jsonl`` / ``.ndjson`` / ``.jsonlines`` / ``.jl`` / ``.ldjson`` NDJSON, any other
    file plain lines (as ``line_format=None``). A ``line_format`` given with it must agree
    (Jina 2 ignored it; here it is refused rather than dropped).

    Parameters
    ----------
    lines : iterable of str, optional
        The lines (a list, an open file, a generator...). Give this or ``filepath``. A file
        opened in binary mode is read as utf-8 text.
    filepath : str or os.PathLike, optional
        A file to read, opened only when iteration starts; its extension sets the format.
        Give this or ``lines``.
    read_mode : {'r', 'rb'}
        How to open ``filepath``: utf-8 text, or bytes (not for CSV).
    line_format : {'json', 'csv', None}
        How to read each of ``lines``, see above.
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
    Iterator[Document] or Iterator[tuple[Document, Document]]
        A lazy generator; JSON and CSV lines give (Document, groundtruth) pairs as
        :func:`from_ndjson` and :func:`from_csv` do.

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
    >>> [d.text for d in from_lines(filepath='notes.txt')]  # doctest: +SKIP
    ['first line', 'second line']
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
        line_format = _file_format(filepath, line_format)
        if binary and line_format == 'csv':
            raise ValueError(f"{filepath!s:.80} is read as CSV (by its extension), which is text; use "
                             f"read_mode='r' with it")
    field_resolver = _check_resolver(field_resolver)
    size = _check_size(size)
    sampling_rate = _check_sampling_rate(sampling_rate)
    if line_format == 'json':
        docs = _ndjson_docs(source, field_resolver, size, sampling_rate, seed, binary=binary)
        return docs if filepath is not None else _json_lines(docs)
    if line_format == 'csv':
        return _csv_docs(source, field_resolver, size, sampling_rate, seed, 'excel', 'utf-8')
    return _text_line_docs(source, size, sampling_rate, seed, binary)
