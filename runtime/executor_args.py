"""What an Executor takes besides its documents, checked in one place: the keyword
arguments of its handlers, Executor's own ``__init__`` arguments (``metas``,
``runtime_args``, ``requests``) for an ``__init__`` that does not take them, and the
``{endpoint: method name}`` bindings of ``requests:`` / ``uses_requests``.

Every way an executor is built (a direct call, ``Executor.load_config``, a Flow's worker
process, a Ray actor) goes through :func:`hold_back_base_kwargs`, so they agree on what its
``__init__`` gets.

Example
-------
>>> sorted(init_accepts(lambda self, bar, metas=None: None))
['metas']
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, Mapping

__all__ = ['HANDLER_KWARGS', 'BASE_KWARGS', 'handler_kwargs', 'init_accepts', 'hold_back_base_kwargs',
           'hold_back_for', 'check_requests', 'merge_requests']

#: Every name a handler may be given; Jina 2 passed the last three too.
HANDLER_KWARGS = ('docs', 'parameters', 'docs_matrix', 'groundtruths', 'groundtruths_matrix')
_REQUIRED_KWARGS = ('docs', 'parameters')
#: Executor.__init__'s own arguments (the rest are the subclass's ``with:`` arguments).
BASE_KWARGS = ('metas', 'runtime_args', 'requests')
#: Executor methods that are not handlers, left out of the methods a binding may name.
_NOT_HANDLERS = ('close', 'load_config', 'save_config')


def handler_kwargs(fn: Callable) -> tuple[str, ...] | None:
    """The handler keyword arguments ``fn`` accepts (None = all, it takes ``**kwargs``).

    Raises TypeError, naming the method, when it cannot be called as
    ``fn(self, docs=..., parameters=..., ...)``.

    Example
    -------
    >>> handler_kwargs(lambda self, docs, parameters, docs_matrix=None: None)
    ('docs', 'parameters', 'docs_matrix')
    """
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1:]  # skip self
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    named = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind is p.POSITIONAL_ONLY or (p.name not in HANDLER_KWARGS and p.default is p.empty):
            raise TypeError(f'handler {fn.__qualname__}{sig} cannot be called as '
                            f'{fn.__name__}(self, docs=..., parameters=..., **kwargs): argument {p.name!r} '
                            f'would get no value; write it as def {fn.__name__}(self, docs, parameters, **kwargs)')
        if p.name in HANDLER_KWARGS:
            named.append(p.name)
    if var_kw:
        return None
    missing = [k for k in _REQUIRED_KWARGS if k not in named]
    if missing:
        raise TypeError(f'handler {fn.__qualname__}{sig} does not accept {", ".join(missing)}; '
                        f'add **kwargs or write it as def {fn.__name__}(self, docs, parameters, **kwargs)')
    return tuple(named)


def init_accepts(init: Callable) -> frozenset[str]:
    """Which of Executor.__init__'s own arguments (``metas``, ``runtime_args``,
    ``requests``) ``init`` takes: all of them with ``**kwargs``, else those it names.

    Example
    -------
    >>> sorted(init_accepts(lambda self, bar, metas=None: None))
    ['metas']
    """
    try:
        params = inspect.signature(init).parameters.values()
    except (TypeError, ValueError):  # (a builtin without a signature: assume Executor's own)
        return frozenset(BASE_KWARGS)
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return frozenset(BASE_KWARGS)
    return frozenset(p.name for p in params if p.name in BASE_KWARGS and p.kind is not p.POSITIONAL_ONLY)


def hold_back_base_kwargs(init: Callable) -> Callable:
    """``init`` (an Executor subclass's ``__init__``) called without the ``metas`` /
    ``runtime_args`` / ``requests`` it does not take, which are applied to the object
    after it returns (``_apply_base_kwargs``, which also sets ``runtime_args.workspace``
    when no ``Executor.__init__`` ran).

    Jina 2's ExecutorType did the same, so the cookbook's ``def __init__(self, bar):
    super().__init__()`` loads from a YAML with ``metas:`` and ``requests:``. ``metas``
    and ``runtime_args`` are already set by ``Executor.__new__`` (or the worker), before
    ``init`` runs.

    Example
    -------
    >>> class Bar(Executor):
    ...     def __init__(self, bar):
    ...         self.bar = bar
    >>> Bar(bar=1, metas={'name': 'b'}).metas.name  # Bar.__init__ is wrapped by this
    'b'
    """
    if getattr(init, '__holds_back_base_kwargs__', False):
        return init
    held_names = tuple(k for k in BASE_KWARGS if k not in init_accepts(init))
    if not held_names:
        return init

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        held = {k: kwargs.pop(k) for k in held_names if k in kwargs}
        init(self, *args, **kwargs)
        self._apply_base_kwargs(**held)

    __init__.__holds_back_base_kwargs__ = True
    return __init__


def hold_back_for(cls: type) -> None:
    """Make the ``__init__`` that ``cls(...)`` runs hold back what it does not take (see
    :func:`hold_back_base_kwargs`), whichever class defined it.

    ``Executor.__init_subclass__`` wraps an ``__init__`` defined in the class body, but
    one inherited from a plain mixin (``class E(Configurable, Executor)``) or written by
    ``@dataclass`` (which runs after the class is created, and would not replace an
    ``__init__`` put there first) is only known once the class is built: this is called
    when an instance is, and puts the wrapper in ``cls``'s own ``__dict__``.

    Example
    -------
    >>> hold_back_for(MixExec)  # MixExec(metas=...) now works
    """
    init = cls.__init__
    wrapped = hold_back_base_kwargs(init)
    if wrapped is not init:
        # type.__call__ looks __init__ up after __new__ returns, so this call uses it too.
        cls.__init__ = wrapped


def check_requests(cls: type, mapping: Any, label: str = 'requests') -> dict[str, str]:
    """``mapping`` ({endpoint: method name}, Jina 2's ``requests:`` / ``uses_requests``)
    checked against ``cls``: TypeError or ValueError, starting with ``label`` (where the
    mapping came from), saying what to pass instead.

    Example
    -------
    >>> check_requests(Tagger, {'/tag': 'foo'})
    {'/tag': 'foo'}
    """
    methods = sorted(n for n in dir(cls) if not n.startswith('_') and callable(getattr(cls, n, None))
                     and n not in _NOT_HANDLERS)
    example = f"{{'/index': {methods[0]!r}}}" if methods else "{'/index': 'encode'}"
    if not isinstance(mapping, Mapping):
        raise TypeError(f'{label} takes a dict {{endpoint: method name}}, e.g. {example}, got '
                        f'{type(mapping).__name__} {mapping!r:.40}')
    for endpoint, method in mapping.items():
        if not isinstance(endpoint, str) or not isinstance(method, str):
            raise TypeError(f'{label}: {endpoint!r}: {method!r}: endpoints and method names are str, e.g. '
                            f'{example}')
        fn = getattr(cls, method, None)
        if fn is None or not callable(fn):
            raise ValueError(f'{label}: {endpoint!r}: {method!r} must name a method of {cls.__name__} '
                             f'(one of {methods})')
        handler_kwargs(fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn)
    return dict(mapping)


def merge_requests(cls: type, sections: Iterable[tuple[str, Mapping | None]]) -> dict[str, str]:
    """The bindings of ``sections`` ((label, mapping) pairs, later ones winning per
    endpoint), each checked under its own label, so that an error names the one that is
    wrong (a YAML's ``requests:``, or ``uses_requests=``), not the last one given.

    Example
    -------
    >>> merge_requests(Tagger, [('requests', {'/a': 'foo'}), ('uses_requests', {'/b': 'foo'})])
    {'/a': 'foo', '/b': 'foo'}
    """
    merged: dict[str, str] = {}
    for label, mapping in sections:
        if mapping is not None:
            merged.update(check_requests(cls, mapping, label))
    return merged
