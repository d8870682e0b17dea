"""Document as Jina 2.0 scripts use it (written from the Jina 2.0 documentation), with only
``jina`` -> ``runtime`` changed in the imports."""
from __future__ import annotations

import copy
import json
import pickle

import numpy as np
import pytest

from runtime import Document, DocumentArray, Executor, Flow, NamedScore, requests


# -- content and mime type -----------------------------------------------------------------------
def test_content_sets_the_field_and_the_mime_type():
    d = Document(content='hello, world')
    assert (d.text, d.content_type, d.mime_type) == ('hello, world', 'text', 'text/plain')
    d = Document(content=b'\x00\x01')
    assert (d.buffer, d.content_type) == (b'\x00\x01', 'buffer')
    d = Document(content=np.ones(3))
    assert d.content_type == 'blob'
    assert Document(uri='images/cat.png').mime_type == 'image/png'
    assert Document(mime_type='png').mime_type == 'image/png'  # an extension is expanded
    assert Document(mime_type='text/html', text='<b>x</b>').mime_type == 'text/html'  # kept when given


def test_content_that_is_a_uri_sets_the_uri_as_in_jina2(tmp_path):
    for uri, mime in [('https://example.com/cat.png', 'image/png'), ('data:text/plain,hi', 'text/plain'),
                      (str(tmp_path / 'notes.txt'), 'text/plain')]:  # (a path in a writable folder)
        d = Document(content=uri)
        assert (d.uri, d.text, d.mime_type) == (uri, None, mime)
    for text in ['hello, world', 'see http:// for more', 'http://', 'a\x00b', 'no/such/folder/x.png']:
        assert Document(content=text).text == text


def test_text_blob_and_buffer_exclude_each_other():
    with pytest.raises(ValueError, match='text and buffer exclude each other'):
        Document(text='a', buffer=b'b')
    with pytest.raises(ValueError, match='exclude each other'):
        Document(content='a', blob=np.zeros(2))
    with pytest.raises(ValueError, match='exclude each other'):
        Document({'text': 'a', 'blob': [1, 2]})
    d = Document(text='a')
    d.buffer = b'raw'
    assert (d.text, d.blob, d.buffer, d.content) == (None, None, b'raw', b'raw')
    d.blob = np.arange(3)
    assert d.buffer is None and d.content_type == 'blob'
    d.text = 'back'
    assert d.blob is None and d.content == 'back'


# -- nested tag paths ----------------------------------------------------------------------------
def test_tag_paths_in_attributes_get_attributes_and_field_resolver():
    d = Document(tags={'a': {'b': 1}, 'c': 'x'})
    assert d.tags__a__b == 1 and d.tags__c == 'x' and d.tags__missing is None
    assert d.get_attributes('tags__a__b', 'tags__c') == [1, 'x']
    d.set_attributes(tags__a__e=2, weight=1.5)
    assert d.tags['a'] == {'b': 1, 'e': 2} and d.weight == 1.5
    e = Document({'question': 'why?', 'lang': 'en'}, field_resolver={'question': 'text', 'lang': 'tags__meta__lang'})
    assert e.text == 'why?' and e.tags == {'meta': {'lang': 'en'}}
    assert Document(tags__k=3).tags == {'k': 3}
    da = DocumentArray([d, Document(tags={'a': {'b': 5}})])
    assert da.get_attributes('tags__a__b') == [1, 5]
    with pytest.raises(AttributeError):
        d.no_such_field  # noqa: B018


def test_set_attributes_id_renames_a_document_an_array_holds():
    # The array has looked an id up (built its id index) before the rename: it must still
    # find the document under its new id, as after d.id = 'z'.
    da = DocumentArray([Document(id='x'), Document(id='y')])
    assert da['x'].id == 'x'
    da[0].set_attributes(id='z', text='renamed')
    assert 'z' in da and 'x' not in da
    assert da['z'].text == 'renamed'
    with pytest.raises(TypeError, match='cannot be None'):
        da[1].set_attributes(id=None)  # as d.id = None
    assert da[1].id == 'y'


