"""The hybrid code-search executors: terms, SparseIndexer (BM25), LSAEncoder, FusionRanker."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from executors.fusion import FusionRanker, fuse
from executors.indexers import MemmapIndexer
from executors.lsa import LSAEncoder, csr_matmul, csr_rmatmul, randomized_svd
from executors.segmenters import TextSegmenter
from executors.sparse import SparseIndexer
from executors.terms import path_terms, stem, term_counts
from runtime import Document, DocumentArray, Flow

CORPUS = {
    'mail/smtp_client.py': 'import smtplib\n\ndef send_mail(host, message):\n    """Send an email message."""\n'
                           '    with smtplib.SMTP(host) as server:\n        server.send_message(message)\n',
    'archive/gzip_reader.py': 'import gzip\n\ndef read_gzip(path):\n    """Read a gzip compressed file."""\n'
                              '    with gzip.open(path) as fp:\n        return fp.read()\n',
    'archive/zip_writer.py': 'import zipfile\n\ndef write_zip(path, names):\n    """Write files into a zip archive."""\n'
                             '    with zipfile.ZipFile(path, "w") as z:\n        for n in names:\n            z.write(n)\n',
    'cli/args.py': 'import argparse\n\ndef parse_args(argv):\n    """Parse the command line arguments."""\n'
                   '    parser = argparse.ArgumentParser()\n    return parser.parse_args(argv)\n',
    'net/http_fetch.py': 'import urllib.request\n\ndef fetch_page(url):\n    """Download a web page."""\n'
                         '    with urllib.request.urlopen(url) as r:\n        return r.read()\n',
    'text/wrapper.py': 'def wrap_lines(text, width):\n    """Break long lines of text to fit a width."""\n'
                       '    return [text[i:i + width] for i in range(0, len(text), width)]\n',
}


def corpus_docs() -> DocumentArray:
    return DocumentArray([Document(id=p, text=t, uri=f'/src/{p}', tags={'path': p}) for p, t in CORPUS.items()])


def test_terms_split_identifiers_stem_and_drop_stop_words():
    assert term_counts('ThreadPoolExecutor HTTPServer parse_args sha256 the self 42 x') == {
        'thread': 1, 'pool': 1, 'execut': 1, 'http': 1, 'serv': 1, 'pars': 1, 'arg': 1, 'sha256': 1}
    # Inflections meet: what a query says and what the code says.
    assert {stem(w) for w in ('compress', 'compressed', 'compression', 'compressor', 'compresses')} == {'compress'}
    assert term_counts(None) == {} and term_counts('abc def', max_chars=3) == {'abc': 1}
    assert path_terms('/usr/lib/python3.11/email/mime/multipart.py') == ['email', 'mim', 'multipart']


def test_sparse_ranks_by_bm25_with_the_name_field_and_persists(tmp_path):
    idx = SparseIndexer(metas={'workspace': str(tmp_path)}, rank_tag='sparse')
    idx.index(corpus_docs(), {})
    q = DocumentArray([Document(text='read a gzip file'), Document(text='zip'), Document(text='nothing matches')])
    idx.search(q, {'limit': 3})
    assert q[0].matches[0].id == 'archive/gzip_reader.py'
    assert q[0].matches[0].uri == '/src/archive/gzip_reader.py' and 'gzip' in q[0].matches[0].text
    scores = [m.scores['bm25'] for m in q[0].matches]
    assert scores == sorted(scores, reverse=True) and len(scores) <= 3
    # rank_tag: the branch's ranking is the matches, each carrying its score under the branch's name
    assert [(m.scores['sparse'].value, m.scores['sparse'].op_name) for m in q[0].matches] == \
        [(s.value, 'bm25') for s in scores]
    assert 'sparse' not in q[0].tags
    assert q[1].matches[0].id == 'archive/zip_writer.py'       # the file name counts as a field
    assert len(q[2].matches) == 0
    idx.close()
    # The arrays are on disk, memmap-friendly, in the generation meta.json names; no pending log.
    gen = json.loads((tmp_path / 'SparseIndexer' / 'sparse' / 'meta.json').read_text())['generation']
    files = set(os.listdir(tmp_path / 'SparseIndexer' / 'sparse' / f'gen-{gen}'))
    assert {'vocab.npy', 'ptr.npy', 'post_doc.npy', 'post_tf.npy', 'doc_len.npy', 'ids.npy'} <= files
    assert not any(f.startswith('pending') or f.startswith('gen-') and f != f'gen-{gen}'
                   for f in os.listdir(tmp_path / 'SparseIndexer' / 'sparse'))
    again = SparseIndexer(metas={'workspace': str(tmp_path)})
    q = DocumentArray([Document(text='send mail')])
    again.search(q, {})
    assert q[0].matches[0].id == 'mail/smtp_client.py'
    assert again.delete(DocumentArray(), {'ids': ['mail/smtp_client.py', 'nope']}) == {'deleted': 1, 'missing': 1}
    # Re-indexing an id replaces it; deleted documents are never returned.
    again.index(DocumentArray([Document(id='cli/args.py', text='def send_mail(): pass', tags={'path': 'cli/args.py'})]), {})
    q = DocumentArray([Document(text='send mail')])
    again.search(q, {})
    assert [m.id for m in q[0].matches] == ['cli/args.py']
    assert again.status(DocumentArray(), {})['count'] == len(CORPUS) - 1
    again.close()


def test_sparse_shards_in_a_flow_find_every_document(tmp_path):
    f = Flow(workspace=str(tmp_path)).add(uses=SparseIndexer, shards=2, polling={'/index': 'any', '*': 'all'})
    with f:
        f.index(corpus_docs(), request_size=1)
        res = f.search(Document(text='gzip zip mail argparse page wrap'), parameters={'limit': 10},
                       return_results=True)
        status = f.post('/status', return_results=True)
    assert {m.id for m in res[0].docs[0].matches} == set(CORPUS)
    counts = [s['count'] for s in status[0].parameters['__results__']['SparseIndexer']]
    assert sum(counts) == len(CORPUS) and all(counts)


def test_sparse_products_and_randomized_svd_match_dense_numpy():
    rng = np.random.default_rng(1)
    dense = rng.random((40, 30)) * (rng.random((40, 30)) < 0.2)
    dense[5] = 0                                   # an empty row
    indptr = np.concatenate([[0], np.cumsum((dense != 0).sum(1))])
    indices = np.nonzero(dense)[1]
    data = dense[dense != 0]
    x = rng.random((30, 4))
    assert np.allclose(csr_matmul(indptr, indices, data, x, block_nnz=7), dense @ x)
    y = rng.random((40, 4))
    assert np.allclose(csr_rmatmul(indptr, indices, data, y, 30, block_nnz=7), dense.T @ y)
    s, v = randomized_svd(indptr, indices, data.astype(np.float32), 30, 5, oversample=20, power_iters=4)
    exact = np.linalg.svd(dense, compute_uv=False)[:5]
    assert np.allclose(s, exact, rtol=1e-3)
    assert v.shape == (30, 5) and np.allclose(v.T @ v, np.eye(5), atol=1e-4)


def test_lsa_fits_saves_with_a_fingerprint_and_refits_only_on_change(tmp_path):
    ws = {'workspace': str(tmp_path)}
    enc = LSAEncoder(metas=ws, dim=4, min_df=1)
    with pytest.raises(ValueError, match='/fit'):
        enc.embed([Document(text='gzip')])
    enc.fit(corpus_docs()[:3], {})
    assert enc.fit(corpus_docs()[3:], {'finish': True}) == {'fitted': True, 'docs': len(CORPUS)}
    emb = enc.embed(list(corpus_docs()) + [Document(text='')])
    assert emb.shape == (len(CORPUS) + 1, 4) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb[:-1], axis=1), 1, atol=1e-5) and not emb[-1].any()
    meta = json.loads((tmp_path / 'LSAEncoder' / 'lsa' / 'model.json').read_text())
    assert meta['fingerprint'] == enc.fingerprint and meta['settings']['dim'] == 4

    # A new process on the workspace loads the model; the same corpus (in another order)
    # keeps it, a changed one refits.
    again = LSAEncoder(metas=ws, dim=4, min_df=1)
    assert again.fitted and np.allclose(again.embed(list(corpus_docs())), emb[:-1], atol=1e-5)
    again.fit(DocumentArray(list(corpus_docs())[::-1]), {})
    assert again.finish_fit() == {'fitted': False, 'docs': len(CORPUS)}
    changed = corpus_docs()
    changed[0].text += '\n# changed\n'
    again.fit(changed, {'finish': True})
    assert again.fingerprint != enc.fingerprint
    # Other settings do not reuse the saved model.
    assert not LSAEncoder(metas=ws, dim=3, min_df=1).fitted


def test_lsa_fit_sample_stays_bounded():
    from executors.lsa import _FitData
    data = _FitData(cap=50)
    for k in range(40):
        data.add([{f't{k}': 1.0, 'common': 2.0}] * 10, [(k * 10 + j) * 0x9E3779B97F4A7C15 & ((1 << 64) - 1)
                                                          for j in range(10)])
    assert data.seen == 400 and 0 < data.rows <= 50 and data.level >= 3
    lens, idx, val, hashes = data.arrays()
    assert len(lens) == data.rows == len(hashes) and lens.sum() == len(idx) == len(val)


def test_fuse_by_normalised_sum_and_by_reciprocal_rank():
    runs = {'a': (['x', 'y', 'z'], [9.0, 5.0, 1.0]), 'b': (['z', 'y'], [0.9, 0.8])}
    assert fuse(runs, {'a': 1, 'b': 1}, 'sum') == [('x', 1.0), ('z', 1.0), ('y', 0.5)]   # ties: first seen first
    rrf = fuse(runs, {'a': 1, 'b': 1}, 'rrf')
    assert rrf[0][0] in ('y', 'z') and {i for i, _ in rrf} == {'x', 'y', 'z'}
    assert fuse(runs, {'a': 1, 'b': 0}, 'sum')[0][0] == 'x'
    with pytest.raises(ValueError):
        fuse(runs, {}, 'max')


def test_hybrid_flow_runs_branches_in_parallel_and_fuses(tmp_path):
    """The demo's shape: segmenter, then BM25 and LSA branches (needs=), joined by the fusion."""
    f = (Flow(workspace=str(tmp_path))
         .add(name='segmenter', uses=TextSegmenter)
         .add(name='sparse', uses=SparseIndexer, uses_with={'rank_tag': 'sparse'}, needs='segmenter')
         .add(name='lsa', uses=LSAEncoder, uses_with={'dim': 4, 'min_df': 1}, needs='segmenter')
         .add(name='dense', uses=MemmapIndexer, uses_with={'rank_tag': 'dense'}, needs='lsa')
         .add(name='fusion', uses=FusionRanker, needs=['sparse', 'dense']))
    with f:
        f.post('/fit', corpus_docs(), request_size=2)
        f.index(corpus_docs(), request_size=2)
        res = f.search(DocumentArray([Document(text='read gzip compressed file'), Document(text='send an email')]),
                       parameters={'limit': 3}, return_results=True)
        rrf = f.search(Document(text='send an email'), parameters={'limit': 3, 'fusion': 'rrf'},
                       return_results=True)
    q1, q2 = res[0].docs
    assert q1.matches[0].parent_id == 'archive/gzip_reader.py'
    assert q2.matches[0].parent_id == 'mail/smtp_client.py'
    assert rrf[0].docs[0].matches[0].parent_id == 'mail/smtp_client.py'
    top = q1.matches[0]
    assert {'fused', 'sparse', 'dense'} <= set(top.scores) and len(q1.matches) == 3
    fused = [m.scores['fused'] for m in q1.matches]
    assert fused == sorted(fused, reverse=True)
    assert 'sparse' not in q1.tags and 'dense' not in q1.tags     # the ranking tags are consumed


