"""Search quality of the demo's engine on a relevance set: MRR@10 and recall@10.

Indexes the corpus with the demo (reusing its workspace when nothing changed), then runs
every query of the set through the Flow and scores the returned passages at file level:
a hit is a passage of one of the query's relevant files.

- ``MRR@10``: mean over queries of 1 / rank of the first hit (0 if none in the top 10);
- ``recall@10``: share of queries with a hit in the top 10 (any relevant file);
- ``file recall@10``: mean share of a query's relevant files found in the top 10.

Each is given for the fused ranking (``sum`` and ``rrf``) and for each branch alone
(the other branch's weight 0), per query kind.

Usage::

    python -m executors.evaluate [--queries tests/data/stdlib_queries.json] [--path DIR]
                                 [--workspace DIR] [--include-tests] [--json FILE]

Example
-------
>>> main(['--workspace', '/tmp/eval-ws'])  # doctest: +SKIP
0
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import sysconfig
from typing import Any

from . import demo

__all__ = ['main', 'score_run', 'VARIANTS']

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SET = os.path.join(os.path.dirname(HERE), 'tests', 'data', 'stdlib_queries.json')
#: name -> search parameters (on top of the limits).
VARIANTS: dict[str, dict[str, Any]] = {
    'fused (sum)': {'fusion': 'sum'},
    'fused (rrf)': {'fusion': 'rrf'},
    'sparse only (BM25)': {'fusion': 'sum', 'weights': {demo.SPARSE: 1.0, demo.DENSE: 0.0}},
    'dense only (LSA)': {'fusion': 'sum', 'weights': {demo.SPARSE: 0.0, demo.DENSE: 1.0}},
}


def score_run(ranked: list[list[str]], relevant: list[list[str]], k: int = 10) -> dict[str, float]:
    """MRR@k, recall@k (a relevant file in the top k) and file recall@k of ranked paths.

    Example
    -------
    >>> score_run([['a.py', 'b.py'], ['c.py']], [['b.py'], ['x.py']])
    {'mrr': 0.25, 'recall': 0.5, 'file_recall': 0.5}
    """
    rr, hit, frac = [], [], []
    for paths, rel in zip(ranked, relevant):
        top = paths[:k]
        first = next((r for r, p in enumerate(top, 1) if p in rel), None)
        rr.append(1.0 / first if first else 0.0)
        hit.append(1.0 if first else 0.0)
        frac.append(len(set(top) & set(rel)) / len(rel))
    n = max(len(rr), 1)
    return {'mrr': sum(rr) / n, 'recall': sum(hit) / n, 'file_recall': sum(frac) / n}


def main(argv: list[str] | None = None) -> int:
    """Index (or reuse), run the relevance set, print the table; returns the exit code.

    Example
    -------
    >>> main(['--workspace', '/tmp/eval-ws', '--json', 'eval.json'])  # doctest: +SKIP
    0
    """
    ap = argparse.ArgumentParser(prog='python -m executors.evaluate', description=__doc__.split('\n\n')[0])
    ap.add_argument('--queries', default=DEFAULT_SET, help='relevance set (JSON; default the stdlib set)')
    ap.add_argument('--path', default=sysconfig.get_paths()['stdlib'], help='corpus (default: the standard library)')
    ap.add_argument('--workspace', default='workspace-eval', help='index folder (default ./workspace-eval)')
    ap.add_argument('--include-tests', action='store_true', help='index test folders too')
    ap.add_argument('--json', help='also write the numbers and per-query ranks to this file')
    ap.add_argument('--k', type=int, default=10, help='cut-off (default 10)')
    args = ap.parse_args(argv)
    with open(args.queries, encoding='utf-8') as fp:
        qset = json.load(fp)['queries']
    build = ['--path', args.path, '--workspace', args.workspace, '--pattern', '**/*.py', '--query', 'warm up']
    if args.include_tests:
        build.append('--include-tests')
    with contextlib.redirect_stdout(sys.stderr):   # the demo's indexing report is not the result
        demo.main(build)
    texts = [q['query'] for q in qset]
    relevant = [q['files'] for q in qset]
    report: dict[str, Any] = {'queries': len(qset), 'path': args.path, 'include_tests': args.include_tests,
                              'variants': {}}
    print(f'{len(qset)} queries on {args.path} (tests {"included" if args.include_tests else "excluded"}), '
          f'file-level, cut-off {args.k}')
    print(f'{"ranking":<22}{"kind":<12}{"MRR@10":>8}{"recall@10":>11}{"file recall":>13}{"median ms":>11}')
    with demo.build_flow(args.workspace) as f:
        for name, params in VARIANTS.items():
            runs = demo.search(f, texts, args.k)  # warm: the first query maps the index
            runs = [(q, m, s) for q, m, s in demo.search(f, texts, args.k, 50, params)]
            ranked = [[m.tags.get('path') for m in matches] for _, matches, _ in runs]
            ms = 1e3 * statistics.median(s for _, _, s in runs)
            entry: dict[str, Any] = {'median_ms': ms, 'per_query': []}
            for kind in ('all', 'lexical', 'paraphrase'):
                pick = [i for i, q in enumerate(qset) if kind == 'all' or q['kind'] == kind]
                sc = score_run([ranked[i] for i in pick], [relevant[i] for i in pick], args.k)
                entry[kind] = sc
                print(f'{name:<22}{kind:<12}{sc["mrr"]:>8.3f}{sc["recall"]:>11.3f}{sc["file_recall"]:>13.3f}'
                      f'{ms if kind == "all" else float("nan"):>11.1f}')
            for q, paths in zip(qset, ranked):
                first = next((r for r, p in enumerate(paths[:args.k], 1) if p in q['files']), None)
                entry['per_query'].append({'query': q['query'], 'rank': first, 'top': paths[:3]})
            report['variants'][name] = entry
            del runs
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as fp:
            json.dump(report, fp, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
