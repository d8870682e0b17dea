"""The ready-made executors: HashingTextEncoder, TextSegmenter, MemmapIndexer."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from executors import HashingTextEncoder, MemmapIndexer, TextSegmenter
from executors.encoders import hash_features
from executors.indexers import top_k
from executors.segmenters import split_text
from runtime import Document, DocumentArray, Flow

SHARDED = {'/index': 'any', '*': 'all'}


def brute_force(queries: np.ndarray, matrix: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The reference: every score at once, full sort."""
    if metric == 'dot':
        s = queries @ matrix.T
    elif metric == 'cosine':
        s = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ \
            (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).T
    else:
        s = -np.linalg.norm(queries[:, None, :] - matrix[None, :, :], axis=2)
    order = np.argsort(-s, axis=1, kind='stable')[:, :k]
    best = np.take_along_axis(s, order, axis=1)
    # The scores' Jina 2 meanings: 'l2' and 'cosine' are distances (1 - similarity), 'dot' not.
    return order, {'l2': -best, 'cosine': 1 - best}.get(metric, best)


def random_docs(n: int, dim: int, seed: int = 0, prefix: str = 'd') -> tuple[DocumentArray, np.ndarray]:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return DocumentArray([Document(id=f'{prefix}{i}', text=f'text {i}', embedding=x[i], tags={'i': i})
                          for i in range(n)]), x


def queries_of(x: np.ndarray) -> DocumentArray:
    return DocumentArray([Document(id=f'q{i}', embedding=v) for i, v in enumerate(x)])


def search(f: Flow, q: np.ndarray, limit: int) -> list[list[tuple[str, float]]]:
    res = f.search(queries_of(q), parameters={'limit': limit}, return_results=True, request_size=len(q))
    docs = res[0].docs
    return [[(m.id, m.scores[next(iter(m.scores))]) for m in docs[f'q{i}'].matches] for i in range(len(q))]


# -- exact search ----------------------------------------------------------------------------
@pytest.mark.parametrize('metric', ['cosine', 'dot', 'l2'])
def test_top_k_equals_brute_force_across_blocks(metric):
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((1003, 24)).astype(np.float32)
    queries = rng.standard_normal((5, 24)).astype(np.float32)
    pos, score = top_k(queries, matrix, 7, metric, block_rows=100)  # 11 blocks, the last one short
    ref_pos, ref_score = brute_force(queries, matrix, 7, metric)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_allclose(score, ref_score, rtol=1e-4, atol=1e-4)


def test_top_k_edge_cases():
    m = np.eye(3, dtype=np.float32)
    pos, score = top_k(np.ones((1, 3), np.float32), m, 10)   # k > rows: every row, once
    assert sorted(pos[0].tolist()) == [0, 1, 2]
    pos, _ = top_k(np.zeros((1, 3), np.float32), m, 2)       # zero query: cosine 0, no NaN
    assert pos.shape == (1, 2)
    with pytest.raises(ValueError, match='dimensions must match'):
        top_k(np.ones((1, 4), np.float32), m, 1)
    with pytest.raises(ValueError, match='metric'):
        top_k(np.ones((1, 3), np.float32), m, 1, metric='hamming')


def test_indexer_search_in_a_flow_equals_brute_force(tmp_path):
    docs, x = random_docs(500, 16)
    q = np.random.default_rng(2).standard_normal((4, 16)).astype(np.float32)
    with Flow(workspace=str(tmp_path)).add(uses=MemmapIndexer, uses_with={'block_rows': 64}) as f:
        f.index(docs, request_size=64)
        got = search(f, q, 5)
        status = f.post('/status', return_results=True)[0].parameters['__results__']['MemmapIndexer']
    ref_pos, ref_score = brute_force(q, x, 5, 'cosine')
    for i in range(len(q)):
        assert [m for m, _ in got[i]] == [f'd{p}' for p in ref_pos[i]]
        np.testing.assert_allclose([s for _, s in got[i]], ref_score[i], rtol=1e-5)
    assert status['count'] == 500 and status['dim'] == 16 and status['metric'] == 'cosine'


def test_matches_carry_fields_but_not_embeddings(tmp_path):
    docs, x = random_docs(20, 8)
    idx = MemmapIndexer(metas={'workspace': str(tmp_path)})
    idx.index(docs, {})
    q = queries_of(x[:2])
    idx.search(q, {'top_k': 3})
    m = q[0].matches[0]
    assert (m.id, m.text, m.tags['i'], m.embedding) == ('d0', 'text 0', 0, None)
    assert len(q[1].matches) == 3 and q[1].matches[0].id == 'd1'
    assert q[0].matches[0] is not q[1].matches[1]  # no shared objects between queries
    idx.close()


