"""The Ray backend (issue 11) against its baselines, all measured in this one invocation.

- Chain: the Flow workload (768-d float32 embeddings, requests of 100, 16 in flight,
  three executors that read ``docs.embeddings``) on ``Flow(backend='ray')``, against
  hand-written Ray actors doing the same chain: three actors with a method that reads
  the embeddings and returns the DocumentArray, each call given the previous one's
  ObjectRef, 16 chains in flight, the last results fetched to the driver. Target: the
  Flow at least 0.8x of the hand-written actors.
- CPU-bound: ``perf.bench_scaling.MatmulEncoder`` (tens of ms per request) with two Ray
  actors (``replicas=2``) against the local runtime with ``replicas=2``. Target >= 0.8x.
- Latency: one document through one executor, posted one at a time: p50 <= 2.5 ms.
- Start: a three-executor Flow ready (``__enter__``), including starting a private Ray
  instance (``ray.init``): <= 8 s.

Every Ray call costs ~1 ms on the 2-core machine, so Ray is for handlers of milliseconds;
the local runtime is the one for microsecond handlers. Skipped, with a message, when Ray
is not installed.

Run ``python -m perf.bench_ray [--quick]``; ``python -m perf --only ray`` runs it in the suite.
"""
from __future__ import annotations

import os
import sys

if __name__ == '__main__':  # before numpy loads, in this process and every child
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from perf.common import pin_blas_env
    pin_blas_env()

import argparse
import gc
import time
from typing import Any

import numpy as np

from perf.bench_flow import DIM, REQUEST_SIZE, WINDOW, ReadEmbeddings, _columnar
from perf.common import entry, figure_rows, format_table, median
from runtime import Document, Flow

__all__ = ['run', 'main', 'title', 'TARGETS']

TARGETS = {'chain_vs_hand': 0.8, 'cpu_vs_local': 0.8, 'latency_p50_ms': 2.5, 'ready_s': 8.0}
#: How the benchmark starts its own Ray (after the start-up figure, which starts a private
#: one through the Flow): as a Flow starts its private Ray, without actors' output.
RAY_INIT = {'log_to_driver': False}
CPU_WINDOW = 8


def _ray() -> Any | None:
    os.environ.setdefault('RAY_USAGE_STATS_ENABLED', '0')
    try:
        import ray
    except ImportError:
        return None
    return ray


def title(config: dict) -> str:
    """The table's section line for this benchmark."""
    if config.get('skipped'):
        return f'[Ray backend: skipped: {config["skipped"]}]'
    return (f'[Ray backend: {config["n_docs"]:,} docs x {config["reps"]} rounds, {config["cpu_requests"]} '
            f'CPU-bound requests, {config["latency_posts"]} one-doc posts, medians]')


def _chain_flow(backend: str, executors: int = 3) -> Flow:
    f = Flow(backend=backend) if backend != 'local' else Flow()
    for k in range(executors):
        f = f.add(name=f'read{k}', uses=ReadEmbeddings)
    return f


def _flow_rate(f: Flow, da: Any, endpoint: str = '/', request_size: int = REQUEST_SIZE,
               window: int = WINDOW) -> float:
    """docs/s of one post of ``da``, counting what comes back in on_done."""
    count = 0

    def on_done(resp: Any) -> None:
        nonlocal count
        count += len(resp.docs)

    t0 = time.perf_counter()
    f.post(endpoint, da, on_done=on_done, request_size=request_size, prefetch=window, timeout=300)
    seconds = time.perf_counter() - t0
    if count != len(da):
        raise RuntimeError(f'the Flow returned {count} of {len(da)} documents')
    return count / seconds


class _HandWritten:
    """Three Ray actors chained by ObjectRef, as a user would write it without the Flow."""

    def __init__(self, ray: Any, stages: int = 3) -> None:
        @ray.remote
        class Stage:
            def read(self, docs: Any) -> Any:
                docs.embeddings.shape
                return docs

        self.ray = ray
        self.stages = [Stage.remote() for _ in range(stages)]

    def rate(self, da: Any, request_size: int = REQUEST_SIZE, window: int = WINDOW) -> float:
        ray = self.ray
        count = 0
        in_flight: list = []
        t0 = time.perf_counter()
        for k in range(0, len(da), request_size):
            ref = da[k:k + request_size]
            for s in self.stages:
                ref = s.read.remote(ref)
            in_flight.append(ref)
            if len(in_flight) >= window:
                done, in_flight = ray.wait(in_flight, num_returns=1)
                count += sum(len(d) for d in ray.get(done))
        count += sum(len(d) for d in ray.get(in_flight))
        seconds = time.perf_counter() - t0
        if count != len(da):
            raise RuntimeError(f'the hand-written chain returned {count} of {len(da)} documents')
        return count / seconds

    def close(self) -> None:
        for s in self.stages:
            self.ray.kill(s)


def _ready_time() -> float:
    """Seconds to __enter__ a three-executor Ray Flow that starts its own private Ray."""
    f = _chain_flow('ray')
    t0 = time.perf_counter()
    f.__enter__()
    seconds = time.perf_counter() - t0
    try:
        f.post('/', Document(embedding=np.zeros(DIM, np.float32)), timeout=60)  # and it works
    finally:
        f.__exit__(None, None, None)
    return seconds


def _chain(ray: Any, n_docs: int, reps: int) -> dict:
    da, _ = _columnar(n_docs, DIM)
    out: dict = {'flow': [], 'hand': []}
    hand = _HandWritten(ray)
    try:
        with _chain_flow('ray') as f:
            _interleave({'flow': lambda: _flow_rate(f, da), 'hand': lambda: hand.rate(da)}, reps, out)
    finally:
        hand.close()
    return out


