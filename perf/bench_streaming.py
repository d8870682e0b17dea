"""Streaming memory and profiling overhead, each against its baseline in this invocation.

- Streaming: a generator of small documents posted through two executors, the last one
  slow, with an ``on_done`` callback: the parent's RSS must stay flat (the in-flight
  window bounds it). Baseline: the same stream with ``return_results=True``, which keeps
  everything (what the anchor's docs warn about).
- Profiling: the DESIGN.md workload (768-d, 100 docs/request, 3 executors) with
  ``Flow(profile=True)`` against the same Flow without, interleaved; target: < 5% slower.

Run ``python -m perf.bench_streaming [--quick]``; ``python -m perf`` includes it.
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
from typing import Any, Iterator

import psutil

from perf.bench_flow import ReadEmbeddings, _columnar, table_rows
from perf.common import entry, format_table, median
from runtime import Document, DocumentArray, Executor, Flow, requests

__all__ = ['run', 'main', 'TARGETS']

TARGETS = {'rss_growth_mb': 50.0, 'profile_overhead': 0.95}


class Touch(Executor):
    """Reads every document's tags (so the documents are unpickled in its process)."""

    @requests
    def touch(self, docs: DocumentArray, **kwargs: Any) -> None:
        for d in docs:
            d.tags['seen'] = True


class SlowSink(Executor):
    """The slow last executor of the stream: a fixed pause per request."""

    @requests
    def wait(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> None:
        time.sleep(parameters.get('pause', 0.0005))


def _stream(n: int) -> Iterator[Document]:
    for i in range(n):
        yield Document(id=str(i), tags={'i': i})


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _stream_memory(n: int, keep: bool) -> dict[str, float]:
    """Post ``n`` documents; sample the parent's RSS after warm-up and at the end."""
    seen = [0]
    samples: list[float] = []

    def on_done(resp: Any) -> None:
        seen[0] += len(resp.docs)
        if seen[0] % 50_000 < len(resp.docs):
            samples.append(_rss_mb())

    with Flow(prefetch=16).add(uses=Touch).add(uses=SlowSink) as f:
        f.post('/', _stream(min(n, 20_000)), request_size=1000, on_done=on_done)  # warm-up: arenas, caches
        gc.collect()
        seen[0] = 0
        start = _rss_mb()
        t0 = time.perf_counter()
        out = f.post('/', _stream(n), request_size=1000, on_done=None if keep else on_done,
                     return_results=keep)
        wall = time.perf_counter() - t0
        end = _rss_mb()
        if keep:
            seen[0] = sum(len(r.docs) for r in out)
        del out
    return {'growth_mb': end - start, 'peak_mb': max([end, *samples]) - start, 'docs': seen[0],
            'docs_per_s': n / wall}


def _profile_overhead(n: int, reps: int) -> dict[str, list[float]]:
    da, _ = _columnar(n, 768)
    rates: dict[str, list[float]] = {'plain': [], 'profiled': []}
    flows = {k: Flow(profile=(k == 'profiled')).add(uses=ReadEmbeddings).add(uses=ReadEmbeddings)
             .add(uses=ReadEmbeddings) for k in rates}
    for f in flows.values():
        f.start()
    try:
        for f in flows.values():  # warm-up
            f.post('/', da, request_size=100)
        for rep in range(reps):
            order = list(flows.items())
            for k, f in (order if rep % 2 == 0 else order[::-1]):  # neither always goes first
                t0 = time.perf_counter()
                f.post('/', da, request_size=100)
                rates[k].append(n / (time.perf_counter() - t0))
    finally:
        for f in flows.values():
            f.close()
    return rates


def run(quick: bool = False, tiny: bool = False) -> dict:
    """Measure streaming memory (with its return_results baseline) and the cost of
    profiling. Returns ``{'config', 'figures', 'samples'}`` like ``perf.bench_flow.run``.
    ``tiny``: a smoke run of the machinery (small streams, two rounds)."""
    n_stream = 30_000 if tiny else 200_000 if quick else 1_000_000
    n_keep = 10_000 if tiny else 100_000 if quick else 200_000
    n_prof, reps = (1_000, 2) if tiny else (5_000, 6) if quick else (10_000, 8)
    stream = _stream_memory(n_stream, keep=False)
    kept = _stream_memory(n_keep, keep=True)
    prof = _profile_overhead(n_prof, reps)
    figs = {}
    ok = stream['growth_mb'] < TARGETS['rss_growth_mb'] and stream['docs'] == n_stream
    figs['stream_rss_growth_mb'] = entry(
        f'parent RSS growth streaming {n_stream:,} small docs (callbacks)', stream['growth_mb'], 'MB',
        baseline=kept['growth_mb'], baseline_label=f'return_results, {n_keep:,} docs',
        target=f'< {TARGETS["rss_growth_mb"]:g} MB', ok=ok,
        note=f'{stream["docs"]:,} docs seen; peak growth {stream["peak_mb"]:.1f} MB')
    figs['stream_docs_per_s'] = entry('  streaming rate (1000 docs/request, slow last executor)',
                                      stream['docs_per_s'], 'docs/s')
    plain, profiled = median(prof['plain']), median(prof['profiled'])
    ratio = median([b / a for a, b in zip(prof['plain'], prof['profiled'])])
    figs['profile_overhead'] = entry('Flow(profile=True) / Flow(), 768-d workload', profiled, 'docs/s',
                                     baseline=plain, baseline_label='no profiling', ratio=ratio,
                                     target=f'>= {TARGETS["profile_overhead"]:g}x',
                                     ok=ratio >= TARGETS['profile_overhead'])
    config = {'n_stream': n_stream, 'n_keep': n_keep, 'n_profile': n_prof, 'reps': reps, 'quick': quick}
    return {'config': config, 'figures': figs,
            'samples': {'stream': stream, 'kept': kept, 'profile_rates': prof}}


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='200,000 streamed docs instead of 1,000,000')
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    header = ('figure', 'value', 'baseline', 'ratio', 'target', 'pass/fail')
    print(format_table([header, *table_rows(result['figures'])]))
    return result


if __name__ == '__main__':
    main()
