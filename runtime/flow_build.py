"""Building a Flow's topology: ``add``, ``needs``, ``needs_all``, the YAML round trip and
the drawing. ``Flow`` (flow.py) inherits these and adds running: start, post, close. The
gateway's settings (``port_expose``, ``protocol``, ...) come from ``flow_serving``.

Nothing here starts a process: a Flow is built as a list of specs (``control.specs``
checks each ``add``), and every ``add`` returns a new Flow, as in Jina 2.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .control.inputs import describe
from .control.specs import ADD_ARGS, build_specs, given_int, reject_jina_only
from .flow_serving import GatewayOptions

if TYPE_CHECKING:
    from .flow import Flow

__all__ = ['FlowBuilder']


class FlowBuilder(GatewayOptions):
    """The building half of ``Flow``: what works on the list of executor specs alone.

    Use it through ``Flow``; it is a class of its own so that building and running each
    read in one file.

    Example
    -------
    >>> f = Flow().add(name='enc', uses=Encoder).add(name='idx', uses=Indexer, needs='enc')
    >>> f.num_executors
    2
    """

    _specs: list[dict]
    _defaults: dict

    def _with_specs(self, specs: list[dict]) -> Any:
        """A copy of this Flow, not started, with ``specs`` (``Flow`` resets its running state)."""
        raise NotImplementedError

    # -- building --------------------------------------------------------------------------
    def add(self, name: str | None = None, uses: Any = None, uses_with: dict | None = None,
            uses_metas: dict | None = None, timeout_ready: float | None = None, env: dict | None = None,
            replicas: int = 1, needs: str | list | None = None, shards: int = 1,
            polling: str | dict | None = None, max_restarts: int = 0, max_retries: int = 0,
            uses_before: Any = None, uses_after: Any = None, workspace: str | None = None,
            py_modules: str | list | None = None, ray_options: dict | None = None,
            uses_requests: dict | None = None, **kwargs: Any) -> Flow:
        """A new Flow with one more executor at the end (this Flow is unchanged, as in Jina 2).

        Parameters
        ----------
        name : str, optional
            Unique name; defaults to ``metas.name`` from ``uses`` / ``uses_metas``, else the
            class name (numbered if it repeats).
        uses : Executor subclass, class name, ``{'jtype': ..., 'with': ..., 'metas': ...}`` or None
            None: documents pass through.
        uses_with : dict
            Keyword arguments of the executor's ``__init__``.
        uses_metas : dict
            ``metas`` fields (``name``, ``description``, ``workspace``, ``py_modules``), e.g.
            ``{'name': 'enc', 'workspace': '/data'}`` (its folder: ``/data/enc``).
        uses_requests : dict
            ``{endpoint: method name}``, added to the class's ``@requests`` bindings (as a
            YAML ``requests:`` section), e.g. ``{'/index': 'encode'}``.
        timeout_ready : float
            Seconds to wait for this executor to start (default 60; -1 waits forever); a
            restart not ready within it is ended (and restarted again while restarts are
            left, else what waits for it fails naming the executor).
        env : dict
            Environment variables of the executor's process.
        replicas : int
            Processes running this executor (same state); each request goes to the one with
            the fewest outstanding requests.
        needs : str or list of str
            The executors (or ``'gateway'``, the input) whose output this one takes; default:
            the one added just before. Several: their documents are joined by id.
        shards : int
            Processes with different state (``runtime_args.shard_id``, one workspace
            sub-directory each); ``shards * replicas`` processes in all. Jina 2's
            ``parallel`` is taken as ``shards``.
        polling : 'any', 'all' or {endpoint: 'any' | 'all', '*': default}
            With shards: 'any' sends a request to one shard, 'all' to every shard and joins
            their documents (by id; matches sorted by score and cut to ``parameters['limit']``
            or ``['top_k']``), or with the class's ``reduce(docs_matrix, parameters)``
            static method when it defines one. With 'all', a handler's returned dict
            appears in ``parameters['__results__'][name]`` as a list, one per shard.
        max_restarts : int
            How many times a process of this executor that dies is started again (its
            ``__init__`` runs again); with replicas, the others keep serving meanwhile.
            Once they are used up, the executor is dead and posts to it fail at once.
        max_retries : int
            How many times a request that was on a process when it died is sent again
            (to a live or restarted process). A retried request may have run twice: the
            process may have died after its handler finished.
        uses_before, uses_after : executor (as ``uses``)
            Run before this executor's shards, and after them: the ``uses_after``
            executor's handler gets ``docs_matrix``, one DocumentArray per shard (Jina 2's
            merger of sharded search). ``needs=name`` later means the ``uses_after``.
        workspace : str
            Its ``metas.workspace``: the folder its own folder is made in, as in Jina 2
            (``self.workspace`` is ``<workspace>/<metas.name>``, plus ``/<shard_id>`` with
            shards; replicas share it). Default: the Flow's ``workspace``.
        py_modules : str or list of str
            Files or modules to import first, so ``uses='ClassName'`` can name a class
            they define.
        ray_options : dict
            With ``Flow(backend='ray')``: the actors' Ray options (``num_cpus``,
            ``num_gpus``, ``memory``, ``resources``, ``scheduling_strategy``, ...).

        Every other Jina 2 option is refused with an error saying what to use instead.
        A join (several ``needs``) whose handler names ``docs_matrix`` gets one
        DocumentArray per upstream, in the order of ``needs``; any other join gets the
        documents joined by id.

        Example
        -------
        >>> f = (Flow().add(name='enc', uses=Encoder, uses_with={'dim': 128}, replicas=2)
        ...      .add(name='idx', uses=Indexer, shards=2, polling={'/index': 'any', '/search': 'all'}))
        """
        if 'parallel' in kwargs:  # Jina 2's name for shards
            if shards != 1:
                raise TypeError('give shards or parallel (its Jina 2 name), not both')
            shards = kwargs.pop('parallel')
        reject_jina_only('add', kwargs, f'name, needs, {", ".join(ADD_ARGS)}', ('name', 'needs', *ADD_ARGS))
        given = {'uses': uses, 'uses_with': uses_with, 'uses_metas': uses_metas, 'timeout_ready': timeout_ready,
                 'env': env, 'replicas': given_int(replicas, 1), 'shards': given_int(shards, 1), 'polling': polling,
                 'max_restarts': max_restarts or None, 'max_retries': max_retries or None,
                 'uses_before': uses_before, 'uses_after': uses_after, 'workspace': workspace,
                 'py_modules': py_modules, 'ray_options': ray_options, 'uses_requests': uses_requests}
        return self._with_specs(self._specs + build_specs(self._specs, self._defaults, name, needs, given))

    @property
    def num_executors(self) -> int:
        """How many executors were added."""
        return len(self._specs)

    @property
    def num_pods(self) -> int:
        """How many executors were added, each with its ``uses_before`` / ``uses_after`` counted
        once, as Jina 2 counted its pods (which also counted its gateway once the Flow was
        built: here the gateway is no pod).

        Example
        -------
        >>> Flow().add(name='a').add(name='b', shards=2, uses_after=Merger).num_pods
        2
        """
        return sum(1 for s in self._specs if not s.get('side_of'))

    @property
    def num_peas(self) -> int:
        """How many processes (or Ray actors) the Flow runs: ``shards * replicas`` of each
        executor, plus those of ``uses_before`` / ``uses_after`` (Jina 2's peas; it also
        counted its gateway and the head and tail of a sharded pod, which do not exist here).

        Example
        -------
        >>> Flow().add(name='a', replicas=2).add(name='b', shards=2, uses_after=Merger).num_peas
        5
        """
        return sum((s.get('shards') or 1) * (s.get('replicas') or 1) for s in self._specs)

    # -- display ---------------------------------------------------------------------------
    def plot(self, output: str | None = None, **kwargs: Any) -> Flow:
        """Draw the topology, with replicas and shards shown, and return the Flow (as
        Jina 2 did, so calls chain).

        ``output`` ending in ``.svg`` gets an SVG drawing; ``.md`` a Markdown file with a
        Mermaid graph; ``.mmd`` the bare Mermaid text. Without ``output`` nothing is
        written (``mermaid()`` returns the text). Jina 2's display options
        (``vertical_layout``, ``inline_display``, ...) are accepted and have no effect.

        Example
        -------
        >>> f = Flow().add(name='a').add(name='b', needs='gateway').add(needs=['a', 'b']).plot('flow.svg')
        """
        from .control.plot import to_mermaid, to_svg
        unknown = set(kwargs) - {'vertical_layout', 'inline_display', 'build', 'copy_flow'}
        if unknown:
            raise TypeError(f'plot() got unexpected arguments {sorted(unknown)}; it takes output')
        if output is None:
            return self
        if not isinstance(output, (str, os.PathLike)):
            raise TypeError(f'plot() takes a file name ending in .svg, .md or .mmd, got {describe(output)}')
        ext = os.path.splitext(str(output))[1].lower()
        if ext == '.svg':
            text = to_svg(self._specs)
        elif ext == '.md':
            text = f'```mermaid\n{to_mermaid(self._specs)}```\n'
        elif ext == '.mmd':
            text = to_mermaid(self._specs)
        else:
            raise ValueError(f'plot() writes .svg, .md (Mermaid in Markdown) or .mmd files, got {output!r}')
        with open(output, 'w', encoding='utf-8') as fp:
            fp.write(text)
        return self

    def mermaid(self) -> str:
        """The topology as a Mermaid graph (what ``plot('flow.mmd')`` writes).

        Example
        -------
        >>> print(Flow().add(name='enc', replicas=2).mermaid())  # doctest: +SKIP
        """
        from .control.plot import to_mermaid
        return to_mermaid(self._specs)

    def needs(self, needs: str | list, name: str = 'joiner', **kwargs: Any) -> Flow:
        """A new Flow with a pass-through executor ``name`` that joins ``needs`` (Jina 2's
        ``Flow.needs``): the documents of each are joined by id.

        Example
        -------
        >>> f = Flow().add(name='a').add(name='b', needs='gateway').needs(['a', 'b'])
        """
        return self.add(name=name, needs=needs, **kwargs)

    #: Jina 2's older name of ``needs`` (its ``join = needs``).
    join = needs

    def inspect(self, name: str = 'inspect', *args: Any, **kwargs: Any) -> Flow:
        """Not supported: raises NotImplementedError saying what to do instead.

        Jina 2's ``inspect`` added an executor beside the last one, fed its output, whose
        answers the Flow dropped (an evaluator that could not change the results); this
        Flow has no such side branch.

        Example
        -------
        >>> Flow().add(name='enc').inspect(uses=MyEvaluator)  # doctest: +SKIP
        Traceback (most recent call last):
        NotImplementedError: Flow.inspect() added a Jina 2 inspect pod: ...
        """
        raise NotImplementedError(
            "Flow.inspect() added a Jina 2 inspect pod: an executor beside the last one, fed its output, whose "
            "answers the Flow dropped (for evaluation that cannot change the results); not supported here: add "
            "the evaluator as an executor, f.add(name='eval', uses=MyEvaluator), which sees the documents and "
            "passes them on (keep the evaluator from changing them), or read the results in on_done")

    def gather_inspect(self, name: str = 'gather_inspect', include_last_pod: bool = True, *args: Any,
                       **kwargs: Any) -> Flow:
        """This Flow, unchanged: Jina 2's ``gather_inspect`` joined the inspect pods of
        ``inspect()``, and returned the Flow itself where it had none, which is always the
        case here (``inspect()`` is not supported).

        Example
        -------
        >>> f = Flow().add(name='enc')
        >>> f.gather_inspect() is f
        True
        """
        return self

    def needs_all(self, name: str = 'joiner', **kwargs: Any) -> Flow:
        """Join every executor that nothing else takes from yet (Jina 2's ``needs_all``).

        Example
        -------
        >>> f = Flow().add(name='a').add(name='b', needs='gateway').needs_all()
        """
        used = {n for s in self._specs for n in s['needs']}
        ends = [s.get('group') or s['resolved_name'] for s in self._specs if s['resolved_name'] not in used]
        return self.needs(ends or ['gateway'], name=name, **kwargs)

    # -- YAML ------------------------------------------------------------------------------
    @classmethod
    def load_config(cls, source: Any, **kwargs: Any) -> Flow:
        """A Flow from a Jina 2 YAML config (a path, a YAML string or a file object):
        ``jtype: Flow``, ``with:`` (Flow arguments), ``executors:`` (each an ``add()``).

        Example
        -------
        >>> f = Flow.load_config('flow.yml')
        """
        from .config import load_flow
        return load_flow(source, **kwargs)

    def save_config(self, path: str) -> None:
        """Write this Flow as a YAML config that ``Flow.load_config`` reads back."""
        from .config_save import save_flow
        save_flow(self, path)