# -- what a score name means; rankings through shards and joins ------------------------------------
def test_score_names_mean_one_thing_everywhere():
    from runtime.control.merge import DISTANCE_SCORES as merge_distances, sort_matches
    from runtime.match import METRICS
    from runtime.scores import DISTANCE_SCORES, NamedScore, is_distance
    assert merge_distances is DISTANCE_SCORES              # one definition, re-exported
    assert set(METRICS) <= DISTANCE_SCORES                 # what DocumentArray.match writes is a distance
    assert is_distance('l2') and not is_distance('bm25') and is_distance('dense', op_name='cosine')

    def order(name, values, op_name=''):
        ms = DocumentArray([Document(id=str(v), scores={name: NamedScore(v, op_name=op_name)}) for v in values])
        sort_matches(ms, 2)
        return [m.id for m in ms]
    assert order('cosine', [0.5, 0.1, 0.9]) == ['0.1', '0.5']
    assert order('bm25', [0.5, 0.1, 0.9]) == ['0.9', '0.5']
    assert order('dense', [0.5, 0.1, 0.9], op_name='l2') == ['0.1', '0.5']
    # match's distances under a name of the user's still sort closest first
    q = DocumentArray([Document(embedding=np.array([1.0, 0.0]))])
    found = DocumentArray([Document(id=str(i), embedding=np.array([1.0, float(i)])) for i in range(4)])
    q.match(found, metric_name='sim', limit=4)
    ms = DocumentArray(list(q[0].matches)[::-1])
    sort_matches(ms, 2)
    assert [m.id for m in ms] == ['0', '1'] and ms[0].scores['sim'].op_name == 'distance'
    q.match(found, normalization=(1, 0), metric_name='closeness', limit=2)   # larger is better now
    assert [m.scores['closeness'].op_name for m in q[0].matches] == ['similarity', 'similarity']


