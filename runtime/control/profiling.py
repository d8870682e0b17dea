"""Profiling runs: where the time went, per executor and per request.

Turned on with ``Flow(profile=True)`` (or ``Flow(profile='trace.json')`` to also write a
Chrome trace on exit). Every finished request's hops (``Response.routes``) are kept; from
them ``Flow.profile_summary()`` computes per executor / process: requests, documents,
busy %, handler time p50 / p95 / max, queue wait p50 / p95 and bytes written to shared
memory, plus end-to-end docs/s and request latency p50 / p95 / p99. ``chrome_trace``
turns the same records into the trace event format that Perfetto and chrome://tracing
open: one track per process, one slice per handler call, flow arrows along each request.

Late answers count. A request that failed (its ``post(timeout=...)`` expired, or one branch
of a ``needs=`` join raised) is delivered at once, while other executors may still be
working on it; what they spent is real time, and exactly the time one profiles a slow
executor for. So an answer that comes back after its request ended is added to that
request's record (``_Record.late``, never to the ``Response.routes`` the callbacks got) with
``'late': True`` in its hop: it counts in its executor's requests, documents, busy % and
handler / queue times like any other, ``ExecutorStats.late`` (the table's ``late`` column)
says how many of them came late, ``wall_s`` runs until the last of them, and its trace slice
has ``late: true`` in its args. Request latency stays what the caller saw. Late answers are
booked as the router reads them: while the Flow is posting, and when ``profile_summary()`` or
``save_trace()`` is called between posts; those still due when it closes are not seen.

Example
-------
>>> with Flow(profile='run.json').add(uses=Encoder, replicas=2) as f:
...     f.index(docs)
...     print(f.profile_summary())
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ['ProfileRecorder', 'ProfileSummary', 'ExecutorStats', 'chrome_trace']


@dataclass
class _Record:
    rid: str
    post: int
    endpoint: str
    submitted: float
    finished: float
    ndocs: int
    ok: bool
    routes: list  # the hops back in time (the Response's own list: never changed here)
    late: list = field(default_factory=list)  # the hops back after the request had ended


class ProfileRecorder:
    """Collects the finished requests of a Flow (one record per request)."""

    def __init__(self) -> None:
        self.records: list[_Record] = []
        self.posts = 0

    def new_post(self) -> int:
        self.posts += 1
        return self.posts

    def add(self, rid: str, post: int, endpoint: str, submitted: float, finished: float, ndocs: int,
            ok: bool, routes: list) -> _Record:
        """Book a request as its caller gets it; returns its record, for ``add_late``."""
        record = _Record(rid, post, endpoint, submitted, finished, ndocs, ok, routes)
        self.records.append(record)
        return record

    @staticmethod
    def add_late(record: _Record, hop: dict) -> None:
        """Book a hop (a dict as in ``Response.routes``) that came back after its request
        had ended: it timed out, or failed in another branch, while this executor worked.

        Example
        -------
        >>> recorder.add_late(record, {'executor': 'slow', ..., 'start': t0, 'end': t1})
        """
        hop['late'] = True
        record.late.append(hop)

    def summary(self, post: int | None = None) -> 'ProfileSummary':
        """The summary of every request so far, or of one post (``post`` its number)."""
        records = [r for r in self.records if post is None or r.post == post]
        return ProfileSummary.from_records(records)


def _pct(values: list, q: float) -> float:
    return float(np.percentile(values, q)) if values else float('nan')


@dataclass
class ExecutorStats:
    """The numbers of one executor, or of one of its processes (``process`` set)."""

    executor: str
    process: str  # '' for the executor as a whole, else 'replica R shard S pid P'
    requests: int  # the hops it answered, late ones included
    docs: int
    busy_pct: float  # handler time / the run's wall time (per process; for an executor, of all its processes)
    handler_ms: dict  # p50, p95, max
    queue_ms: dict  # p50, p95: from ready to go to this executor until its handler started
    shm_bytes: int
    late: int = 0  # of ``requests``, those answered after their request ended (see the module's doc)

    def row(self) -> list[str]:
        name = self.executor if not self.process else f'  {self.process}'
        return [name, str(self.requests), str(self.late), str(self.docs), f'{self.busy_pct:.1f}',
                f'{self.handler_ms["p50"]:.3f}', f'{self.handler_ms["p95"]:.3f}', f'{self.handler_ms["max"]:.3f}',
                f'{self.queue_ms["p50"]:.3f}', f'{self.queue_ms["p95"]:.3f}', _bytes(self.shm_bytes)]


def _bytes(n: float) -> str:
    for unit in ('B', 'KB', 'MB', 'GB'):
        if n < 1024 or unit == 'GB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024
    return f'{n} B'  # pragma: no cover


@dataclass
class ProfileSummary:
    """Where the time went. ``str()`` is a table; ``to_dict()`` the numbers for scripts.

    Attributes
    ----------
    requests, docs, failed : int
    wall_s : float
        From the first request sent to the last one back, or the last late answer back
        (the executors worked until then).
    docs_per_s : float
    latency_ms : dict
        End-to-end request latency p50 / p95 / p99.
    executors : list of ExecutorStats
        Each executor, followed by its processes when it has several.
    """

    requests: int = 0
    docs: int = 0
    failed: int = 0
    wall_s: float = 0.0
    docs_per_s: float = 0.0
    latency_ms: dict = field(default_factory=dict)
    executors: list = field(default_factory=list)

    @classmethod
    def from_records(cls, records: list[_Record]) -> 'ProfileSummary':
        if not records:
            return cls(latency_ms={'p50': float('nan'), 'p95': float('nan'), 'p99': float('nan')})
        t0 = min(r.submitted for r in records)
        # (late answers extend the run: the executors worked until then, and a busy % over
        # a shorter wall time could pass 100)
        t1 = max(max([r.finished] + [h['returned'] for h in r.late]) for r in records)
        wall = max(t1 - t0, 1e-9)
        lat = [1e3 * (r.finished - r.submitted) for r in records]
        by_exec: dict[str, dict[tuple, list]] = {}
        for r in records:
            for hop in (r.routes + r.late if r.late else r.routes):
                key = (hop['replica'], hop['shard'], hop['pid'])
                # (each executor counts the documents it was given, not the request's)
                by_exec.setdefault(hop['executor'], {}).setdefault(key, []).append((hop, _docs_in(hop, r)))
        stats = []
        for name, procs in by_exec.items():
            per_proc = [cls._stats(name, f'replica {k[0]} shard {k[1]} pid {k[2]}', hops, wall)
                        for k, hops in sorted(procs.items())]
            everything = [h for hops in procs.values() for h in hops]
            whole = cls._stats(name, '', everything, wall * len(procs))
            stats.append(whole)
            if len(procs) > 1:
                stats.extend(per_proc)
        docs = sum(r.ndocs for r in records)
        return cls(requests=len(records), docs=docs, failed=sum(not r.ok for r in records), wall_s=wall,
                   docs_per_s=docs / wall, latency_ms={'p50': _pct(lat, 50), 'p95': _pct(lat, 95),
                                                       'p99': _pct(lat, 99)}, executors=stats)

    @staticmethod
    def _stats(name: str, process: str, hops: list, wall: float) -> ExecutorStats:
        handler = [1e3 * (h['end'] - h['start']) for h, _ in hops]
        queue = [1e3 * max(0.0, h['start'] - h['ready']) for h, _ in hops]
        return ExecutorStats(
            executor=name, process=process, requests=len(hops), docs=sum(n for _, n in hops),
            busy_pct=100 * sum(handler) / 1e3 / wall,
            handler_ms={'p50': _pct(handler, 50), 'p95': _pct(handler, 95), 'max': max(handler)},
            queue_ms={'p50': _pct(queue, 50), 'p95': _pct(queue, 95)},
            shm_bytes=sum(h.get('shm_bytes', 0) for h, _ in hops), late=sum(h.get('late', False) for h, _ in hops))

    def to_dict(self) -> dict:
        """Every number, as plain Python (for JSON, plots, assertions)."""
        return {'requests': self.requests, 'docs': self.docs, 'failed': self.failed, 'wall_s': self.wall_s,
                'docs_per_s': self.docs_per_s, 'latency_ms': self.latency_ms,
                'executors': [vars(e) for e in self.executors]}

    def executor(self, name: str) -> ExecutorStats:
        """The whole-executor row of ``name``."""
        for e in self.executors:
            if e.executor == name and not e.process:
                return e
        raise KeyError(f'no executor {name!r} in this profile; executors: '
                       f'{sorted({e.executor for e in self.executors})}')

    def table(self) -> str:
        """A fixed-width table, one row per executor (and per process when several)."""
        head = ['executor', 'requests', 'late', 'docs', 'busy %', 'handler p50 ms', 'p95', 'max', 'queue p50 ms', 'p95',
                'shm written']
        rows = [head] + [e.row() for e in self.executors]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ['  '.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        lat = self.latency_ms
        lines.append(f'{self.requests} requests ({self.failed} failed), {self.docs} docs in {self.wall_s:.3f} s: '
                     f'{self.docs_per_s:,.0f} docs/s; request latency p50 {lat["p50"]:.2f} ms, '
                     f'p95 {lat["p95"]:.2f} ms, p99 {lat["p99"]:.2f} ms')
        late = sum(e.late for e in self.executors if not e.process)
        if late:
            lines.append(f'{late} executor answer{"s" * (late != 1)} came late, after the request had timed out '
                         f'or failed in another branch: counted above, as the executors spent that time')
        return '\n'.join(lines)

    __str__ = table


def chrome_trace(records: list[_Record], parent_pid: int | None = None) -> dict:
    """The records as Chrome trace events (JSON-ready): a track per process with a slice
    per handler call, an async slice per request on the router's track, and flow arrows
    from each hop of a request to the next."""
    parent_pid = parent_pid or os.getpid()
    if not records:
        return {'traceEvents': [], 'displayTimeUnit': 'ms'}
    t0 = min(r.submitted for r in records)

    def us(t: float) -> float:
        return round((t - t0) * 1e6, 3)

    events: list[dict[str, Any]] = [
        {'ph': 'M', 'name': 'process_name', 'pid': parent_pid, 'tid': 0, 'args': {'name': 'router (parent)'}},
        {'ph': 'M', 'name': 'process_sort_index', 'pid': parent_pid, 'tid': 0, 'args': {'sort_index': 0}},
    ]
    # A track per process; on a cluster pids repeat across machines, so a process is its
    # (node, pid), and one off this machine gets a track number of its own.
    tracks: dict[tuple, int] = {}

    def track(h: dict) -> int:
        key = (h.get('node') or '', h['pid'])
        got = tracks.get(key)
        if got is None:
            got = tracks[key] = h['pid'] if not key[0] else 10_000_000 + len(tracks)
            node = f", node {key[0]}" if key[0] else ''
            label = f"{h['executor']} (replica {h['replica']}, shard {h['shard']}, pid {h['pid']}{node})"
            events.append({'ph': 'M', 'name': 'process_name', 'pid': got, 'tid': 0, 'args': {'name': label}})
        return got

    for r in records:
        events.append({'ph': 'b', 'cat': 'request', 'name': f'request {r.endpoint}', 'id': r.rid,
                       'pid': parent_pid, 'tid': 0, 'ts': us(r.submitted),
                       'args': {'request_id': r.rid, 'docs': r.ndocs, 'ok': r.ok}})
        events.append({'ph': 'e', 'cat': 'request', 'name': f'request {r.endpoint}', 'id': r.rid,
                       'pid': parent_pid, 'tid': 0, 'ts': us(r.finished)})
        hops = r.routes + r.late if r.late else r.routes
        for i, h in enumerate(hops):
            pid = track(h)
            events.append({'ph': 'X', 'cat': 'handler', 'name': h['executor'], 'pid': pid, 'tid': 0,
                           'ts': us(h['start']), 'dur': max(0.001, round((h['end'] - h['start']) * 1e6, 3)),
                           'args': {'request_id': r.rid, 'docs': _docs_in(h, r), 'endpoint': r.endpoint,
                                    'queue_ms': round(1e3 * max(0.0, h['start'] - h['ready']), 3),
                                    'shm_bytes': h.get('shm_bytes', 0), 'late': h.get('late', False)}})
            src = _fed_by(hops, h)
            if src is not None:  # an arrow from the hop whose answer made this one ready
                flow_id = f'{r.rid}/{i}'
                events.append({'ph': 's', 'cat': 'flow', 'name': 'request', 'id': flow_id, 'pid': track(src),
                               'tid': 0, 'ts': us(src['end']) - 0.001})
                events.append({'ph': 'f', 'bp': 'e', 'cat': 'flow', 'name': 'request', 'id': flow_id,
                               'pid': pid, 'tid': 0, 'ts': us(h['start'])})
    return {'traceEvents': events, 'displayTimeUnit': 'ms'}


def _docs_in(hop: dict, r: '_Record') -> int:
    n = hop.get('docs_in')
    return r.ndocs if n is None else n


def _fed_by(hops: list, h: dict) -> dict | None:
    """The hop whose answer made ``h`` ready to go (the last one back before it was: a join
    waits for its slowest input), or None for one the request started with. Hops appear in
    ``routes`` in the order they came back, so this follows the graph, never back in time."""
    best = None
    for g in hops:
        if g is not h and g['returned'] <= h['ready'] and (best is None or g['returned'] > best['returned']):
            best = g
    return best


def write_trace(path: str, records: list[_Record]) -> None:
    """Write ``chrome_trace(records)`` to ``path`` as JSON."""
    with open(path, 'w', encoding='utf-8') as fp:
        json.dump(chrome_trace(records), fp)
