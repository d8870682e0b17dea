"""A SparseIndexer commit past ``_MERGE_POSTINGS`` postings merges one range of terms at a
time: the same generation, byte for byte, as the one-sort merge, in memory that does not
grow with the postings, and as safe to kill."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import tracemalloc

import pytest

from executors import pending_log, sparse
from executors.sparse import SparseIndexer
from runtime import Document, DocumentArray


def docs(seed: int, n: int, start: int = 0, words: int = 300) -> list[Document]:
    """Documents d<start>.. of 1-15 words from a vocabulary of ``words``, each with 'common'
    (a term with more postings than a small range: streamed on its own)."""
    rnd = random.Random(seed)
    vocab = [f'w{rnd.randrange(10 ** 6)}x' for _ in range(words)]
    return [Document(id=f'd{i}', text='common ' + ' '.join(rnd.choices(vocab, k=rnd.randint(1, 15))),
                     uri=f'pkg/mod{i % 7}.py') for i in range(start, start + n)]


def history(ws: str) -> tuple[list[dict[str, bytes]], list[list[tuple[str, float]]]]:
    """Index, update, delete and commit several times; every committed generation's files
    and a final ranking."""
    gens = []
    idx = SparseIndexer(metas={'workspace': ws, 'name': 'sp'})

    def commit() -> None:
        idx.commit()
        folder = os.path.join(idx.path, f'gen-{idx._gen}')
        gens.append({f: open(os.path.join(folder, f), 'rb').read() for f in sorted(os.listdir(folder))})

    idx.index(DocumentArray(docs(1, 120)), {})
    idx.index(DocumentArray(docs(2, 80, 120)), {})
    commit()                                                           # pending only
    idx.update(DocumentArray(docs(3, 40, 30, words=50)), {})           # replaced rows, committed ones
    idx.delete(DocumentArray(), {'ids': [f'd{i}' for i in range(100, 140)]})
    idx.index(DocumentArray(docs(4, 60, 200, words=500)), {})          # new terms
    commit()
    idx.delete(DocumentArray(), {'ids': [f'd{i}' for i in range(0, 30)]})
    commit()                                                           # deletes only: unused terms go
    idx.index(DocumentArray(docs(5, 60, 400)), {})
    idx.close()
    idx = SparseIndexer(metas={'workspace': ws, 'name': 'sp'})         # a replayed log
    commit()
    q = DocumentArray([Document(text='common'), Document(text=docs(4, 1, words=500)[0].text)])
    idx.search(q, {'limit': 60})
    idx.close()
    return gens, [[(m.id, m.scores['bm25'].value) for m in d.matches] for d in q]


@pytest.mark.parametrize('chunk', [1, 40])
def test_a_commit_by_term_ranges_writes_the_generation_the_one_sort_writes(tmp_path, monkeypatch, chunk):
    ranges = []
    real_run = sparse._RangeMerge.run
    monkeypatch.setattr(sparse._RangeMerge, 'run', lambda self: ranges.append(1) or real_run(self), raising=False)
    whole_gens, whole_ranking = history(str(tmp_path / 'whole'))
    assert not ranges                                                   # small: one sort in memory
    monkeypatch.setattr(sparse, '_MERGE_POSTINGS', chunk, raising=False)
    gens, ranking = history(str(tmp_path / 'ranges'))
    assert len(ranges) == 4                                             # each commit by ranges
    assert len(gens) == len(whole_gens) == 4
    for got, want in zip(gens, whole_gens):
        assert sorted(got) == sorted(want)
        for name in want:                                              # same arrays, terms and ids
            assert got[name] == want[name], name
    assert ranking == whole_ranking and len(ranking[0]) == 60
    assert not any(n.startswith('spill') for n in os.listdir(tmp_path / 'ranges' / 'sp' / 'sparse' / 'gen-4'))


def commit_peak(idx: SparseIndexer) -> int:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        idx.commit()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_a_large_commit_needs_memory_for_one_range_not_for_every_posting(tmp_path, monkeypatch):
    # 300,000 pending postings (3.6 MB as logged, ~11 MB to sort at once), sent 20 documents
    # a request: the commit holds one range of 10,000 postings and a few bytes a term and row.
    monkeypatch.setattr(sparse, '_MERGE_POSTINGS', 10_000, raising=False)
    rnd = random.Random(0)
    words = [f'w{i}q' for i in range(4000)]
    idx = SparseIndexer(metas={'workspace': str(tmp_path), 'name': 'sp'})
    for b in range(0, 2000, 20):
        idx.index(DocumentArray([Document(id=f'd{i}', text=' '.join(rnd.sample(words, 150)))
                                 for i in range(b, b + 20)]), {})
    first = commit_peak(idx)
    for b in range(0, 200, 20):      # replaced rows: the committed postings are read and filtered too
        idx.index(DocumentArray([Document(id=f'd{i}', text=' '.join(rnd.sample(words, 150)))
                                 for i in range(b, b + 20)]), {})
    idx.delete(DocumentArray(), {'ids': [f'd{i}' for i in range(1000, 1200)]})
    second = commit_peak(idx)
    assert int(idx._arrays['ptr'][-1]) == 1800 * 150
    idx.close()
    assert first < 1.5e6 and second < 1.5e6, (first, second)


_KILLED = '''
import os, sys
from runtime import Document, DocumentArray
from executors import sparse
from executors.sparse import SparseIndexer
ws, point = sys.argv[1], sys.argv[2]
sparse._MERGE_POSTINGS = 3

def die(*a, **k):
    os._exit(0)

idx = SparseIndexer(metas={'workspace': ws, 'name': 'sparse'})
idx.index(DocumentArray([Document(id='a', text='open a socket', uri='net.py'),
                         Document(id='c', text='gzip a socket stream', uri='stream.py')]), {})
idx.commit()
idx.index(DocumentArray([Document(id='b', text='compress with gzip', uri='gz.py')]), {})
idx.delete(DocumentArray([Document(id='c')]), {})
if point == 'spilled':                           # the spill files written, no array yet
    sparse._RangeMerge.write_ranges = die
if point == 'before switch':                     # the arrays written, meta.json not yet replaced
    real_replace = os.replace

    def replace(src, dst):
        if dst.endswith(os.path.join('sparse', 'meta.json')):
            die()
        real_replace(src, dst)
    os.replace = replace
idx.commit()
die()
'''


@pytest.mark.parametrize('point', ['spilled', 'before switch'])
def test_a_commit_by_ranges_killed_restarts_with_every_answered_change(tmp_path, point):
    from childio import script_env
    subprocess.run([sys.executable, '-c', _KILLED, str(tmp_path), point], check=True, env=script_env(), timeout=120)
    for attempt in range(2):   # the restart, then a restart after it closed
        idx = SparseIndexer(metas={'workspace': str(tmp_path), 'name': 'sparse'})
        q = DocumentArray([Document(text='gzip'), Document(text='socket')])
        idx.search(q, {})
        assert [[m.id for m in d.matches] for d in q] == [['b'], ['a']] and idx.count == 2
        idx.close()
    names = os.listdir(tmp_path / 'sparse' / 'sparse')
    assert sum(n.startswith('gen-') for n in names) == 1 and not any(n.startswith('pending') for n in names)
    gen = next(n for n in names if n.startswith('gen-'))
    assert 'spill' not in os.listdir(tmp_path / 'sparse' / 'sparse' / gen)


def test_the_log_is_read_one_record_at_a_time_and_a_damaged_length_ends_it(tmp_path):
    path = str(tmp_path / 'pending.log')
    pending_log.append(path, 1, [b'first'])
    pending_log.append(path, 2, [b'second'])
    whole = os.path.getsize(path)
    with open(path, 'ab') as fp:    # a header claiming 2**60 bytes: torn, never allocated
        fp.write(pending_log._HEAD.pack(pending_log._MAGIC, 1, 0, 2 ** 60) + b'xx')
    got = [(kind, bytes(payload), end) for kind, payload, end in pending_log.records(path)]
    assert [g[:2] for g in got] == [(1, b'first'), (2, b'second')] and got[-1][2] == whole
    assert pending_log.read(path)[1] == whole
    assert list(pending_log.records(str(tmp_path / 'none.log'))) == []