@pytest.mark.parametrize('metric', ['l2', 'cosine', 'dot'])
def test_fusion_keeps_the_order_of_a_branch_whatever_its_metric(tmp_path, metric):
    idx = MemmapIndexer(metric=metric, rank_tag='dense', metas={'workspace': str(tmp_path), 'name': 'dense'})
    # d0 is the closest to the query by every metric, d4 the farthest
    idx.index(DocumentArray([Document(id=f'd{i}', embedding=np.array([4.0 - i, i], np.float32))
                             for i in range(5)]), {})
    q = DocumentArray([Document(embedding=np.array([4.0, 0.0], np.float32))])
    idx.search(q, {'limit': 3})
    ranked = [m.id for m in q[0].matches]
    assert ranked == ['d0', 'd1', 'd2']
    assert q[0].matches[0].scores['dense'].op_name == metric
    FusionRanker(branches={'dense': 1.0}).search(q, {'limit': 3})
    assert [m.id for m in q[0].matches] == ranked
    fused = [m.scores['fused'].value for m in q[0].matches]
    if metric == 'cosine':  # (not evenly spaced: d1 and d2 are closer in angle)
        assert fused[0] == 1.0 and fused[-1] == 0.0 and fused[0] > fused[1] > fused[2]
    else:
        assert fused == [1.0, 0.5, 0.0]
    idx.close()