# -- named scores --------------------------------------------------------------------------------
def test_named_scores_as_in_jina2():
    d = Document()
    d.scores['cosine'] = 0.5
    s = d.scores['cosine']
    assert isinstance(s, NamedScore) and s.value == 0.5
    s.op_name, s.description, s.ref_id = 'cosine', 'similarity', 'q1'
    d.scores['cosine'].value = 0.75
    assert d.scores['cosine'].value == 0.75 and d.scores['cosine'].op_name == 'cosine'
    d.scores['l2'].value = 2.0  # a missing name reads as a fresh score, as in Jina 2
    assert d.scores['l2'] == 2.0
    d.evaluations['recall'] = NamedScore(value=0.9, op_name='recall@10')
    assert d.evaluations['recall'].op_name == 'recall@10'
    assert Document(scores={'euclidean': 5, 'cosine': NamedScore(value=0.5)}).scores['euclidean'].value == 5.0
    with pytest.raises(TypeError, match=r"scores\['x'\] must be a number"):
        d.scores['x'] = 'high'


def test_scores_sort_compare_and_convert_as_numbers():
    q = Document()
    for i, v in enumerate([0.3, 0.9, 0.1]):
        q.matches.append(Document(id=f'm{i}', scores={'cosine': v}))
    best = sorted(q.matches, key=lambda m: m.scores['cosine'], reverse=True)
    assert [m.id for m in best] == ['m1', 'm0', 'm2']
    s = q.matches[1].scores['cosine']
    assert s > 0.5 and 0.5 < s and s == 0.9 and round(1 - s, 3) == 0.1 and float(s) == 0.9
    assert f'{s:.2f}' == '0.90'
    np.testing.assert_allclose([m.scores['cosine'] for m in q.matches], [0.3, 0.9, 0.1])
    assert q.matches[0].scores == {'cosine': 0.3}


def test_scores_survive_pickle_copy_json_and_a_flow():
    d = Document(id='q')
    d.scores['cosine'] = NamedScore(value=0.25, op_name='cosine', ref_id='r')
    d.evaluations['ndcg'] = 0.5
    for back in (pickle.loads(pickle.dumps(d)), copy.deepcopy(d), Document(d.json()), Document(d.binary_str())):
        assert back == d
        assert back.scores['cosine'].op_name == 'cosine' and back.scores['cosine'].ref_id == 'r'
        assert back.evaluations['ndcg'].value == 0.5
    assert d.dict()['scores'] == {'cosine': {'value': 0.25, 'op_name': 'cosine', 'ref_id': 'r'}}

    class Scorer(Executor):
        @requests
        def score(self, docs, **kwargs):
            for doc in docs:
                m = Document(id=f'{doc.id}-m')
                m.scores['cosine'] = 0.5
                m.scores['cosine'].op_name = 'Scorer'
                doc.matches.append(m)

    with Flow().add(uses=Scorer) as f:
        resp = f.post('/', DocumentArray([Document(id='a')]), return_results=True)
    (m,) = resp[0].docs[0].matches
    assert (m.scores['cosine'].value, m.scores['cosine'].op_name, m.adjacency) == (0.5, 'Scorer', 1)


# -- chunks and matches --------------------------------------------------------------------------
def test_appending_chunks_and_matches_sets_their_position():
    d = Document(id='root', granularity=1, adjacency=2)
    d.chunks.append(Document(text='c0'))
    d.chunks.extend([Document(text='c1')])
    assert [(c.parent_id, c.granularity) for c in d.chunks] == [('root', 2), ('root', 2)]
    d.matches.append(Document(id='m'))
    assert (d.matches[0].adjacency, d.matches[0].granularity) == (3, 1)
    c = d.chunks[0]
    c.chunks.append(Document())
    assert c.chunks[0].parent_id == c.id and c.chunks[0].granularity == 3
    kw = Document(chunks=[Document(text='x')])  # keywords adopt too, with the generated id
    assert kw.chunks[0].parent_id == kw.id and kw.chunks[0].granularity == 1
    back = pickle.loads(pickle.dumps(d))
    back.chunks.append(Document())
    assert back.chunks[-1].parent_id == 'root' and len(back.chunks) == 3


