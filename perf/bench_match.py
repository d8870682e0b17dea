"""Benchmark of ``DocumentArray.match`` (exact nearest neighbours, numpy only).

Run ``python -m perf.bench_match [--quick | --tiny] [--queries Q] [--docs N] [--dim D]``:
``Q`` queries against ``N`` indexed documents of ``D``-d float32 embeddings, cosine,
``limit=20``. The baseline, measured in the same invocation, is the floor: the bare BLAS
products ``X @ Y.T`` over the same blocks, without distances, top-k or matches.

Full size is the issue's 10,000 x 100,000 x 768 (1.5 TFLOP of products; minutes on two
cores); ``--quick`` keeps the index and the dimension and takes 1,000 queries.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from perf.common import entry, figure_rows, format_table, median
from runtime.array import DocumentArray
from runtime.document import Document
from runtime.match import DEFAULT_BATCH, _top_k

__all__ = ['run', 'main', 'table_rows']

#: ``match`` must keep at least this share of the bare-product rate (distances, top-k and
#: building the matches are the rest).
TARGET_FLOOR_RATIO = 0.5


def _arrays(nq: int, nd: int, dim: int) -> tuple[DocumentArray, DocumentArray]:
    rng = np.random.default_rng(0)
    q = DocumentArray._from_list([Document() for _ in range(nq)])
    q.embeddings = rng.random((nq, dim), dtype=np.float32)
    d = DocumentArray._from_list([Document(text=f'doc {i}', tags={'i': i}) for i in range(nd)])
    d.embeddings = rng.random((nd, dim), dtype=np.float32)
    return q, d


def _floor(X: np.ndarray, Y: np.ndarray) -> float:
    """Seconds of the matrix products alone, blocked as match blocks them."""
    t0 = time.perf_counter()
    for r0 in range(0, len(Y), DEFAULT_BATCH):
        Yb = Y[r0:r0 + DEFAULT_BATCH]
        qb = max(1, (64 << 20) // (4 * len(Yb)))
        for q0 in range(0, len(X), qb):
            X[q0:q0 + qb] @ Yb.T
    return time.perf_counter() - t0


def run(quick: bool = False, tiny: bool = False, queries: int | None = None, docs: int | None = None,
        dim: int | None = None) -> dict:
    """Measure match throughput against the bare-product floor. Returns ``{'config',
    'figures', 'samples'}`` like the other benchmarks."""
    nq = queries or (200 if tiny else 1_000 if quick else 10_000)
    nd = docs or (5_000 if tiny else 100_000)
    dim = dim or (64 if tiny else 768)
    reps = 1 if (tiny or not quick) else 2
    q, d = _arrays(nq, nd, dim)
    X, Y = q.embeddings, d.embeddings
    samples = {'match': [], 'top_k': [], 'only_id': [], 'floor': []}
    for _ in range(reps):
        samples['floor'].append(_floor(X, Y))
        t0 = time.perf_counter()
        _top_k(X, Y, 20, 'cosine', None, DEFAULT_BATCH, False)
        samples['top_k'].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        q.match(d, limit=20)
        samples['match'].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        q.match(d, limit=20, only_id=True)
        samples['only_id'].append(time.perf_counter() - t0)
    assert all(len(x.matches) == 20 for x in q)
    rate = {k: nq / median(v) for k, v in samples.items()}
    figs = {
        'match': entry(f'match, cosine, limit 20 ({nq:,} x {nd:,} x {dim})', rate['match'], 'docs/s',
                       baseline=rate['floor'], baseline_label='bare X @ Y.T',
                       ratio=rate['match'] / rate['floor'], target=f'>= {TARGET_FLOOR_RATIO:g}x',
                       ok=rate['match'] / rate['floor'] >= TARGET_FLOOR_RATIO),
        'top_k': entry('  distances + top-k only (no Documents built)', rate['top_k'], 'docs/s'),
        'only_id': entry('  match(only_id=True)', rate['only_id'], 'docs/s'),
        'gflops': entry('  bare products', 2 * nq * nd * dim / median(samples['floor']) / 1e9, 'GFLOP/s'),
    }
    config = {'queries': nq, 'docs': nd, 'dim': dim, 'limit': 20, 'reps': reps, 'quick': quick, 'tiny': tiny}
    return {'config': config, 'figures': figs, 'samples': samples}


def table_rows(figures: dict) -> list[tuple[str, ...]]:
    """The table rows of ``run()['figures']``."""
    return figure_rows(figures)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='1,000 queries instead of 10,000')
    p.add_argument('--tiny', action='store_true', help='a smoke run (200 x 5,000 x 64)')
    p.add_argument('--queries', type=int)
    p.add_argument('--docs', type=int)
    p.add_argument('--dim', type=int)
    args = p.parse_args(argv)
    result = run(quick=args.quick, tiny=args.tiny, queries=args.queries, docs=args.docs, dim=args.dim)
    header = ('figure', 'value', 'baseline', 'ratio', 'target', 'pass/fail')
    print(format_table([header] + table_rows(result['figures'])))
    return result


if __name__ == '__main__':
    main()