def test_search_executors_take_a_numpy_or_whole_float_top_k_and_refuse_the_rest(tmp_path):
    # A limit computed with numpy, or sent as JSON by Jina 2 code (every number a float).
    dense = MemmapIndexer(rank_tag='dense', metas={'workspace': str(tmp_path / 'd'), 'name': 'dense'})
    sparse = SparseIndexer(metas={'workspace': str(tmp_path / 's'), 'name': 'sparse'})
    docs = DocumentArray([Document(id=f'd{i}', text=f'read gzip file {i}', embedding=np.array([1.0, i], np.float32))
                          for i in range(5)])
    dense.index(docs, {})
    sparse.index(docs, {})
    try:
        for limit in (np.int64(2), 2.0, np.float32(2)):
            for idx in (dense, sparse):
                q = DocumentArray([Document(text='gzip file', embedding=np.array([1.0, 0.0], np.float32))])
                idx.search(q, {'top_k': limit})
                assert len(q[0].matches) == 2
            dense.search(q, {})
            FusionRanker(branches={'dense': 1.0}).search(q, {'limit': limit})
            assert len(q[0].matches) == 2
        # JSON's null counts as not given: the default (10: all five), or the other key
        for params, expect in (({'limit': None}, 5), ({'top_k': None}, 5), ({'limit': None, 'top_k': 2}, 2)):
            for idx in (dense, sparse):
                q = DocumentArray([Document(text='gzip file', embedding=np.array([1.0, 0.0], np.float32))])
                idx.search(q, params)
                assert len(q[0].matches) == expect
        dense.default_limit = sparse.default_limit = None  # no limit
        for idx in (dense, sparse):
            q = DocumentArray([Document(text='gzip file', embedding=np.array([1.0, 0.0], np.float32))])
            idx.search(q, {})
            assert len(q[0].matches) == 5
        for bad in (2.5, -1, True):
            for search in (dense.search, sparse.search, FusionRanker().search):
                with pytest.raises(ValueError, match='limit / top_k must be a non-negative int'):
                    search(DocumentArray([Document(text='gzip', embedding=np.ones(2, np.float32))]), {'limit': bad})
    finally:
        dense.close()
        sparse.close()


def test_fuse_refuses_a_ranking_that_is_not_best_first():
    assert fuse({'d': (['x', 'y', 'z'], [0.0, 1.0, 2.0])}, {}) == [('x', 1.0), ('y', 0.5), ('z', 0.0)]
    with pytest.raises(ValueError, match='best first'):
        fuse({'d': (['x', 'y', 'z'], [0.0, 2.0, 1.0])}, {})


