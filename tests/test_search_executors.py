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
    assert q[0].tags['sparse'] == {'ids': [m.id for m in q[0].matches], 'scores': scores}
    assert q[1].matches[0].id == 'archive/zip_writer.py'       # the file name counts as a field
    assert len(q[2].matches) == 0
    idx.close()
    # The arrays are on disk, memmap-friendly; a new executor on the workspace finds them.
    files = set(os.listdir(tmp_path / 'sparse'))
    assert {'vocab.npy', 'ptr.npy', 'post_doc.npy', 'post_tf.npy', 'doc_len.npy', 'ids.npy'} <= files
    assert not any(f.startswith('pending.') for f in files)
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
    meta = json.loads((tmp_path / 'lsa' / 'model.json').read_text())
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
