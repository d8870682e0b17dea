"""Benchmark of the Flow against its baselines, all measured in this one invocation.

Workload (DESIGN.md, "Where the bar is"): 10,000 documents with a 768-d float32
embedding, in requests of 100, through three executors whose handler only reads
``docs.embeddings``, with up to 16 requests in flight. Also: the same with 8-d
embeddings, one-document requests through one executor, and how long a three-executor
Flow takes to start and to close.

Throughput runs are interleaved (Flow 768-d, Flow 8-d, mp.Queue, floor, pickled pyzmq,
then again), so that a burst of load from another process hits every system alike;
each figure is the median of the repetitions, and each ratio the median of the per-round
ratios.

Run ``python -m perf.bench_flow [--quick] [--profile FILE]``; ``python -m perf`` runs it
with the rest of the suite.
"""
from __future__ import annotations

import os
import sys

if __name__ == '__main__':  # before numpy loads, in this process and every child
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from perf.common import pin_blas_env
    pin_blas_env()

import argparse
import cProfile
import gc
import pstats
import time
from typing import Any, Callable

import numpy as np
import psutil

from perf.baselines import MPQueuePipeline, RawZmqPipeline
from perf.common import entry, figure_rows, format_table, median
from runtime import Document, DocumentArray, Executor, Flow, requests

__all__ = ['ReadEmbeddings', 'run', 'main', 'TARGETS']

N_DOCS = 10_000
REQUEST_SIZE = 100
DIM = 768
SMALL_DIM = 8
WINDOW = 16
EXECUTORS = 3
#: The bar of issue 3 (2-core machine); see DESIGN.md "Where the bar is".
TARGETS = {
    'flow_vs_mpqueue': 4.0,        # at least
    'flow_vs_floor': 0.5,          # at least
    'latency_streamed_us': 150.0,  # at most (Jina 2: ~630 us for one request of one doc)
    'ratio_768_8': 0.8,            # at least
    'start_s': 0.5,                # at most
    'close_s': 0.2,                # at most
}
JINA2_LATENCY_US = 630.0


class ReadEmbeddings(Executor):
    """The benchmark's executor: looks at the documents and changes nothing.

    It reads ``docs.embeddings`` (as the anchor's no-op handler did), so a runtime cannot
    pass the request on undecoded, as it might for an executor with no handler.
    """

    @requests
    def read(self, docs: DocumentArray, **kwargs: Any) -> None:
        e = docs.embeddings
        e.shape


def _columnar(n: int, dim: int, seed: int = 0) -> tuple[DocumentArray, np.ndarray]:
    """n Documents whose embeddings are rows of one (n, dim) matrix (assigned with
    ``docs.embeddings = X``, so the DocumentArray is columnar)."""
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    da = DocumentArray([Document() for _ in range(n)])
    da.embeddings = x
    return da, x


def _flow(executors: int) -> Flow:
    f = Flow()
    for k in range(executors):
        f = f.add(name=f'read{k}', uses=ReadEmbeddings)
    return f


def _flow_rate(f: Flow, da: DocumentArray, request_size: int, window: int) -> float:
    """docs/s of one post of ``da``, counting the documents that come back in on_done."""
    count = 0

    def on_done(resp: Any) -> None:
        nonlocal count
        count += len(resp.docs)

    t0 = time.perf_counter()
    f.post('/', da, on_done=on_done, request_size=request_size, prefetch=window)
    seconds = time.perf_counter() - t0
    if count != len(da):
        raise RuntimeError(f'the Flow returned {count} of {len(da)} documents')
    return count / seconds