def test_join_keeps_every_branchs_score_on_a_match_both_found():
    from runtime.control.merge import merge_by_id
    from runtime.scores import NamedScore
    before = DocumentArray([Document(id='q', text='query')])

    def branch(**found):
        q = Document(id='q', text='query')
        q.matches = [Document(id=i, text=f'passage {i}', scores=s) for i, s in found.items()]
        return DocumentArray([q])
    sparse = branch(a={'bm25': 3.0, 'sparse': NamedScore(3.0, op_name='bm25')},
                    b={'bm25': 2.5, 'sparse': NamedScore(2.5, op_name='bm25')},
                    d={'bm25': 1.0, 'sparse': NamedScore(1.0, op_name='bm25')})
    dense = branch(b={'cosine': 0.1, 'dense': NamedScore(0.1, op_name='cosine')},
                   c={'cosine': 0.4, 'dense': NamedScore(0.4, op_name='cosine')})
    (q,) = merge_by_id([sparse, dense], before)
    got = {m.id: set(m.scores) for m in q.matches}
    assert got == {'a': {'bm25', 'sparse'}, 'b': {'bm25', 'sparse', 'cosine', 'dense'}, 'c': {'cosine', 'dense'},
                   'd': {'bm25', 'sparse'}}
    FusionRanker().search(DocumentArray([q]), {'limit': 2})
    assert [m.id for m in q.matches] == ['b', 'a']    # b: second of one branch, first of the other
    assert set(q.matches[0].scores) == {'fused', 'sparse', 'dense'}


def test_sharded_sparse_branch_fuses_every_shards_ranking(tmp_path):
    """`python -m executors.demo --shards 2`: each shard ranks its own documents; the
    branch's ranking must reach the fusion from every shard."""
    docs = [Document(id=f'd{i}', text=f'gzip compress data number {i}' if i % 2 else f'gzip file {i}')
            for i in range(12)]

    def run(shards):
        polling = {'/index': 'any', '*': 'all'} if shards > 1 else 'any'
        f = (Flow(workspace=str(tmp_path / str(shards)))
             .add(name='sparse', uses=SparseIndexer, uses_with={'rank_tag': 'sparse'}, shards=shards,
                  polling=polling)
             .add(name='fusion', uses=FusionRanker, uses_with={'branches': {'sparse': 1.0}}))
        with f:
            f.index(DocumentArray([Document(d, copy=True) for d in docs]), request_size=1)  # spread over the shards
            st = f.post('/status', return_results=True, target_executor='sparse$')[0].parameters['__results__']
            r = f.search(Document(text='gzip compress'), parameters={'top_k': 12}, return_results=True)[0]
        counts = st['sparse'] if isinstance(st['sparse'], list) else [st['sparse']]
        return [c['count'] for c in counts], [m.id for m in r.docs[0].matches]
    one, two = run(1), run(2)
    assert len(two[0]) == 2 and sum(two[0]) == 12
    assert len(one[1]) == len(two[1]) == 12 and set(one[1]) == set(two[1])
    # the documents with both words first, in both (each shard has its own IDF: ties may differ)
    assert set(one[1][:6]) == set(two[1][:6]) == {f'd{i}' for i in range(1, 12, 2)}


def test_sparse_update_and_delete_a_whole_document_through_its_passages(tmp_path):
    idx = SparseIndexer(metas={'workspace': str(tmp_path)})
    seg = TextSegmenter(max_chars=20)
    idx.index(seg.segment(DocumentArray([Document(id='doc', text='gzip file\n'),
                                         Document(id='other', text='gzip other\n')]), {}), {})
    grown = seg.segment(DocumentArray([Document(id='doc', text='gzip one here\ngzip two here\nzlib three\n')]), {})
    assert idx.update(grown, {}) == {'updated': 3, 'missing': 0, 'removed': 0}
    q = DocumentArray([Document(text='gzip')])
    idx.search(q, {})
    assert sorted(m.id for m in q[0].matches) == ['doc/0', 'doc/1', 'other/0']
    assert idx.update(seg.segment(DocumentArray([Document(id='doc', text='zlib only\n')]), {}), {}) == \
        {'updated': 1, 'missing': 0, 'removed': 2}
    assert idx.delete(DocumentArray([Document(id='doc')]), {'ids': ['nope']}) == {'deleted': 1, 'missing': 1}
    assert idx.count == 1
    idx.close()
    again = SparseIndexer(metas={'workspace': str(tmp_path)})
    q = DocumentArray([Document(text='gzip zlib')])
    again.search(q, {})
    assert [m.id for m in q[0].matches] == ['other/0'] and again.count == 1
    again.close()


