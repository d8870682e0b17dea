"""More of the Jina 2.0 Document cookbook: reading the JSON Jina 2 wrote (protobuf's form of
arrays and bytes), ``pop`` of several fields, ``DocumentArray.split``, ``visualize`` and
``Document.plot`` (drawn as SVG files here)."""
from __future__ import annotations

import base64
import json
import tracemalloc
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from runtime import Document, DocumentArray
from runtime.docplot import pca_2d
from runtime.memmap import DocumentArrayMemmap

SVG = '{http://www.w3.org/2000/svg}'

# What the cookbook prints for d0.dict() ("Represent Document as Dictionary or JSON").
JINA2_DICT = {'embedding': {'dense': {'buffer': 'AAAAAAAAAAAAAAAAAAAAAA==', 'dtype': '<i8', 'shape': [2]}},
              'id': '🐲identifier', 'mime_type': 'text/plain', 'tags': {'cool': True}, 'text': 'I am a Jina Document'}


# -- 1. JSON written by Jina 2 -----------------------------------------------------------------
@pytest.mark.parametrize('source', [JINA2_DICT, json.dumps(JINA2_DICT)], ids=['dict', 'json'])
def test_document_reads_what_jina2_dict_and_json_wrote(source):
    d = Document(source)
    assert d.embedding.dtype == np.int64 and d.embedding.tolist() == [0, 0]
    assert (d.id, d.text, d.mime_type, d.tags) == ('🐲identifier', 'I am a Jina Document', 'text/plain', {'cool': True})
    # Jina 2 wrote the hash it computed (both spellings seen): computed here, never a tag
    for key in ('content_hash', 'contentHash'):
        with_hash = dict(JINA2_DICT, **{key: 'a3b1c2d4e5f60708'})
        assert Document(json.dumps(with_hash)).tags == {'cool': True} == Document(with_hash).tags
    d.embedding += 1  # an array of its own, writable like any other
    assert Document(d.json()) == d  # and what this version writes reads back as before


def test_jina2_arrays_and_bytes_are_read_at_any_depth():
    line = {'id': 'root', 'uri': 'x.bin', 'mimeType': 'application/octet-stream', 'buffer': 'DDE=',
            'chunks': [{'id': 'c1', 'blob': {'dense': {'buffer': 'AQAAAAAAAAACAAAAAAAAAAMAAAAAAAAA', 'shape': [3],
                                                       'dtype': '<i8'}},
                        'matches': [{'id': 'm1', 'adjacency': 1,
                                     'embedding': {'dense': {'buffer': 'AACAPwAAAEA=', 'dtype': '<f4',
                                                             'shape': [1, 2]}}}]}]}
    d = Document(json.dumps(line))
    assert d.buffer == b'\x0c1'  # the cookbook's Document(content=b'\f1'), shown as buffer=DDE=
    assert d.chunks[0].blob.tolist() == [1, 2, 3]
    m = d.chunks[0].matches[0]
    assert m.embedding.dtype == np.float32 and m.embedding.tolist() == [[1.0, 2.0]]


def test_documentarray_load_reads_a_jina2_json_file(tmp_path):
    path = tmp_path / 'data.json'
    second = dict(JINA2_DICT, id='two', embedding={'dense': {'buffer': 'AQAAAAAAAAACAAAAAAAAAA==', 'dtype': '<i8',
                                                            'shape': [2]}})
    path.write_text(json.dumps(JINA2_DICT) + '\n' + json.dumps(second) + '\n')
    da = DocumentArray.load(str(path))
    assert da.embeddings.tolist() == [[0, 0], [1, 2]]
    assert da['two'].text == 'I am a Jina Document'


