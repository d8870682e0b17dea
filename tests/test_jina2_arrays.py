"""Jina 2's DocumentArray operations (runtime.arrayops, runtime.match): traversal, bulk
access with documents, sampling, search by tags, and nearest-neighbour ``match`` checked
against a brute-force reference."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from runtime import Document, DocumentArray, DocumentArrayMemmap
from runtime.arrayops import ArrayOps, parse_traversal_paths


def _tree() -> DocumentArray:
    """Two roots; each has two chunks with one chunk each, and one match."""
    roots = []
    for r in range(2):
        chunks = [Document(id=f'r{r}c{c}', chunks=[Document(id=f'r{r}c{c}c0')]) for c in range(2)]
        roots.append(Document(id=f'r{r}', chunks=chunks, matches=[Document(id=f'r{r}m0')]))
    return DocumentArray(roots)


def _ids(docs) -> list[str]:
    return [d.id for d in docs]


# -- traversal -------------------------------------------------------------------------------------
@pytest.mark.parametrize('paths', [['c'], 'c', ('c',)])
def test_traverse_yields_each_documents_chunks(paths):
    seqs = list(_tree().traverse(paths))
    assert [_ids(s) for s in seqs] == [['r0c0', 'r0c1'], ['r1c0', 'r1c1']]


def test_traverse_flat_follows_paths_in_order_and_returns_the_same_objects():
    da = _tree()
    flat = da.traverse_flat(['r', 'cc', 'm'])
    assert _ids(flat) == ['r0', 'r1', 'r0c0c0', 'r0c1c0', 'r1c0c0', 'r1c1c0', 'r0m0', 'r1m0']
    assert flat[0] is da[0]  # not copies: changing them changes the tree
    assert _ids(da.traverse_flat('r,cc')) == _ids(flat)[:6]


def test_traverse_flat_per_path_and_filter():
    per = list(_tree().traverse_flat_per_path(['c', 'm']))
    assert [_ids(s) for s in per] == [['r0c0', 'r0c1', 'r1c0', 'r1c1'], ['r0m0', 'r1m0']]
    only = _tree().traverse_flat(['c'], filter_fn=lambda d: d.id.endswith('c1'))
    assert _ids(only) == ['r0c1', 'r1c1']


@pytest.mark.parametrize('bad', ['x', ['r', 'cz'], [''], [1]])
def test_bad_traversal_paths_are_named(bad):
    with pytest.raises(ValueError, match="'r'.*'c'.*'m'"):
        parse_traversal_paths(bad)


def test_get_attributes_with_docs_keeps_values_and_docs_aligned():
    da = DocumentArray([Document(text='a', tags={'k': 1}), Document(tags={'k': 2}), Document(text='c')])
    texts, docs = da.get_attributes_with_docs('text')
    assert texts == ['a', 'c'] and docs[1] is da[2]
    (texts, ks), docs = da.get_attributes_with_docs('text', 'tags__k')
    assert texts == ['a'] and ks == [1] and len(docs) == 1


def test_sample_and_shuffle_are_seeded_without_touching_global_random():
    da = DocumentArray(Document(id=str(i)) for i in range(50))
    random.seed(7)
    expected = random.random()
    random.seed(7)
    a = da.sample(10, seed=3)
    assert random.random() == expected  # the global stream is left alone
    assert _ids(a) == _ids(da.sample(10, seed=3)) and len(set(_ids(a))) == 10
    shuffled = da.shuffle(seed=1)
    assert sorted(_ids(shuffled), key=int) == _ids(da) and _ids(shuffled) != _ids(da)
    assert _ids(da) == [str(i) for i in range(50)]  # unchanged
    with pytest.raises(ValueError, match='greater than the length'):
        da.sample(51)


def test_find_by_tag_regexes_with_operator_and_threshold():
    da = DocumentArray([Document(id='a', tags={'city': 'Berlin', 'lang': 'de'}),
                        Document(id='b', tags={'city': 'Bonn', 'lang': 'fr'}),
                        Document(id='c', tags={'city': 'Paris', 'lang': 'fr', 'n': 12})])
    regexes = {'city': 'B.*', 'lang': 'de'}
    assert _ids(da.find(regexes)) == ['a']
    assert regexes == {'city': 'B.*', 'lang': 'de'}  # Jina 2 compiled them in the caller's dict
    assert _ids(da.find(regexes, threshold=1)) == ['a', 'b']
    assert _ids(da.find(regexes, operator='==', threshold=0)) == ['c']
    assert _ids(da.find({'n': r'1\d'})) == ['c']  # non-str tags are matched as str
    with pytest.raises(ValueError, match='operator'):
        da.find(regexes, operator='~')


def test_find_on_chunks_returns_the_chunks_it_matched():
    da = DocumentArray([Document(id='root', chunks=[Document(id='x', tags={'t': 'no'}),
                                                    Document(id='y', tags={'t': 'yes'})])])
    # Jina 2.0 returned the root document at the matched chunk's position instead.
    assert _ids(da.find({'t': 'yes'}, traversal_paths=['c'])) == ['y']


# -- match -------------------------------------------------------------------------------------------
def _reference(X: np.ndarray, Y: np.ndarray, metric: str) -> np.ndarray:
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    if metric == 'cosine':
        return 1 - (X @ Y.T) / np.outer(np.linalg.norm(X, axis=1), np.linalg.norm(Y, axis=1))
    sq = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    return np.sqrt(sq) if metric == 'euclidean' else sq


def _arrays(nq: int, nd: int, dim: int, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    q = DocumentArray(Document(id=f'q{i}') for i in range(nq))
    q.embeddings = rng.standard_normal((nq, dim)).astype(dtype)
    d = DocumentArray(Document(id=f'd{i}', text=f'doc {i}', tags={'i': i}) for i in range(nd))
    d.embeddings = rng.standard_normal((nd, dim)).astype(dtype)
    return q, d


@pytest.mark.parametrize('metric', ['cosine', 'euclidean', 'sqeuclidean'])
@pytest.mark.parametrize('batch_size', [None, 7])
def test_match_equals_brute_force(metric, batch_size):
    q, d = _arrays(23, 61, 16)
    q.match(d, metric=metric, limit=5, batch_size=batch_size)
    ref = _reference(q.embeddings, d.embeddings, metric)
    for i, doc in enumerate(q):
        expected = np.argsort(ref[i], kind='stable')[:5]
        assert _ids(doc.matches) == [f'd{j}' for j in expected]
        got = [float(m.scores[metric]) for m in doc.matches]
        assert got == pytest.approx(ref[i][expected], rel=1e-4, abs=1e-4)


def test_a_zero_embedding_is_at_cosine_distance_one_not_nan():
    q = DocumentArray([Document(id='q', embedding=np.array([0., 1.])), Document(id='z', embedding=np.zeros(2))])
    d = DocumentArray([Document(id='x', embedding=np.array([1., 0.])), Document(id='y', embedding=np.array([1., 1.])),
                       Document(id='o', embedding=np.zeros(2))])
    q.match(d, limit=3, batch_size=2)  # the zero row in a batch of its own
    assert [(m.id, round(float(m.scores['cosine']), 4)) for m in q[0].matches] == [('y', 0.2929), ('x', 1.0),
                                                                                   ('o', 1.0)]
    assert [float(m.scores['cosine']) for m in q[1].matches] == [1.0, 1.0, 1.0]


def test_match_jina2_documented_example():
    da1 = DocumentArray(Document() for _ in range(4))
    da1.embeddings = np.array([[0, 0, 0, 0, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0], [1, 2, 2, 1, 0]])
    da2 = DocumentArray(Document() for _ in range(5))
    da2.embeddings = np.array([[0.0, 0.1, 0.0, 0.0, 0.0], [1.0, 0.1, 0.0, 0.0, 0.0], [1.0, 1.2, 1.0, 1.0, 0.0],
                               [1.0, 2.2, 2.0, 1.0, 0.0], [4.0, 5.2, 2.0, 1.0, 0.0]])
    da1.match(da2, metric='euclidean', limit=3)
    query = da1[2]
    assert [m.embedding.tolist() for m in query.matches] == [da2[2].embedding.tolist(), da2[3].embedding.tolist(),
                                                             da2[1].embedding.tolist()]
    assert [float(m.scores['euclidean']) for m in query.matches] == pytest.approx([0.2, 1.56205, 1.67631], abs=1e-5)


def test_matches_are_copies_with_adjacency_and_replace_earlier_matches():
    q, d = _arrays(3, 10, 4)
    q.match(d, limit=2)
    q.match(d, limit=3, metric_name='sim')
    m = q[0].matches[0]
    assert len(q[0].matches) == 3 and set(m.scores) == {'sim'}
    assert m.adjacency == q[0].adjacency + 1 and m.text == d[m.id].text
    m.tags['changed'] = True
    assert 'changed' not in d[m.id].tags
    assert 'sim' not in d[m.id].scores


def test_match_limit_none_normalization_and_only_id():
    q, d = _arrays(4, 9, 3)
    q.match(d, limit=None, normalization=(1, 0))
    for doc in q:
        values = [float(m.scores['cosine']) for m in doc.matches]
        assert len(values) == 9 and values[0] == pytest.approx(1) and values[-1] == pytest.approx(0)
        assert values == sorted(values, reverse=True)
    q.match(d, limit=math.inf, only_id=True)
    m = q[0].matches[0]
    assert len(q[0].matches) == 9 and m.text is None and m.embedding is None and m.id.startswith('d')


def test_normalization_uses_every_candidate_even_in_batches():
    q, d = _arrays(5, 40, 6)
    q.match(d, limit=3, normalization=(0, 1), batch_size=7)
    ref = _reference(q.embeddings, d.embeddings, 'cosine')
    for i, doc in enumerate(q):
        lo, hi = ref[i].min(), ref[i].max()
        expected = (np.sort(ref[i])[:3] - lo) / (hi - lo)
        assert [float(m.scores['cosine']) for m in doc.matches] == pytest.approx(expected, abs=1e-5)


def test_match_with_itself_exclude_self_and_no_recursion():
    _, d = _arrays(0, 12, 5)
    d.match(d, limit=3, exclude_self=True)
    for doc in d:
        assert len(doc.matches) == 3 and doc.id not in _ids(doc.matches)
        assert all(len(m.matches) == 0 for m in doc.matches)
    d.match(d, limit=1)
    assert all(doc.matches[0].id == doc.id for doc in d)


def test_match_along_traversal_paths():
    q = DocumentArray([Document(chunks=[Document(embedding=np.array([1.0, 0.0]))])])
    d = DocumentArray([Document(chunks=[Document(id='near', embedding=np.array([1.0, 0.1])),
                                        Document(id='far', embedding=np.array([0.0, 1.0]))])])
    q.match(d, traversal_ldarray=['c'], traversal_rdarray='c', limit=1)
    assert _ids(q[0].chunks[0].matches) == ['near'] and len(q[0].matches) == 0


def test_match_callable_metric_and_its_name():
    q, d = _arrays(3, 8, 4)

    def manhattan(x, y):
        return np.abs(x[:, None, :] - y[None, :, :]).sum(-1)

    q.match(d, metric=manhattan, limit=2)
    ref = manhattan(q.embeddings, d.embeddings)
    assert _ids(q[1].matches) == [f'd{j}' for j in np.argsort(ref[1])[:2]]
    assert float(q[1].matches[0].scores['manhattan']) == pytest.approx(np.sort(ref[1])[0], rel=1e-5)


def test_match_against_a_memmap(tmp_path):
    q, d = _arrays(6, 30, 8)
    with DocumentArrayMemmap(str(tmp_path / 'dam')) as dam:
        dam.extend(d)
        q.match(dam, limit=4, batch_size=8)
        ref = _reference(q.embeddings, d.embeddings, 'cosine')
        assert _ids(q[0].matches) == [f'd{j}' for j in np.argsort(ref[0])[:4]]
        assert q[0].matches[0].tags['i'] == int(q[0].matches[0].id[1:])


@pytest.mark.parametrize('call, error, words', [
    (lambda q, d: q.match(d, metric='hamming'), ValueError, 'not built in'),
    (lambda q, d: q.match(d, limit=0), ValueError, 'limit'),
    (lambda q, d: q.match(d, batch_size=-1), ValueError, 'batch_size'),
    (lambda q, d: q.match(d, normalization=1), TypeError, 'pair'),
    (lambda q, d: q.match(d, device='cuda'), ValueError, 'cpu'),
    (lambda q, d: q.match(d, colour=1), TypeError, 'colour'),
    (lambda q, d: q.match(DocumentArray([Document(text='no embedding')])), ValueError, 'no document'),
    (lambda q, d: q.match(DocumentArray([Document(embedding=np.zeros(3))])), ValueError, 'different sizes'),
])
def test_match_bad_arguments_say_what_to_pass(call, error, words):
    q, d = _arrays(2, 3, 4)
    with pytest.raises(error, match=words):
        call(q, d)


def test_arrayops_needs_only_the_sequence_protocol():
    class Plain(ArrayOps):
        def __init__(self, docs):
            self.docs = list(docs)

        def __iter__(self):
            return iter(self.docs)

        def __len__(self):
            return len(self.docs)

        def __getitem__(self, key):
            return self.docs[key] if isinstance(key, int) else next(d for d in self.docs if d.id == key)

    q, d = _arrays(2, 5, 3)
    plain = Plain(d)
    q.match(plain, limit=2)
    assert len(q[0].matches) == 2
    assert len(plain.sample(2, seed=0)) == 2 and _ids(plain.traverse_flat('r')) == _ids(d)
