"""Executor, the ``@requests`` decorator, and resolution of ``uses=``."""
from __future__ import annotations

import difflib
import os
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Mapping

from .executor_args import BASE_KWARGS as _BASE_KWARGS
from .executor_args import check_requests, handler_kwargs, hold_back_base_kwargs, hold_back_for, merge_requests

__all__ = ['Executor', 'requests', 'BaseExecutor', '__default_endpoint__']

#: The endpoint of the default handler, as in Jina 2: ``@requests`` without ``on=`` binds it,
#: ``requests: {/default: method}`` in YAML too, and an endpoint without a handler of its own
#: goes to it.
__default_endpoint__ = DEFAULT_ENDPOINT = '/default'

#: Executor subclasses by class name, for ``uses='Name'`` / ``{'jtype': 'Name'}``.
_REGISTRY: dict[str, type] = {}
#: The fields of ``metas`` (Jina 2.0's): ``uses_metas`` takes these keys only.
METAS_FIELDS = ('name', 'description', 'workspace', 'py_modules')


class RuntimeArgs(SimpleNamespace):
    """Where this instance runs: ``replica_id``, ``shard_id``, ``replicas``, ``shards``,
    ``name`` (the executor's name in the Flow) and ``workspace`` (the absolute root of its
    workspace, as in Jina 2: the ``metas.workspace`` / ``add(workspace=...)`` given, else the
    Flow's ``workspace``, by default ``./workspace``); ``pea_id`` and ``parallel`` are Jina
    2's names of ``shard_id`` and ``shards``.

    Example
    -------
    >>> RuntimeArgs(replica_id=0, shard_id=2, replicas=1, shards=3).pea_id
    2
    """

    @property
    def pea_id(self) -> int:
        return self.shard_id

    @property
    def parallel(self) -> int:
        return self.shards


#: Jina 2's names of two runtime_args, read and written as ours.
_JINA2_RUNTIME_NAMES = {'pea_id': 'shard_id', 'parallel': 'shards'}


def set_runtime_args(target: RuntimeArgs, given: Mapping[str, Any] | None) -> None:
    """Write ``given`` (an executor's ``runtime_args=``) into ``target``, Jina 2's
    ``pea_id`` / ``parallel`` as ``shard_id`` / ``shards``: a Jina 2 test that builds
    shard 1 outside the Flow (``runtime_args={'pea_id': 1}``) reads that shard's folder.

    Example
    -------
    >>> ra = RuntimeArgs(replica_id=0, shard_id=0, replicas=1, shards=1)
    >>> set_runtime_args(ra, {'pea_id': 1, 'parallel': 2}); (ra.shard_id, ra.shards)
    (1, 2)
    """
    if not given:
        return
    if not isinstance(given, Mapping):
        raise TypeError(f'runtime_args takes a dict such as {{"shard_id": 1, "shards": 2}}, '
                        f'got {type(given).__name__}')
    values = dict(given)
    for jina2, ours in _JINA2_RUNTIME_NAMES.items():
        if jina2 not in values:
            continue
        value = values.pop(jina2)
        if ours in values and values[ours] != value:
            raise ValueError(f'runtime_args gives {jina2}={value!r} and {ours}={values[ours]!r}; {jina2} is '
                             f'Jina 2\'s name of {ours}: pass one of them')
        values[ours] = value
    for key in ('shard_id', 'shards'):
        if key in values and (not isinstance(values[key], int) or isinstance(values[key], bool)):
            raise TypeError(f'runtime_args {key} takes an int, got {type(values[key]).__name__} '
                            f'{values[key]!r:.40}')
    for k, v in values.items():
        setattr(target, k, v)