@pytest.mark.parametrize('metric', ['cosine', 'dot', 'l2'])
def test_a_query_of_zeros_gets_no_arbitrary_matches(tmp_path, metric):
    # An encoder that knows no word of the query gives zeros: under cosine and dot that ties
    # with every row, and 'limit' arbitrary rows, scored like real hits, would come back.
    docs, x = random_docs(20, 8)
    idx = MemmapIndexer(metas={'workspace': str(tmp_path)}, metric=metric)
    idx.index(docs, {})
    q = queries_of(np.stack([np.zeros(8, np.float32), x[3]]))
    idx.search(q, {'limit': 5})
    if metric == 'l2':  # the distance to the origin means something: the nearest rows
        assert len(q[0].matches) == 5
    else:
        assert q[0].matches == [] or len(q[0].matches) == 0
    assert len(q[1].matches) == 5 and (metric == 'dot' or q[1].matches[0].id == 'd3')
    idx.close()


# -- persistence and shards --------------------------------------------------------------------
def test_index_survives_a_flow_restart(tmp_path):
    docs, x = random_docs(300, 12)
    q = x[[5, 17]] + 0.01
    flow = Flow(workspace=str(tmp_path)).add(uses=MemmapIndexer)
    with flow:
        flow.index(docs, request_size=50)
        before = search(flow, q, 4)
    with flow:  # a new set of processes opening the same workspace
        after = search(flow, q, 4)
        count = flow.post('/status', return_results=True)[0].parameters['__results__']['MemmapIndexer']['count']
    assert count == 300
    assert after == before and before[0][0][0] == 'd5' and before[1][0][0] == 'd17'


def test_sharded_search_equals_unsharded(tmp_path):
    docs, x = random_docs(600, 16)
    q = np.random.default_rng(3).standard_normal((3, 16)).astype(np.float32)
    one = Flow(workspace=str(tmp_path / 'one')).add(uses=MemmapIndexer)
    three = Flow(workspace=str(tmp_path / 'three')).add(uses=MemmapIndexer, shards=3, polling=SHARDED)
    with one:
        one.index(docs, request_size=40)
        expected = search(one, q, 6)
    with three:
        three.index(docs, request_size=40)
        got = search(three, q, 6)
    assert [[i for i, _ in r] for r in got] == [[i for i, _ in r] for r in expected]
    np.testing.assert_allclose([[s for _, s in r] for r in got], [[s for _, s in r] for r in expected], rtol=1e-5)
    # every shard holds some of the documents, none holds them all
    counts = [len(os.listdir(tmp_path / 'three' / 'MemmapIndexer' / str(s) / 'index')) for s in range(3)]
    assert all(counts)


def test_sharded_update_and_delete_reach_the_owning_shard(tmp_path):
    docs, x = random_docs(200, 8)
    with Flow(workspace=str(tmp_path)).add(uses=MemmapIndexer, shards=2, polling=SHARDED) as f:
        f.index(docs, request_size=20)
        f.delete(DocumentArray([Document(id='d7')]))
        new = Document(id='d9', text='replaced', embedding=-x[9])
        f.update(DocumentArray([new]))
        hits = search(f, x[[7, 9]], 200)
        res = f.search(queries_of(-x[[9]]), parameters={'limit': 1}, return_results=True)
    assert 'd7' not in {i for i, _ in hits[0]} and len(hits[0]) == 199
    assert res[0].docs[0].matches[0].id == 'd9' and res[0].docs[0].matches[0].text == 'replaced'