def test_quantized_and_sparse_arrays_are_read_as_jina2_read_them():
    # protobuf's default JSON (camelCase, enums by name, int64 as str), as MessageToJson wrote it.
    fp16 = {'dense': {'buffer': 'ADgAvQBCAEA=', 'shape': [2, 2], 'dtype': '<f2', 'quantization': 'FP16',
                      'originalDtype': 'float32'}}
    uint8 = {'dense': {'buffer': 'aQAAww==', 'shape': [2, 2], 'dtype': '|u1', 'quantization': 'UINT8',
                       'minVal': -1.25, 'scale': 0.016601562, 'originalDtype': 'float32'}}
    sparse = {'sparse': {'indices': {'buffer': 'AAAAAAAAAAABAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAA=', 'shape': [2, 2],
                                     'dtype': '<i8'},
                         'values': {'buffer': 'AACgQAAA4EA=', 'shape': [2], 'dtype': '<f4'}, 'shape': ['2', '3']}}
    d = Document({'embedding': fp16, 'chunks': [{'embedding': uint8}, {'blob': sparse}]})
    assert d.embedding.dtype == np.float32 and d.embedding.tolist() == [[0.5, -1.25], [3.0, 2.0]]
    q = d.chunks[0].embedding  # UINT8 is lossy: code * scale + min_val, in the original dtype
    assert q.dtype == np.float32 and np.allclose(q, [[0.4932, -1.25], [-1.25, 1.9873]], atol=1e-3)
    assert d.chunks[1].blob.tolist() == [[0, 5, 0], [7, 0, 0]]  # read dense: a Document holds numpy arrays


@pytest.mark.parametrize('dense, message', [
    ({'buffer': 'AAAAAA==', 'dtype': '<f4', 'shape': [2]}, '4 bytes do not make an array of shape'),
    ({'buffer': 'AAAAAAAAAAA=', 'dtype': '|O', 'shape': [1]}, 'cannot be read from raw bytes'),
    ({'buffer': 'not base64!', 'dtype': '<f4', 'shape': [1]}, 'not base64'),
])
def test_a_damaged_jina2_array_is_refused_with_the_field_named(dense, message):
    with pytest.raises(ValueError, match=message) as info:
        Document({'embedding': {'dense': dense}})
    assert 'Document.embedding' in str(info.value)


# -- 2. pop of several fields ------------------------------------------------------------------
def test_pop_of_several_fields_as_in_the_cookbook():
    d = Document(id='old', text='hello world')
    da = DocumentArray([d])
    d.pop('text', 'id', 'mime_type')  # "Unset multiple attributes"
    assert (d.text, d.mime_type) == (None, '')
    assert d.id != 'old' and len(d.id) == 32  # a document always has an id: a fresh one
    assert da[d.id] is d and 'old' not in da


def test_pop_checks_every_name_before_it_resets_any():
    d = Document(text='hello world', weight=2.0)
    with pytest.raises(ValueError, match=r"'nope' is not a field, so nothing was reset; pass field names: id, text"):
        d.pop('text', 'nope', 'weight')
    assert (d.text, d.weight) == ('hello world', 2.0)


# -- 3. split, visualize, plot -------------------------------------------------------------------
def test_split_groups_by_tag_value_keeping_order():
    docs = [Document(id=str(i), tags={'c': ['a', 'b', 'a', None][i % 4], 'meta': {'lang': 'en' if i < 3 else 'de'}})
            for i in range(8)] + [Document(id='untagged')]
    parts = DocumentArray(docs).split('c')
    assert list(parts) == ['a', 'b']  # documents without the tag (or with None) are left out
    assert all(isinstance(p, DocumentArray) for p in parts.values())
    assert [d.id for d in parts['a']] == ['0', '2', '4', '6'] and [d.id for d in parts['b']] == ['1', '5']
    assert {k: len(v) for k, v in DocumentArray(docs).split('meta__lang').items()} == {'en': 3, 'de': 5}
    with pytest.raises(TypeError, match=r"document 'x' has the tag 'c' = \[1\], a list, which cannot be a group key"):
        DocumentArray([Document(id='x', tags={'c': [1]})]).split('c')


def test_split_works_on_a_memmap(tmp_path):
    with DocumentArrayMemmap(str(tmp_path / 'dam')) as dam:
        dam.extend(Document(id=str(i), tags={'c': i % 2}) for i in range(4))
        assert {k: [d.id for d in v] for k, v in dam.split('c').items()} == {0: ['0', '2'], 1: ['1', '3']}


