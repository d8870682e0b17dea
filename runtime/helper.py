"""The helpers of Jina 2's ``jina.helper`` that scripts and executors used.

Example
-------
>>> len(random_identity()), typename(1)
(32, 'builtins.int')
"""
from __future__ import annotations

import socket
import uuid
from typing import Any, Iterable

__all__ = ['random_identity', 'random_uuid', 'random_port', 'typename', 'colored', 'batch_iterator']

_COLORS = {'grey': 30, 'red': 31, 'green': 32, 'yellow': 33, 'blue': 34, 'magenta': 35, 'cyan': 36, 'white': 37}
_ATTRS = {'bold': 1, 'dark': 2, 'underline': 4, 'blink': 5, 'reverse': 7, 'concealed': 8}


def random_uuid(use_uuid1: bool = False) -> uuid.UUID:
    """A random UUID (``uuid1`` when ``use_uuid1``).

    >>> isinstance(random_uuid(), uuid.UUID)
    True
    """
    return uuid.uuid1() if use_uuid1 else uuid.uuid4()


def random_identity(use_uuid1: bool = False) -> str:
    """A random id as 32 hex characters (the form Document ids take).

    >>> len(random_identity())
    32
    """
    return random_uuid(use_uuid1).hex


def random_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it).

    >>> 0 < random_port() < 65536
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def typename(obj: Any) -> str:
    """``module.QualifiedName`` of ``obj``'s class (of ``obj`` itself for a class).

    >>> typename(3.0)
    'builtins.float'
    """
    cls = obj if isinstance(obj, type) else type(obj)
    return f'{cls.__module__}.{cls.__qualname__}'


def colored(text: str, color: str | None = None, on_color: str | None = None,
            attrs: str | Iterable[str] | None = None) -> str:
    """``text`` wrapped in ANSI colour codes (``color`` / ``on_color``: grey, red, green,
    yellow, blue, magenta, cyan, white; ``attrs``: bold, dark, underline, blink, reverse,
    concealed).

    >>> colored('ok', 'green')
    '\\x1b[32mok\\x1b[0m'
    """
    codes = []
    if color is not None:
        codes.append(_code(_COLORS, color, 'color'))
    if on_color is not None:
        codes.append(_code(_COLORS, on_color.replace('on_', ''), 'on_color') + 10)
    for a in [attrs] if isinstance(attrs, str) else attrs or ():
        codes.append(_code(_ATTRS, a, 'attrs'))
    if not codes:
        return text
    return f'\x1b[{";".join(map(str, codes))}m{text}\x1b[0m'


def _code(table: dict, name: str, what: str) -> int:
    if name not in table:
        raise ValueError(f'{what}={name!r} is not one of {", ".join(table)}')
    return table[name]


def batch_iterator(data: Iterable[Any], batch_size: int) -> Iterable[list]:
    """Lists of ``batch_size`` items of ``data`` (the last one may be shorter).

    >>> list(batch_iterator(range(5), 2))
    [[0, 1], [2, 3], [4]]
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f'batch_size must be a positive int, got {batch_size!r}')
    batch = []
    for item in data:
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