# -- SparseIndexer after a kill ---------------------------------------------------------------------
_KILLED = '''
import os, sys
from runtime import Document, DocumentArray
from executors import SparseIndexer
ws, point = sys.argv[1], sys.argv[2]

def die(*a, **k):
    os._exit(0)

idx = SparseIndexer(metas={'workspace': ws, 'name': 'sparse'})
if point == 'first run':
    idx.index(DocumentArray([Document(id='b', text='compress with gzip', uri='gz.py')]), {})
    die()
idx.index(DocumentArray([Document(id='a', text='open a socket', uri='net.py'),
                         Document(id='c', text='gzip a socket stream', uri='stream.py')]), {})
idx.commit()                                     # e.g. a search happened
idx.index(DocumentArray([Document(id='b', text='compress with gzip', uri='gz.py')]), {})
if point == 'after index':
    die()
idx.delete(DocumentArray([Document(id='c')]), {})
if point == 'after delete':
    die()
if point == 'torn record':                       # killed in the middle of writing a record
    import zlib
    from executors import pending_log

    def torn_append(path, kind, parts):
        payload = b''.join(parts)
        record = pending_log._HEAD.pack(pending_log._MAGIC, kind, zlib.crc32(payload), len(payload)) + payload
        with open(path, 'ab') as fp:
            fp.write(record[:len(record) - 3])
        die()
    pending_log.append = torn_append
    idx.index(DocumentArray([Document(id='x', text='gzip torn', uri='x.py')]), {})
if point == 'commit before switch':              # the next generation written, meta.json not yet replaced
    real_replace = os.replace

    def replace(src, dst):
        if dst.endswith(os.path.join('sparse', 'meta.json')):
            die()
        real_replace(src, dst)
    os.replace = replace
if point == 'commit after switch':               # meta.json replaced, the old generation not removed
    from executors import sparse
    sparse.SparseIndexer._remove_other_generations = die
idx.commit()
die()
'''


@pytest.mark.parametrize('point', ['first run', 'after index', 'after delete', 'torn record',
                                   'commit before switch', 'commit after switch'])
def test_sparse_index_restarts_consistent_after_a_kill(tmp_path, point):
    import subprocess
    import sys

    from childio import script_env
    subprocess.run([sys.executable, '-c', _KILLED, str(tmp_path), point], check=True, env=script_env(), timeout=120)
    for attempt in range(2):   # the restart, then a restart after it closed
        idx = SparseIndexer(metas={'workspace': str(tmp_path), 'name': 'sparse'})
        q = DocumentArray([Document(text='gzip'), Document(text='socket')])
        idx.search(q, {})
        gzip, socket = ([m.id for m in d.matches] for d in q)
        if point == 'first run':
            assert gzip == ['b'] and socket == [] and idx.count == 1
        elif point == 'after index':           # c is not deleted yet
            assert sorted(gzip) == ['b', 'c'] and sorted(socket) == ['a', 'c'] and idx.count == 3
        else:                                  # every answered request is there; the torn one is not
            assert gzip == ['b'] and socket == ['a'] and idx.count == 2
        assert [m.text for m in q[0].matches][:1] == ['compress with gzip']
        status = idx.status(DocumentArray(), {})
        assert status['count'] == idx.count
        idx.close()
    names = os.listdir(tmp_path / 'sparse' / 'sparse')
    assert sum(n.startswith('gen-') for n in names) == 1 and not any(n.startswith('pending') for n in names)


def test_a_match_normalized_to_similarities_is_ranked_best_first_everywhere():
    # match(normalization=(1, 0)) writes 'cosine' scores where larger is better (the Jina 2
    # idiom): their op_name says so, and the shard merge keeps the closest, not the farthest.
    from runtime.control.merge import sort_matches
    q = DocumentArray([Document(embedding=np.array([1.0, 0.0]))])
    r = DocumentArray([Document(id=str(i), embedding=np.array(e)) for i, e in enumerate([[0, 1.0], [1.0, 0], [1.0, 1.0]])])
    q.match(r, normalization=(1, 0))
    ms = q[0].matches
    assert [m.id for m in ms] == ['1', '2', '0'] and ms[0].scores['cosine'].op_name == 'similarity'
    sort_matches(ms, 1)
    assert [m.id for m in ms] == ['1']