# -- conversions -----------------------------------------------------------------------------------
def test_dict_json_update_pop_and_binary_str():
    d = Document(id='a', blob=np.arange(4, dtype=np.int32).reshape(2, 2), tags={'k': 1}, weight=0.5)
    pretty = d.dict(prettify_ndarrays=True)
    assert pretty['blob'] == [[0, 1], [2, 3]]
    assert json.loads(d.json(prettify_ndarrays=True))['blob'] == [[0, 1], [2, 3]]
    assert Document(d.json()) == d and Document(d.to_dict()) == d

    target = Document(id='t', text='keep', tags={'own': 0})
    target.update(Document(id='s', tags={'k': 2}, weight=3.0), fields=['tags', 'weight'])
    assert (target.id, target.text, target.tags, target.weight) == ('t', 'keep', {'own': 0, 'k': 2}, 3.0)
    target.update(Document(id='s', modality='image'))  # every field the source set, its id too
    assert (target.id, target.modality, target.text) == ('s', 'image', 'keep')
    with pytest.raises(ValueError, match='unknown fields'):
        target.update(d, fields=['nope'])

    d.pop('blob', 'tags', 'weight')
    assert (d.blob, d.tags, d.weight) == (None, {}, 0.0)
    with pytest.raises(ValueError, match='not a field'):
        d.pop('nope')

    raw = Document(id='b', embedding=np.linspace(0, 1, 5, dtype=np.float32), chunks=[Document(text='c')]).binary_str()
    assert isinstance(raw, bytes)
    back = Document(raw)
    assert back.id == 'b' and back.embedding.dtype == np.float32 and back.chunks[0].text == 'c'
    with pytest.raises(ValueError, match='binary_str'):
        Document(b'\x08\x01 not ours')


def test_copy_true_is_independent():
    d = Document(text='a', tags={'l': [1]}, embedding=np.zeros(2), scores={'s': 1.0})
    c = Document(d, copy=True)
    c.tags['l'].append(2)
    c.embedding[0] = 5
    c.scores['s'].value = 9.0
    assert d.tags == {'l': [1]} and d.embedding[0] == 0 and d.scores['s'] == 1.0
    assert Document(d) is d  # Jina 2: a view of the same document


def test_convert_helpers(tmp_path):
    d = Document(buffer=np.arange(4, dtype=np.float32).tobytes())
    d.convert_buffer_to_blob(dtype=np.float32)
    assert d.blob.tolist() == [0.0, 1.0, 2.0, 3.0] and d.buffer is None
    d.convert_blob_to_buffer()
    assert d.buffer == np.arange(4, dtype=np.float32).tobytes()

    t = Document(text='hello world')
    t.convert_text_to_uri()
    assert t.uri.startswith('data:text/plain') and t.mime_type == 'text/plain'
    t.convert_uri_to_text()
    assert t.text == 'hello world'
    t.convert_content_to_uri()
    assert t.uri.startswith('data:text/plain')

    path = tmp_path / 'a.txt'
    path.write_bytes(b'file body')
    f = Document(uri=str(path))
    assert f.mime_type == 'text/plain'
    f.convert_uri_to_buffer()
    assert f.buffer == b'file body'
    f.convert_uri_to_datauri(base64=True)
    assert f.uri.startswith('data:text/plain') and ';base64,' in f.uri
    f.convert_uri_to_buffer()
    assert f.buffer == b'file body'

    with pytest.raises(ValueError, match='mime_type'):
        Document(buffer=b'x').convert_buffer_to_uri()
    with pytest.raises(FileNotFoundError):
        Document(uri=str(tmp_path / 'missing.bin')).convert_uri_to_buffer()
    with pytest.raises(NotImplementedError, match='Pillow'):
        Document(buffer=b'x').convert_image_buffer_to_blob()


# -- bad values are refused where they are set -----------------------------------------------------
@pytest.mark.parametrize('field, value, expected', [
    ('weight', 'heavy', 'number'), ('granularity', 'x', 'int'), ('granularity', 1.5, 'int'),
    ('adjacency', None, 'int'), ('mime_type', 5, 'str'), ('uri', 3, 'str'), ('modality', b'x', 'str'),
    ('parent_id', 1.5, 'str'), ('weight', True, 'number'),
])
def test_scalar_fields_name_the_field_and_the_expected_type(field, value, expected):
    with pytest.raises(TypeError, match=rf'Document.{field} must be an? {expected}'):
        Document(**{field: value})
    d = Document()
    with pytest.raises(TypeError, match=rf'Document.{field} must be'):
        setattr(d, field, value)
    assert getattr(d, field) == getattr(Document(), field)  # unchanged


def test_numpy_scalars_are_accepted_as_plain_numbers():
    d = Document(weight=np.float32(0.5), granularity=np.int64(2), adjacency=np.int8(1))
    assert (d.weight, d.granularity, d.adjacency) == (0.5, 2, 1)
    assert type(d.weight) is float and type(d.granularity) is int


def test_a_dict_with_jina2s_camelcase_names_sets_those_fields():
    # What Jina 2's Document(dict) took (its protobuf JSON names), and its own doc.json() wrote.
    d = Document({'mimeType': 'text/x-python', 'parentId': 'p1', 'lang': 'en'})
    assert (d.mime_type, d.parent_id, dict(d.tags)) == ('text/x-python', 'p1', {'lang': 'en'})
