"""Where a Flow's time goes: the two probes behind the README's account of the targets
it misses. They measure, they do not judge: no target, nothing in ``python -m perf``.

``python -m perf.where_time_goes threads``: the benchmark's 3-executor, 768-d workload
(``perf.bench_flow``), with how long each thread of the parent and of every worker ran and
how long it waited in a run queue (``/proc/<pid>/task/<tid>/schedstat``), as shares of
the wall time, and the machine's idle share over the same time (``/proc/stat``). Linux only.

``python -m perf.where_time_goes one-doc``: one post of one document at a time through one
executor, split by the times each request records on its way (``Response.routes``): from
``post()`` to the request leaving the router, to the worker's handler, the handler, the
reply leaving the worker, back in the router, and to the end of ``post()``. Medians.

Example
-------
>>> main(['one-doc', '--posts', '500'])  # doctest: +SKIP
"""
from __future__ import annotations

import os
import sys

if __name__ == '__main__':  # before numpy loads, in this process and every child
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from perf.common import pin_blas_env
    pin_blas_env()

import argparse
import glob
import statistics
import time

import numpy as np

from perf.bench_flow import _columnar, _flow, _flow_docs
from runtime import Document

__all__ = ['threads', 'one_doc', 'main']

#: The hops of ``one_doc``, as (label, from, to): keys of a ``Response.routes`` entry, with
#: 'post' and 'end' for the start and the end of ``post()``.
_LEGS = (('post() -> request sent', 'post', 'dispatched'), ('-> worker handler', 'dispatched', 'received'),
         ('handler done', 'received', 'end'), ('-> reply sent', 'end', 'sent'),
         ('-> back in the router', 'sent', 'returned'), ('-> end of post()', 'returned', 'end_post'))


def _schedstat(pids: list[int]) -> dict[tuple, tuple[int, int]]:
    # (pid, tid, thread name) -> (ns on a CPU, ns runnable in a run queue)
    out = {}
    for pid in pids:
        for task in glob.glob(f'/proc/{pid}/task/*'):
            try:
                with open(f'{task}/comm') as f:
                    name = f.read().strip()
                with open(f'{task}/schedstat') as f:
                    run, wait, _ = map(int, f.read().split())
            except OSError:  # the thread ended meanwhile
                continue
            out[(pid, int(task.rsplit('/', 1)[1]), name)] = (run, wait)
    return out


def _cpu_times() -> list[int]:
    with open('/proc/stat') as f:
        return list(map(int, f.readline().split()[1:]))


def threads(posts: int = 10, n_docs: int = 10_000, dim: int = 768) -> list[tuple[str, float, float]]:
    """Run ``posts`` posts of the Flow benchmark; returns (thread, share of the wall time on a
    CPU, share waiting in a run queue) per thread that ran, and prints them with the rate
    and the machine's idle share."""
    from runtime.transport.local.zygote import own_children
    da, _ = _columnar(n_docs, dim)
    rows = []
    with _flow(3) as f:
        _flow_docs(f, da, n_docs)  # warm: connections, page faults
        pids = [os.getpid()] + [p.pid for p in own_children()]
        roles = {os.getpid(): 'parent', **{pid: f'worker {i}' for i, pid in enumerate(pids[1:])}}
        before, cpu0, t0 = _schedstat(pids), _cpu_times(), time.perf_counter()
        for _ in range(posts):
            _flow_docs(f, da, n_docs)
        wall, after, cpu1 = time.perf_counter() - t0, _schedstat(pids), _cpu_times()
    for key, (run, wait) in after.items():
        if key in before:
            run, wait = (run - before[key][0]) / 1e9 / wall, (wait - before[key][1]) / 1e9 / wall
            if run > 0.01:
                rows.append((f'{roles[key[0]]} {key[2]}', run, wait))
    delta = [b - a for a, b in zip(cpu0, cpu1)]
    print(f'{posts * n_docs / wall:,.0f} docs/s; machine idle {delta[3] / sum(delta):.0%} of the time')
    print(f'{"thread":28s} {"on a CPU":>9s} {"runnable, waiting":>18s}')
    for name, run, wait in rows:
        print(f'{name:28s} {run:9.0%} {wait:18.0%}')
    return rows


def one_doc(posts: int = 3000, dim: int = 768) -> dict[str, float]:
    """``posts`` posts of one document, one at a time, through one executor; returns the
    median microseconds of each leg (and 'total'), and prints them."""
    x = np.random.default_rng(0).standard_normal((posts, dim), dtype=np.float32)
    docs = [Document(embedding=row) for row in x]
    legs: dict[str, list[float]] = {label: [] for label, _, _ in _LEGS}
    legs['total'] = []
    with _flow(1) as f:
        for d in docs[:300]:  # warm
            f.post('/', d)
        for d in docs:
            got = []
            start = time.time()
            f.post('/', d, on_done=got.append)
            marks = {**got[0].routes[0], 'post': start, 'end_post': time.time()}
            for label, a, b in _LEGS:
                legs[label].append((marks[b] - marks[a]) * 1e6)
            legs['total'].append((marks['end_post'] - start) * 1e6)
    out = {label: statistics.median(v) for label, v in legs.items()}
    for label, us in out.items():
        print(f'{label:24s} {us:7.1f} us')
    return out


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(prog='python -m perf.where_time_goes', description=__doc__.split('\n\n')[0])
    sub = ap.add_subparsers(dest='probe', required=True)
    t = sub.add_parser('threads', help='CPU and run-queue time of every thread of the 3-executor workload')
    t.add_argument('--posts', type=int, default=10)
    o = sub.add_parser('one-doc', help='one-document posts split along their way')
    o.add_argument('--posts', type=int, default=3000)
    args = ap.parse_args(argv)
    if args.probe == 'threads':
        threads(args.posts)
    else:
        one_doc(args.posts)


if __name__ == '__main__':
    main()