def _cpu_bound(n_requests: int, reps: int) -> dict:
    from perf.bench_scaling import MatmulEncoder
    da, _ = _columnar(n_requests * REQUEST_SIZE, DIM, seed=3)
    out: dict = {'ray': [], 'local': []}
    with Flow(backend='ray').add(uses=MatmulEncoder, replicas=2) as fr, \
            Flow().add(uses=MatmulEncoder, replicas=2) as fl:
        _interleave({'ray': lambda: _flow_rate(fr, da, '/encode', window=CPU_WINDOW),
                     'local': lambda: _flow_rate(fl, da, '/encode', window=CPU_WINDOW)}, reps, out)
    return out


def _interleave(systems: dict, reps: int, out: dict) -> None:
    """One warm-up run of each system, then ``reps`` rounds, the order reversed every other
    round, so that a burst of outside load hits both alike; appends to ``out[name]``."""
    for once in systems.values():
        once()
    for rep in range(reps):
        order = list(systems.items())
        for name, once in (order if rep % 2 == 0 else order[::-1]):
            gc.collect()
            out[name].append(once())


def _latency(posts: int) -> dict:
    doc = Document(embedding=np.zeros(DIM, np.float32))
    walls = []
    with _chain_flow('ray', executors=1) as f:
        for _ in range(20):  # warm-up
            f.post('/', doc, timeout=60)
        gc.collect()
        for _ in range(posts):
            t0 = time.perf_counter()
            f.post('/', doc, timeout=60)
            walls.append(time.perf_counter() - t0)
    ms = np.array(walls) * 1e3
    return {'p50': float(np.percentile(ms, 50)), 'p99': float(np.percentile(ms, 99)), 'mean': float(ms.mean())}


def run(quick: bool = False, tiny: bool = False) -> dict:
    """Measure the Ray backend against hand-written Ray and the local runtime.

    Returns ``{'config', 'figures', 'samples'}`` like the other benchmarks; with Ray not
    installed, no figures and ``config['skipped']`` saying why.
    """
    ray = _ray()
    if ray is None:
        return {'config': {'skipped': "Ray is not installed (pip install 'shmflow[ray]')"}, 'figures': {},
                'samples': {}}
    if ray.is_initialized():
        raise RuntimeError('perf.bench_ray starts its own Ray: run it in a process not connected to Ray')
    n_docs, reps = (1_000, 2) if tiny else (5_000, 3) if quick else (10_000, 5)
    cpu_requests = 4 if tiny else 40 if quick else 80  # timed runs of >= 0.5 s on 2 cores
    posts = 50 if tiny else 200 if quick else 500
    config = {'n_docs': n_docs, 'reps': reps, 'cpu_requests': cpu_requests, 'latency_posts': posts, 'quick': quick,
              'ray': ray.__version__}
    ready = _ready_time()
    from runtime.transport.ray.options import private_ray_kwargs
    ray.init(address='local', **private_ray_kwargs({'num_cpus': max(os.cpu_count() or 2, 2), **RAY_INIT}))
    try:
        chain = _chain(ray, n_docs, reps)
        cpu = _cpu_bound(cpu_requests, reps)
        lat = _latency(posts)
    finally:
        ray.shutdown()
    figs = {}
    r = median([a / b for a, b in zip(chain['flow'], chain['hand'])])
    figs['chain_vs_hand'] = entry('Flow(backend=ray), 3 x read embeddings, 768-d', median(chain['flow']), 'docs/s',
                                  baseline=median(chain['hand']), baseline_label='hand-written Ray actors',
                                  ratio=r, target=f'>= {TARGETS["chain_vs_hand"]:g}x',
                                  ok=r >= TARGETS['chain_vs_hand'])
    r = median([a / b for a, b in zip(cpu['ray'], cpu['local'])])
    figs['cpu_vs_local'] = entry('Ray, 2 actors, 20 matmuls per request', median(cpu['ray']), 'docs/s',
                                 baseline=median(cpu['local']), baseline_label='local runtime, replicas=2',
                                 ratio=r, target=f'>= {TARGETS["cpu_vs_local"]:g}x', ok=r >= TARGETS['cpu_vs_local'])
    figs['latency_p50_ms'] = entry('Ray one-document latency p50 (1 executor)', lat['p50'], 'ms',
                                   target=f'<= {TARGETS["latency_p50_ms"]:g} ms',
                                   ok=lat['p50'] <= TARGETS['latency_p50_ms'],
                                   note=f'p99 {lat["p99"]:.2f} ms, mean {lat["mean"]:.2f} ms')
    figs['ready_s'] = entry('Ray 3-executor Flow ready, incl. ray.init', ready, 's',
                            target=f'<= {TARGETS["ready_s"]:g} s', ok=ready <= TARGETS['ready_s'])
    return {'config': config, 'figures': figs, 'samples': {'chain': chain, 'cpu': cpu, 'latency': lat, 'ready': ready}}


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='5,000 docs, 3 rounds, 200 latency posts')
    parser.add_argument('--tiny', action='store_true', help='a smoke run of the machinery')
    args = parser.parse_args(argv)
    result = run(quick=args.quick or args.tiny, tiny=args.tiny)
    header = ('figure', 'value', 'baseline', 'ratio', 'target', 'pass/fail')
    print(title(result['config']))
    print(format_table([header, *figure_rows(result['figures'])]))
    return result


if __name__ == '__main__':
    main()