def _points(path):
    root = ET.parse(path).getroot()  # well-formed XML, or this raises
    assert root.tag == f'{SVG}svg'
    return root, root.findall(f".//{SVG}g[@id='points']/{SVG}circle[@class='point']")


def test_visualize_writes_an_svg_with_one_point_per_document_coloured_by_tag(tmp_path):
    rng = np.random.default_rng(0)
    da = DocumentArray([Document(embedding=rng.normal(3 * (i % 3), 1, 50), tags={'c': f'group\x01{i % 3}'})
                        for i in range(30)] + [Document(embedding=rng.normal(0, 1, 50))])
    out = tmp_path / 'emb.svg'
    da.visualize(output=str(out), colored_tag='c', title='three <groups>')
    root, points = _points(out)
    assert len(points) == len(da)
    colour = {d.id: p.get('fill') for d, p in zip(da, points)}
    by_value = {}
    for d in da:
        by_value.setdefault(d.tags.get('c'), set()).add(colour[d.id])
    assert all(len(c) == 1 for c in by_value.values())  # one colour per tag value ...
    assert len({c.pop() for c in by_value.values()}) == 4  # ... each its own (None too)
    assert root.find(f".//{SVG}text[@id='title']").text == 'three <groups>'
    assert len(root.findall(f".//{SVG}g[@id='legend']/{SVG}rect")) == 4
    assert da[0].id in points[0].find(f'{SVG}title').text  # hovering names the document

    da.visualize(output=tmp_path / 'plain.svg', colormap=['red'], show_axis=True)
    root, points = _points(tmp_path / 'plain.svg')
    assert len(points) == len(da) and root.find(f".//{SVG}text[@id='title']").text == '31 Documents with PCA'


def test_visualize_refuses_what_it_cannot_draw(tmp_path):
    da = DocumentArray([Document(embedding=np.random.rand(4)) for _ in range(3)])
    for kwargs, message in [({'output': str(tmp_path / 'a.svg'), 'method': 'tsne'}, 'pass method="pca"'),
                            ({}, 'needs output=, a file name ending in .svg'),
                            ({'output': str(tmp_path / 'emb.png')}, 'pass output ending in .svg'),
                            ({'output': str(tmp_path / 'a.svg'), 'colormap': 'viridis'}, 'colormap="rainbow"')]:
        with pytest.raises(ValueError, match=message):
            da.visualize(**kwargs)
    with pytest.raises(ValueError, match='no document has an embedding; set them first'):
        DocumentArray([Document(text='a')]).visualize(str(tmp_path / 'a.svg'))
    assert not list(tmp_path.iterdir())  # nothing written by a refused call


def test_pca_2d_finds_the_direction_of_most_spread():
    x = np.array([[0.0, 0.0, 1.0], [2.0, 0.1, 1.0], [4.0, -0.1, 1.0], [6.0, 0.0, 1.0]])
    p = pca_2d(x)
    assert p.shape == (4, 2) and np.allclose(p[:, 0], [-3, -1, 1, 3], atol=0.01)
    assert np.allclose(pca_2d(x[::-1])[:, 0], [3, 1, -1, -3], atol=0.01)  # the same data, the same picture
    assert pca_2d(np.arange(3.0)[:, None]).tolist() == [[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]]


def test_document_plot_draws_the_chunk_and_match_tree(tmp_path):
    d0 = Document(id='🐲', embedding=np.array([0, 0]), text='bad \x00 char')  # the cookbook's, plus a text
    d1, d2, d3 = (Document(id=i, embedding=np.array(e)) for i, e in [('🐦', [1, 0]), ('🐢', [0, 1]), ('🐯', [1, 1])])
    d0.chunks.append(d1)
    d0.chunks[0].chunks.append(d2)
    d0.matches.append(d3)
    d0.plot(str(tmp_path / 'doc.svg'))
    root = ET.parse(tmp_path / 'doc.svg').getroot()
    boxes = root.findall(f".//{SVG}g[@class='document']")
    assert len(boxes) == 4
    assert sorted(b.find(f'{SVG}text').text for b in boxes) == sorted(f'id: {i}' for i in '🐲🐦🐢🐯')
    assert len(root.findall(f".//{SVG}line[@class='chunk']")) == 2
    assert len(root.findall(f".//{SVG}line[@class='match']")) == 1

    d0.matches.append(d0)  # a document matched to itself: an edge back, not endless copies
    d0.plot(tmp_path / 'self.svg')
    assert len(ET.parse(tmp_path / 'self.svg').getroot().findall(f".//{SVG}g[@class='document']")) == 4