def requests(func: Callable | None = None, *, on: str | Iterable[str] | None = None):
    """Mark an Executor method as the handler of endpoints.

    ``@requests`` handles every endpoint that has no handler of its own (it binds
    ``'/default'``, ``__default_endpoint__``, as Jina 2 did: ``@requests(on='/default')`` is
    the same); ``@requests(on='/index')`` or ``on=['/a', '/b']`` handles those endpoints.
    A handler is called as ``handler(docs=DocumentArray, parameters=dict, **kwargs)`` (the
    kwargs: ``docs_matrix``, ``groundtruths``, ``groundtruths_matrix``, None where they do
    not apply; a handler without ``**kwargs`` gets those it names) and returns None (docs changed in place), a DocumentArray (replaces the docs) or a dict
    (put into the response's ``parameters['__results__'][<executor name>]``).

    Example
    -------
    >>> class Upper(Executor):
    ...     @requests(on='/index')
    ...     def upper(self, docs, **kwargs):
    ...         for d in docs:
    ...             d.text = d.text.upper()
    """
    if on is None:
        endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    elif isinstance(on, str):
        endpoints = (on,)
    else:
        endpoints = tuple(on)
        if not endpoints or not all(isinstance(e, str) for e in endpoints):
            raise TypeError(f'@requests(on=...) takes an endpoint str or a list of them, got {on!r}')

    def mark(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f'@requests decorates a method, got {type(fn).__name__}')
        fn.__requests_on__ = getattr(fn, '__requests_on__', ()) + endpoints
        return fn

    return mark(func) if func is not None else mark


class _RequestsView:
    """``executor.requests`` (and ``MyExecutor.requests``): ``{endpoint: function}``, what
    Jina 2 kept there, ``'/default'`` for the default handler. A fresh dict on each read:
    the bindings change through ``@requests`` and ``requests=`` / YAML ``requests:``.

    It defines only ``__get__``, so an executor that assigns ``self.requests`` (e.g. an
    HTTP session) keeps its own attribute, and handlers stay as they were bound.

    Example
    -------
    >>> {endpoint: fn.__name__ for endpoint, fn in Tagger(requests={'/tag': 'foo'}).requests.items()}
    {'/default': 'foo', '/tag': 'foo'}
    """

    def __get__(self, obj: 'Executor | None', owner: type) -> dict[str, Callable]:
        handlers = (owner if obj is None else obj)._handlers
        return {endpoint: getattr(owner, method) for endpoint, (method, _) in handlers.items()}


