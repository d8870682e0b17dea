"""What every document generator shares: the argument checks that run at call time, and
the lazy machinery that runs inside the generators (sampling and ``size``, reading lines
from a path, a file or an iterable, naming the line an error came from).

The public generators are in ``runtime.generators`` (which see for the shared keywords
``size``, ``sampling_rate`` and ``seed``).

Example
-------
>>> list(_select(range(10), 3, None, None))
[0, 1, 2]
"""
from __future__ import annotations

import csv
import io
import logging
import math
import numbers
import os
import random
from typing import IO, Any, Callable, Iterable, Iterator, Mapping, TypeVar, Union

__all__: list[str] = []

logger = logging.getLogger('runtime')

T = TypeVar('T')
PathLike = Union[str, 'os.PathLike[str]']
#: What the line-based readers take: a path (opened lazily), an open file, or any
#: iterable of lines.
LinesSource = Union[PathLike, IO, Iterable[str]]

_READ_MODES = (None, 'r', 'rb')
_LINE_FORMATS = (None, 'json', 'csv')


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
    if not allow_binary and _is_binary_file(fp):
        raise TypeError(f'{name} needs a file opened in text mode (open(path, newline="")), '
                        f'got a binary file {fp!r}')
    if not isinstance(fp, Iterable):
        raise TypeError(f'{name} takes a path (str or os.PathLike), an open file or an iterable of lines, '
                        f'got {type(fp).__name__}')


def _is_binary_file(fp: Any) -> bool:
    """Whether ``fp`` is a file opened in binary mode (its lines are bytes)."""
    if isinstance(fp, (io.RawIOBase, io.BufferedIOBase)):
        return True
    # Some file objects (gzip) keep an int mode, so test the type before looking for 'b'.
    mode = getattr(fp, 'mode', '')
    return isinstance(mode, str) and 'b' in mode


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
        # A file opened in binary mode where text is read (Jina 2 took them: json.loads reads
        # bytes): its lines are decoded here, so every reader sees str.
        decode = not binary and _is_binary_file(fp)
        for line_num, line in enumerate(fp, start=1):
            if decode and isinstance(line, (bytes, bytearray)):
                try:
                    line = line.decode(encoding)
                except UnicodeDecodeError as exc:
                    raise ValueError(f'line {line_num} is not valid {encoding} ({exc}); pass a file of '
                                     f'{encoding} text, or open it in text mode with its encoding, '
                                     f'e.g. open(path, encoding="latin-1")') from None
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