def _throughput(n_docs: int, reps: int, profile: str | None) -> dict[str, Any]:
    """Interleaved rounds of every system on the workload; docs/s per round."""
    da, x = _columnar(n_docs, DIM)
    da8, _ = _columnar(n_docs, SMALL_DIM, seed=1)
    samples: dict[str, Any] = {k: [] for k in ('flow', 'flow8', 'mpq', 'floor', 'pickle')}
    with _flow(EXECUTORS) as f, MPQueuePipeline() as mpq, \
            RawZmqPipeline('shm', WINDOW, REQUEST_SIZE * DIM * 4) as floor, RawZmqPipeline('pickle', WINDOW) as pk:
        systems: dict[str, Callable[[], float]] = {
            'flow': lambda: _flow_rate(f, da, REQUEST_SIZE, WINDOW),
            'flow8': lambda: _flow_rate(f, da8, REQUEST_SIZE, WINDOW),
            'mpq': lambda: mpq.run(x, REQUEST_SIZE, WINDOW),
            'floor': lambda: floor.run(x, REQUEST_SIZE),
            'pickle': lambda: pk.run(x, REQUEST_SIZE),
        }
        for run_once in systems.values():  # warm-up: connections, page faults, caches
            run_once()
        for _ in range(reps):
            for name, run_once in systems.items():
                gc.collect()  # no collection of an earlier run's garbage inside a timed one
                samples[name].append(run_once())
        if profile:
            samples['cpu_per_process'] = _cpu_split(systems['flow'])
            prof = cProfile.Profile()
            prof.enable()
            systems['flow']()
            prof.disable()
            prof.dump_stats(profile)
    return samples


def _cpu_split(run_once: Callable[[], float], rounds: int = 10) -> dict[str, float]:
    """CPU seconds each process of the Flow spent per run (mean of ``rounds`` runs, without
    the profiler): the process that saturates first is the bottleneck."""
    me = psutil.Process()
    workers = [p for p in me.children() if 'runtime.transport.local.worker' in ' '.join(p.cmdline())]

    def cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return t.user + t.system

    before = [cpu(me)] + [cpu(p) for p in workers]
    t0 = time.perf_counter()
    for _ in range(rounds):  # CPU times tick in 10 ms: one run alone is too short to split
        run_once()
    wall = time.perf_counter() - t0
    after = [cpu(me)] + [cpu(p) for p in workers]
    names = ['parent'] + [p.cmdline()[-4] if len(p.cmdline()) >= 4 else str(p.pid) for p in workers]
    out = {'wall': wall / rounds}
    out.update({name: (b - a) / rounds for name, a, b in zip(names, before, after)})
    return out


def _latency(sync_posts: int, stream_requests: int, reps: int) -> dict[str, list[float]]:
    """Microseconds per one-document request through one executor: posted one at a time
    (mean wall of ``f.post('/', doc)``) and streamed with a window of 16."""
    da, x = _columnar(stream_requests, DIM, seed=2)
    doc = da[0]
    out: dict[str, list[float]] = {'sync': [], 'sync_p50': [], 'sync_p99': [], 'stream': [],
                                   'floor_sync': [], 'floor_stream': []}
    # The same through one raw pyzmq + shm worker: what two ipc hops cost on this machine now.
    with RawZmqPipeline('shm', 1, DIM * 4, stages=1) as one, \
            RawZmqPipeline('shm', WINDOW, DIM * 4, stages=1) as many:
        one.run(x[:50], 1)
        many.run(x, 1)
        for _ in range(reps):
            out['floor_sync'].append(1e6 / one.run(x[:sync_posts], 1))
            out['floor_stream'].append(1e6 / many.run(x, 1))
    with _flow(1) as f:
        for _ in range(50):  # warm-up
            f.post('/', doc)
        f.post('/', da, request_size=1, prefetch=WINDOW)
        for _ in range(reps):
            gc.collect()
            walls = []
            for _ in range(sync_posts):
                t0 = time.perf_counter()
                f.post('/', doc)
                walls.append(time.perf_counter() - t0)
            walls_us = np.array(walls) * 1e6
            out['sync'].append(float(walls_us.mean()))
            out['sync_p50'].append(float(np.percentile(walls_us, 50)))
            out['sync_p99'].append(float(np.percentile(walls_us, 99)))
            gc.collect()
            t0 = time.perf_counter()
            f.post('/', da, request_size=1, prefetch=WINDOW)
            out['stream'].append((time.perf_counter() - t0) / stream_requests * 1e6)
    return out