class Executor:
    """Base class of the processing units of a Flow.

    Subclass it, mark methods with ``@requests``, and give the class to
    ``Flow().add(uses=...)``: each executor runs in its own process. ``__init__`` gets
    the ``uses_with`` arguments; ``self.metas.name`` / ``self.metas.workspace`` and
    ``self.runtime_args.replica_id`` / ``shard_id`` are set before it runs.
    An ``__init__`` gets ``metas`` / ``runtime_args`` / ``requests`` if it names them or
    takes ``**kwargs`` (to pass on to ``super().__init__``); those it does not take are
    applied after it returns, as in Jina 2 (``def __init__(self, bar): super().__init__()``),
    also for an ``__init__`` from a mixin or written by ``@dataclass``.
    It can also be built directly, outside a Flow, for tests.

    Example
    -------
    >>> class Tagger(Executor):
    ...     def __init__(self, tag='x', **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.tag = tag
    ...     @requests
    ...     def foo(self, docs, parameters, **kwargs):
    ...         for d in docs:
    ...             d.tags['tag'] = parameters.get('tag', self.tag)
    >>> Tagger(tag='y', metas={'name': 'tagger'}).metas.name
    'tagger'
    """

    #: endpoint -> (method name, accepted kwargs or None for all); built per class.
    _handlers: dict[str, tuple[str, tuple[str, ...] | None]] = {}
    requests = _RequestsView()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers = dict(getattr(cls, '_handlers', {}))
        for name, member in cls.__dict__.items():
            fn = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
            endpoints = getattr(fn, '__requests_on__', None)
            if endpoints:
                accepted = handler_kwargs(fn)
                for ep in endpoints:
                    handlers[ep] = (name, accepted)
        cls._handlers = handlers
        if '__init__' in cls.__dict__:
            cls.__init__ = hold_back_base_kwargs(cls.__dict__['__init__'])
        # The latest definition wins: a script (or notebook) that redefines a class means it.
        _REGISTRY[cls.__name__] = cls

    def __new__(cls, *args: Any, **kwargs: Any) -> 'Executor':
        # An __init__ from a mixin or @dataclass, unknown to __init_subclass__, is wrapped
        # now, so that a direct call and load_config hold back what it does not take (and
        # set runtime_args.workspace) as the Flow's worker does (build_executor).
        hold_back_for(cls)
        obj = super().__new__(cls)
        # Set before any user __init__ runs, so it can read self.metas and runtime_args
        # even if it never calls super().__init__().
        obj.metas = SimpleNamespace(name=cls.__name__, description=None, workspace=None, py_modules=None)
        for k, v in dict(kwargs.get('metas') or {}).items():
            setattr(obj.metas, k, v)
        obj.runtime_args = RuntimeArgs(replica_id=0, shard_id=0, replicas=1, shards=1, name=obj.metas.name,
                                       workspace=None)
        set_runtime_args(obj.runtime_args, kwargs.get('runtime_args'))
        # What save_config writes as ``with:`` (a Flow's process builds the object with
        # __new__ alone, so there it stays empty).
        obj._init_args = (args, {k: v for k, v in kwargs.items() if k not in _BASE_KWARGS})
        return obj

    def __init__(self, metas: dict | None = None, runtime_args: dict | None = None,
                 requests: dict | None = None, **kwargs: Any) -> None:
        self._apply_base_kwargs(metas, runtime_args, requests)
        if kwargs:
            raise TypeError(f'{type(self).__name__}.__init__() got unexpected arguments {sorted(kwargs)}; '
                            f'declare them in its __init__ (def __init__(self, {", ".join(sorted(kwargs))}, '
                            f'**kwargs))')

    def _apply_base_kwargs(self, metas: dict | None = None, runtime_args: dict | None = None,
                           requests: dict | None = None) -> None:
        """Executor's own arguments applied to this object (from ``__init__``, or after a
        subclass ``__init__`` that does not take them returns), and ``runtime_args.workspace``
        where no Flow set it (also for an ``__init__`` that never calls ``super().__init__``)."""
        if metas:
            if not isinstance(metas, Mapping):
                raise TypeError(f'metas takes a dict such as {{"name": "enc", "workspace": "/data"}}, '
                                f'got {type(metas).__name__}')
            for k, v in dict(metas).items():
                setattr(self.metas, k, v)
        if runtime_args:
            set_runtime_args(self.runtime_args, runtime_args)
        if requests:
            self._bind_requests(requests)
        if getattr(self.runtime_args, 'workspace', None) is None:  # built outside a Flow
            self.runtime_args.workspace = workspace_root(self.metas.workspace)

    def _bind_requests(self, mapping: Mapping[str, str]) -> None:
        """Jina 2's ``requests:`` section: ``{endpoint: method name}`` adds or replaces the
        handler of each endpoint for this object (``/default`` is the default one). As in
        Jina 2.0, a method keeps the endpoints its ``@requests`` gave it."""
        handlers = dict(self._handlers)
        for endpoint, method in check_requests(type(self), mapping).items():
            fn = getattr(type(self), method)
            fn = fn.__func__ if isinstance(fn, (staticmethod, classmethod)) else fn
            handlers[endpoint] = (method, handler_kwargs(fn))
        self._handlers = handlers

    # -- YAML -------------------------------------------------------------------------------
    @classmethod
    def load_config(cls, source: Any, uses_with: dict | None = None, uses_metas: dict | None = None,
                    uses_requests: dict | None = None, context: dict | None = None,
                    substitute: bool = True, *, override_with: dict | None = None,
                    override_metas: dict | None = None, override_requests: dict | None = None,
                    **kwargs: Any) -> 'Executor':
        """An Executor built from a Jina 2 YAML config (a path, a YAML string or an open
        file): ``jtype:`` the class (an Executor subclass defined or imported, or in
        ``metas.py_modules``), ``with:`` its ``__init__`` arguments, ``metas:``,
        ``requests:`` ({endpoint: method name}). ``uses_with`` / ``uses_metas`` /
        ``uses_requests`` override the file's sections; ``$VAR`` / ``${{ ENV.VAR }}`` in
        values are replaced from the environment (and ``context``) unless ``substitute``
        is False. ``override_with`` / ``override_metas`` / ``override_requests`` are Jina
        2.0's names of the three ``uses_*`` (given both, the ``override_*`` one is applied last).

        Example
        -------
        >>> enc = Executor.load_config('jtype: MyEncoder\nwith:\n  dim: 16\nmetas:\n  name: enc')
        >>> enc.metas.name
        'enc'
        """
        from .config import load_executor_config
        if override_with:
            uses_with = {**(uses_with or {}), **override_with}
        if override_metas:
            uses_metas = {**(uses_metas or {}), **override_metas}
        if override_requests:
            uses_requests = {**(uses_requests or {}), **override_requests}
        spec = load_executor_config(source, context=context, substitute=substitute)
        uses = {k: v for k, v in spec.items() if k in ('jtype', 'with', 'metas', 'requests')}
        klass, init_kwargs, metas = resolve_uses(uses, uses_with, uses_metas, uses_requests=uses_requests)
        if cls is not Executor and not issubclass(klass, cls):
            raise TypeError(f'{cls.__name__}.load_config: the config builds {klass.__name__}, which is not a '
                            f'{cls.__name__}; call Executor.load_config for any class')
        init_kwargs.update(kwargs)
        # An __init__ that does not take metas / requests gets them applied after it returns
        # (Executor.__new__ sees to it, see executor_args.hold_back_for), as Jina 2 built it.
        return klass(metas=metas, **init_kwargs)

    def save_config(self, path: str | os.PathLike | None = None) -> str:
        """Write this executor as a YAML config that ``Executor.load_config`` and
        ``Flow().add(uses=path)`` read back (``jtype``, the ``with`` arguments it was built
        with, ``metas``, ``requests`` as ``{endpoint: method name}``); returns the path
        (default ``<metas.name>.yml``).

        Example
        -------
        >>> MyEncoder(dim=16).save_config('enc.yml')
        'enc.yml'
        """
        from .config_save import save_executor_config
        return save_executor_config(self, path)

    @property
    def workspace(self) -> str:
        """This executor's own folder, absolute, created on first access:
        ``<root>/<metas.name>``, plus ``/<shard_id>`` when it is sharded. The root is
        ``metas.workspace`` if given (YAML ``metas:``, ``uses_metas``, ``add(workspace=...)``),
        else ``runtime_args.workspace`` (the Flow's ``workspace``, by default
        ``./workspace``), as in Jina 2: executors given the same workspace each get their own
        folder in it. Unlike Jina 2, replicas share one folder (they share state), and an
        executor that is not sharded gets no ``/0``.

        Sharded means ``runtime_args.shards`` (Jina 2: ``parallel``) > 1 or a
        ``shard_id`` (Jina 2: ``pea_id``) > 0, since only a sharded executor has a shard 1:
        ``Indexer(metas=..., runtime_args={'pea_id': 1})`` built outside the Flow reads
        what the Flow's shard 1 stored. Shard 0 of a sharded Flow needs the count as well
        (``runtime_args={'shard_id': 0, 'shards': 2}``): alone, shard 0 is the unsharded one.

        Example
        -------
        >>> Executor(metas={'name': 'enc', 'workspace': '/tmp/ws'}).workspace
        '/tmp/ws/enc'
        """
        root = self.metas.workspace or getattr(self.runtime_args, 'workspace', None)
        path = os.path.join(workspace_root(root), self.metas.name)
        shard_id = getattr(self.runtime_args, 'shard_id', 0)
        if getattr(self.runtime_args, 'shards', 1) > 1 or shard_id > 0:
            path = os.path.join(path, str(shard_id))
        os.makedirs(path, exist_ok=True)
        return path

    def close(self) -> None:
        """Called once when the Flow stops; release files and other resources here."""

    def __enter__(self) -> 'Executor':
        """``with MyIndexer(...) as idx:`` closes it at the end of the block, as in Jina 2.

        Example
        -------
        >>> with Executor() as ex:
        ...     ex.metas.name
        'Executor'
        """
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __call__(self, req_endpoint: str, **kwargs: Any) -> Any:
        """Run the handler bound to ``req_endpoint`` (else the default one) with ``kwargs``
        and return what it returns; None when there is neither (Jina 2's
        ``BaseExecutor.__call__``, for calling an executor outside a Flow).

        Example
        -------
        >>> docs = DocumentArray([Document()])
        >>> Tagger()('/tag', docs=docs, parameters={'tag': 'z'}); docs[0].tags['tag']
        'z'
        """
        found = self._handler_for(req_endpoint)
        if found is None:
            return None
        return found[0](**kwargs)

    def _handler_for(self, endpoint: str) -> tuple[Callable, tuple[str, ...] | None] | None:
        entry = self._handlers.get(endpoint) or self._handlers.get(DEFAULT_ENDPOINT)
        if entry is None:
            return None
        return getattr(self, entry[0]), entry[1]