def test_document_plot_refuses_what_it_cannot_do(tmp_path):
    d = Document(text='x')
    with pytest.raises(ValueError, match='needs output='):
        d.plot()
    with pytest.raises(ValueError, match='inline_display is not supported.*IPython.display.SVG'):
        d.plot(str(tmp_path / 'd.svg'), inline_display=True)
    with pytest.raises(ValueError, match='pass output ending in .svg'):
        d.plot(str(tmp_path / 'd.jpg'))
    assert not list(tmp_path.iterdir())


# -- 4. what a few bytes of Jina 2 JSON may cost ---------------------------------------------------
def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def _refused(fn) -> tuple[int, str]:
    """``fn()`` raises ValueError: the most memory (bytes) it had allocated at once, and the message."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            fn()
        return tracemalloc.get_traced_memory()[1], str(info.value)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize('dense', [
    # Two FP16 codes "restored" to 5 MB bytes each; two UINT8 codes to 4 MB strings each.
    {'buffer': _b64(np.ones(2, '<f2')), 'dtype': '<f2', 'shape': [2], 'quantization': 'FP16',
     'originalDtype': 'S5000000'},
    {'buffer': _b64(np.ones(2, 'u1')), 'dtype': '|u1', 'shape': [2], 'quantization': 'UINT8',
     'originalDtype': '<U1000000', 'scale': 1, 'minVal': 0},
    {'buffer': _b64(np.ones(2, 'u1')), 'dtype': '|u1', 'shape': [2], 'quantization': 'UINT8',
     'originalDtype': 'int64', 'scale': 1, 'minVal': 0},
], ids=['FP16-to-S5000000', 'UINT8-to-U1000000', 'UINT8-to-int64'])
def test_quantization_restores_only_floats_refused_before_allocating(dense):
    peak, message = _refused(lambda: Document(json.dumps({'id': 'q', 'embedding': {'dense': dense}})))
    assert peak < 1 << 20  # refused from the message alone, nothing of the claimed size allocated
    assert 'Document.embedding (dense): original_dtype' in message
    assert 'Jina 2 quantized only floats, so pass one of float16, float32, float64' in message


@pytest.mark.parametrize('field, value', [('scale', 'NaN'), ('scale', 'Infinity'), ('minVal', '-Infinity'),
                                          ('scale', 1e300)])
def test_quantized_scale_and_min_val_must_be_finite_in_range(field, value):
    dense = {'buffer': _b64(np.array([0, 1, 255], 'u1')), 'dtype': '|u1', 'shape': [3], 'quantization': 'UINT8',
             'originalDtype': 'float32', 'scale': 0.5, 'minVal': -1.0, field: value}
    with pytest.raises(ValueError, match=r'Document.blob \(dense\): UINT8 scale .* which float32 cannot hold; '
                                         r'pass finite numbers'):
        Document({'blob': {'dense': dense}})
    dense[field] = 2.0  # the same message with a usable number reads
    assert np.isfinite(Document({'blob': {'dense': dense}}).blob).all()


def test_quantized_codes_must_be_of_the_quantization_dtype():
    dense = {'buffer': _b64(np.ones(2, '<f8')), 'dtype': '<f8', 'shape': [2], 'quantization': 'FP16',
             'originalDtype': 'float32'}
    with pytest.raises(ValueError, match=r'FP16 quantization stores codes of dtype f2, got a buffer of dtype <f8; '
                                         r'pass "dtype": "<f2"'):
        Document({'embedding': {'dense': dense}})


def test_arrays_built_from_json_are_bounded_in_bytes(monkeypatch):
    from runtime import protoarrays
    from runtime.serving.jsonarrays import MAX_TEXT_ARRAY_BYTES
    assert protoarrays.MAX_ARRAY_BYTES == MAX_TEXT_ARRAY_BYTES == 64 << 20  # one limit, both ways in

    def sparse(n: int, dtype: str) -> dict:
        return {'id': 's', 'embedding': {'sparse': {
            'values': {'buffer': _b64(np.ones(1, dtype)), 'dtype': dtype, 'shape': [1]},
            'indices': {'buffer': _b64(np.zeros((1, 1), '<i8')), 'dtype': '<i8', 'shape': [1, 1]},
            'shape': [str(n)]}}}

    # The reviewer's message: one complex256 value in a shape of 2**26, 2 GiB dense.
    peak, message = _refused(lambda: Document(json.dumps(sparse(1 << 26, 'c32'))))
    assert peak < 1 << 20 and 'takes 2147483648 bytes read dense, more than the 67108864' in message
    assert 'store fewer dimensions' in message

    # Small sizes against a smaller limit: the count of elements alone would let these through.
    monkeypatch.setattr(protoarrays, 'MAX_ARRAY_BYTES', 1 << 20, raising=False)
    assert Document(sparse(1 << 16, '<f8')).embedding.nbytes == 1 << 19  # under it: read dense
    peak, message = _refused(lambda: Document(sparse(1 << 18, 'c32')))  # 8 MiB dense
    assert peak < 1 << 20 and 'dtype <c32 takes 8388608 bytes read dense' in message
    fp16 = {'buffer': _b64(np.ones(1 << 18, '<f2')), 'dtype': '<f2', 'shape': [1 << 18], 'quantization': 'FP16',
            'originalDtype': 'float64'}  # 512 KiB of codes, 2 MiB restored
    peak, message = _refused(lambda: Document({'embedding': {'dense': fp16}}))
    assert peak < 2 << 20  # (the 512 KiB of codes and their base64 only)
    assert '262144 FP16 codes restored to float64 take 2097152 bytes, more than the 1048576' in message
    assert 'store the array without "quantization"' in message
    fp16['originalDtype'] = 'float16'  # the same codes restored as float16: within the limit
    assert Document({'embedding': {'dense': fp16}}).embedding.dtype == np.float16


# -- 5. visualize: data PCA cannot take as it is -------------------------------------------------------
def _circles(path) -> list[tuple[str, str]]:
    return [(p.get('cx'), p.get('cy')) for p in _points(path)[1]]


def test_visualize_draws_any_float_magnitude_as_the_same_picture(tmp_path):
    x = np.random.default_rng(1).normal(size=(12, 6))
    pictures = []
    for k, factor in enumerate([1.0, 1e200, 1e-200]):
        DocumentArray([Document(embedding=row * factor) for row in x]).visualize(str(tmp_path / f'{k}.svg'))
        pictures.append(_circles(tmp_path / f'{k}.svg'))
    assert pictures[0] == pictures[1] == pictures[2]  # scaling changes no direction
    assert np.allclose(pca_2d(x * 1e200) / 1e200, pca_2d(x))


def test_visualize_refuses_empty_and_nonfinite_embeddings_naming_them(tmp_path):
    out = str(tmp_path / 'a.svg')
    with pytest.raises(ValueError, match=r'the embeddings hold no numbers \(each of shape \[0\]\), so there is '
                                         r'nothing to project; set embeddings of at least one number'):
        DocumentArray([Document(embedding=np.zeros(0)) for _ in range(3)]).visualize(out)
    da = DocumentArray([Document(id=str(i), embedding=np.ones(3)) for i in range(6)])
    for i in (1, 2, 4, 5):
        da[i].embedding[i % 3] = [np.nan, np.inf, -np.inf][i % 3]
    with pytest.raises(ValueError, match=r"4 embeddings hold NaN or infinity, of documents #1 \(id '1'\), "
                                         r"#2 \(id '2'\), #4 \(id '4'\) and 1 more; fix or leave out"):
        da.visualize(out)
    with pytest.raises(ValueError, match=r'pca_2d: the rows hold no numbers \(shape \[3, 0\]\)'):
        pca_2d(np.zeros((3, 0)))
    assert not list(tmp_path.iterdir())
