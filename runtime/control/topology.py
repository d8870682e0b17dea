"""The shape of a Flow: its executors (deployments) and how one post's requests travel.

Example
-------
>>> plan = Plan(deployments, '/search', active=[True] * len(deployments))
>>> plan.start, plan.succ[0], plan.fan[1]
"""
from __future__ import annotations

import collections
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..transport.base import Worker

__all__ = ['Deployment', 'Plan', 'targets', 'END', 'GATEWAY', 'DEFAULT_TIMEOUT_READY']

DEFAULT_TIMEOUT_READY = 60.0
END = -1  # the node standing for "back to the caller" in a plan
GATEWAY = -2  # the node standing for the caller's input


class Deployment:
    """One ``add()``: an executor class, its arguments and its processes."""

    def __init__(self, index: int, spec: dict) -> None:
        self.index = index
        self.name, self.cls, self.kwargs, self.metas = spec['resolved_name'], spec['cls'], spec['kwargs'], spec['metas']
        self.env, self.replicas, self.shards = spec.get('env'), spec['replicas'], spec.get('shards', 1)
        self.polling = spec.get('polling') or {'*': 'any'}
        self.needs: list[str] = spec['needs']
        self.timeout_ready = spec.get('timeout_ready', DEFAULT_TIMEOUT_READY)
        self.max_restarts, self.max_retries = spec.get('max_restarts', 0), spec.get('max_retries', 0)
        self.restarts = 0
        self.ray_options = spec.get('ray_options')  # Ray actor options; only the ray transport reads them
        #: The Flow's workspace (set when it starts): the root of the executor's folder where its
        #: metas give none (see transport.handling.executor_config).
        self.workspace: str | None = None
        reduce = getattr(self.cls, 'reduce', None)
        self.reduce = reduce if callable(reduce) else None
        self.workers: list[Worker] = []
        self.by_shard: list[list[Worker]] = [[] for _ in range(self.shards)]
        self.endpoints: frozenset = frozenset()
        self.has_default = False
        self.matrix_endpoints: frozenset = frozenset()  # handlers that name docs_matrix
        self.matrix = spec.get('matrix', False)  # a uses_after: gets its shards' outputs as docs_matrix
        self.waiting: collections.deque = collections.deque()  # (request, shard, payload, ready, split)

    def handles(self, endpoint: str) -> bool:
        return self.has_default or endpoint in self.endpoints

    def wants_matrix(self, endpoint: str) -> bool:
        """Whether its handler for ``endpoint`` names ``docs_matrix``."""
        key = endpoint if endpoint in self.endpoints else '__default__'
        return key in self.matrix_endpoints

    def fans_out(self, endpoint: str) -> bool:
        """Whether a request to ``endpoint`` goes to every shard (polling 'all')."""
        return self.shards > 1 and self.polling.get(endpoint, self.polling.get('*', 'any')) == 'all'

    def candidates(self, shard: int | None) -> list['Worker']:
        """The processes (of ``shard``, or of any shard) ready for requests now."""
        pool = self.workers if shard is None else self.by_shard[shard]
        return [w for w in pool if w.alive and w.ready]

    def starting(self, shard: int | None) -> bool:
        """Whether a process (of ``shard``) is being restarted: requests wait for it."""
        pool = self.workers if shard is None else self.by_shard[shard]
        return any(w.alive and not w.ready for w in pool)

    def dead_shard(self) -> 'Worker | None':
        """A worker of a shard with no process left, even restarting (so the executor
        cannot serve)."""
        for pool in self.by_shard:  # (asked before every post: plain loops, no generators)
            for w in pool:
                if w.alive:
                    break
            else:
                return pool[-1]
        return None


class Plan:
    """How one post's requests travel: which nodes handle the endpoint, and the edges.

    Nodes that do not handle the endpoint (or are not targeted) stay in the graph as
    pass-throughs, so the documents still flow from their needs to their successors.
    """

    def __init__(self, deployments: list[Deployment], endpoint: str, active: list[bool]) -> None:
        self.nodes = deployments
        self.active = active
        #: The deployments that handle the endpoint: the ones that must be alive for a post.
        self.used = [d for d, on in zip(deployments, active) if on]
        self.fan = [d.fans_out(endpoint) for d in deployments]
        # Nodes that get their inputs unmerged, as docs_matrix: a uses_after (one part per
        # shard), and a join whose handler asks for docs_matrix (one part per upstream).
        self.matrix = [on and (d.matrix or (len(d.needs) > 1 and d.wants_matrix(endpoint)))
                       for d, on in zip(deployments, active)]
        index = {d.name: d.index for d in deployments}
        self.succ: list[list[int]] = [[] for _ in deployments]
        self.start: list[int] = []
        self.npred = [len(d.needs) for d in deployments]
        for d in deployments:
            for name in d.needs:
                if name == 'gateway':
                    self.start.append(d.index)
                else:
                    self.succ[index[name]].append(d.index)
        sinks = [d.index for d in deployments if not self.succ[d.index]]
        # Each node's inputs in the order of its needs (a join hands them on in that order).
        self.preds: dict[int, list[int]] = {d.index: [GATEWAY if n == 'gateway' else index[n] for n in d.needs]
                                            for d in deployments}
        self.preds[END] = sinks or [GATEWAY]
        for i in sinks:
            self.succ[i].append(END)
        self.end_preds = len(sinks)
        if not deployments:  # a Flow with no executor answers with what it was sent
            self.start.append(END)
            self.end_preds = 1
        # Where the branches met by each join split: the latest node all its inputs come
        # from. A join merges against the documents as they left that node, so a field one
        # branch changed survives another branch carrying the old value on.
        ancestors: dict[int, set] = {}
        for d in deployments:
            ups = {GATEWAY}
            for name in d.needs:
                if name != 'gateway':
                    ups |= ancestors[index[name]] | {index[name]}
            ancestors[d.index] = ups
        self.split: dict[int, int] = {}
        self.forks: set = set()
        joins = [(d.index, [GATEWAY if n == 'gateway' else index[n] for n in d.needs]) for d in deployments]
        joins.append((END, sinks))
        for node, inputs in joins:
            if len(inputs) > 1:
                common = set.intersection(*[ancestors.get(i, set()) | {i} for i in inputs])
                self.split[node] = max(common)
                self.forks.add(self.split[node])


def targets(deployments: list[Deployment], target: str | None) -> list[bool]:
    """Which deployments ``post(target_executor=...)`` selects; all without a target.

    As Jina 2 matched ``target_peapod``: a regular expression matched at the start of each
    name (``re.match``), so ``'idx'`` selects ``idx``, the ``uses_before`` / ``uses_after``
    that belong to it (``idx-head``, ``idx-tail``: skipping its merger would hand on its
    shards' documents unmerged) and any other name that starts so; ``'idx$'`` selects
    ``idx`` alone.
    """
    if target is None:
        return [True] * len(deployments)
    if not isinstance(target, str):
        raise TypeError(f'target_executor must be an executor name or a regex str, got {type(target).__name__} '
                        f'{target!r:.60}')
    try:
        pattern = re.compile(target)
    except re.error as exc:
        raise ValueError(f'target_executor {target!r} is not a valid regular expression: {exc}') from None
    targeted = [bool(pattern.match(d.name)) for d in deployments]
    if not any(targeted):
        raise ValueError(f'target_executor {target!r} matches no executor; executors: {[d.name for d in deployments]}')
    return targeted
