"""Benchmark of the data model: DocumentArrayMemmap against the in-memory DocumentArray.

Run ``python -m perf.bench_datamodel [--quick] [--n N]``; it prints one table (figure,
value, target, pass/fail). Everything is measured in this one invocation, on documents
with a ``dim``-d float32 embedding, a short text and one int tag. Each timed run repeats
its operation until at least 0.5 s have passed (``perf.common.MIN_RUN_S``): many of them
take milliseconds, where one scheduler hiccup is the whole figure.
"""
from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import tempfile
import time
from typing import Any, Callable

import numpy as np
import psutil

from perf.common import MIN_RUN_S
from runtime.array import DocumentArray
from runtime.document import Document
from runtime.memmap import DocumentArrayMemmap

__all__ = ['run', 'main']

_BATCH = 1000
_RANDOM_READS = 20_000


def _docs(n: int, emb: np.ndarray | None) -> list[Document]:
    return [Document(text=f'document number {i}', tags={'i': i},
                     embedding=None if emb is None else emb[i]) for i in range(n)]


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float('inf')


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _per_call(fn: Callable[[], Any], min_s: float) -> float:
    """Seconds per call of ``fn``, calling it back to back until ``min_s`` have passed."""
    calls = 0
    t0 = time.perf_counter()
    while True:
        fn()
        calls += 1
        seconds = time.perf_counter() - t0
        if seconds >= min_s:
            return seconds / calls


def _median_time(fn: Callable[[], Any], reps: int, min_s: float = MIN_RUN_S) -> float:
    """Median over ``reps`` timed runs (each at least ``min_s``) of the seconds per call."""
    return statistics.median(_per_call(fn, min_s) for _ in range(reps))


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _iter_rss_growth(root: str, n: int) -> tuple[float, float]:
    """Write ``n`` small documents, reopen, and iterate them all; return (peak RSS growth
    in MB while iterating, iteration docs/s)."""
    path = os.path.join(root, 'small')
    with DocumentArrayMemmap(path) as dam:
        for start in range(0, n, 10_000):
            dam.extend(Document(id=f'small-{i}', text=f'small {i}', tags={'i': i})
                       for i in range(start, min(n, start + 10_000)))
    gc.collect()
    with DocumentArrayMemmap(path) as dam:
        gc.collect()
        base = peak = _rss()
        count = 0
        t0 = time.perf_counter()
        for count, _ in enumerate(dam, 1):
            if count % 10_000 == 0:
                peak = max(peak, _rss())
        seconds = time.perf_counter() - t0
        peak = max(peak, _rss())
    shutil.rmtree(path)
    assert count == n, (count, n)
    return (peak - base) / 2**20, _rate(n, seconds)


