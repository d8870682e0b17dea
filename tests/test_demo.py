"""The demo (``python -m executors.demo``) on a small generated folder."""
from __future__ import annotations

import json

import pytest

from executors import demo

FILES = {
    'cli.py': 'import argparse\n\n\ndef parse_args(argv):\n    """Parse the command line arguments."""\n'
              '    parser = argparse.ArgumentParser()\n    parser.add_argument("--verbose")\n'
              '    return parser.parse_args(argv)\n',
    'archive.py': 'import gzip\n\n\ndef read_archive(path):\n    """Read a gzip compressed file."""\n'
                  '    with gzip.open(path, "rb") as fp:\n        return fp.read()\n',
    'pkg/mailer.py': 'import smtplib\n\n\n# a comment line\n\ndef send_mail(host, msg):\n'
                     '    """Send an email message over SMTP."""\n    with smtplib.SMTP(host) as s:\n'
                     '        s.send_message(msg)\n',
    'site-packages/vendored.py': 'def send_mail():\n    """Send an email message over SMTP."""\n',
}


@pytest.fixture
def src(tmp_path):
    root = tmp_path / 'src'
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / 'latin1.py').write_bytes(b'# caf\xe9: not utf-8\nx = 1\n')  # read with replacement, not refused
    return root


def run(capsys, *args: str) -> str:
    assert demo.main(list(args)) == 0
    return capsys.readouterr().out


def test_demo_indexes_a_folder_and_answers_queries(src, tmp_path, capsys):
    ws = str(tmp_path / 'ws')
    base = ['--path', str(src), '--workspace', ws, '--replicas', '1', '--top', '1']
    out = run(capsys, *base, '--query', 'send an email over smtp', '--query', 'read a gzip file')
    assert 'no index in the workspace yet' in out
    assert 'indexed 4 files' in out                           # site-packages left out, latin-1 kept
    assert 'segmenter' in out and 'encoder' in out and 'indexer' in out   # the per-executor table
    sections = out.split('query: ')
    assert 'pkg/mailer.py:7' in sections[1]                   # file and line of the best passage
    assert 'archive.py:' in sections[2]
    marker = json.loads((tmp_path / 'ws' / demo.MARKER).read_text())
    assert marker['files'] == 4 and marker['path'] == str(src)

    # Second run: the index is reused, not rebuilt.
    out = run(capsys, *base, '--query', 'parse command line arguments')
    assert 'reusing the index' in out and 'indexed' not in out
    assert 'cli.py:' in out.split('query: ')[1]

    # --reindex, or other settings, build it again.
    out = run(capsys, *base, '--reindex', '--query', 'gzip')
    assert '(--reindex)' in out and 'indexed 4 files' in out
    out = run(capsys, *base, '--max-chars', '300', '--query', 'gzip')
    assert 'the path or settings changed' in out and 'indexed 4 files' in out


def test_demo_refuses_a_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.main(['--path', str(tmp_path / 'nope'), '--workspace', str(tmp_path / 'ws')])
    assert 'is not a folder' in capsys.readouterr().err
