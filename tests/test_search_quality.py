"""Search quality of the demo's engine on the standard library (the relevance set in
tests/data/stdlib_queries.json): the targets of the main job."""
from __future__ import annotations

import json
import os
import sysconfig

import pytest

from executors import demo
from executors.evaluate import DEFAULT_SET, score_run


@pytest.mark.slow
def test_stdlib_relevance_set_meets_the_targets(tmp_path, capsys):
    with open(DEFAULT_SET, encoding='utf-8') as fp:
        qset = json.load(fp)['queries']
    stdlib = sysconfig.get_paths()['stdlib']
    if not all(os.path.exists(os.path.join(stdlib, f)) for q in qset for f in q['files']):
        pytest.skip('this Python has no standard library sources')
    ws = str(tmp_path / 'ws')
    assert demo.main(['--workspace', ws, '--query', 'warm up']) == 0
    with demo.build_flow(ws) as f:
        runs = demo.search(f, [q['query'] for q in qset], 10)
    ranked = [[m.tags.get('path') for m in matches] for _, matches, _ in runs]
    score = score_run(ranked, [q['files'] for q in qset])
    capsys.readouterr()
    assert len(qset) >= 40
    assert score['mrr'] >= 0.65 and score['recall'] >= 0.8, score
