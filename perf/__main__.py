"""The benchmark suite, ``python -m perf [--quick] [--json OUT] [--only NAME]``: one table, one JSON file.

Runs the data-model benchmark (``perf.bench_datamodel``), the Flow benchmark
(``perf.bench_flow``, with its baselines measured in the same invocation), the streaming
and profiling-overhead benchmark (``perf.bench_streaming``), the scaling benchmark
(``perf.bench_scaling``: replicas against multiprocessing.Pool, shards), the
``DocumentArray.match`` benchmark (``perf.bench_match``), the HTTP gateway benchmark
(``perf.bench_gateway``) and, in a full run or with ``--only ray``, the Ray backend
(``perf.bench_ray``, skipped with a message when Ray is not importable). It prints one
table (figure, value, baseline, ratio, target, pass/fail) and writes every figure, ratio
and repetition to JSON together with the machine it ran on.
"""
# BLAS reads its thread count once, when numpy loads: pin it before anything imports numpy,
# here and (through os.environ) in every process the benchmarks start.
import os
import sys

if __package__ in (None, ''):  # run as a script: make `perf` and `runtime` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from perf.common import pin_blas_env  # noqa: E402  (numpy-free module)

_REMOVED_ENV = pin_blas_env()

import argparse  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from perf import bench_datamodel, bench_flow, bench_gateway, bench_match, bench_scaling, bench_streaming  # noqa: E402
from perf.common import as_jsonable, figure_rows, format_table, format_value, machine_info  # noqa: E402

#: Documents for the data-model throughput figures in --quick mode (its own default is
#: 100,000, which alone takes ~30 s on the 2-core machine).
QUICK_DATAMODEL_N = 20_000
#: Queries for the match figure in --quick mode: its own --quick (1,000 queries against
#: 100,000 x 768) is ~150 GFLOP per pass, ~25 s of the suite on the 2-core machine.
QUICK_MATCH_QUERIES = 200
BENCHMARKS = ('datamodel', 'flow', 'streaming', 'scaling', 'match', 'gateway', 'ray')
HEADER = ('figure', 'value', 'baseline', 'ratio', 'target', 'pass/fail')


def _datamodel_rows(results: dict) -> list[tuple[str, ...]]:
    rows = []
    for name, r in results.items():
        verdict = '' if r.get('ok') is None else ('pass' if r['ok'] else 'FAIL')
        rows.append((name, format_value(r['value'], r['unit']), '', '', r.get('target') or '', verdict))
    return rows


def _bench_ray() -> Any:
    """``perf.bench_ray``, or why it cannot run: the module is absent, or Ray is not
    importable (an optional extra: ``pip install 'shmflow[ray]'``)."""
    if importlib.util.find_spec('perf.bench_ray') is None:
        return 'perf/bench_ray.py is not present'
    try:
        import ray  # noqa: F401
    except ImportError as e:
        return f"Ray is not importable ({e}); pip install 'shmflow[ray]'"
    return importlib.import_module('perf.bench_ray')


