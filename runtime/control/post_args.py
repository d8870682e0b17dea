"""What ``Flow.post`` is given, checked: one function that returns the values a ``Post``
runs with, or raises an error that says what to pass instead.

The check of each argument is a small function of its own (``check_on``,
``check_request_size``, ``check_callbacks``, ``check_parameters``, ``check_prefetch``,
``check_timeout``, ``check_target_executor``, ``check_extra``, ``check_flag``); ``check_post_args`` and the
HTTP clients (``serving.client``) both call them, so ``Flow.post``, ``Client.post`` and
``AsyncClient.post`` refuse a bad argument with the same words. ``check_post_defaults``
checks the options ``Flow(...)`` takes as the defaults of its posts, with the same checks.

A post of one document costs the parent tens of microseconds in all, so
``check_post_args`` takes the common case (plain ints, no parameters, no extra arguments)
in as few steps as it can: a cheap test that a plain valid value passes comes first, and
only a value that fails it is handed to the full check, which decides and words the
refusal. The caller passes everything positionally: the split from ``Flow.post`` costs one
function call, nothing more.

Example
-------
>>> target, window, params_blob = check_post_args('/index', None, None, None, {'top_k': 3}, None,
...                                               100, None, None, {}, 16)
>>> target, window, pickle.loads(params_blob)
(None, 16, {'top_k': 3})
"""
from __future__ import annotations

import numbers
import operator
import pickle
from typing import Any, Callable

from .inputs import describe
from .jina2_options import DATA_TYPE
from .post import NO_PARAMETERS
from .specs import unexpected_argument

__all__ = ['check_post_args', 'check_callback', 'check_callbacks', 'check_on', 'check_request_size',
           'check_parameters', 'check_prefetch', 'check_timeout', 'check_target_executor', 'check_extra',
           'check_flag', 'check_post_defaults', 'with_defaults', 'POST_ARGUMENTS', 'POST_DEFAULTS']

#: Every argument of ``Flow.post`` (and of the clients' ``post``), for the refusal of any other.
POST_ARGUMENTS = ('on', 'inputs', 'on_done', 'on_error', 'on_always', 'parameters', 'target_executor',
                  'request_size', 'show_progress', 'return_results', 'continue_on_error', 'results_in_order',
                  'prefetch', 'timeout')
#: What a misspelt argument may have meant: the arguments and Jina 2.0's ``target_peapod``.
_KNOWN = POST_ARGUMENTS + ('target_peapod',)
#: Arguments Jina 2's ``post`` took and dropped without a word (it passed unknown ones on to
#: a request generator that ignored them) -> what the caller may have meant instead. Refused
#: here, not dropped: a script must not run believing they took effect.
_JINA2_IGNORED = {
    'shuffle': 'to shuffle, shuffle the inputs before the post, e.g. random.shuffle(docs)',
    'top_k': "executors read it from the parameters, so pass parameters={'top_k': ...}",
}
#: Jina 2's client options that ``Flow(...)`` takes as the defaults of its posts (each
#: post's own argument wins), with their defaults: what ``post`` does when neither says.
POST_DEFAULTS = {'request_size': 100, 'show_progress': False, 'return_results': False, 'continue_on_error': False}
#: The types a timeout mostly has, for ``check_post_args``'s quick test.
_PLAIN_NUMBERS = frozenset((int, float))


def check_on(on: Any) -> str:
    """``on`` if it is an endpoint str; else TypeError.

    Example
    -------
    >>> check_on('/index')
    '/index'
    >>> check_on(3)
    Traceback (most recent call last):
    TypeError: on must be an endpoint str such as "/index", got int 3
    """
    if not isinstance(on, str):
        raise TypeError(f'on must be an endpoint str such as "/index", got {describe(on)}')
    return on