# -- update / delete semantics ---------------------------------------------------------------
def test_update_and_delete_semantics(tmp_path):
    docs, x = random_docs(50, 32)   # 32 dims: a vector's dot with itself beats any other's by far
    idx = MemmapIndexer(metas={'workspace': str(tmp_path)}, metric='dot')
    idx.index(docs, {})
    assert idx.update(DocumentArray([Document(id='d3', text='new', embedding=x[40] * 2),
                                     Document(id='nope', embedding=x[0])]), {}) == \
        {'updated': 1, 'missing': 1, 'removed': 0}
    q = queries_of(x[[40]])
    idx.search(q, {'limit': 2})
    assert [m.id for m in q[0].matches] == ['d3', 'd40'] and q[0].matches[0].text == 'new'
    assert idx.delete(DocumentArray([Document(id='d3')]), {'ids': ['d4', 'd4', 'gone']}) == \
        {'deleted': 2, 'missing': 1}
    assert idx.count == 48
    q = queries_of(x[[40, 4]])
    idx.search(q, {'limit': 1})
    assert q[0].matches[0].id == 'd40' and q[1].matches[0].id != 'd4'
    # indexing an id that is stored replaces it (no duplicate)
    idx.index(DocumentArray([Document(id='d5', text='again', embedding=x[5])]), {})
    assert idx.count == 48
    idx.close()
    reopened = MemmapIndexer(metas={'workspace': str(tmp_path)}, metric='dot')
    assert reopened.count == 48 and reopened.status(DocumentArray(), {})['count'] == 48
    q = queries_of(x[[5]])
    reopened.search(q, {'limit': 1})
    assert q[0].matches[0].text == 'again'
    reopened.close()


def test_cosine_scores_are_distances_as_documentarray_match_writes_them(tmp_path):
    # One meaning of a score name everywhere: the shard merge sorts 'cosine' ascending, so the
    # indexer must write the distance (1 - similarity) that DocumentArray.match writes.
    docs, x = random_docs(40, 8)
    q = np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)
    q[2] = 0  # a zero query: match ties it at distance 1 with everything; the indexer answers nothing
    idx = MemmapIndexer(metas={'workspace': str(tmp_path)})
    idx.index(docs, {})
    mine = queries_of(q)
    idx.search(mine, {'limit': 5})
    ref = queries_of(q)
    ref.match(docs, metric='cosine', limit=5)
    assert len(mine[2].matches) == 0 and [m.scores['cosine'].value for m in ref[2].matches] == [1.0] * 5
    for a, b in zip(mine[:2], ref[:2]):
        assert [m.id for m in a.matches] == [m.id for m in b.matches]
        np.testing.assert_allclose([m.scores['cosine'].value for m in a.matches],
                                   [m.scores['cosine'].value for m in b.matches], rtol=1e-5, atol=1e-6)
    assert mine[0].matches[0].scores['cosine'] < mine[0].matches[-1].scores['cosine']   # closest first
    idx.close()


def test_indexer_refuses_bad_embeddings(tmp_path):
    idx = MemmapIndexer(metas={'workspace': str(tmp_path)})
    with pytest.raises(ValueError, match='no embedding'):
        idx.index(DocumentArray([Document(text='x')]), {})
    idx.index(DocumentArray([Document(embedding=np.ones(4, np.float32))]), {})
    with pytest.raises(ValueError, match='dimension 3 but the index'):
        idx.index(DocumentArray([Document(embedding=np.ones(3, np.float32))]), {})
    with pytest.raises(ValueError, match='limit'):
        idx.search(queries_of(np.ones((1, 4), np.float32)), {'limit': -1})
    with pytest.raises(ValueError, match='metric'):
        MemmapIndexer(metas={'workspace': str(tmp_path)}, metric='manhattan')
    idx.close()


def test_empty_index_gives_no_matches(tmp_path):
    idx = MemmapIndexer(metas={'workspace': str(tmp_path)})
    q = queries_of(np.ones((1, 4), np.float32))
    idx.search(q, {})
    assert len(q[0].matches) == 0
    idx.close()


# -- encoder -----------------------------------------------------------------------------------
TEXTS = ['def parse_args(argv):\n    """Parse command line arguments."""',
         'class ThreadPoolExecutor(Executor):\n    def shutdown(self, wait=True): ...',
         'with gzip.open(path, "rb") as f:\n    data = f.read()', 'naïve café — ünïcode', '']


def test_encoder_dim_normalisation_and_empty_text():
    enc = HashingTextEncoder(dim=256)
    docs = DocumentArray([Document(text=t) for t in TEXTS] + [Document()])
    enc.encode(docs, {})
    e = docs.embeddings
    assert e.shape == (6, 256) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e[:4], axis=1), 1.0, rtol=1e-5)
    assert not e[4].any() and not e[5].any()          # '' and None: zero vectors
    only_stop = HashingTextEncoder(dim=32).embed(['the of and', '(){}[] + 1 2 3'])
    assert not only_stop.any()
    assert HashingTextEncoder().embed(['x']).shape == (1, 768)   # default dim


