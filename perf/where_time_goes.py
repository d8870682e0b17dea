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

``python -m perf.where_time_goes zmq-echo``: what ZeroMQ alone costs a round trip, under
both: a bare pyzmq ROUTER in this process and a DEALER in another that sends each
400-byte message straight back (ipc://, as the Flow's sockets), with the CPU each thread
of both processes spent per round trip. Linux only.

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
import multiprocessing as mp
import statistics
import tempfile
import time

import numpy as np

from perf.bench_flow import _columnar, _flow, _flow_docs
from runtime import Document

__all__ = ['threads', 'one_doc', 'zmq_echo', 'main']

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


def _echo(address: str) -> None:
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    sock.send(b'ready')
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    while poller.poll(30_000):  # (the parent gone: it stops waiting)
        msg = sock.recv()
        if msg == b'stop':
            break
        sock.send(msg)
    sock.close(0)
    ctx.term()


def zmq_echo(round_trips: int = 5000) -> dict[str, float]:
    """``round_trips`` bare ZeroMQ round trips of a 400-byte message, one at a time;
    returns the median round trip and each thread's CPU per round trip (microseconds),
    and prints them."""
    import zmq
    with tempfile.TemporaryDirectory(prefix='shmflow-echo-') as tmp:
        address = f'ipc://{tmp}/echo'
        ctx = zmq.Context()
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(address)
        child = mp.get_context('spawn').Process(target=_echo, args=(address,), daemon=True)
        child.start()
        try:
            peer, _ = sock.recv_multipart()
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            msg, walls = b'x' * 400, []
            for i in range(round_trips + 500):  # the first 500 warm up
                if i == 500:
                    before = _schedstat([os.getpid(), child.pid])
                t0 = time.perf_counter()
                sock.send_multipart([peer, msg])
                if not poller.poll(30_000):
                    raise RuntimeError('the echo process does not answer')
                sock.recv_multipart()
                walls.append(time.perf_counter() - t0)
            after = _schedstat([os.getpid(), child.pid])
            sock.send_multipart([peer, b'stop'])
        finally:
            child.join(5)
            if child.is_alive():
                child.kill()
            sock.close(0)
            ctx.term()
    out = {'round trip p50': statistics.median(walls[500:]) * 1e6}
    for key, (run, _) in after.items():
        if key in before and run > before[key][0]:
            role = 'parent' if key[0] == os.getpid() else 'echo'
            out[f'{role} {key[2]}'] = (run - before[key][0]) / 1e3 / round_trips
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
    e = sub.add_parser('zmq-echo', help='bare ZeroMQ round trips, and the CPU of each thread')
    e.add_argument('--round-trips', type=int, default=5000)
    args = ap.parse_args(argv)
    if args.probe == 'threads':
        threads(args.posts)
    elif args.probe == 'one-doc':
        one_doc(args.posts)
    else:
        zmq_echo(args.round_trips)


if __name__ == '__main__':
    main()
