"""`python -m perf` runs end to end (with tiny workloads) and writes every figure: a check
of the benchmark machinery and its JSON, not of speed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_perf_suite_writes_every_figure_with_its_baseline_and_target(tmp_path):
    out = tmp_path / 'perf.json'
    proc = subprocess.run([sys.executable, '-m', 'perf', '--tiny', '--json', str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'figure' in proc.stdout and 'pass/fail' in proc.stdout and 'target(s) missed' in proc.stdout
    data = json.loads(out.read_text())
    assert {'date', 'cpus_usable', 'python', 'numpy', 'pyzmq', 'blas'} <= set(data['machine'])
    bench = data['benchmarks']
    assert set(bench) == {'datamodel', 'flow', 'streaming', 'scaling', 'match', 'gateway'}  # Ray: --only ray
    flow = bench['flow']['figures']
    for key in ('flow_vs_mpqueue', 'flow_vs_relay_floor', 'flow_vs_floor', 'generator_vs_columnar', 'ratio_768_8',
                'latency_sync_p50_us', 'latency_sync_p99_us', 'latency_streamed_us', 'start_s', 'close_s'):
        fig = flow[key]
        assert fig['value'] > 0 and fig['target'] and isinstance(fig['ok'], bool), key
    for key in ('flow_vs_mpqueue', 'flow_vs_relay_floor', 'flow_vs_floor', 'generator_vs_columnar', 'ratio_768_8',
                'latency_sync_p50_us', 'latency_sync_p99_us'):
        assert flow[key]['baseline'] > 0 and flow[key]['ratio'] > 0, key  # measured in the same run
    config, samples = bench['flow']['config'], bench['flow']['samples']
    assert min(samples['throughput_run_seconds']) >= config['min_run_s'] > 0  # every timed run lasted long enough
    assert len(samples['start_s']) >= 2  # the start-up figure is a median of several starts
    scaling = bench['scaling']
    assert scaling['figures']['speedup_2']['baseline'] > 0  # multiprocessing.Pool at 2
    assert scaling['figures']['search_same_top10']['ok'] is True
    assert [row['processes'] for row in scaling['curve']][:2] == [1, 2]
    streaming = bench['streaming']['figures']
    assert streaming['stream_rss_growth_mb']['ok'] is True  # flat memory holds even here
    assert streaming['profile_overhead']['baseline'] > 0
    verdict = streaming['profile_noise']['verdict']
    assert verdict in ('within noise', 'outside noise') and verdict in proc.stdout
    assert bench['match']['figures']['match']['baseline'] > 0  # the bare-product floor, same run
    assert bench['gateway']['figures']['http_p50_us']['baseline'] > 0  # Flow.post in-process, same run
    dm = bench['datamodel']['figures']
    assert any(k.startswith('dam append') for k in dm) and all('value' in v for v in dm.values())


def test_only_ray_says_why_it_skipped_when_ray_cannot_be_imported(tmp_path):
    fake = tmp_path / 'ray'
    fake.mkdir()
    (fake / '__init__.py').write_text("raise ImportError('ray hidden by the test')\n")
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(tmp_path), os.environ.get('PYTHONPATH', '')])}
    proc = subprocess.run([sys.executable, '-m', 'perf', '--only', 'ray'], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '# ray: skipped:' in proc.stdout
    if os.path.exists(os.path.join(ROOT, 'perf', 'bench_ray.py')):
        assert 'Ray is not importable' in proc.stdout and "pip install 'shmflow[ray]'" in proc.stdout


def test_the_probes_of_where_time_goes_report_every_thread_and_every_leg():
    # The README's account of the missed targets rests on these two probes.
    proc = subprocess.run([sys.executable, '-m', 'perf.where_time_goes', 'threads', '--posts', '1'], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'docs/s; machine idle' in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith(('parent ', 'worker '))]
    assert any(r.startswith('parent python') for r in rows) and sum(r.startswith('worker ') for r in rows) >= 3
    proc = subprocess.run([sys.executable, '-m', 'perf.where_time_goes', 'one-doc', '--posts', '200'], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    legs = {line[:24].strip(): float(line.split()[-2]) for line in proc.stdout.splitlines() if line.endswith(' us')}
    assert len(legs) == 7 and legs['total'] > 0
    # (medians of the legs need not add up to the median total exactly)
    assert abs(sum(v for k, v in legs.items() if k != 'total') - legs['total']) < 0.5 * legs['total']
    proc = subprocess.run([sys.executable, '-m', 'perf.where_time_goes', 'zmq-echo', '--round-trips', '200'],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line[:24].strip(): float(line.split()[-2]) for line in proc.stdout.splitlines() if line.endswith(' us')}
    assert rows['round trip p50'] > 0
    assert {'parent python', 'echo python'} <= set(rows) and sum('ZMQbg/IO' in k for k in rows) == 2
