"""The demo's workspace: left out of the index, never emptied by a refused option, never
holding the user's folders deleted; and the stores' string arrays stay the size of their strings."""
from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from executors import demo
from executors.corpus import list_files
from executors.lsa import LSAEncoder
from executors.sparse import SparseIndexer
from executors.terms import MAX_WORD_CHARS, load_strings, save_strings, term_counts
from runtime import Document, DocumentArray

FILES = {
    'mailer.py': 'import smtplib\n\n\ndef send_mail(host, msg):\n    """Send an email message over SMTP."""\n'
                 '    with smtplib.SMTP(host) as s:\n        s.send_message(msg)\n',
    'archive.py': 'import gzip\n\n\ndef read_archive(path):\n    """Read a gzip compressed file."""\n'
                  '    with gzip.open(path, "rb") as fp:\n        return fp.read()\n',
    'notes.md': '# Settings\n\nThe tokenizer and the fingerprint settings of the search.\n',
}


def make_src(root) -> None:
    for name, text in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.fixture
def src(tmp_path):
    root = tmp_path / 'src'
    make_src(root)
    return root


def run_ok(capsys, *args: str) -> str:
    assert demo.main([*args, '--dim', '8']) == 0
    captured = capsys.readouterr()
    return captured.out + captured.err


def tree(path) -> dict[str, int]:
    """Every file under path, with its size (what a run must leave alone)."""
    out = {}
    for top, _, files in os.walk(path):
        for f in files:
            full = os.path.join(top, f)
            out[os.path.relpath(full, path)] = os.path.getsize(full)
    return out


# -- 1. the workspace under --path ---------------------------------------------------------

def test_the_default_workspace_inside_the_indexed_folder_is_not_indexed(src, capsys, monkeypatch):
    # `python -m executors.demo --path .` with the default ./workspace: the store's own files
    # were indexed, the marker changed every build, so every run built the index again.
    monkeypatch.chdir(src)
    out = run_ok(capsys, '--path', '.', '--query', 'fingerprint settings tokenizer')
    assert 'no index in the workspace yet' in out and f'indexed {len(FILES)} files' in out
    assert os.path.isfile(src / 'workspace' / demo.MARKER)
    for _ in range(2):
        out = run_ok(capsys, '--path', '.', '--json', '--top-k', '10', '--query', 'fingerprint settings tokenizer')
        assert 'reusing the index' in out and 'indexing' not in out
        hits = [h['path'] for line in out.splitlines() if line.startswith('{') for h in json.loads(line)['hits']]
        assert hits and not any(p.startswith('workspace') for p in hits)
    assert json.loads((src / 'workspace' / demo.MARKER).read_text())['files'] == len(FILES)


def test_list_files_leaves_out_excluded_folders_and_links_to_them(src, tmp_path):
    (src / 'ws').mkdir()
    (src / 'ws' / 'store.json').write_text('{}')
    os.symlink(src / 'ws', src / 'link')
    rels = [rel for _, rel in list_files(str(src), ['**/*'], exclude=[str(tmp_path / 'src' / '.' / 'ws')])]
    assert rels == sorted(FILES)
    # (without exclude, the folder is listed once, through the link or not)
    assert [r for _, r in list_files(str(src), ['**/*']) if r.endswith('store.json')] == ['link/store.json']


def test_the_indexed_folder_itself_is_refused_as_workspace(src, capsys):
    with pytest.raises(SystemExit):
        demo.main(['--path', str(src), '--workspace', str(src)])
    assert 'is the folder --path indexes' in capsys.readouterr().err
    assert not os.path.exists(src / demo.MARKER)


# -- 2. a bad option value touches nothing -------------------------------------------------

@pytest.mark.parametrize('bad, option', [(['--dim', '0'], '--dim'), (['--shards', '0'], '--shards'),
                                         (['--request-size', '0'], '--request-size'),
                                         (['--request-size', '-3'], '--request-size'),
                                         (['--max-chars', '1'], '--max-chars'), (['--top-k', '0'], '--top-k'),
                                         (['--dim', 'x'], '--dim')])