def _count(value: Any) -> int | None:
    """``value`` as a plain int if it is an integer of any type (``numbers.Integral``, as
    ``match_limit`` takes: a numpy integer a computation gave, which Jina 2's islice took),
    else None. True and 1.0 equal 1 but are no count: bools and floats are None, and so is
    an array, even a 0-d one."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return operator.index(value)


def _positive_int(value: Any) -> bool:
    count = _count(value)
    return count is not None and count >= 1


def check_request_size(request_size: Any) -> int:
    """``request_size`` as an int if it is a positive integer (a numpy integer too); else
    ValueError.

    Jina 2 read ``request_size <= 0`` as "all inputs in one request". It is refused here
    rather than honoured: every post would then hold a generator's whole input in memory
    before sending anything, and an HTTP client would send it in one body. The error
    says what to pass for one request.

    Example
    -------
    >>> import numpy as np
    >>> check_request_size(np.int64(25))
    25
    >>> check_request_size(-1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: request_size must be a positive int (documents per request), got -1; Jina 2 read ...
    """
    if not _positive_int(request_size):
        hint = ''
        if _count(request_size) is not None:
            hint = ('; Jina 2 read request_size <= 0 as all inputs in one request: pass request_size=len(inputs) '
                    'for that (a generator\'s documents then all wait in memory until the request is sent), or '
                    'leave the default (100) to send them in requests of 100 as they come')
        raise ValueError(f'request_size must be a positive int (documents per request), got {request_size!r}{hint}')
    return operator.index(request_size)


def check_flag(value: Any, name: str) -> bool:
    """``value`` if it is True or False; else TypeError naming the option ``name``.

    Example
    -------
    >>> check_flag('yes', 'show_progress')
    Traceback (most recent call last):
    TypeError: show_progress must be True or False, got str 'yes'
    """
    if not isinstance(value, bool):
        raise TypeError(f'{name} must be True or False, got {describe(value)}')
    return value


def check_post_defaults(given: dict) -> dict:
    """``POST_DEFAULTS`` with ``given`` (options ``Flow(...)`` was given) over them, each
    checked as ``post`` checks it (``request_size``: ``check_request_size``; the flags:
    ``check_flag``, so that a misspelt ``'False'`` does not switch one on).

    Example
    -------
    >>> check_post_defaults({'return_results': True})['return_results']
    True
    >>> check_post_defaults({'request_size': 0})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: request_size must be a positive int (documents per request), got 0; ...
    """
    out = dict(POST_DEFAULTS)
    for name, value in given.items():
        if name == 'request_size':
            check_request_size(value)
        elif name in POST_DEFAULTS:
            check_flag(value, name)
        else:
            raise TypeError(f'{name} is not a default of posts; they take {", ".join(POST_DEFAULTS)}')
        out[name] = value
    return out


def with_defaults(defaults: dict, request_size: Any, show_progress: Any, return_results: Any,
                  continue_on_error: Any) -> tuple:
    """The four options ``Flow(...)`` gives its posts: each the post's own, else (None) the
    Flow's ``defaults`` (``check_post_defaults``'s dict).

    Example
    -------
    >>> with_defaults(POST_DEFAULTS, 10, None, None, True)
    (10, False, False, True)
    """
    return (defaults['request_size'] if request_size is None else request_size,
            defaults['show_progress'] if show_progress is None else show_progress,
            defaults['return_results'] if return_results is None else return_results,
            defaults['continue_on_error'] if continue_on_error is None else continue_on_error)


def check_prefetch(prefetch: Any) -> int:
    """``prefetch`` (requests in flight) as an int if it is a positive integer (a numpy
    integer too); else ValueError.

    Example
    -------
    >>> import numpy as np
    >>> check_prefetch(np.int64(4))
    4
    >>> check_prefetch(True)
    Traceback (most recent call last):
    ValueError: prefetch must be a positive int (requests in flight), got True
    """
    if not _positive_int(prefetch):
        raise ValueError(f'prefetch must be a positive int (requests in flight), got {prefetch!r}')
    return operator.index(prefetch)


def check_timeout(timeout: Any) -> float | None:
    """``timeout`` if it is None or a positive number of seconds; else ValueError (NaN too:
    ``not timeout > 0`` holds for it).

    Example
    -------
    >>> check_timeout(2.5)
    2.5
    >>> check_timeout('soon')
    Traceback (most recent call last):
    ValueError: timeout must be a positive number of seconds (or None), got 'soon'
    """
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                or not timeout > 0):
        raise ValueError(f'timeout must be a positive number of seconds (or None), got {timeout!r}')
    return timeout


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


def check_callbacks(on_done: Any, on_error: Any, on_always: Any) -> None:
    """``check_callback`` on each of a post's three callbacks, in that order.

    Example
    -------
    >>> check_callbacks(print, None, 'x')
    Traceback (most recent call last):
    TypeError: on_always must be a function taking the Response (or None), got str
    """
    check_callback(on_done, 'on_done')
    check_callback(on_error, 'on_error')
    check_callback(on_always, 'on_always')


def check_parameters(parameters: Any) -> dict:
    """``parameters`` if it is a dict, ``{}`` for None; else TypeError.

    Example
    -------
    >>> check_parameters(None)
    {}
    >>> check_parameters([('top_k', 3)])
    Traceback (most recent call last):
    TypeError: parameters must be a dict, got list [('top_k', 3)]
    """
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise TypeError(f'parameters must be a dict, got {describe(parameters)}')
    return parameters


def check_target_executor(target: Any) -> str | None:
    """``target`` if it is None or a str (an executor's name or a regular expression); else
    TypeError. Whether it is a valid regular expression that names an executor only the
    Flow can tell (``topology.targets``).

    Example
    -------
    >>> check_target_executor(['idx'])
    Traceback (most recent call last):
    TypeError: target_executor must be an executor name or a regex str, got list ['idx']
    """
    if target is not None and not isinstance(target, str):
        raise TypeError(f'target_executor must be an executor name or a regex str, got {type(target).__name__} '
                        f'{target!r:.60}')
    return target


def check_extra(where: str, extra: dict, target_executor: Any) -> Any:
    """The keyword arguments ``where`` (e.g. ``'post'``) got beyond its own: Jina 2.0's
    ``target_peapod`` is taken for ``target_executor`` (returned), any other is refused
    with a TypeError: one Jina 2 ignored (``shuffle``) says so and to remove it, Jina 2's
    ``data_type`` what it meant, another names the argument it resembles, or lists them all.
    ``extra`` is left as it was.

    Example
    -------
    >>> check_extra('post', {'target_peapod': 'idx'}, None)
    'idx'
    >>> check_extra('Client.post', {'timout': 3}, None)
    Traceback (most recent call last):
    TypeError: Client.post() got an unexpected argument 'timout'; did you mean 'timeout'?
    """
    if 'target_peapod' in extra:  # Jina 2.0's name
        if target_executor is not None:
            raise TypeError('give target_executor or target_peapod (its Jina 2.0 name), not both')
        target_executor = extra['target_peapod']
    for k in extra:
        if k in _JINA2_IGNORED:
            raise TypeError(f'{where}() got an unexpected argument {k!r}: Jina 2 ignored it (its post dropped '
                            f'arguments it did not know), so it never had an effect; remove it: {_JINA2_IGNORED[k]}')
        if k == 'data_type':
            raise TypeError(f"{where}() got an unexpected argument 'data_type'; it takes "
                            f"{', '.join(POST_ARGUMENTS)}: Jina 2's data_type {DATA_TYPE}")
        if k != 'target_peapod':
            raise unexpected_argument(where, k, _KNOWN, ', '.join(POST_ARGUMENTS))
    return target_executor


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
        The Flow's ``prefetch`` (checked when the Flow was made), the window when
        ``prefetch`` is None.

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
    # Each test below lets a plain valid value through; what fails it goes to the full
    # check (int and str subclasses may still pass there), which words the refusal.
    if extra:
        target_executor = check_extra('post', extra, target_executor)
    if target_executor is not None and type(target_executor) is not str:
        check_target_executor(target_executor)
    if timeout is not None and (type(timeout) not in _PLAIN_NUMBERS or not timeout > 0):
        check_timeout(timeout)
    if not isinstance(on, str):
        check_on(on)
    # `type(x) is int` first: the one test a plain int needs (bool is no int here).
    if type(request_size) is not int or request_size < 1:
        check_request_size(request_size)
    if prefetch is None:
        window = default_prefetch
    elif type(prefetch) is not int or prefetch < 1:
        window = check_prefetch(prefetch)
    else:
        window = prefetch
    if ((on_done is not None and not callable(on_done)) or (on_error is not None and not callable(on_error))
            or (on_always is not None and not callable(on_always))):
        check_callbacks(on_done, on_error, on_always)
    if parameters is None or (type(parameters) is dict and not parameters):
        return target_executor, window, NO_PARAMETERS  # most posts: nothing to pickle
    check_parameters(parameters)
    try:
        params_blob = pickle.dumps(parameters, protocol=5)
    except Exception as exc:
        raise TypeError(f'parameters must hold picklable values (numbers, str, lists, dicts, '
                        f'arrays...): {exc}') from exc
    return target_executor, window, params_blob