def test_encoder_is_deterministic_across_processes():
    mine = HashingTextEncoder(dim=128).embed(TEXTS)
    again = HashingTextEncoder(dim=128).embed(TEXTS[::-1])[::-1]  # batch order does not matter
    np.testing.assert_array_equal(mine, again)
    code = ('import sys, numpy as np; sys.path.insert(0, sys.argv[1]);'
            'from executors.encoders import HashingTextEncoder;'
            'from tests.test_executors import TEXTS;'
            'sys.stdout.buffer.write(HashingTextEncoder(dim=128).embed(TEXTS).tobytes())')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for seed in ('1', '2'):  # another interpreter with another str hash salt: same vectors
        out = subprocess.run([sys.executable, '-c', code, root], capture_output=True, check=True,
                             env={**os.environ, 'PYTHONHASHSEED': seed}).stdout
        np.testing.assert_array_equal(np.frombuffer(out, np.float32).reshape(mine.shape), mine)


def test_encoder_features_split_identifiers_and_rank_related_text_first():
    words = hash_features(['ThreadPoolExecutor HTTPServer parse_args'])['words'][1]
    expected = hash_features(['thread pool executor http server parse args'])['words'][1]
    np.testing.assert_array_equal(words, expected)
    enc = HashingTextEncoder()
    corpus = enc.embed(TEXTS[:3])
    for query, best in (('parse command line arguments', 0), ('thread pool executor shutdown', 1),
                        ('read a gzip file', 2)):
        assert int(np.argmax(corpus @ enc.embed([query])[0])) == best, query


def test_encoder_rejects_bad_settings():
    with pytest.raises(ValueError, match='dim'):
        HashingTextEncoder(dim=0)
    with pytest.raises(ValueError, match='char_ngrams'):
        HashingTextEncoder(char_ngrams=(5, 3))
    with pytest.raises(ValueError, match='family_weights'):
        HashingTextEncoder(family_weights={'trigrams': 1.0})
    no_ngrams = HashingTextEncoder(dim=8, char_ngrams=(0, 0)).embed(['parse args'])
    assert np.isclose(np.linalg.norm(no_ngrams), 1.0)


# -- segmenter ---------------------------------------------------------------------------------
def _code(n_funcs: int) -> str:
    return '"""Module."""\n\nimport os\n\n\n' + ''.join(
        f'def func_{i}(x):\n    """Doc {i}."""\n' + ''.join(f'    y{j} = x * {j}\n' for j in range(i % 7 + 1))
        + '    return y0\n\n\n' for i in range(n_funcs)) + 'x = "' + 'z' * 700 + '"\n'


@pytest.mark.parametrize('max_chars', [60, 200, 1000])
def test_segmenter_sizes_cover_the_text_and_line_numbers(max_chars):
    text = _code(40)
    parts = list(split_text(text, max_chars))
    assert all(len(p) <= max_chars for p, _, _ in parts)
    # No overlap: the passages are the text, in order, less runs of blank lines between them.
    end = 0
    for p, _, _ in parts:
        at = text.index(p, end)
        assert not text[end:at].strip()
        end = at + len(p)
    assert not text[end:].strip()
    if max_chars >= 200:
        assert ''.join(p for p, _, _ in parts) == text
    lines = text.split('\n')
    for p, line, end in parts:
        first = next(s for s in p.split('\n') if s.strip())
        last = [s for s in p.split('\n') if s.strip()][-1]
        assert lines[line - 1].startswith(first) or first in lines[line - 1]
        assert last in lines[end - 1] and line <= end


def test_segmenter_keeps_paragraphs_whole_when_they_fit():
    text = _code(10)
    for p, _, _ in split_text(text, 400):
        if p.lstrip().startswith('def '):
            assert p.rstrip().endswith('return y0')   # a function is not cut in the middle


def test_segmenter_overlap():
    text = _code(30)
    parts = [p for p, _, _ in split_text(text, 300, overlap=80)]
    assert all(len(p) <= 300 for p in parts)
    shared = 0
    for a, b in zip(parts, parts[1:]):
        k = max((n for n in range(1, 81) if a.endswith(b[:n])), default=0)
        shared += k > 0
        assert k <= 80
    assert shared >= len(parts) // 2                      # most passages repeat a tail of the previous one
    with pytest.raises(ValueError, match='overlap'):
        TextSegmenter(max_chars=100, overlap=60)


