"""SparseIndexer after updates and deletes: BM25 counts live documents only, and the index
stays the size of what it holds (deleted and replaced rows are compacted away)."""
import os

import numpy as np
import pytest

from runtime import Document, DocumentArray, Flow
from executors.sparse import SparseIndexer

QUERIES = ['walrus penguin', 'filler text', 'penguin beak notes']


def live_docs():
    return [Document(id='a', text='walrus tusk'), Document(id='b', text='penguin beak'),
            Document(id='u', text='walrus notes')] + \
        [Document(id=f'z{i}', text=f'filler text {i}') for i in range(5)]


def ranking(idx):
    """Each query's matches as (id, bm25 score)."""
    out = []
    for text in QUERIES:
        q = DocumentArray([Document(text=text)])
        idx.search(q, {})
        out.append([(m.id, m.scores['bm25'].value) for m in q[0].matches])
    return out


def assert_same_ranking(got, want):
    assert [[i for i, _ in r] for r in got] == [[i for i, _ in r] for r in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=1e-5)


def store_bytes(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def fresh(ws, docs):
    idx = SparseIndexer(metas={'workspace': str(ws), 'name': 'sparse'})
    idx.index(DocumentArray([Document(d, copy=True) for d in docs]), {})
    return idx


def test_scores_after_many_updates_equal_a_fresh_index_and_the_index_stays_bounded(tmp_path):
    want_idx = fresh(tmp_path / 'fresh', live_docs())
    want, want_status = ranking(want_idx), want_idx.status(DocumentArray(), {})
    idx = fresh(tmp_path / 'upd', live_docs())
    for i in range(200):   # an editor saving the same file again and again, searched now and then
        text = 'walrus notes' if i == 199 else f'walrus notes draft{i}'   # new terms each time, gone at the end
        idx.update(DocumentArray([Document(id='u', text=text)]), {})
        if i % 50 == 0:
            ranking(idx)
    assert_same_ranking(ranking(idx), want)
    status = idx.status(DocumentArray(), {})
    assert (status['count'], status['terms'], status['postings']) == \
        (want_status['count'], want_status['terms'], want_status['postings'])
    # The stored documents are pruned too: not 200 copies of 'u'.
    assert store_bytes(tmp_path / 'upd' / 'sparse') < 3 * store_bytes(tmp_path / 'fresh' / 'sparse')
    idx.close()
    want_idx.close()
    again = SparseIndexer(metas={'workspace': str(tmp_path / 'upd'), 'name': 'sparse'})
    assert_same_ranking(ranking(again), want)
    assert again.status(DocumentArray(), {})['postings'] == want_status['postings']
    again.close()


def test_scores_after_deletes_equal_a_fresh_index_of_the_rest(tmp_path):
    gone = [Document(id=f'g{i}', text=f'walrus walrus colony {i}', uri=f'walrus/{i}.txt') for i in range(40)]
    want_idx = fresh(tmp_path / 'fresh', live_docs())
    want, want_status = ranking(want_idx), want_idx.status(DocumentArray(), {})
    idx = fresh(tmp_path / 'del', live_docs() + gone)
    ranking(idx)                                               # committed with them
    assert idx.delete(DocumentArray(gone[:20]), {}) == {'deleted': 20, 'missing': 0}
    ranking(idx)                                               # and with half of them
    assert idx.delete(DocumentArray(), {'ids': [d.id for d in gone[20:]]}) == {'deleted': 20, 'missing': 0}
    assert_same_ranking(ranking(idx), want)
    status = idx.status(DocumentArray(), {})
    assert (status['count'], status['terms'], status['postings']) == \
        (want_status['count'], want_status['terms'], want_status['postings'])
    idx.close()
    want_idx.close()


def test_a_generation_with_deleted_rows_is_still_read_and_compacted(tmp_path):
    """A workspace whose generation marks rows deleted (as commits wrote them before they
    compacted) opens, never returns them, and scores as a fresh index of the live rows."""
    idx = fresh(tmp_path / 'old', [Document(id='old', text='walrus walrus walrus')] + live_docs())
    idx.close()
    sparse = tmp_path / 'old' / 'sparse' / 'sparse'
    gen = max(int(n[4:]) for n in os.listdir(sparse) if n.startswith('gen-'))
    deleted = np.load(sparse / f'gen-{gen}' / 'deleted.npy')
    deleted[0] = True                                          # row 0 is 'old'
    np.save(sparse / f'gen-{gen}' / 'deleted.npy', deleted)
    want_idx = fresh(tmp_path / 'fresh', live_docs())
    again = SparseIndexer(metas={'workspace': str(tmp_path / 'old'), 'name': 'sparse'})
    assert again.count == len(live_docs())
    assert_same_ranking(ranking(again), ranking(want_idx))
    assert again.status(DocumentArray(), {})['postings'] == want_idx.status(DocumentArray(), {})['postings']
    again.close()
    want_idx.close()


def test_sharded_scores_survive_updates_and_a_reopen_after_compaction(tmp_path):
    def flow():
        return Flow(workspace=str(tmp_path)).add(name='sparse', uses=SparseIndexer, shards=2,
                                                 polling={'/index': 'any', '*': 'all'})

    def search(f):
        """Each query's {id: score}, over both shards."""
        out = []
        for text in QUERIES:
            r = f.search(Document(text=text), parameters={'limit': 20}, return_results=True)[0]
            out.append({m.id: m.scores['bm25'].value for m in r.docs[0].matches})
        return out

    def same(got, want):
        assert [sorted(g) for g in got] == [sorted(w) for w in want]
        for g, w in zip(got, want):
            assert [g[k] for k in sorted(g)] == pytest.approx([w[k] for k in sorted(w)], rel=1e-5)

    def postings(f):
        st = f.post('/status', return_results=True)[0].parameters['__results__']['sparse']
        return sorted(s['postings'] for s in st)

    with flow() as f:
        f.index(DocumentArray(live_docs()), request_size=1)    # spread over the shards
        before, sizes = search(f), postings(f)
        for i in range(30):
            f.post('/update', DocumentArray([Document(id='u', text='walrus notes'),
                                             Document(id='z0', text='filler text 0')]))
        extra = DocumentArray([Document(id=f'x{i}', text=f'walrus filler penguin {i}') for i in range(6)])
        f.index(extra, request_size=1)                         # indexed, then deleted: the same live set
        f.post('/delete', extra)
        # The same documents, shard by shard: the same scores (each shard has its own IDF, so
        # a shard that counted replaced or deleted rows would drift).
        same(search(f), before)
        assert postings(f) == sizes
    with flow() as f:                                          # reopened on the compacted generations
        same(search(f), before)
        assert postings(f) == sizes


_KILLED = '''
import os, sys
from runtime import Document, DocumentArray
from executors import SparseIndexer
ws, point = sys.argv[1], sys.argv[2]

def die(*a, **k):
    os._exit(0)

idx = SparseIndexer(metas={'workspace': ws, 'name': 'sparse'})
idx.index(DocumentArray([Document(id='a', text='walrus tusk'), Document(id='b', text='penguin beak'),
                         Document(id='u', text='walrus first draft')]), {})
idx.commit()
for i in range(10):                              # more replaced than live: the commit prunes the store
    idx.update(DocumentArray([Document(id='u', text='walrus notes')]), {})
idx.delete(DocumentArray([Document(id='b')]), {})
if point == 'commit before switch':              # store pruned, generation written, meta.json not replaced
    real_replace = os.replace

    def replace(src, dst):
        if dst.endswith(os.path.join('sparse', 'meta.json')):
            die()
        real_replace(src, dst)
    os.replace = replace
if point == 'commit after switch':
    from executors import sparse
    sparse.SparseIndexer._remove_other_generations = die
idx.commit()
die()
'''


@pytest.mark.parametrize('point', ['commit before switch', 'commit after switch'])
def test_a_compacting_commit_killed_restarts_with_every_answered_change(tmp_path, point):
    import subprocess
    import sys

    from childio import script_env
    subprocess.run([sys.executable, '-c', _KILLED, str(tmp_path / 'ws'), point], check=True, env=script_env(),
                   timeout=120)
    want_idx = fresh(tmp_path / 'fresh', [Document(id='a', text='walrus tusk'), Document(id='u', text='walrus notes')])
    want = ranking(want_idx)
    want_idx.close()
    for attempt in range(2):   # the restart, then a restart after it closed
        idx = SparseIndexer(metas={'workspace': str(tmp_path / 'ws'), 'name': 'sparse'})
        assert idx.count == 2
        assert_same_ranking(ranking(idx), want)
        q = DocumentArray([Document(text='walrus')])
        idx.search(q, {})
        assert sorted((m.id, m.text) for m in q[0].matches) == [('a', 'walrus tusk'), ('u', 'walrus notes')]
        idx.close()
    names = os.listdir(tmp_path / 'ws' / 'sparse' / 'sparse')
    assert sum(n.startswith('gen-') for n in names) == 1 and not any(n.startswith('pending') for n in names)
