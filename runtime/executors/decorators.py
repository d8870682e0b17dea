"""Jina 2's ``jina.executors.decorators``: ``requests`` and ``store_init_kwargs``."""
from __future__ import annotations

from typing import Callable

from ..types._lazy import reexport

_getattr, __dir__, _names = reexport(__name__, {'requests': 'runtime.executor'})
__all__ = sorted(_names + ['store_init_kwargs'])


def __getattr__(name: str):
    return _getattr(name)


def store_init_kwargs(func: Callable) -> Callable:
    """Jina 2 decorated ``__init__`` with it so that ``save_config`` knew the arguments;
    here every Executor records them itself, so it returns ``func`` unchanged.

    Example
    -------
    >>> class MyExec(Executor):  # doctest: +SKIP
    ...     @store_init_kwargs
    ...     def __init__(self, dim=8, **kwargs): ...
    """
    return func