def _start_close(reps: int) -> dict[str, list[float]]:
    """Seconds to start (``__enter__``) and close (``__exit__``) a three-executor Flow."""
    out: dict[str, list[float]] = {'start': [], 'close': []}
    for _ in range(reps):
        f = _flow(EXECUTORS)
        gc.collect()
        t0 = time.perf_counter()
        f.__enter__()
        t1 = time.perf_counter()
        try:
            f.post('/', Document(embedding=np.zeros(DIM, np.float32)))  # a started Flow must also work
        finally:
            t2 = time.perf_counter()
            f.__exit__(None, None, None)
            t3 = time.perf_counter()
        out['start'].append(t1 - t0)
        out['close'].append(t3 - t2)
    return out


def _ratios(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios a/b (rounds are interleaved, so each pair saw the
    same load)."""
    return median(x / y for x, y in zip(a, b))


def run(quick: bool = False, n_docs: int | None = None, profile: str | None = None, tiny: bool = False) -> dict:
    """Measure every figure of the Flow benchmark.

    Parameters
    ----------
    quick : bool
        3 repetitions instead of 5 and fewer latency samples (the workload itself stays
        10,000 documents unless ``n_docs`` says otherwise).
    n_docs : int, optional
        Documents per throughput run (default 10,000).
    profile : str, optional
        Write a cProfile of the parent during one extra Flow throughput run to this file.
    tiny : bool
        A smoke run (1,000 docs, one round, few latency samples): checks the machinery and
        the output, not speed.

    Returns
    -------
    dict
        ``{'config': {...}, 'figures': {key: entry}, 'samples': {key: [per repetition]}}``;
        an entry is ``perf.common.entry(...)``: label, value, unit, baseline, ratio,
        target, ok. Keys of the targeted ratios: ``flow_vs_mpqueue``, ``flow_vs_floor``,
        ``ratio_768_8``.

    Example
    -------
    >>> r = run(quick=True)  # doctest: +SKIP
    >>> r['figures']['flow_vs_floor']['ok']  # doctest: +SKIP
    True
    """
    reps = 1 if tiny else 3 if quick else 5
    n = n_docs or (1000 if tiny else N_DOCS)
    sync_posts = 30 if tiny else 300 if quick else 1000
    stream_requests = 100 if tiny else 1000 if quick else 2000
    config = {'n_docs': n, 'request_size': REQUEST_SIZE, 'dim': DIM, 'small_dim': SMALL_DIM, 'window': WINDOW,
              'executors': EXECUTORS, 'reps': reps, 'quick': quick, 'sync_posts': sync_posts,
              'stream_requests': stream_requests}
    tp = _throughput(n, reps, profile)
    cpu_split = tp.pop('cpu_per_process', None)
    lat = _latency(sync_posts, stream_requests, reps)
    sc = _start_close(reps)

    figs: dict[str, dict] = {}
    flow, flow8 = median(tp['flow']), median(tp['flow8'])
    mpq, floor, pk = median(tp['mpq']), median(tp['floor']), median(tp['pickle'])
    tag = f'{n:,} docs, {REQUEST_SIZE}/request, window {WINDOW}'
    figs['flow_docs_per_s'] = entry(f'Flow, {EXECUTORS} executors, {DIM}-d ({tag})', flow, 'docs/s')
    figs['flow_docs_per_s_8d'] = entry(f'Flow, {EXECUTORS} executors, {SMALL_DIM}-d', flow8, 'docs/s')
    figs['mpqueue_docs_per_s'] = entry(f'multiprocessing.Queue, {EXECUTORS} processes, {DIM}-d', mpq, 'docs/s')
    figs['floor_docs_per_s'] = entry(f'raw pyzmq + pre-mapped shm arena (floor), {DIM}-d', floor, 'docs/s')
    figs['zmq_pickle_docs_per_s'] = entry(f'raw pyzmq, array pickled per message, {DIM}-d', pk, 'docs/s')
    r = _ratios(tp['flow'], tp['mpq'])
    figs['flow_vs_mpqueue'] = entry('Flow / multiprocessing.Queue', flow, 'docs/s', baseline=mpq,
                                    baseline_label='mp.Queue', ratio=r,
                                    target=f'>= {TARGETS["flow_vs_mpqueue"]:g}x', ok=r >= TARGETS['flow_vs_mpqueue'])
    r = _ratios(tp['flow'], tp['floor'])
    figs['flow_vs_floor'] = entry('Flow / floor', flow, 'docs/s', baseline=floor, baseline_label='floor', ratio=r,
                                  target=f'>= {TARGETS["flow_vs_floor"]:g}x', ok=r >= TARGETS['flow_vs_floor'])
    r = _ratios(tp['flow'], tp['pickle'])
    figs['flow_vs_zmq_pickle'] = entry('Flow / raw pyzmq pickled', flow, 'docs/s', baseline=pk,
                                       baseline_label='zmq pickle', ratio=r)
    r = _ratios(tp['flow'], tp['flow8'])
    figs['ratio_768_8'] = entry(f'Flow {DIM}-d / {SMALL_DIM}-d', flow, 'docs/s', baseline=flow8,
                                baseline_label=f'{SMALL_DIM}-d', ratio=r,
                                target=f'>= {TARGETS["ratio_768_8"]:g}x', ok=r >= TARGETS['ratio_768_8'])
    v = median(lat['stream'])
    figs['latency_streamed_us'] = entry(
        f'1 doc/request, 1 executor, window {WINDOW}: wall per request', v, 'us',
        baseline=median(lat['floor_stream']), baseline_label='floor', ratio=_ratios(lat['stream'], lat['floor_stream']),
        target=f'<= {TARGETS["latency_streamed_us"]:g} us', ok=v <= TARGETS['latency_streamed_us'],
        note=f'{stream_requests} requests per post; Jina 2: ~{JINA2_LATENCY_US:g} us')
    figs['latency_sync_us'] = entry('1 doc/request, 1 executor, one post at a time: mean wall',
                                    median(lat['sync']), 'us', baseline=median(lat['floor_sync']),
                                    baseline_label='floor', ratio=_ratios(lat['sync'], lat['floor_sync']),
                                    note=f'Jina 2: ~{JINA2_LATENCY_US:g} us')
    figs['latency_sync_p50_us'] = entry('  same, median', median(lat['sync_p50']), 'us')
    figs['latency_sync_p99_us'] = entry('  same, 99th percentile', median(lat['sync_p99']), 'us')
    v = median(sc['start'])
    figs['start_s'] = entry(f'Flow of {EXECUTORS} executors: ready (__enter__)', v, 's',
                            target=f'<= {TARGETS["start_s"]:g} s', ok=v <= TARGETS['start_s'])
    v = median(sc['close'])
    figs['close_s'] = entry(f'Flow of {EXECUTORS} executors: closed (__exit__)', v, 's',
                            target=f'<= {TARGETS["close_s"]:g} s', ok=v <= TARGETS['close_s'])
    samples = {**{f'throughput_{k}': v for k, v in tp.items()}, **{f'latency_{k}_us': v for k, v in lat.items()},
               **{f'{k}_s': v for k, v in sc.items()}}
    if cpu_split is not None:
        samples['cpu_per_process'] = cpu_split
    return {'config': config, 'figures': figs, 'samples': samples}


table_rows = figure_rows  # the name the suite and older scripts use


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='3 repetitions instead of 5, fewer latency samples')
    parser.add_argument('--n', type=int, default=None, help=f'documents per throughput run (default {N_DOCS:,})')
    parser.add_argument('--profile', metavar='FILE', help='cProfile the parent during one more Flow run; '
                                                          'prints the top functions and writes FILE')
    args = parser.parse_args(argv)
    result = run(quick=args.quick, n_docs=args.n, profile=args.profile)
    header = ('figure', 'value', 'baseline', 'ratio', 'target', 'pass/fail')
    print(format_table([header, *table_rows(result['figures'])]))
    if args.profile:
        split = result['samples']['cpu_per_process']
        print(f'\nCPU seconds per process per Flow run of {result["config"]["n_docs"]:,} docs '
              f'(wall {split["wall"]:.3f} s): ' + ', '.join(f'{k} {v:.3f}' for k, v in split.items() if k != 'wall'))
        pstats.Stats(args.profile).sort_stats('tottime').print_stats(25)
    return result


if __name__ == '__main__':
    main()
