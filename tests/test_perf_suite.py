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
    assert set(bench) == {'datamodel', 'flow', 'streaming', 'scaling'}
    flow = bench['flow']['figures']
    for key in ('flow_vs_mpqueue', 'flow_vs_floor', 'ratio_768_8', 'latency_streamed_us', 'start_s', 'close_s'):
        fig = flow[key]
        assert fig['value'] > 0 and fig['target'] and isinstance(fig['ok'], bool), key
    for key in ('flow_vs_mpqueue', 'flow_vs_floor', 'ratio_768_8'):
        assert flow[key]['baseline'] > 0 and flow[key]['ratio'] > 0  # measured in the same run
    scaling = bench['scaling']
    assert scaling['figures']['speedup_2']['baseline'] > 0  # multiprocessing.Pool at 2
    assert scaling['figures']['search_same_top10']['ok'] is True
    assert [row['processes'] for row in scaling['curve']][:2] == [1, 2]
    streaming = bench['streaming']['figures']
    assert streaming['stream_rss_growth_mb']['ok'] is True  # flat memory holds even here
    assert streaming['profile_overhead']['baseline'] > 0
    dm = bench['datamodel']['figures']
    assert any(k.startswith('dam append') for k in dm) and all('value' in v for v in dm.values())