BaseExecutor = Executor  # Jina 2 name


def workspace_root(given: str | os.PathLike | None) -> str:
    """The absolute folder the executors' own folders are made in: ``given`` (a relative
    one from the current directory), else ``./workspace``.

    Example
    -------
    >>> workspace_root('/data/ws'), workspace_root(None) == os.path.abspath('workspace')
    ('/data/ws', True)
    """
    return os.path.abspath(os.path.expanduser(os.fspath(given)) if given else 'workspace')


class _PassThrough(Executor):
    """What ``Flow().add()`` with no ``uses`` runs: documents go through unchanged."""


def lookup_executor_class(name: str) -> type:
    """The Executor subclass called ``name`` (defined or imported in this process)."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in ('BaseExecutor', 'Executor'):
        return _PassThrough
    if name.startswith(('jinahub://', 'jinahub+docker://', 'jinahub+sandbox://', 'docker://')):
        raise ValueError(f'uses={name!r}: Jina Hub and docker executors are not supported; install the '
                         f'executor\'s code and pass its class (uses=MyExecutor) or its YAML config')
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f'; did you mean {", ".join(map(repr, close))}?' if close else ''
    raise ValueError(f'unknown executor class {name!r}: no Executor subclass of that name is defined '
                     f'or imported{hint} (pass the class itself as uses=MyExecutor to avoid the lookup)')


def metas_error(unknown: list, label: str, instead: str) -> ValueError:
    """The error for ``metas`` keys that are not Jina 2.0's metas fields (``METAS_FIELDS``),
    from ``label`` (``uses_metas``, a YAML ``metas:``): nothing reads another key, and a
    script passing one (a misspelt ``workspce``, an endpoint binding) would run believing it
    took effect. It names the field the first one resembles, and ``instead``.

    Example
    -------
    >>> print(metas_error(['workspce'], 'uses_metas', 'see the docs'))  # doctest: +NORMALIZE_WHITESPACE
    uses_metas takes the metas fields name, description, workspace, py_modules; got 'workspce';
    did you mean 'workspace'? (see the docs)
    """
    close = difflib.get_close_matches(str(unknown[0]), METAS_FIELDS, n=1)
    hint = f'; did you mean {close[0]!r}?' if close else ''
    return ValueError(f'{label} takes the metas fields {", ".join(METAS_FIELDS)}; got '
                      f'{", ".join(map(repr, unknown))}{hint} ({instead})')


def _looks_like_yaml(text: str) -> bool:
    """A ``uses=`` str that is a YAML config itself rather than a class name or a path."""
    head = text.lstrip()
    return '\n' in text or head.startswith(('jtype:', '!'))


def resolve_uses(uses: Any, uses_with: dict | None, uses_metas: dict | None,
                 base_dir: str | None = None, uses_requests: dict | None = None,
                 env: Mapping | None = None) -> tuple[type, dict, dict]:
    """Turn ``uses=`` into (class, init kwargs, metas).

    ``uses`` is an Executor subclass, its class name, the path of a YAML config
    (``*.yml`` / ``*.yaml``), a YAML config as a str (``'jtype: MyExec\\nwith: ...'``), a
    dict ``{'jtype': ..., 'with': ..., 'metas': ..., 'requests': ...}``, or None (documents
    pass through). ``uses_with`` / ``uses_metas`` override the config's ``with`` / ``metas``;
    ``uses_requests`` ({endpoint: method name}) is added to its ``requests``, which the
    init kwargs carry as ``requests``. ``metas.py_modules`` (files, found beside the YAML
    file, or in ``base_dir``, else in the current directory; or dotted module names) are
    imported first, whatever the form of ``uses`` (so ``jtype`` can name a class they
    define), and the metas hold them with absolute paths, for the executor's process to
    import too. ``env`` (the executor's ``add(env=...)``) is laid over ``os.environ`` for the
    ``$X`` / ``${{ ENV.X }}`` of a YAML config. ``metas`` keys other than ``METAS_FIELDS``
    are refused, wherever they come from.

    Example
    -------
    >>> resolve_uses({'jtype': 'Executor', 'metas': {'name': 'x'}}, {'a': 1}, None)[1:]
    ({'a': 1}, {'name': 'x'})
    """
    kwargs, metas = {}, {}
    for label, value in (('uses_with', uses_with), ('uses_metas', uses_metas)):
        if value is not None and not isinstance(value, dict):
            raise TypeError(f'{label} takes a dict of keyword arguments, e.g. {{"dim": 128}}, got '
                            f'{type(value).__name__} {value!r:.40}')
    unknown_metas = [k for k in uses_metas or {} if k not in METAS_FIELDS]
    if unknown_metas:
        raise metas_error(unknown_metas, 'uses_metas', 'bind endpoints with uses_requests={endpoint: method name}, '
                                                       'give __init__ arguments with uses_with={...}')
    if uses_requests is not None and not isinstance(uses_requests, dict):
        raise TypeError(f'uses_requests takes a dict {{endpoint: method name}}, e.g. {{"/index": "encode"}}, '
                        f'got {type(uses_requests).__name__} {uses_requests!r:.40}')
    if isinstance(uses, os.PathLike):
        uses = os.fspath(uses)
    if isinstance(uses, str) and (uses.endswith(('.yml', '.yaml')) or _looks_like_yaml(uses)):
        from .config import load_executor_config
        if not _looks_like_yaml(uses) and base_dir and not os.path.isabs(uses):
            uses = os.path.join(base_dir, uses)
        # (its $X / ${{ ENV.X }} read the executor's env= too, as in its Jina 2 process)
        uses = load_executor_config(uses, env=env)  # raises naming the file and line of what is wrong
    if isinstance(uses, dict):
        unknown = set(uses) - {'jtype', 'with', 'metas', 'requests'}
        if 'jtype' not in uses or unknown:
            raise ValueError(f"uses= dict takes the keys 'jtype' (class name), 'with' (init arguments), "
                             f"'metas' and 'requests'; got {sorted(uses)}")
        for key in ('with', 'metas', 'requests'):
            if uses.get(key) is not None and not isinstance(uses[key], dict):
                raise TypeError(f"uses={{'{key}': ...}} takes a dict, got {type(uses[key]).__name__} {uses[key]!r:.40}")
        unknown_metas = [k for k in uses.get('metas') or {} if k not in METAS_FIELDS]
        if unknown_metas:  # (a YAML config's were refused naming its line, when it was read)
            raise metas_error(unknown_metas, "uses={'metas': ...}", "give __init__ arguments under 'with', "
                                                                     "bind endpoints under 'requests'")
        metas.update(uses.get('metas') or {})
    metas.update(uses_metas or {})
    if metas.get('py_modules'):
        # For every form of uses, as Jina 2 did: a missing file is reported here, and a
        # module listed for what importing it does is imported (here and in the process).
        from .config import import_py_modules, py_modules_paths
        import_py_modules(metas['py_modules'], base_dir)
        metas['py_modules'] = py_modules_paths(metas['py_modules'], base_dir)
    if uses is None:
        cls = _PassThrough
    elif isinstance(uses, type):
        if not issubclass(uses, Executor):
            raise TypeError(f'uses= takes an Executor subclass, got class {uses.__qualname__}, which does '
                            f'not derive from runtime.Executor')
        cls = uses
    elif isinstance(uses, str):
        cls = lookup_executor_class(uses)
    elif isinstance(uses, dict):
        jtype = uses['jtype']
        if isinstance(jtype, type) and issubclass(jtype, Executor):
            cls = jtype
        elif isinstance(jtype, str):
            cls = lookup_executor_class(jtype)
        else:
            raise TypeError(f"uses={{'jtype': ...}} takes an Executor class name (str), got {jtype!r:.40}")
        kwargs.update(uses.get('with') or {})
    elif isinstance(uses, Executor):
        raise TypeError('uses= takes an Executor class, not an instance: each process builds its own; '
                        'pass uses=type(obj) and its arguments as uses_with={...}')
    else:
        raise TypeError(f'uses= takes an Executor subclass, its class name, a YAML file or string, a dict '
                        f"{{'jtype': ..., 'with': ..., 'metas': ...}} or None, got {type(uses).__name__}")
    kwargs.update(uses_with or {})
    # Checked here, naming what to pass, rather than when the executor's process starts;
    # each section under its own name (a YAML file's requests: was checked, naming its
    # file and line, when it was read).
    bindings = merge_requests(cls, [('requests', uses.get('requests') if isinstance(uses, dict) else None),
                                    ('uses_requests', uses_requests)])
    if bindings:
        kwargs['requests'] = bindings
    return cls, kwargs, metas