def main(argv: list[str] | None = None) -> dict:
    """Run the suite; returns what it wrote to JSON."""
    parser = argparse.ArgumentParser(prog='python -m perf', description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help=f'about a minute and a half on 2 cores: fewer rounds (every timed run still lasts '
                             f'>= 0.5 s), {QUICK_DATAMODEL_N:,} docs for the data-model throughput figures, '
                             f'{QUICK_MATCH_QUERIES} match queries, no Ray (use --only ray)')
    parser.add_argument('--json', metavar='OUT', default=None, help='write every figure to this JSON file')
    parser.add_argument('--tiny', action='store_true',
                        help='a smoke run with tiny workloads (checks the suite and its JSON, not speed)')
    parser.add_argument('--only', choices=BENCHMARKS, default=None,
                        help='run one benchmark only (ray: only in a full run or with --only ray)')
    args = parser.parse_args(argv)
    if args.tiny:
        args.quick = True

    info = machine_info()
    blas = info['blas']
    print(f'# {info["date"]}  {info["cpus_usable"]} CPUs usable  Python {info["python"]}  numpy {info["numpy"]}  '
          f'pyzmq {info["pyzmq"]} (libzmq {info["libzmq"]})  BLAS kernel: {blas.get("kernel", "unknown")} '
          f'({blas.get("source")}, threads {blas.get("threads", "?")})  load {info["loadavg_at_start"]}')
    if _REMOVED_ENV:
        print(f'# removed from the environment (they slow numpy): {", ".join(sorted(_REMOVED_ENV))}')

    out: dict[str, Any] = {'machine': info, 'removed_env': _REMOVED_ENV, 'quick': args.quick, 'benchmarks': {}}
    rows: list[tuple[str, ...]] = [HEADER]
    t_all = time.perf_counter()
    if args.only in (None, 'datamodel'):
        t0 = time.perf_counter()
        kwargs = {'n': QUICK_DATAMODEL_N} if args.quick else {}
        if args.tiny:
            kwargs = {'n': 2_000, 'rss_docs': 10_000, 'min_s': bench_flow.TINY_RUN_S}
        dm = bench_datamodel.run(quick=args.quick, **kwargs)
        out['benchmarks']['datamodel'] = {'config': {'quick': args.quick, **kwargs}, 'figures': dm,
                                          'seconds': time.perf_counter() - t0}
        note = f', {kwargs["n"]:,} docs (quick)' if args.quick else ''
        rows.append((f'[data model{note}]', '', '', '', '', ''))
        rows.extend(_datamodel_rows(dm))
    def bench(name: str, run: Any, title: Any, rows_of: Any) -> None:
        """Run one benchmark if selected: time it, keep its result, add its rows."""
        if args.only not in (None, name):
            return
        t0 = time.perf_counter()
        result = run(quick=args.quick, tiny=args.tiny)
        result['seconds'] = time.perf_counter() - t0
        out['benchmarks'][name] = result
        rows.append((title(result['config']), '', '', '', '', ''))
        rows.extend(rows_of(result['figures']))

    bench('flow', bench_flow.run, bench_flow.title, bench_flow.table_rows)
    bench('streaming', bench_streaming.run, lambda cfg: '[streaming memory and profiling overhead]', figure_rows)
    bench('scaling', bench_scaling.run,
          lambda cfg: (f'[scaling: {cfg["n_requests"]} requests x {cfg["matmuls"]} matmuls, processes '
                       f'{",".join(map(str, cfg["counts"]))}, medians of {cfg["reps"]}]'),
          bench_scaling.table_rows)

    def match(quick: bool, tiny: bool) -> dict:
        return bench_match.run(quick=quick, tiny=tiny, queries=QUICK_MATCH_QUERIES if quick and not tiny else None)

    bench('match', match,
          lambda cfg: f'[match: {cfg["queries"]:,} queries x {cfg["docs"]:,} docs x {cfg["dim"]}, limit '
                      f'{cfg["limit"]}, medians of {cfg["reps"]}]', bench_match.table_rows)
    bench('gateway', bench_gateway.run,
          lambda cfg: f'[HTTP gateway: {cfg["n_requests"]:,} one-doc requests, {cfg["clients"]} concurrent clients]',
          figure_rows)
    if args.only == 'ray' or (args.only is None and not args.quick):
        ray = _bench_ray()
        if isinstance(ray, str):
            print(f'# ray: skipped: {ray}')
            rows.append((f'[Ray backend: skipped: {ray}]', '', '', '', '', ''))
            out['benchmarks']['ray'] = {'config': {'skipped': ray}, 'figures': {}}
        else:
            bench('ray', ray.run, ray.title, figure_rows)
    out['seconds'] = time.perf_counter() - t_all

    print(format_table(rows))
    failed = [r[0].strip() for r in rows[1:] if r[5] == 'FAIL']
    print(f'# {len(failed)} target(s) missed' + (f': {"; ".join(failed)}' if failed else '')
          + f'  ({out["seconds"]:.1f} s; numbers move 10-40% between runs on a shared machine, '
            f'ratios within one run are what count)')
    if args.json:
        with open(args.json, 'w') as fp:
            json.dump(as_jsonable(out), fp, indent=2)
        print(f'# wrote {args.json}')
    return out


if __name__ == '__main__':
    main()
