"""Text in any language, any line ends, and corpora too small to learn from: the tokenizer
(``executors.terms``), the LSA fit and the demo (``python -m executors.demo``)."""
from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from executors.lsa import LSAEncoder
from executors.sparse import SparseIndexer
from executors.terms import path_terms, term_counts
from runtime import Document, DocumentArray

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'executors.demo', *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


# -- terms ----------------------------------------------------------------------------------

def test_words_of_any_script_are_whole_terms():
    # Accented letters once cut words into ASCII pieces ('ller', 'na', 've'), and Cyrillic
    # or CJK text gave no terms at all.
    assert term_counts('Müller naïve straße Größe') == {'müll': 1, 'naïv': 1, 'strass': 1, 'gröss': 1}
    assert term_counts('Привет мир, שלום, नमस्ते') == {'привет': 1, 'мир': 1, 'שלום': 1, 'नमस्ते': 1}
    # Identifiers split as in ASCII; case folded; composed and decomposed accents meet.
    assert term_counts('getÄnderungsDatum STRASSE') == {'get': 1, 'änderung': 1, 'datum': 1, 'strass': 1}
    assert term_counts('café cafe\u0301') == {'café': 2}
    # Text without spaces between words: overlapping pairs, a lone character as it is.
    assert term_counts('日本語のテキスト 猫') == {'日本': 1, '本語': 1, '語の': 1, 'のテ': 1, 'テキ': 1,
                                             'キス': 1, 'スト': 1, '猫': 1}
    assert path_terms('docs/überblick/日本語.md') == ['doc', 'überblick', '日本', '本語']


def test_ascii_words_are_the_same_next_to_other_scripts():
    # The tokenizer of ASCII text must not change: ASCII words give the same terms in a
    # text that also holds other scripts (which takes the Unicode pattern).
    rng = random.Random(7)
    alphabet = 'abcXYZ_09 .(\n' + 'HTTPServer sha256 parse_args fooBar '
    for _ in range(300):
        text = ''.join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        expected = dict(term_counts(text))
        expected['мир'] = 1
        assert term_counts(text + ' мир') == expected, text


def test_the_sparse_index_finds_words_of_any_script(tmp_path):
    idx = SparseIndexer(metas={'workspace': str(tmp_path), 'name': 'sparse'})
    try:
        idx.index(DocumentArray([Document(id='keller', text='Keller und Teller'),
                                 Document(id='mueller', text='Herr Müller wohnt hier'),
                                 Document(id='ru', text='Привет мир'),
                                 Document(id='jp', text='日本語のテキスト')]), {})
        for query, want in (('Müller', 'mueller'), ('Привет', 'ru'), ('日本語', 'jp')):
            q = DocumentArray([Document(text=query)])
            idx.search(q, {})
            assert [m.id for m in q[0].matches] == [want], query
    finally:
        idx.close()


# -- LSA on tiny corpora ---------------------------------------------------------------------

def test_lsa_fits_a_corpus_where_no_term_reaches_min_df(tmp_path, caplog):
    enc = LSAEncoder(metas={'workspace': str(tmp_path), 'name': 'lsa'}, dim=4)   # min_df=2
    with caplog.at_level(logging.WARNING, logger='executors.lsa'):
        assert enc.fit(DocumentArray([Document(text='send mail over smtp')]), {'finish': True}) == \
            {'fitted': True, 'docs': 1}
    assert 'fitting on all' in caplog.text
    emb = enc.embed([Document(text='send mail')])
    assert emb.shape == (1, 4) and np.isclose(np.linalg.norm(emb), 1.0)


def test_lsa_says_when_fit_requests_held_no_documents(tmp_path):
    enc = LSAEncoder(metas={'workspace': str(tmp_path), 'name': 'lsa'}, dim=4)
    enc.fit(DocumentArray(), {})
    with pytest.raises(ValueError, match='held no documents'):
        enc.finish_fit()


# -- the demo -------------------------------------------------------------------------------

def test_demo_prints_the_line_of_a_hit_whatever_the_line_ends(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'crlf.py').write_bytes(b'\r\n# zebra crossing handler\r\ndef zebra():\r\n    return 1\r\n')
    (src / 'blank.py').write_bytes(b'   \n\t\n\ngiraffe_neck = stretch()\nreturn giraffe_neck\n')
    # '\r' only (classic Mac): several passages, each must count its lines from the file's start.
    (src / 'mac.txt').write_bytes(b'\r'.join(b'filler line number %d' % i for i in range(1, 9))
                                  + b'\r\rkoala bear eats\r')
    r = demo('--path', str(src), '--workspace', str(tmp_path / 'ws'), '--max-chars', '60', '--dim', '8', '--json',
             '--top-k', '1', '--query', 'zebra crossing', '--query', 'giraffe neck', '--query', 'koala bear')
    assert r.returncode == 0, r.stderr
    hits = [json.loads(line)['hits'][0] for line in r.stdout.splitlines()]
    assert [(h['path'], h['line']) for h in hits] == [('crlf.py', 2), ('blank.py', 4), ('mac.txt', 10)]


def test_demo_on_one_small_file_answers_and_reuses_its_index(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    (src / 'mailer.py').write_text('def send_mail(host, to, body):\n    """Send an email through an SMTP relay."""\n'
                                   '    smtp = connect(host)\n    smtp.sendmail(to, body)\n')
    args = ['--path', str(src), '--workspace', str(tmp_path / 'ws'), '--query', 'send mail']
    for run in range(2):
        r = demo(*args)
        assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr
        assert 'mailer.py:1' in r.stdout
        assert ('reusing the index' in r.stdout) == (run == 1)


@pytest.mark.parametrize('files', [{}, {'a.py': b'', 'b.txt': b'', 'c.dat': b'\0\1\2binary'}],
                         ids=['empty-folder', 'no-text'])
def test_demo_says_there_is_nothing_to_index(tmp_path, files):
    src = tmp_path / 'src'
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    r = demo('--path', str(src), '--workspace', str(tmp_path / 'ws'), '--query', 'anything')
    assert r.returncode == 1
    assert 'Traceback' not in r.stderr and 'nothing to index' in r.stderr, r.stderr
    assert not os.path.exists(tmp_path / 'ws' / 'demo-index.json')
