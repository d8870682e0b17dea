"""Streaming memory and profiling overhead, each against its baseline in this invocation.

- Streaming: a generator of small documents posted through two executors, the last one
  slow, with an ``on_done`` callback: the parent's RSS must stay flat (the in-flight
  window bounds it). Baseline: the same stream with ``return_results=True``, which keeps
  everything (what the anchor's docs warn about).
- Profiling: the DESIGN.md workload (768-d, 100 docs/request, 3 executors summing the
  embeddings) with ``Flow(profile=True)`` against the same Flow without, interleaved, each
  timed run at least 0.5 s; target: < 5% slower. The Flow without profiling is timed twice
  per round, so the difference between the configurations is set against the difference
  between two runs of the same one: the row says whether it is within noise.

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

from perf.bench_flow import TINY_RUN_S, ReadEmbeddings, _columnar, table_rows
from perf.common import MIN_RUN_S, entry, format_table, median, repeat_for
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


def _profile_overhead(n: int, reps: int, min_s: float) -> dict[str, list[float]]:
    """docs/s per round of the plain Flow (twice: ``plain`` and ``plain_again``) and the
    profiled one, in an order that rotates each round, each run at least ``min_s``."""
    da, _ = _columnar(n, 768)
    flows = {k: Flow(profile=(k == 'profiled')).add(uses=ReadEmbeddings).add(uses=ReadEmbeddings)
             .add(uses=ReadEmbeddings) for k in ('plain', 'profiled')}
    arms = {'plain': flows['plain'], 'profiled': flows['profiled'], 'plain_again': flows['plain']}
    rates: dict[str, list[float]] = {k: [] for k in arms}

    def once(f: Flow) -> int:
        f.post('/', da, request_size=100)
        return n

    for f in flows.values():
        f.start()
    try:
        for f in flows.values():  # warm-up
            once(f)
        names = list(arms)
        for rep in range(reps):
            for k in names[rep % 3:] + names[:rep % 3]:  # none always goes first
                gc.collect()
                rates[k].append(repeat_for(lambda: once(arms[k]), min_s)[0])
    finally:
        for f in flows.values():
            f.close()
    return rates


def _noise_verdict(rates: dict[str, list[float]]) -> dict[str, Any]:
    """The profiled/plain difference set against the plain/plain one of the same rounds.

    ``difference``: median over rounds of profiled / mean(plain, plain_again), minus 1.
    ``noise``: the largest |plain_again / plain - 1| of a round: how far apart two runs of
    one configuration came in this invocation. Within noise when ``|difference| <= noise``.
    """
    plain = [(a + b) / 2 for a, b in zip(rates['plain'], rates['plain_again'])]
    ratio = median(q / p for q, p in zip(rates['profiled'], plain))
    same = [abs(b / a - 1) for a, b in zip(rates['plain'], rates['plain_again'])]
    noise = max(same)
    return {'ratio': ratio, 'difference': ratio - 1, 'noise': noise,
            'verdict': 'within noise' if abs(ratio - 1) <= noise else 'outside noise'}


def run(quick: bool = False, tiny: bool = False) -> dict:
    """Measure streaming memory (with its return_results baseline) and the cost of
    profiling. Returns ``{'config', 'figures', 'samples'}`` like ``perf.bench_flow.run``.
    ``tiny``: a smoke run of the machinery (small streams, two rounds)."""
    n_stream = 30_000 if tiny else 200_000 if quick else 1_000_000
    n_keep = 10_000 if tiny else 100_000 if quick else 200_000
    n_prof, reps = (1_000, 2) if tiny else (10_000, 5) if quick else (10_000, 8)
    min_s = TINY_RUN_S if tiny else MIN_RUN_S
    stream = _stream_memory(n_stream, keep=False)
    kept = _stream_memory(n_keep, keep=True)
    prof = _profile_overhead(n_prof, reps, min_s)
    noise = _noise_verdict(prof)
    figs = {}
    ok = stream['growth_mb'] < TARGETS['rss_growth_mb'] and stream['docs'] == n_stream
    figs['stream_rss_growth_mb'] = entry(
        f'parent RSS growth streaming {n_stream:,} small docs (callbacks)', stream['growth_mb'], 'MB',
        baseline=kept['growth_mb'], baseline_label=f'return_results, {n_keep:,} docs',
        target=f'< {TARGETS["rss_growth_mb"]:g} MB', ok=ok,
        note=f'{stream["docs"]:,} docs seen; peak growth {stream["peak_mb"]:.1f} MB')
    figs['stream_docs_per_s'] = entry('  streaming rate (1000 docs/request, slow last executor)',
                                      stream['docs_per_s'], 'docs/s')
    plain, profiled = median(prof['plain'] + prof['plain_again']), median(prof['profiled'])
    ratio = noise['ratio']
    figs['profile_overhead'] = entry(f'Flow(profile=True) / Flow(), 768-d workload, {reps} rounds', profiled,
                                     'docs/s', baseline=plain, baseline_label='no profiling', ratio=ratio,
                                     target=f'>= {TARGETS["profile_overhead"]:g}x',
                                     ok=ratio >= TARGETS['profile_overhead'])
    figs['profile_noise'] = entry(f'  difference {noise["difference"]:+.1%} vs same-config spread '
                                  f'{noise["noise"]:.1%}: {noise["verdict"]}', abs(noise['difference']) * 100, '%',
                                  baseline=noise['noise'] * 100, baseline_label='Flow() vs Flow(), largest',
                                  note=noise['verdict'])
    figs['profile_noise']['verdict'] = noise['verdict']
    config = {'n_stream': n_stream, 'n_keep': n_keep, 'n_profile': n_prof, 'reps': reps, 'quick': quick,
              'min_run_s': min_s}
    return {'config': config, 'figures': figs,
            'samples': {'stream': stream, 'kept': kept, 'profile_rates': prof, 'profile_noise': noise}}


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