def test_a_bad_option_value_is_a_usage_error_that_keeps_the_index(src, tmp_path, capsys, bad, option):
    ws = tmp_path / 'ws'
    base = ['--path', str(src), '--workspace', str(ws), '--query', 'gzip']
    run_ok(capsys, *base)
    before = tree(ws)
    assert demo.MARKER in before and any(p.startswith('sparse') for p in before)
    with pytest.raises(SystemExit) as exc:
        demo.main([*base, '--dim', '8', *bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f'argument {option}' in err and 'Traceback' not in err
    assert tree(ws) == before
    assert 'reusing the index' in run_ok(capsys, *base)


# -- 3. the user's folders in the workspace --------------------------------------------------

def test_a_build_refuses_to_delete_folders_the_demo_did_not_make(src, tmp_path, capsys):
    proj = tmp_path / 'proj'
    for name in ('sparse', 'dense', 'indexer'):
        (proj / name).mkdir(parents=True)
        (proj / name / '__init__.py').write_text('my own code\n')
    base = ['--path', str(src), '--workspace', str(proj), '--query', 'send mail', '--dim', '8']
    assert demo.main(base) == 1
    err = capsys.readouterr().err
    assert f'{proj / "sparse"} was not made by this demo' in err and 'pass another --workspace' in err
    assert (proj / 'sparse' / '__init__.py').read_text() == 'my own code\n'
    assert not (proj / demo.MARKER).exists()
    assert sorted(p.name for p in proj.iterdir()) == ['dense', 'indexer', 'sparse']  # (nothing of the run left)

    # Moved away (as the message says): the build runs, and leaves the user's indexer/ alone.
    for name in ('sparse', 'dense'):
        (proj / name).rename(tmp_path / name)
    assert 'indexed' in run_ok(capsys, *base[:-2])
    assert 'indexing' in run_ok(capsys, *base[:-2], '--reindex')
    assert (proj / 'indexer' / '__init__.py').read_text() == 'my own code\n'
    assert all((proj / name / demo.OWNED).is_file() for name in ('sparse', 'dense', 'lsa'))


def old_demo_workspace(ws, marker: bool) -> None:
    """A workspace as a demo older than OWNED left it: its executors' folders, no OWNED."""
    for sub in ('sparse/sparse/gen-1', 'sparse/sparse/docs', 'dense/index', 'indexer/index'):
        (ws / sub).mkdir(parents=True)
        (ws / sub / 'stale.bin').write_bytes(b'old')
    (ws / 'lsa' / 'lsa').mkdir(parents=True)   # (the model's folder is kept)
    if marker:
        (ws / demo.MARKER).write_text(json.dumps({'format': 'executors.demo', 'version': 4, 'files': 1}))


def test_an_older_demos_workspace_is_rebuilt_and_a_look_alike_without_its_marker_is_not(src, tmp_path, capsys):
    ws = tmp_path / 'ws'
    base = ['--path', str(src), '--workspace', str(ws), '--query', 'gzip']
    old_demo_workspace(ws, marker=True)
    out = run_ok(capsys, *base)
    assert 'the path or settings changed' in out and 'indexed' in out
    assert not (ws / 'indexer').exists() and not glob.glob(str(ws / '**' / 'stale.bin'), recursive=True)
    assert all((ws / name / demo.OWNED).is_file() for name in ('sparse', 'dense', 'lsa'))
    assert 'reusing the index' in run_ok(capsys, *base)

    # The same folders without an older demo's marker might be anyone's: refused.
    other = tmp_path / 'other'
    old_demo_workspace(other, marker=False)
    before = tree(other)
    assert demo.main(['--path', str(src), '--workspace', str(other), '--dim', '8']) == 1
    assert 'was not made by this demo' in capsys.readouterr().err
    assert {k: v for k, v in tree(other).items() if k != demo.LOCK} == before


# -- 4. string arrays hold their strings, not the longest one's padding ----------------------

def test_a_long_word_is_cut_and_still_found():
    # (a 1,161-letter word made every term of the stored vocabularies 1,161 characters wide)
    blob = 'x' + 'acgt' * 290
    counts = term_counts(f'send {blob} mail')
    assert counts == {'send': 1, blob[:MAX_WORD_CHARS]: 1, 'mail': 1}
    assert term_counts(blob.upper()) == {blob[:MAX_WORD_CHARS]: 1}   # the same word in a query meets it


def test_save_strings_round_trips_any_string_without_padding(tmp_path):
    strings = ['gzip', '', 'caf\u00e9', 'lat\udce9n.py', 'a\0b\n', 'p/' * 600, '日本語']
    path = str(tmp_path / 'ids.npy')
    save_strings(path, strings)
    assert load_strings(path) == strings
    assert os.path.getsize(path) < sum(len(s.encode('utf-8', 'surrogatepass')) for s in strings) + 200
    np.save(path, np.array(['old'], dtype=str))
    with pytest.raises(ValueError, match='write it again'):
        load_strings(path)


def test_one_long_word_or_path_does_not_inflate_the_stored_vocabulary(tmp_path):
    words = [f'word{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676)}' for i in range(3000)]
    docs = [Document(id=f'f{k}', text=' '.join(words[k * 30:(k + 1) * 30]), tags={'path': f'f{k}.txt'})
            for k in range(100)]
    long_path = 'deep/' * 300 + 'file.txt'
    docs.append(Document(id=long_path, text='x' + 'acgt' * 290, tags={'path': long_path}))
    idx = SparseIndexer(metas={'workspace': str(tmp_path / 'sp')})
    idx.index(DocumentArray(docs), {})
    idx.close()
    (vocab,) = glob.glob(str(tmp_path / 'sp' / '**' / 'gen-*' / 'vocab.npy'), recursive=True)
    gen = os.path.dirname(vocab)
    meta = json.loads(open(os.path.join(os.path.dirname(gen), 'meta.json')).read())
    # About the bytes of the terms (most are 7 letters; padded to the longest, a term took
    # 4 * 64 bytes, or 4 * 1161 before long words were cut); the ids about their own bytes
    # (not 4 * 1508 each).
    assert os.path.getsize(vocab) < 12 * meta['terms'] + 200
    assert os.path.getsize(os.path.join(gen, 'ids.npy')) < 2 * (len(long_path) + 5 * 100) + 200
    assert 'wordabc' in load_strings(vocab) and long_path in load_strings(os.path.join(gen, 'ids.npy'))
    again = SparseIndexer(metas={'workspace': str(tmp_path / 'sp')})
    q = DocumentArray([Document(text='x' + 'acgt' * 290)])
    again.search(q, {})
    assert [m.id for m in q[0].matches] == [long_path]
    again.close()

    enc = LSAEncoder(metas={'workspace': str(tmp_path / 'lsa')}, dim=4, min_df=1)
    enc.fit(DocumentArray(docs), {'finish': True})
    (lsa_vocab,) = glob.glob(str(tmp_path / 'lsa' / '**' / 'vocab.npy'), recursive=True)
    model = json.loads(open(os.path.join(os.path.dirname(lsa_vocab), 'model.json')).read())
    assert os.path.getsize(lsa_vocab) < 12 * model['terms'] + 200
    assert LSAEncoder(metas={'workspace': str(tmp_path / 'lsa')}, dim=4, min_df=1).fitted   # read back
