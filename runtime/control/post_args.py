"""What ``Flow.post`` is given, checked: one function that returns the values a ``Post``
runs with, or raises an error that says what to pass instead.

A post of one document costs the parent tens of microseconds in all, so the checks take
the common case (plain ints, no parameters, no extra arguments) in as few steps as they
can, and the caller passes everything positionally: the split from ``Flow.post`` costs one
function call, nothing more.

Example
-------
>>> target, window, params_blob = check_post_args('/index', None, None, None, {'top_k': 3}, None,
...                                               100, None, None, {}, 16)
>>> target, window, pickle.loads(params_blob)
(None, 16, {'top_k': 3})
"""
from __future__ import annotations

import pickle
from typing import Any, Callable

from .inputs import describe
from .post import NO_PARAMETERS

__all__ = ['check_post_args', 'check_callback']


def check_callback(cb: Any, name: str) -> None:
    """Raise TypeError unless ``cb`` is None or callable; ``name`` is the argument's name.

    Example
    -------
    >>> check_callback(print, 'on_done')
    >>> check_callback(3, 'on_done')
    Traceback (most recent call last):
    TypeError: on_done must be a function taking the Response (or None), got int
    """
    if cb is not None and not callable(cb):
        raise TypeError(f'{name} must be a function taking the Response (or None), got {type(cb).__name__}')


def check_post_args(on: Any, on_done: Callable | None, on_error: Callable | None, on_always: Callable | None,
                    parameters: Any, target_executor: str | None, request_size: Any, prefetch: Any,
                    timeout: Any, extra: dict, default_prefetch: int) -> tuple[str | None, int, bytes]:
    """Check ``Flow.post``'s arguments; return ``(target_executor, window, params_blob)``.

    Parameters
    ----------
    on, on_done, on_error, on_always, parameters, target_executor, request_size, prefetch, timeout
        As ``Flow.post`` takes them.
    extra : dict
        ``Flow.post``'s other keyword arguments: only ``target_peapod`` (Jina 2.0's name of
        ``target_executor``) is taken; any other is refused.
    default_prefetch : int
        The Flow's ``prefetch``, the window when ``prefetch`` is None.

    Returns
    -------
    target_executor : str or None
        ``target_executor``, or the ``target_peapod`` given instead.
    window : int
        Requests in flight at most.
    params_blob : bytes
        ``parameters`` pickled once for the whole post (``NO_PARAMETERS`` when empty);
        every request unpickles its own copy, so no request (and not the caller's dict)
        sees what a handler did to another's parameters.

    Raises
    ------
    TypeError, ValueError
        Naming the argument, what it got and what it takes.

    Example
    -------
    >>> check_post_args('/search', None, None, None, None, None, 10, 4, 2.5, {'target_peapod': 'idx'}, 16)[:2]
    ('idx', 4)
    """
    if extra:
        if 'target_peapod' in extra:  # Jina 2.0's name
            if target_executor is not None:
                raise TypeError('give target_executor or target_peapod (its Jina 2.0 name), not both')
            extra = dict(extra)  # the caller's kwargs stay as they were
            target_executor = extra.pop('target_peapod')
        for k in extra:
            raise TypeError(f'post() got an unexpected argument {k!r}')
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                or not timeout > 0):
        raise ValueError(f'timeout must be a positive number of seconds (or None), got {timeout!r}')
    if not isinstance(on, str):
        raise TypeError(f'on must be an endpoint str such as "/index", got {describe(on)}')
    # `type(x) is int` first: the one test a plain int needs; bool and other int
    # subclasses fall through to the full check.
    if type(request_size) is not int or request_size < 1:
        if not isinstance(request_size, int) or isinstance(request_size, bool) or request_size < 1:
            raise ValueError(f'request_size must be a positive int (documents per request), '
                             f'got {request_size!r}')
    window = default_prefetch if prefetch is None else prefetch
    if type(window) is not int or window < 1:
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise ValueError(f'prefetch must be a positive int (requests in flight), got {window!r}')
    if ((on_done is not None and not callable(on_done)) or (on_error is not None and not callable(on_error))
            or (on_always is not None and not callable(on_always))):
        for cb, cb_name in ((on_done, 'on_done'), (on_error, 'on_error'), (on_always, 'on_always')):
            check_callback(cb, cb_name)
    if parameters is None or (type(parameters) is dict and not parameters):
        return target_executor, window, NO_PARAMETERS  # most posts: nothing to pickle
    if not isinstance(parameters, dict):
        raise TypeError(f'parameters must be a dict, got {describe(parameters)}')
    try:
        params_blob = pickle.dumps(parameters, protocol=5)
    except Exception as exc:
        raise TypeError(f'parameters must hold picklable values (numbers, str, lists, dicts, '
                        f'arrays...): {exc}') from exc
    return target_executor, window, params_blob