def test_segmenter_executor_flattens_with_parent_id_uri_and_tags():
    seg = TextSegmenter(max_chars=200)
    docs = DocumentArray([Document(id='f1', text=_code(8), uri='pkg/mod.py', tags={'repo': 'r'}),
                          Document(id='f2', text=None, uri='empty.py'), Document(id='f3', text='x = 1\n')])
    out = seg.segment(docs, {})
    assert {d.parent_id for d in out} == {'f1', 'f3'}     # no text: no passage
    f1 = [d for d in out if d.parent_id == 'f1']
    assert [d.tags['chunk'] for d in f1] == list(range(len(f1))) and len(f1) > 3
    assert all(d.uri == 'pkg/mod.py' and d.tags['repo'] == 'r' and d.id == f'f1/{d.tags["chunk"]}' for d in f1)
    assert f1[0].tags['line'] == 1 and all(a.tags['line'] <= b.tags['line'] for a, b in zip(f1, f1[1:]))
    nested = TextSegmenter(max_chars=200, flatten=False)
    docs2 = DocumentArray([Document(id='f1', text=_code(8))])
    assert nested.segment(docs2, {}) is None and len(docs2[0].chunks) == len(f1)


def test_text_pipeline_in_a_flow(tmp_path):
    files = DocumentArray([Document(id=f'f{i}', text=t, uri=f'file{i}.py') for i, t in enumerate(TEXTS[:3])])
    flow = (Flow(workspace=str(tmp_path)).add(uses=TextSegmenter, uses_with={'max_chars': 300})
            .add(uses=HashingTextEncoder, replicas=2).add(uses=MemmapIndexer))
    with flow:
        flow.index(files, request_size=1)
        res = flow.search(Document(text='gzip read'), parameters={'limit': 2}, return_results=True)
    q = res[0].docs[0]
    assert q.text == 'gzip read'                             # the segmenter leaves queries whole
    assert q.matches[0].uri == 'file2.py' and q.matches[0].tags['line'] == 1
    assert q.matches[0].parent_id == 'f2'


def test_update_and_delete_a_whole_document_through_its_passages(tmp_path):
    # A user indexes documents; the segmenter stores passages '<id>/<k>'. Updating a document
    # replaces all its passages (new ones added, stale ones removed); deleting it by its
    # own id removes them.
    flow = (Flow(workspace=str(tmp_path)).add(uses=TextSegmenter, uses_with={'max_chars': 20})
            .add(uses=HashingTextEncoder, uses_with={'dim': 32}).add(uses=MemmapIndexer))

    def post(endpoint, doc=None, **kw):
        return flow.post(endpoint, doc, return_results=True, **kw)[0].parameters['__results__']['MemmapIndexer']

    def search(text):
        res = flow.search(Document(text=text), parameters={'limit': 10}, return_results=True)
        return sorted(m.id for m in res[0].docs[0].matches)

    with flow:
        flow.index(DocumentArray([Document(id='doc', text='short text\n'), Document(id='other', text='keep me\n')]))
        assert post('/status')['count'] == 2
        grown = Document(id='doc', text='line one here\nline two here\nline three here\n')
        assert post('/update', grown) == {'updated': 3, 'missing': 0, 'removed': 0}
        assert post('/status')['count'] == 4
        assert search('line two') == ['doc/0', 'doc/1', 'doc/2', 'other/0']
        shrunk = Document(id='doc', text='only line\n')
        assert post('/update', shrunk) == {'updated': 1, 'missing': 0, 'removed': 2}
        assert search('only line') == ['doc/0', 'other/0']
        assert post('/update', Document(id='never', text='not indexed\n')) == \
            {'updated': 0, 'missing': 1, 'removed': 0}
        # emptied: it has no passage now, and its stored ones go
        assert post('/update', Document(id='other', text='')) == {'updated': 0, 'missing': 0, 'removed': 1}
        assert search('keep me') == ['doc/0']
        flow.index(Document(id='other', text='keep me\n'))
        assert post('/delete', Document(id='doc')) == {'deleted': 1, 'missing': 0}
        assert post('/status')['count'] == 1
        assert post('/delete', DocumentArray(), parameters={'ids': ['other/0', 'doc']}) == \
            {'deleted': 1, 'missing': 1}
        assert post('/status')['count'] == 0
    # the parent map is rebuilt from the store after a restart
    idx = MemmapIndexer(metas={'workspace': str(tmp_path / 'MemmapIndexer')})
    assert idx.count == 0
    idx.index(DocumentArray([Document(id='p/0', parent_id='p', embedding=np.ones(4, np.float32))]), {})
    idx.close()
    idx = MemmapIndexer(metas={'workspace': str(tmp_path / 'MemmapIndexer')})
    assert idx.delete(DocumentArray([Document(id='p')]), {}) == {'deleted': 1, 'missing': 0}
    idx.close()
