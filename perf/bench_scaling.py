"""Scaling benchmark (issue 4): CPU-bound replicas against ``multiprocessing.Pool``, and
search over an index split into shards.

Replicas. Each request holds 100 documents with a 768-d float32 embedding; the executor
multiplies the (100, 768) matrix by a fixed 768x768 matrix ``W`` twenty times and writes
the result back as the new embeddings (a realistic encoder: CPU-bound, payload in and
out). BLAS is pinned to one thread in every process, so ``k`` processes can use at most
``k`` cores. The same batch of requests goes through a Flow with ``replicas=k`` and
through ``multiprocessing.get_context('spawn').Pool(k)`` (``imap_unordered``,
``chunksize=1``: every array is pickled to a worker and the result pickled back, which is
what Pool does). Every Flow and Pool is started and warmed up first; then each round runs
every count of both systems back to back, and each time is the median over the rounds. Speedup(k) = time(1) / time(k) for each system;
the target compares the Flow's speedup with Pool's at the same process count.

Shards (``perf.scaling_shards``). An in-memory indexer (``MatIndexer``: one matrix,
cosine top-10 by one matmul) indexes N random unit vectors (100,000; 20,000 with
``--quick``) as one shard, and as ``shards=2`` with ``polling={'/index': 'any', '/search':
'all'}``; then both answer the same queries and their throughput is compared. The top-10
ids of a few queries are checked against each other and against numpy in the parent.

On a shared machine, other processes on the cores make both systems scale badly alike:
only a run on otherwise idle cores says anything about scaling.

Run ``python -m perf.bench_scaling [--counts 1,2,4,8,14] [--reps 3] [--json OUT] [--quick]``;
``python -m perf`` runs it with the rest of the suite.
"""
from __future__ import annotations

import os
import sys

if __name__ == '__main__':  # before numpy loads, in this process and every child
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from perf.common import pin_blas_env
    pin_blas_env()

import argparse
import contextlib
import gc
import json
import math
import multiprocessing as mp
import time
from typing import Any

import numpy as np

from perf.common import (BLAS_THREAD_VARS, MIN_RUN_S, as_jsonable, blas_info, entry, figure_rows, format_table,
                         machine_info, median, pin_blas_env)
# The shards half lives in its own module; its constants stay importable from here too.
from perf.scaling_shards import (CHECK_QUERIES, INDEX_REQUEST_SIZE, INDEX_SIZE, QUERIES,  # noqa: F401
                                 QUERY_REQUEST_SIZE, SEARCH_REPS, TOP_K, MatIndexer, measure_shards, shard_figures)
from runtime import Document, DocumentArray, Executor, Flow, requests

__all__ = ['MatmulEncoder', 'MatIndexer', 'run', 'main', 'table_rows', 'curve_rows', 'default_counts',
           'TARGETS']

DIM = 768
REQUEST_SIZE = 100
MATMULS = 20
W_SEED = 1234
#: Requests per run: at least this many, and at least PER_PROCESS per process at the
#: largest count, rounded up to a multiple of every count (no count gets a ragged tail).
BASE_REQUESTS = {'full': 64, 'quick': 24, 'tiny': 4}
PER_PROCESS = {'full': 8, 'quick': 4, 'tiny': 2}
REPS = 3
#: Requests in flight per replica: the router keeps 2 at each process, the rest wait in
#: the router, so every replica always has its next request at hand.
WINDOW_PER_REPLICA = 4
CANDIDATE_COUNTS = (1, 2, 4, 8, 14)
#: Issue 4: on the 2-core machine replicas=2 must reach 1.75x (Pool 1.80x, Ray 1.62x,
#: Jina 2 1.40x); where more cores are available, the Flow's speedup must be within 5% of
#: Pool's at every process count.
TARGETS = {'speedup_2': 1.75, 'vs_pool': 0.95}
BLAS_ENV = {v: '1' for v in BLAS_THREAD_VARS}