def run(n: int = 100_000, dim: int = 768, quick: bool = False, rss_docs: int | None = None,
        min_s: float = MIN_RUN_S) -> dict:
    """Measure the data-model figures and return them.

    Parameters
    ----------
    n : int
        Documents with embeddings for the throughput figures.
    dim : int
        Embedding width (float32).
    quick : bool
        One timed run per figure instead of three, and 100,000 instead of 1,000,000
        documents for the memory figure.
    rss_docs : int, optional
        Small documents for the memory figure (overrides the default of ``quick``).
    min_s : float
        Shortest timed run, in seconds: the operation is repeated until it has passed.

    Returns
    -------
    dict
        ``{figure: {'value': float, 'unit': str, 'target': str or None, 'ok': bool or None}}``.

    Examples
    --------
    >>> run(n=2000, dim=8, quick=True)['dam append (extend, batches of 1000)']['unit']
    'docs/s'
    """
    reps = 1 if quick else 3  # timed runs of >= min_s each
    rss_docs = rss_docs or (100_000 if quick else 1_000_000)
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    docs = _docs(n, emb)
    ids = [d.id for d in docs]
    rand_ids = [ids[i] for i in rng.integers(0, n, min(_RANDOM_READS, n))]
    rand_ints = rng.integers(0, n, min(_RANDOM_READS, n)).tolist()
    out: dict[str, dict] = {}

    def put(name: str, value: float, unit: str, target: str | None = None, ok: bool | None = None) -> None:
        out[name] = {'value': value, 'unit': unit, 'target': target, 'ok': ok}

    root = tempfile.mkdtemp(prefix='bench-dam-')
    try:
        # -- DocumentArrayMemmap -----------------------------------------------------------
        path = os.path.join(root, 'extend')

        def extend_all() -> None:
            with DocumentArrayMemmap(path) as dam:
                for i in range(0, n, _BATCH):
                    dam.extend(docs[i:i + _BATCH])

        def append_all() -> None:
            with DocumentArrayMemmap(os.path.join(root, 'append')) as dam:
                for d in docs:
                    dam.append(d)
            shutil.rmtree(os.path.join(root, 'append'))

        # Each call writes a fresh directory (the last one stays for the reads); removing
        # the previous one is not timed.
        times = []
        for _ in range(reps):
            spent = calls = 0.0
            while spent < min_s:
                shutil.rmtree(path, ignore_errors=True)
                spent += _timed(extend_all)
                calls += 1
            times.append(spent / calls)
        rate = _rate(n, statistics.median(times))
        put('dam append (extend, batches of 1000)', rate, 'docs/s', '>= 50,000', rate >= 50_000)
        rate = _rate(n, _median_time(append_all, reps, min_s))
        put('dam append (one at a time)', rate, 'docs/s', '>= 50,000', rate >= 50_000)

        def reopen_embeddings() -> float:
            with DocumentArrayMemmap(path) as dam:
                t0 = time.perf_counter()
                e = dam.embeddings
                seconds = time.perf_counter() - t0
                assert e.shape == (n, dim)
                return seconds
        t_end, seconds = time.perf_counter() + min_s, []
        while not seconds or time.perf_counter() < t_end:
            seconds.append(reopen_embeddings())
        ms = statistics.median(seconds) * 1e3
        put(f'dam .embeddings of {n:,} after reopen', ms, 'ms', '< 50' if n >= 100_000 else None,
            ms < 50 if n >= 100_000 else None)
        ms = _median_time(lambda: DocumentArrayMemmap(path).close(), reps, min_s) * 1e3
        put('dam reopen (load index)', ms, 'ms')

        with DocumentArrayMemmap(path) as dam:
            rate = _rate(len(rand_ids), _median_time(lambda: [dam[i] for i in rand_ids], reps, min_s))
            put('dam random access by id', rate, 'docs/s', '>= 50,000', rate >= 50_000)
            rate = _rate(len(rand_ints), _median_time(lambda: [dam[i] for i in rand_ints], reps, min_s))
            put('dam random access by int index', rate, 'docs/s')
            rate = _rate(n, _median_time(lambda: sum(1 for _ in dam), reps, min_s))
            put('dam full iteration', rate, 'docs/s')
            dam_texts_ok = dam[0].text == docs[0].text and np.array_equal(dam[n - 1].embedding, emb[n - 1])
        assert dam_texts_ok

        # -- the same on an in-memory DocumentArray ----------------------------------------
        def da_extend() -> DocumentArray:
            da = DocumentArray()
            for i in range(0, n, _BATCH):
                da.extend(docs[i:i + _BATCH])
            return da

        def da_append() -> None:
            da = DocumentArray()
            for d in docs:
                da.append(d)
        put('DocumentArray append (extend, batches of 1000)', _rate(n, _median_time(da_extend, reps, min_s)),
            'docs/s')
        put('DocumentArray append (one at a time)', _rate(n, _median_time(da_append, reps, min_s)), 'docs/s')
        da = da_extend()
        put(f'DocumentArray .embeddings of {n:,} (stacks a copy)',
            _median_time(lambda: da.embeddings, reps, min_s) * 1e3, 'ms')
        put('DocumentArray random access by id', _rate(len(rand_ids), _median_time(
            lambda: [da[i] for i in rand_ids], reps, min_s)), 'docs/s')
        put('DocumentArray random access by int index', _rate(len(rand_ints), _median_time(
            lambda: [da[i] for i in rand_ints], reps, min_s)), 'docs/s')
        put('DocumentArray full iteration', _rate(n, _median_time(lambda: sum(1 for _ in da), reps, min_s)),
            'docs/s')
        del da

        # -- memory while streaming --------------------------------------------------------
        del docs, emb
        gc.collect()
        growth, rate = _iter_rss_growth(root, rss_docs)
        put(f'dam RSS growth iterating {rss_docs:,} small docs', growth, 'MB', '< 50', growth < 50)
        put(f'dam iteration of {rss_docs:,} small docs', rate, 'docs/s')
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _format(value: float, unit: str) -> str:
    if unit == 'docs/s':
        return f'{value:,.0f} {unit}'
    return f'{value:,.2f} {unit}'


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the benchmark and print the table.

    >>> main(['--quick'])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='fewer repetitions, 100k docs for the RSS figure')
    parser.add_argument('--n', type=int, default=100_000, help='documents with embeddings (default 100,000)')
    parser.add_argument('--dim', type=int, default=768, help='embedding width (default 768)')
    args = parser.parse_args(argv)
    results = run(n=args.n, dim=args.dim, quick=args.quick)
    rows = [('figure', 'value', 'target', 'pass/fail')]
    for name, r in results.items():
        verdict = '' if r['ok'] is None else ('pass' if r['ok'] else 'FAIL')
        rows.append((name, _format(r['value'], r['unit']), r['target'] or '', verdict))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for k, row in enumerate(rows):
        print('  '.join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
        if k == 0:
            print('  '.join('-' * w for w in widths))
    return results


if __name__ == '__main__':
    main()
