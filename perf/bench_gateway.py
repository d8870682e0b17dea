"""What the HTTP gateway costs: one-document search requests over HTTP from other processes
against the same requests through ``Flow.post`` in the serving process.

- In-process baseline: ``f.search(Document(...))`` one at a time, each timed.
- One client process: ``Client.search`` one document at a time over a kept-alive
  connection, each timed in the client (JSON encode, HTTP, gateway, Flow, JSON decode).
- Concurrent clients: four client processes released together; requests/s of them all.

Run ``python -m perf.bench_gateway [--quick]``; ``python -m perf`` includes it once
registered (``bench_gateway.run``, rows from ``perf.common.figure_rows``).
"""
from __future__ import annotations

import os
import sys

if __name__ == '__main__':  # before numpy loads, in this process and every child
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from perf.common import pin_blas_env
    pin_blas_env()

import argparse
import json
import socket
import subprocess
import textwrap
import time
from typing import Any

from perf.common import entry, figure_rows, format_table, median
from runtime import Document, DocumentArray, Executor, Flow, requests

__all__ = ['run', 'main', 'TARGETS']

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: What a request over HTTP may cost on top of the same request in-process (p50). The
#: concurrent figure has no target: on 2 cores the client processes take the CPU the server needs.
TARGETS = {'gateway_cost_us': 1500.0}
CLIENTS = 4


class OneMatch(Executor):
    """A search that costs next to nothing: one match per query."""

    @requests(on='/search')
    def search(self, docs: DocumentArray, **kwargs: Any) -> None:
        for d in docs:
            d.matches.append(Document(id=f'm-{d.id}', text=d.text))


# The client: warms up, says ready, waits for "go" on stdin, times each request.
_CLIENT = '''
import json, sys, time
from runtime import Client, Document
c = Client(port={port})
for i in range({warmup}):
    c.search(Document(text='warm-up'))
print('ready', flush=True)
sys.stdin.readline()
lat = []
t_start = time.time()
for i in range({n}):
    t0 = time.perf_counter()
    r = c.search(Document(id=str(i), text='query'), return_results=True)
    lat.append((time.perf_counter() - t0) * 1e6)
    assert r[0].docs[0].matches[0].id == f'm-{{i}}'
t_end = time.time()
print(json.dumps({{'lat_us': lat, 'start': t_start, 'end': t_end}}), flush=True)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def _clients(port: int, count: int, n: int, warmup: int) -> list[dict]:
    """Start ``count`` client processes, release them together, return what each measured."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    code = textwrap.dedent(_CLIENT.format(port=port, n=n, warmup=warmup))
    procs = [subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=env, text=True) for _ in range(count)]
    try:
        for p in procs:
            line = p.stdout.readline().strip()
            if line != 'ready':
                raise RuntimeError(f'a client process did not start (exit {p.wait()}): {line!r}')
        for p in procs:
            p.stdin.write('go\n')
            p.stdin.flush()
        out = []
        for p in procs:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError(f'a client process failed (exit {p.wait()})')
            out.append(json.loads(line))
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            for f in (p.stdin, p.stdout):
                f.close()


def _in_process(f: Flow, n: int) -> list[float]:
    lat = []
    for i in range(n):
        t0 = time.perf_counter()
        f.search(Document(id=str(i), text='query'), on_done=lambda r: None)
        lat.append((time.perf_counter() - t0) * 1e6)
    return lat


def run(quick: bool = False, tiny: bool = False) -> dict:
    """Measure requests/s and p50/p99 latency over HTTP (one client process, and four at
    once) next to ``Flow.post`` in-process. Returns ``{'config', 'figures', 'samples'}``."""
    n = 100 if tiny else 1_000 if quick else 3_000
    warmup = 20 if tiny else 100
    port = _free_port()
    with Flow(port_expose=port, protocol='http').add(uses=OneMatch) as f:
        _in_process(f, warmup)
        local = _in_process(f, n)
        single = _clients(port, 1, n, warmup)[0]
        many = _clients(port, CLIENTS, max(1, n // CLIENTS), warmup)
    wall_local = sum(local) / 1e6
    local_rps = n / wall_local
    http_rps = n / (single['end'] - single['start'])
    many_n = sum(len(c['lat_us']) for c in many)
    many_rps = many_n / (max(c['end'] for c in many) - min(c['start'] for c in many))
    lp50, lp99 = _percentile(local, 50), _percentile(local, 99)
    hp50, hp99 = _percentile(single['lat_us'], 50), _percentile(single['lat_us'], 99)
    many_lat = [x for c in many for x in c['lat_us']]
    figs = {
        'http_rps': entry('HTTP, 1 client process: one-doc search requests/s', http_rps, 'req/s',
                          baseline=local_rps, baseline_label='Flow.post in-process', ratio=http_rps / local_rps),
        'http_p50_us': entry('  latency p50', hp50, 'us', baseline=lp50, baseline_label='in-process p50',
                             ratio=hp50 / lp50),
        'http_p99_us': entry('  latency p99', hp99, 'us', baseline=lp99, baseline_label='in-process p99',
                             ratio=hp99 / lp99),
        'gateway_cost_us': entry('  gateway cost per request (p50 HTTP - p50 in-process)', hp50 - lp50, 'us',
                                 target=f'<= {TARGETS["gateway_cost_us"]:g} us',
                                 ok=hp50 - lp50 <= TARGETS['gateway_cost_us']),
        'http_concurrent_rps': entry(f'HTTP, {CLIENTS} client processes at once: requests/s', many_rps, 'req/s',
                                     baseline=local_rps, baseline_label='Flow.post in-process',
                                     ratio=many_rps / local_rps,
                                     note=f'p50 {_percentile(many_lat, 50):.0f} us, '
                                          f'p99 {_percentile(many_lat, 99):.0f} us per request'),
    }
    config = {'n_requests': n, 'warmup': warmup, 'clients': CLIENTS, 'quick': quick}
    return {'config': config, 'figures': figs,
            'samples': {'in_process_us': local, 'http_us': single['lat_us'], 'concurrent_us': many_lat,
                        'median_in_process_us': median(local)}}


def main(argv: list[str] | None = None) -> dict:
    """Command line: run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true', help='1,000 requests instead of 3,000')
    args = parser.parse_args(argv)
    result = run(quick=args.quick)
    header = ('figure', 'value', 'baseline', 'ratio', 'target', 'pass/fail')
    print(format_table([header, *figure_rows(result['figures'])]))
    return result


if __name__ == '__main__':
    main()
