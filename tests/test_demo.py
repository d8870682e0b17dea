"""The demo (``python -m executors.demo``) on a small generated folder."""
from __future__ import annotations

import json
import os

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
    'docs/deploy.md': '# Deploying\n\nUpload the wheel to the kubernetes cluster with helm.\n',
    'site-packages/vendored.py': 'def send_mail():\n    """Send an email message over SMTP."""\n',
    'tests/test_mailer.py': 'def test_send_mail():\n    """Send an email message over SMTP."""\n',
    '.git/config': '[core] smtp mail\n',
}


@pytest.fixture
def src(tmp_path):
    root = tmp_path / 'src'
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / 'latin1.py').write_bytes(b'# caf\xe9: not utf-8\nx = 1\n')  # read with replacement, not refused
    (root / 'blob.dat').write_bytes(b'\x00\x01binary')                  # not text: skipped
    return root


def run(capsys, *args: str) -> str:
    assert demo.main(list(args)) == 0
    return capsys.readouterr().out


def test_demo_indexes_a_folder_and_answers_queries(src, tmp_path, capsys):
    ws = str(tmp_path / 'ws')
    base = ['--path', str(src), '--workspace', ws, '--top-k', '1']
    out = run(capsys, *base, '--query', 'send an email over smtp', '--query', 'read a gzip file')
    assert 'no index in the workspace yet' in out
    # cli, archive, mailer, deploy.md (any text file), latin1; not site-packages, tests/, .git, binary
    assert 'indexed 5 files' in out and 'skipped blob.dat: binary' in out
    assert 'sparse' in out and 'lsa' in out and 'dense' in out    # the per-executor tables
    sections = out.split('query: ')
    assert 'pkg/mailer.py:7' in sections[1]                   # file and line of the best passage
    assert 'archive.py:' in sections[2]
    marker = json.loads((tmp_path / 'ws' / demo.MARKER).read_text())
    assert marker['files'] == 5 and marker['path'] == str(src)

    # Second run: the index is reused, not rebuilt; JSON on stdout, one object per query.
    assert demo.main([*base, '--top-k', '3', '--json', '--query', 'parse command line arguments',
                      '--query', 'kubernetes helm']) == 0
    captured = capsys.readouterr()
    assert 'reusing the index' in captured.err and 'indexed' not in captured.err
    lines = captured.out.strip().split('\n')
    first, second = (json.loads(line) for line in lines)
    assert first['query'] == 'parse command line arguments' and len(first['hits']) <= 3
    assert first['hits'][0]['path'] == 'cli.py' and isinstance(first['hits'][0]['line'], int)
    assert isinstance(first['hits'][0]['score'], float)
    assert second['hits'][0]['path'] == 'docs/deploy.md'

    # A changed file, --reindex, --include-tests or other settings build it again.
    (src / 'archive.py').write_text(FILES['archive.py'] + '\n# more\n')
    out = run(capsys, *base, '--query', 'gzip')
    assert 'the files changed' in out and 'indexed 5 files' in out
    out = run(capsys, *base, '--reindex', '--query', 'gzip')
    assert '(--reindex)' in out and 'indexed 5 files' in out
    out = run(capsys, *base, '--include-tests', '--query', 'send mail')
    assert 'the path or settings changed' in out and 'indexed 6 files' in out


def test_list_files_leaves_out_tests_caches_and_hidden_folders(src):
    rels = [rel for _, rel in demo.list_files(str(src), ['**/*.py'])]
    assert rels == ['archive.py', 'cli.py', 'latin1.py', 'pkg/mailer.py']
    with_tests = [rel for _, rel in demo.list_files(str(src), ['**/*.py'], include_tests=True)]
    assert 'tests/test_mailer.py' in with_tests and not any(r.startswith('site-packages') for r in with_tests)
    assert demo.is_test_path('Lib/test/test_os.py') and demo.is_test_path('pkg/test_x.py')
    assert not demo.is_test_path('pkg/testing_utils.py')


def test_demo_refuses_a_missing_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        demo.main(['--path', str(tmp_path / 'nope'), '--workspace', str(tmp_path / 'ws')])
    assert 'is not a folder' in capsys.readouterr().err


def test_demo_with_two_sparse_shards_finds_what_one_finds(src, tmp_path, capsys):
    # Each shard of the sparse branch ranks its own passages: the fusion must get the
    # ranking of both (it once got only the last shard's), so --shards 2 answers as --shards 1.
    queries = ['send an email over smtp', 'read a gzip file', 'parse command line arguments', 'kubernetes helm']
    found = {}
    for shards in (1, 2):
        ws = str(tmp_path / f'ws{shards}')
        run(capsys, '--path', str(src), '--workspace', ws, '--shards', str(shards), '--request-size', '1',
            '--max-chars', '80', '--query', 'warm up')
        with demo.build_flow(ws, max_chars=80, shards=shards) as f:
            status = f.post('/status', return_results=True, target_executor='sparse$')[0]
            runs = demo.search(f, queries, 50)
        held = status.parameters['__results__'][demo.SPARSE]
        counts = [s['count'] for s in held] if isinstance(held, list) else [held['count']]
        assert len(counts) == shards and all(counts)    # with 2, both shards hold passages
        found[shards] = [((matches[0].tags['path'], matches[0].tags['line']),
                          sorted(m.id for m in matches if demo.SPARSE in m.scores)) for _, matches, _ in runs]
    assert found[2] == found[1]
    assert all(sparse for _, sparse in found[1])


def test_a_run_that_must_build_the_index_refuses_a_workspace_another_run_uses(src, tmp_path, capsys):
    # Building deletes the index folders first: with another run's indexers in them, both
    # runs failed (one with "this is a bug"). Runs that only search may share a workspace.
    import fcntl
    ws = tmp_path / 'ws'
    base = ['--path', str(src), '--workspace', str(ws), '--top-k', '1', '--query', 'read a gzip file']
    run(capsys, *base)  # built
    other = os.open(ws / demo.LOCK, os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_SH)  # another run, searching
        assert 'reusing the index' in run(capsys, *base)
        assert demo.main([*base, '--reindex']) == 1
        assert 'another run is using it' in capsys.readouterr().err
        fcntl.flock(other, fcntl.LOCK_EX)  # another run, building
        assert demo.main(base) == 1
        assert 'another run is building the index' in capsys.readouterr().err
    finally:
        os.close(other)
    assert 'indexing' in run(capsys, *base, '--reindex')  # alone again: it may


def test_json_output_is_valid_utf8_for_a_file_name_that_is_not(src, tmp_path, capsys):
    (src / os.fsdecode(b'lat\xe9n.py')).write_text('def frobnicate_zeppelin():\n    """Frobnicate the zeppelin."""\n')
    out = run(capsys, '--path', str(src), '--workspace', str(tmp_path / 'ws'), '--top-k', '1', '--json',
              '--query', 'frobnicate the zeppelin')
    (line,) = out.splitlines()
    assert json.loads(line)['hits'][0]['path'] == 'lat\\xe9n.py'
    line.encode('utf-8')  # (a lone surrogate would raise here)