# -- the CPU-bound work, shared by the executor and the Pool workers ------------------------
def make_w(dim: int = DIM, seed: int = W_SEED) -> np.ndarray:
    """The fixed (dim, dim) float32 matrix. Scaled by 1/sqrt(dim) so that ``x @ W`` keeps
    the norm of a row about the same: twenty products stay finite and far from denormals."""
    w = np.random.default_rng(seed).standard_normal((dim, dim), dtype=np.float32)
    w *= np.float32(1.0 / math.sqrt(dim))
    return w


def encode(x: np.ndarray, w: np.ndarray, times: int = MATMULS) -> np.ndarray:
    """``x @ W`` ``times`` times."""
    for _ in range(times):
        x = x @ w
    return x


def _blas_threads() -> Any:
    info = blas_info()
    return {'threads': info.get('threads'), 'kernel': info.get('kernel'), 'pid': os.getpid(),
            'env': {v: os.environ.get(v) for v in BLAS_THREAD_VARS}}


class MatmulEncoder(Executor):
    """The CPU-bound executor: each request's embeddings times ``W``, twenty times."""

    def __init__(self, seed: int = W_SEED, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.w = make_w(DIM, seed)

    @requests(on='/encode')
    def encode(self, docs: DocumentArray, **kwargs: Any) -> None:
        docs.embeddings = encode(docs.embeddings, self.w)

    @requests(on='/blas')
    def blas(self, docs: DocumentArray, **kwargs: Any) -> dict:
        return _blas_threads()


# Pool workers: module-level functions (the 'spawn' start method imports this module).
_POOL_W: np.ndarray | None = None


def _pool_init(seed: int) -> None:
    global _POOL_W
    _POOL_W = make_w(DIM, seed)


def _pool_encode(x: np.ndarray) -> np.ndarray:
    return encode(x, _POOL_W)


def _pool_blas(_: Any) -> Any:
    return _blas_threads()


# -- helpers -------------------------------------------------------------------------------
def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_counts(cpus: int | None = None) -> list[int]:
    """[1, 2] on up to 3 cores; else the counts of (1, 2, 4, 8, 14) that leave one core to
    the parent (14 on 16 cores, 4 on 8)."""
    cpus = usable_cpus() if cpus is None else cpus
    if cpus <= 3:
        return [1, 2]
    return [c for c in CANDIDATE_COUNTS if c <= cpus - 1]


def n_requests_for(counts: list[int], mode: str) -> int:
    n = max(BASE_REQUESTS[mode], PER_PROCESS[mode] * max(counts))
    step = math.lcm(*counts)
    if step <= n // 2:  # only where a multiple of every count stays affordable
        n = -(-n // step) * step
    return n


def _flow_seconds(f: Flow, da: DocumentArray, window: int) -> float:
    """Wall seconds of one post of ``da`` to '/encode'; checks every document came back."""
    count = 0

    def on_done(resp: Any) -> None:
        nonlocal count
        e = resp.docs.embeddings  # what a caller does with the result: look at it (zero-copy)
        count += e.shape[0]

    t0 = time.perf_counter()
    f.post('/encode', da, on_done=on_done, request_size=REQUEST_SIZE, prefetch=window)
    seconds = time.perf_counter() - t0
    if count != len(da):
        raise RuntimeError(f'the Flow returned {count} of {len(da)} documents')
    return seconds


def _pool_seconds(pool: Any, arrays: list[np.ndarray]) -> float:
    rows = 0
    t0 = time.perf_counter()
    for out in pool.imap_unordered(_pool_encode, arrays, chunksize=1):
        rows += out.shape[0]
    seconds = time.perf_counter() - t0
    if rows != sum(len(a) for a in arrays):
        raise RuntimeError(f'the Pool returned {rows} rows')
    return seconds


def _check_flow(f: Flow, da: DocumentArray, expected: np.ndarray, window: int) -> bool:
    """Warm-up post of the first requests; True when the first request's result equals
    what the parent computes."""
    got: dict[str, np.ndarray] = {}

    def on_done(resp: Any) -> None:
        for d, row in zip(resp.docs, resp.docs.embeddings):
            got[d.id] = np.array(row)

    f.post('/encode', da, on_done=on_done, request_size=REQUEST_SIZE, prefetch=window)
    rows = np.stack([got[d.id] for d in da[:len(expected)]])
    return bool(np.allclose(rows, expected, rtol=1e-4, atol=1e-5))


def _replicas(counts: list[int], n_requests: int, reps: int) -> dict[str, Any]:
    """Flow replicas=k against Pool(k) for every k; seconds per repetition.

    Every Flow and Pool is started first (idle processes cost nothing measurable: a Pool
    worker blocks on its pipe, a Flow worker wakes every 200 ms), and each round runs every
    count of both systems back to back, so that load from other processes hits every
    count of a round alike and speedups can be taken per round.
    """
    x = np.random.default_rng(0).standard_normal((n_requests * REQUEST_SIZE, DIM), dtype=np.float32)
    da = DocumentArray([Document() for _ in range(len(x))])
    da.embeddings = x
    arrays = [x[i:i + REQUEST_SIZE] for i in range(0, len(x), REQUEST_SIZE)]
    expected = encode(x[:REQUEST_SIZE], make_w())
    ctx = mp.get_context('spawn')
    out: dict[str, Any] = {'flow': {k: [] for k in counts}, 'pool': {k: [] for k in counts}, 'checks': {},
                           'blas': {}, 'start_s': {}}
    with contextlib.ExitStack() as stack:
        flows, pools = {}, {}
        for k in counts:
            t0 = time.perf_counter()
            flows[k] = stack.enter_context(Flow().add(name='enc', uses=MatmulEncoder, replicas=k, env=BLAS_ENV))
            t1 = time.perf_counter()
            pools[k] = ctx.Pool(k, initializer=_pool_init, initargs=(W_SEED,))
            stack.callback(_close_pool, pools[k])
            out['start_s'][k] = {'flow': t1 - t0, 'pool_call': time.perf_counter() - t1}
        for k in counts:
            # Warm-up (imports, BLAS buffers, arena pages) and a correctness check of each.
            f, pool, window = flows[k], pools[k], WINDOW_PER_REPLICA * k
            warm = min(n_requests, 2 * k)
            flow_ok = _check_flow(f, da[:warm * REQUEST_SIZE], expected, window)
            first = next(pool.imap(_pool_encode, arrays[:1]))
            list(pool.imap_unordered(_pool_encode, arrays[:warm], chunksize=1))
            out['checks'][k] = {'flow': flow_ok, 'pool': bool(np.allclose(first, expected, rtol=1e-4, atol=1e-5))}
            resp = f.post('/blas', Document(), return_results=True)
            out['blas'][k] = {'flow_worker': resp[0].parameters['__results__']['enc'],
                              'pool_worker': pool.apply(_pool_blas, (None,))}
        for _ in range(reps):
            for k in counts:
                gc.collect()
                out['flow'][k].append(_flow_seconds(flows[k], da, WINDOW_PER_REPLICA * k))
                gc.collect()
                out['pool'][k].append(_pool_seconds(pools[k], arrays))
    return out


def _close_pool(pool: Any) -> None:
    pool.close()
    pool.join()


# -- run -----------------------------------------------------------------------------------
def run(quick: bool = False, counts: list[int] | None = None, reps: int = REPS, tiny: bool = False) -> dict:
    """Measure the scaling curve (Flow replicas vs multiprocessing.Pool) and the shards
    search figures.

    Parameters
    ----------
    quick : bool
        Fewer requests (24 at 1-2 processes instead of 64) and a 20,000-vector index
        instead of 100,000.
    counts : list of int, optional
        Process counts (default ``default_counts()``: [1, 2] on two cores, 1..14 on 16).
        1 is added if missing: every speedup is relative to it.
    reps : int
        Rounds (default 3); each round runs every count of both systems once.
    tiny : bool
        A smoke run (a few requests, a 2,000-vector index): checks the machinery, not speed.

    Returns
    -------
    dict
        ``{'config', 'figures': {key: entry}, 'curve': [per count], 'search': {...},
        'samples': {...}}``; ``figures`` entries are ``perf.common.entry(...)``; the
        targeted keys are ``speedup_<k>`` (k > 1).

    Example
    -------
    >>> r = run(quick=True)  # doctest: +SKIP
    >>> r['figures']['speedup_2']['ok']  # doctest: +SKIP
    True
    """
    removed = pin_blas_env()  # for the children; the parent pinned itself before numpy if run as a script
    mode = 'tiny' if tiny else 'quick' if quick else 'full'
    cpus = usable_cpus()
    counts = sorted(set(default_counts(cpus) if counts is None else counts) | {1})
    if any(not isinstance(c, int) or c < 1 for c in counts):
        raise ValueError(f'counts must be positive ints, got {counts!r}')
    many_core = cpus > 2
    n_requests = n_requests_for(counts, mode)
    config = {'quick': quick, 'counts': counts, 'cpus_usable': cpus, 'n_requests': n_requests,
              'request_size': REQUEST_SIZE, 'dim': DIM, 'matmuls': MATMULS, 'reps': reps,
              'window_per_replica': WINDOW_PER_REPLICA, 'index_size': INDEX_SIZE[mode],
              'queries': QUERIES[mode], 'query_request_size': QUERY_REQUEST_SIZE,
              'search_reps': 1 if tiny else 3 if quick else SEARCH_REPS, 'search_min_run_s': 0.0 if tiny else MIN_RUN_S,
              'parent_blas': blas_info(), 'removed_env': removed,
              'targets': {'speedup_2': TARGETS['speedup_2'],
                          'vs_pool': TARGETS['vs_pool'] if many_core else None}}
    t0 = time.perf_counter()
    rp = _replicas(counts, n_requests, reps)
    t1 = time.perf_counter()
    sh = measure_shards(INDEX_SIZE[mode], QUERIES[mode], config['search_reps'], config['search_min_run_s'], BLAS_ENV)
    t2 = time.perf_counter()
    config['seconds'] = {'replicas': t1 - t0, 'shards': t2 - t1}

    docs = n_requests * REQUEST_SIZE
    ft = {k: median(v) for k, v in rp['flow'].items()}
    pt = {k: median(v) for k, v in rp['pool'].items()}
    curve = []
    for k in counts:
        # Speedup: median time at 1 / median time at k. (Per-round speedups, time(1) / time(k)
        # of the same round, are kept beside it: with three rounds their median is no
        # steadier, and a ratio of medians matches the times shown.)
        fs, ps = ft[1] / ft[k], pt[1] / pt[k]
        curve.append({'processes': k, 'flow_s': ft[k], 'pool_s': pt[k], 'flow_docs_per_s': docs / ft[k],
                      'pool_docs_per_s': docs / pt[k], 'flow_speedup': fs, 'pool_speedup': ps,
                      'speedup_ratio': fs / ps, 'flow_vs_pool_throughput': pt[k] / ft[k],
                      'flow_round_speedups': [a / b for a, b in zip(rp['flow'][1], rp['flow'][k])],
                      'pool_round_speedups': [a / b for a, b in zip(rp['pool'][1], rp['pool'][k])],
                      'flow_samples_s': rp['flow'][k], 'pool_samples_s': rp['pool'][k],
                      'results_ok': rp['checks'][k], 'blas': rp['blas'][k], 'start_s': rp['start_s'][k]})

    figs: dict[str, dict] = {}
    tag = f'{n_requests} requests of {REQUEST_SIZE}x{DIM}, {MATMULS} matmuls each'
    figs['throughput_1'] = entry(f'replicas=1 ({tag})', docs / ft[1], 'docs/s', baseline=docs / pt[1],
                                 baseline_label='Pool(1)', ratio=curve[0]['flow_vs_pool_throughput'])
    for c in curve[1:]:
        k = c['processes']
        conds, ok = [], True
        if k == 2:
            conds.append(f'>= {TARGETS["speedup_2"]:g}x')
            ok = ok and c['flow_speedup'] >= TARGETS['speedup_2']
        if many_core:
            conds.append(f'ratio >= {TARGETS["vs_pool"]:g}')
            ok = ok and c['speedup_ratio'] >= TARGETS['vs_pool']
        figs[f'speedup_{k}'] = entry(f'speedup, replicas={k} vs 1', c['flow_speedup'], 'x',
                                     baseline=c['pool_speedup'], baseline_label=f'Pool({k})',
                                     ratio=c['speedup_ratio'], target=', '.join(conds) or None,
                                     ok=ok if conds else None)
    results_ok = all(v['flow'] and v['pool'] for v in rp['checks'].values())
    pinned = all(b['flow_worker'].get('threads') in (1, None) and b['pool_worker'].get('threads') in (1, None)
                 for b in rp['blas'].values())
    figs['results_ok'] = entry('encoder results equal numpy (Flow and Pool, every count)', float(results_ok),
                               'bool', target='true', ok=results_ok)
    figs['blas_pinned'] = entry('BLAS threads = 1 in every worker', float(pinned), 'bool', target='true', ok=pinned)

    shard_figs, search = shard_figures(sh, INDEX_SIZE[mode], QUERIES[mode])
    figs.update(shard_figs)  # after the replicas' figures: the table's order
    samples = {'flow_s': rp['flow'], 'pool_s': rp['pool'], 'search_s': sh['search_s'], 'index_s': sh['index_s']}
    return {'config': config, 'figures': figs, 'curve': curve, 'search': search, 'samples': samples}


table_rows = figure_rows  # the name the suite uses


CURVE_HEADER = ('processes', 'Flow s', 'Pool s', 'Flow speedup', 'Pool speedup', 'Flow/Pool speedup',
                'Flow/Pool docs/s')


def curve_rows(curve: list[dict]) -> list[tuple[str, ...]]:
    """The scaling curve as table rows (CURVE_HEADER first)."""
    rows = [CURVE_HEADER]
    for c in curve:
        rows.append((str(c['processes']), f'{c["flow_s"]:.3f}', f'{c["pool_s"]:.3f}', f'{c["flow_speedup"]:.2f}x',
                     f'{c["pool_speedup"]:.2f}x', f'{c["speedup_ratio"]:.3f}', f'{c["flow_vs_pool_throughput"]:.3f}'))
    return rows


def _parse_counts(text: str) -> list[int]:
    try:
        counts = [int(t) for t in text.split(',') if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f'--counts takes comma-separated positive ints, e.g. 1,2,4; got {text!r}')
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f'--counts takes comma-separated positive ints, e.g. 1,2,4; got {text!r}')
    return counts


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the benchmark, print its tables, write JSON if asked."""
    parser = argparse.ArgumentParser(prog='python -m perf.bench_scaling', description=__doc__.splitlines()[0])
    parser.add_argument('--counts', type=_parse_counts, default=None,
                        help=f'process counts, e.g. 1,2,4,8,14 (default here: {",".join(map(str, default_counts()))})')
    parser.add_argument('--quick', action='store_true', help='fewer requests, a 20,000-vector index')
    parser.add_argument('--reps', type=int, default=REPS, help=f'rounds of every count (default {REPS}); medians')
    parser.add_argument('--json', metavar='OUT', default=None, help='write every figure to this JSON file')
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error('--reps must be at least 1')
    info = machine_info()
    blas = info['blas']
    print(f'# {info["date"]}  {info["cpus_usable"]} CPUs usable  Python {info["python"]}  numpy {info["numpy"]}  '
          f'BLAS kernel: {blas.get("kernel", "unknown")} (threads {blas.get("threads", "?")})  '
          f'load {info["loadavg_at_start"]}', flush=True)
    t0 = time.perf_counter()
    result = run(quick=args.quick, counts=args.counts, reps=args.reps)
    result['seconds'] = time.perf_counter() - t0
    cfg = result['config']
    print(format_table(curve_rows(result['curve'])))
    print()
    header = ('figure', 'value', 'baseline', 'ratio', 'target', 'pass/fail')
    print(format_table([header, *table_rows(result['figures'])]))
    failed = [e['label'] for e in result['figures'].values() if e.get('ok') is False]
    print(f'# {len(failed)} target(s) missed' + (f': {"; ".join(failed)}' if failed else '')
          + f'  ({result["seconds"]:.1f} s; {cfg["n_requests"]} requests, medians of {cfg["reps"]}; shard sizes '
            f'{result["search"]["index_sizes"]["two"]})')
    if args.json:
        with open(args.json, 'w') as fp:
            json.dump(as_jsonable({'machine': info, 'benchmarks': {'scaling': result}}), fp, indent=2)
        print(f'# wrote {args.json}')
    return result


if __name__ == '__main__':
    main()
