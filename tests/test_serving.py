"""Serving a running Flow over HTTP: a real gateway on a loopback port, clients in other
processes, concurrent clients, bad requests, a client killed mid-request, and block()
ended by SIGTERM."""
from __future__ import annotations

import glob
import base64
import http.client
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import psutil
import pytest

from childio import Lines, reap, script_env
from runtime import Client, Document, DocumentArray, Executor, Flow, requests
from runtime.serving.client import ServerError
from runtime.serving.gateway import check_options
from runtime.serving.jsoncodec import doc_from_json, doc_to_json
from runtime.serving.wire import WireError, decode_request, encode_request


class Echo(Executor):
    """Search: one match per query, scored; index: counts; /fail raises; /slow waits."""

    @requests(on='/search')
    def search(self, docs: DocumentArray, parameters: dict, **kwargs) -> None:
        for d in docs:
            d.tags['top_k_type'] = type(parameters.get('top_k')).__name__
            m = Document(id=f'm-{d.id}', text=(d.text or '').upper())
            m.scores['cosine'] = 0.5
            d.matches.append(m)
            if d.embedding is not None:
                d.tags['emb_dtype'] = str(d.embedding.dtype)
                d.embedding = d.embedding * 2

    @requests(on='/index')
    def index(self, docs: DocumentArray, **kwargs) -> dict:
        return {'indexed': len(docs)}

    @requests(on='/fail')
    def fail(self, docs: DocumentArray, **kwargs) -> None:
        raise ValueError('the handler failed on purpose')

    @requests(on='/slow')
    def slow(self, docs: DocumentArray, parameters: dict, **kwargs) -> None:
        import time
        time.sleep(parameters.get('pause', 1.0))  # the workload of this endpoint, not a wait in the test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-c', textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=script_env())


def http_call(port: int, method: str, path: str, body: bytes | None = None,
              headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {'Content-Type': 'application/json'})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def serving_flow(port: int, **kwargs) -> Flow:
    return Flow(port_expose=port, protocol='http', **kwargs).add(uses=Echo, name='echo')


# -- the wire format, no Flow ------------------------------------------------------------------
def test_jina2s_quantized_and_sparse_arrays_are_restored_from_the_wire_and_bounded():
    # A Jina 2 client's FP16 / UINT8 quantized and sparse embeddings: restored as Jina 2 read
    # them (not taken as their raw codes), and refused before allocating what no float is.
    codes = base64.b64encode(np.array([0, 255], np.uint8).tobytes()).decode()
    uint8 = {'buffer': codes, 'dtype': '|u1', 'shape': [2], 'quantization': 'UINT8', 'minVal': 1.0, 'scale': 0.5,
             'originalDtype': '<f4'}
    d = doc_from_json({'id': 'a', 'embedding': {'dense': uint8}})
    assert d.embedding.dtype == np.float32 and d.embedding.tolist() == [1.0, 128.5]
    sparse = {'indices': {'buffer': base64.b64encode(np.array([[1]], '<i8').tobytes()).decode(), 'dtype': '<i8',
                          'shape': [1, 1]},
              'values': {'buffer': base64.b64encode(np.array([3.0], '<f4').tobytes()).decode(), 'dtype': '<f4',
                         'shape': [1]}, 'shape': ['3']}
    assert doc_from_json({'id': 'b', 'embedding': {'sparse': sparse}}).embedding.tolist() == [0.0, 3.0, 0.0]
    with pytest.raises(WireError, match='quantized only floats'):
        doc_from_json({'id': 'c', 'embedding': {'dense': dict(uint8, originalDtype='S5000000')}})


def test_documents_round_trip_with_exact_dtypes_in_base64_and_as_lists():
    d = Document(id='a', text='hi', embedding=np.arange(3, dtype=np.float32),
                 tags={'n': 1, 'f': 0.5, 'nested': {'l': [1, 'x']}}, mime_type='text/plain', granularity=1, weight=2.0)
    d.matches.append(Document(id='m', scores={'cosine': 0.25}))
    d.chunks.extend([Document(blob=np.ones((2, 2), np.uint8)), Document(buffer=b'\x00\xff')])
    back = doc_from_json(json.loads(json.dumps(doc_to_json(d, 'base64'))))
    assert back == d and back.embedding.dtype == np.float32 and back.chunks[0].blob.dtype == np.uint8
    assert back.chunks[1].buffer == b'\x00\xff' and back.tags['n'] == 1 and type(back.tags['n']) is int
    as_lists = json.loads(json.dumps(doc_to_json(d, 'list')))
    assert as_lists['embedding'] == [0.0, 1.0, 2.0] and as_lists['mimeType'] == 'text/plain'
    assert as_lists['matches'][0]['scores'] == {'cosine': {'value': 0.25}}  # Jina 2's shape
    assert doc_from_json(as_lists).embedding.tolist() == [0.0, 1.0, 2.0]
    req = decode_request(encode_request(DocumentArray([d]), '/search', {'top_k': 3}, 'idx'))
    assert (req.endpoint, req.parameters, req.target_executor) == ('/search', {'top_k': 3}, 'idx')
    assert type(req.parameters['top_k']) is int and req.docs[0] == d


@pytest.mark.parametrize('body, words', [
    (b'not json', 'not valid JSON'),
    (b'[1, 2]', 'JSON object'),
    (b'{"data": [], "execEndpoint": 3}', 'execEndpoint must be a str'),
    (b'{"data": {"text": "x"}, "execEndpoint": "/s"}', 'data must be a list'),
    (b'{"data": [], "execEndpoint": "/s", "bogus": 1}', "unknown field 'bogus'"),
    (b'{"data": [], "execEndpoint": "/s", "targetExecutor": "a", "targetPeapod": "b"}',
     "'targetExecutor' and 'targetPeapod' name the same thing"),
    (b'{"data": [{"siblings": -1}], "execEndpoint": "/s"}', 'data[0].siblings must be an int'),
    (b'{"data": [{"scores": {"c": {"value": 1, "operands": [{"value": 2}]}}}], "execEndpoint": "/s"}',
     'have no operands'),
    (b'{"data": [{"weight": "heavy"}], "execEndpoint": "/s"}', 'data[0].weight must be a number'),
    (b'{"data": [{"tags": {"f": {"__float__": "nan"}}}], "execEndpoint": "/s"}', '"__float__" must be'),
    (b'{"data": [{"blob": ["cat", "dog"]}], "execEndpoint": "/s"}', '"dtype": "<U8"'),
    (b'{"data": [{"blob": {"__ndarray__": ["cat", "doggy"], "dtype": "<U3", "shape": [2]}}], '
     b'"execEndpoint": "/s"}', 'does not fit dtype <U3'),
    (b'{"data": [{"blob": {"__ndarray__": ["a", "b", "c"], "dtype": "<U1", "shape": [2]}}], '
     b'"execEndpoint": "/s"}', 'does not have the shape [2]'),
    (b'{"data": [{"blob": {"__ndarray__": ["a"], "dtype": "<U99999999", "shape": [1]}}], '
     b'"execEndpoint": "/s"}', 'would take'),
    (b'{"data": [{"text": 3}], "execEndpoint": "/s"}', 'data[0].text must be a str'),
    (b'{"data": [{"embedding": [1, "a"]}], "execEndpoint": "/s"}', 'data[0].embedding'),
    (b'{"data": [{"embedding": [[1, 2], [3]]}], "execEndpoint": "/s"}', 'rectangular'),
    (b'{"data": [], "parameters": [1], "execEndpoint": "/s"}', 'parameters must be an object'),
    (b'{"data": [{"embedding": {"__ndarray__": ["1.5", "2"], "dtype": "<f4", "shape": [2]}}], '
     b'"execEndpoint": "/s"}', 'only numbers'),
    (b'{"data": [{"embedding": {"__ndarray_b64__": "", "dtype": "<f4", "shape": [0, 99999999999999999999]}}], '
     b'"execEndpoint": "/s"}', 'shape must be'),
    (b'{"data": []}', 'needs "execEndpoint"'),
])
def test_malformed_requests_are_refused_with_the_field_named(body, words):
    with pytest.raises(WireError, match=None) as info:
        decode_request(body)
    assert words in str(info.value) and 400 <= info.value.status < 500


def test_a_small_body_cannot_make_the_gateway_allocate_much():
    # 100,000 numbers and one long str: numpy would make it a str array of
    # 100,000 x 10,000 x 4 bytes (4 GB) before refusing it. A body of ~0.3 MB must be
    # refused with little memory, whatever its nesting.
    import tracemalloc
    for embedding in ([0] * 100_000 + ['x' * 10_000], [[0] * 1000] * 100 + [['x' * 10_000] * 1000]):
        body = json.dumps({'data': [{'embedding': embedding}], 'execEndpoint': '/s'}).encode()
        tracemalloc.start()
        try:
            with pytest.raises(WireError, match='only numbers'):
                decode_request(body)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 50 * len(body), peak


def test_nothing_from_the_network_is_unpickled_or_decoded_as_objects():
    import base64
    import pickle
    payload = base64.b64encode(pickle.dumps(object())).decode()
    for dtype in ('O', '|O', 'V8', 'S4', 'f4,f4', '(2,)f4', 'M8[s]'):
        body = json.dumps({'data': [{'embedding': {'__ndarray_b64__': payload, 'dtype': dtype, 'shape': [1]}}],
                           'execEndpoint': '/s'}).encode()
        with pytest.raises(WireError, match='not allowed|unknown dtype'):
            decode_request(body)
    tags = json.dumps({'data': [{'tags': {'x': {'__ndarray__': [1], 'dtype': 'O', 'shape': [1]}}}],
                       'execEndpoint': '/s'}).encode()
    with pytest.raises(WireError, match='not allowed'):
        decode_request(tags)
    size = json.dumps({'data': [{'blob': {'__ndarray_b64__': 'AAAA', 'dtype': '<f4', 'shape': [1000000]}}],
                       'execEndpoint': '/s'}).encode()
    with pytest.raises(WireError, match='do not make an array'):
        decode_request(size)
    # str arrays come back as fixed-width str, never objects; what is no character is refused
    text = {'__ndarray_b64__': base64.b64encode(np.array(['ab', 'c']).tobytes()).decode(), 'dtype': '<U2',
            'shape': [2]}
    assert doc_from_json({'blob': text}).blob.tolist() == ['ab', 'c']
    bad = {**text, '__ndarray_b64__': base64.b64encode(np.array([0x110000, 0, 0, 0], '<u4').tobytes()).decode()}
    with pytest.raises(WireError, match='no Unicode characters'):
        doc_from_json({'blob': bad})


def test_serving_options_are_checked_and_other_protocols_rejected():
    assert check_options(port=5000) == {'port': 5000, 'protocol': 'http', 'host': '127.0.0.1',
                                        'max_body_bytes': 64 << 20}
    for proto in ('grpc', 'websocket'):
        with pytest.raises(ValueError, match=f"protocol='{proto}'.*protocols are: 'http'"):
            Flow(port_expose=5000, protocol=proto)
    with pytest.raises(ValueError, match='TCP port'):
        Flow(port_expose='5000')
    with pytest.raises(ValueError, match='differ'):
        check_options(port_expose=1, port=2)
    with pytest.raises(ValueError, match='max_body_bytes'):
        check_options(port=1, max_body_bytes=10)
    with pytest.raises(ValueError, match='Client needs the port'):
        Client()
    with pytest.raises(ValueError, match="protocol='grpc' is not served"):
        Client(port=1, protocol='grpc')


def test_client_says_nothing_listens():
    with pytest.raises(ConnectionError, match='nothing listens on http://127.0.0.1:.*port_expose'):
        Client(port=free_port()).search(Document())


def test_missing_aiohttp_names_the_extra(monkeypatch):
    from runtime.serving.deps import import_aiohttp
    monkeypatch.setitem(sys.modules, 'aiohttp', None)
    with pytest.raises(ImportError, match=r'pip install "shmflow\[http\]"'):
        import_aiohttp('the HTTP gateway')


# -- a real gateway ------------------------------------------------------------------------------
CLIENT_SCRIPT = '''
import json, sys
import numpy as np
from runtime import Client, Document, ExecutorError
c = Client(port={port})
seen = []
out = c.search([Document(id=f'q{{i}}', text='hey', embedding=np.arange(4, dtype=np.float32)) for i in range(5)],
               request_size=2, parameters={{'top_k': 3}}, on_done=lambda r: seen.append(len(r.docs)),
               on_always=lambda r: seen.append('always'), return_results=True)
d = out[0].docs[0]
errors = []
c.post('/fail', Document(), on_error=lambda r: errors.append((r.status.exception.executor,
       r.status.exception.name, ''.join(r.status.exception.stacks))))
try:
    c.post('/fail', Document())
    raised = None
except ExecutorError as e:
    raised = [e.executor, e.exc_type, 'on purpose' in e.remote_traceback]
idx = c.index([Document() for _ in range(7)], return_results=True)
print(json.dumps({{'seen': seen, 'ids': [x.id for r in out for x in r.docs], 'match': d.matches[0].text,
                  'score': float(d.matches[0].scores['cosine']), 'dtype': str(d.embedding.dtype),
                  'emb': d.embedding.tolist(), 'top_k_type': d.tags['top_k_type'], 'emb_in': d.tags['emb_dtype'],
                  'errors': errors, 'raised': raised, 'results': idx[0].parameters['__results__'],
                  'status': c.status()['status']}}))
'''


def test_client_in_another_process_has_the_post_api_and_types_survive():
    port = free_port()
    with serving_flow(port):
        proc = child(CLIENT_SCRIPT.format(port=port))
        try:
            out = json.loads(Lines(proc).readline(timeout=40))
        finally:
            reap(proc)
    assert out['ids'] == ['q0', 'q1', 'q2', 'q3', 'q4']
    assert out['seen'] == [2, 'always', 2, 'always', 1, 'always']
    assert (out['match'], out['score'], out['top_k_type']) == ('HEY', 0.5, 'int')
    assert (out['dtype'], out['emb_in'], out['emb']) == ('float32', 'float32', [0.0, 2.0, 4.0, 6.0])
    name, exc_type, stacks = out['errors'][0]
    assert (name, exc_type) == ('echo', 'ValueError') and 'the handler failed on purpose' in stacks
    assert out['raised'] == ['echo', 'ValueError', True]
    assert out['results'] == {'echo': {'indexed': 7}} and out['status'] == 'ok'


def test_jina2_rest_shapes_bad_requests_and_the_flow_keeps_serving():
    port = free_port()
    with serving_flow(port, max_body_bytes=64 << 10):
        # The curl examples of Jina 2's docs: POST /post with execEndpoint, POST /index, /search.
        code, body = http_call(port, 'POST', '/post',
                               b'{"data": [{"text": "hello world"}], "execEndpoint": "/search"}')
        assert code == 200 and body['header']['execEndpoint'] == '/search'
        assert body['data']['docs'][0]['matches'][0]['text'] == 'HELLO WORLD'
        assert body['data']['docs'][0]['matches'][0]['scores'] == {'cosine': {'value': 0.5}}
        assert body['header']['status']['code'] == 0 and body['requestId']
        code, body = http_call(port, 'POST', '/search',
                               b'{"data": ["hello", {"text": "x", "embedding": [1, 2]}], "parameters": {"top_k": 3}}')
        assert code == 200 and [d['text'] for d in body['data']['docs']] == ['hello', 'x']
        assert body['data']['docs'][1]['embedding'] == [2, 4]  # lists in, lists out
        assert body['parameters'] == {'top_k': 3}
        code, body = http_call(port, 'POST', '/index', b'{"data": [{"text": "a"}, {"text": "b"}]}')
        assert code == 200 and body['parameters']['__results__'] == {'echo': {'indexed': 2}}
        code, body = http_call(port, 'GET', '/status')
        assert code == 200 and body['status'] == 'ok' and body['requests']['served'] == 3

        # Refusals: each a 4xx with a message, none of them stops the Flow.
        assert http_call(port, 'POST', '/post', b'{"data": [')[0] == 400
        code, body = http_call(port, 'POST', '/search', b'{"data": [{"granularity": "high"}]}')
        assert code == 422 and 'data[0].granularity must be an int' in body['error']['message']
        code, body = http_call(port, 'POST', '/search', b'{"data": [], "execEndpoint": "/index"}')
        assert code == 422 and 'contradicts the URL' in body['error']['message']
        huge = json.dumps({'data': [{'text': 'x' * (100 << 10)}], 'execEndpoint': '/search'}).encode()
        code, body = http_call(port, 'POST', '/post', huge)
        assert code == 413 and 'max_body_bytes' in body['error']['message']
        assert http_call(port, 'GET', '/post')[0] == 405
        code, body = http_call(port, 'GET', '/nowhere')
        assert code == 404 and 'POST /post' in body['error']['message']
        code, body = http_call(port, 'POST', '/post', b'{"data": [{}], "execEndpoint": "/search", '
                                                      b'"targetExecutor": "(unclosed"}')
        assert 400 <= code < 500 and body['error']['message']

        # An executor failure: 500, the executor's name and its traceback in the status.
        code, body = http_call(port, 'POST', '/post', b'{"data": [{"text": "x"}], "execEndpoint": "/fail"}')
        exc = body['header']['status']['exception']
        assert code == 500 and body['header']['status']['code'] == 3
        assert exc['executor'] == 'echo' and exc['name'] == 'ValueError'
        assert 'the handler failed on purpose' in ''.join(exc['stacks'])

        # The Client turns refusals into ServerError and still works after them.
        client = Client(port=port)
        with pytest.raises(ServerError, match='413') as info:
            client.search(Document(text='y' * (100 << 10)))
        assert info.value.status == 413
        with pytest.raises(ServerError, match='not a valid regular expression') as info:
            client.search(Document(), target_executor='(unclosed')
        assert 400 <= info.value.status < 500
        # A target of the wrong type is refused before sending, as Flow.post refuses it.
        with pytest.raises(TypeError, match='target_executor must be an executor name or a regex str, got int 3'):
            client.search(Document(), target_executor=3)
        assert client.search(Document(text='fine'), return_results=True)[0].docs[0].matches[0].text == 'FINE'
        code, body = http_call(port, 'GET', '/status')
        assert body['requests']['refused'] >= 8 and body['requests']['failed'] == 1


# -- what Jina 2's gateway took is taken, meaning the same ---------------------------------------
#: Jina 2's own document JSON (the example of its /docs page: MessageToDict with every default).
JINA2_DOC = {'id': 'x', 'granularity': 0, 'adjacency': 0, 'parentId': '', 'text': 'hi', 'chunks': [], 'weight': 0.0,
             'siblings': 0, 'matches': [], 'mimeType': 'text/plain', 'location': [], 'offset': 0, 'modality': '',
             'evaluations': {}, 'scores': {}, 'tags': {'guardian': 'Azure Dragon'}, 'contentHash': 'ab12', 'uri': ''}


def test_jina2_documents_are_read_as_jina2_read_them():
    d = doc_from_json(JINA2_DOC)
    assert (d.id, d.text, d.mime_type, d.tags) == ('x', 'hi', 'text/plain', {'guardian': 'Azure Dragon'})
    # A key that is no field goes into tags, over a tag of that name; Jina 2's fields that hold
    # the user's data (siblings, location, offset) too, unless default; contentHash is dropped.
    d = doc_from_json({'text': 'x', 'lang': 'en', 'tags': {'lang': 'fr', 'k': 1}, 'siblings': 3, 'location': [1, 4],
                       'offset': 0, 'contentHash': 'ab12', 'parent_id': 'p',
                       'matches': [{'id': 'm', 'weird': {'__bytes__': 'eA=='},
                                    'scores': {'cosine': {'value': 0.5, 'opName': 'cosine', 'description': '',
                                                          'operands': [], 'refId': ''}}}]})
    assert d.tags == {'lang': 'en', 'k': 1, 'siblings': 3, 'location': [1, 4]} and d.parent_id == 'p'
    assert d.matches[0].tags == {'weird': b'x'} and d.matches[0].scores['cosine'].op_name == 'cosine'


def test_jina2_rest_requests_are_taken_as_jina2_took_them():
    port = free_port()
    with serving_flow(port):
        # Jina 2's CRUD routes: PUT /update, DELETE /delete (POST stays).
        code, body = http_call(port, 'PUT', '/update', b'{"data": [{"text": "u"}]}')
        assert code == 200 and body['header']['execEndpoint'] == '/update'
        code, body = http_call(port, 'DELETE', '/delete', b'{"data": [{"id": "gone"}]}')
        assert code == 200 and body['header']['execEndpoint'] == '/delete'
        assert body['data']['docs'][0]['id'] == 'gone'
        assert http_call(port, 'POST', '/update', b'{"data": []}')[0] == 200
        assert http_call(port, 'PUT', '/search', b'{"data": []}')[0] == 405
        code, body = http_call(port, 'GET', '/nowhere')
        assert 'PUT /update' in body['error']['message'] and 'DELETE /delete' in body['error']['message']
        # targetPeapod, Jina 2.0's targetExecutor, selects the executor (a name matching none is refused).
        ask = {'data': ['t'], 'execEndpoint': '/search', 'targetPeapod': 'echo'}
        code, body = http_call(port, 'POST', '/post', json.dumps(ask).encode())
        assert code == 200 and body['data']['docs'][0]['matches'][0]['text'] == 'T'
        code, body = http_call(port, 'POST', '/post', json.dumps({**ask, 'targetPeapod': 'nobody'}).encode())
        assert code == 422 and "'nobody' matches no executor" in body['error']['message']
        # The body Jina 2's HTTP client sent (its whole Request.dict(), exec_endpoint added),
        # holding Jina 2's document JSON and a key that is no field.
        jina2 = {'request_id': 'r1', 'header': {'exec_endpoint': '/search', 'request_id': 'r1'}, 'routes': [],
                 'parameters': {'top_k': 1}, 'exec_endpoint': '/search', 'data': [{**JINA2_DOC, 'lang': 'en'}]}
        code, body = http_call(port, 'POST', '/post', json.dumps(jina2).encode())
        doc = body['data']['docs'][0]
        assert code == 200 and doc['tags'] == {'guardian': 'Azure Dragon', 'lang': 'en', 'top_k_type': 'int'}
        assert doc['matches'][0]['text'] == 'HI'


# -- an executor that can no longer serve ----------------------------------------------------------
class Dies(Executor):
    """Its process exits (code 3) when ``parameters['die']`` says so."""

    @requests
    def maybe_die(self, docs: DocumentArray, parameters: dict, **kwargs) -> None:
        if parameters.get('die'):
            os._exit(3)


def test_a_dead_executor_shows_in_status_and_clients_raise_what_flow_post_raises(caplog):
    import asyncio

    from runtime import AsyncClient
    from runtime.errors import WorkerDiedError
    port = free_port()
    with Flow(port_expose=port, protocol='http').add(uses=Dies, name='dies') as f, Client(port=port) as client:
        assert client.status()['status'] == 'ok' and 'down' not in client.status()
        with pytest.raises(WorkerDiedError) as killed:  # the request the process died under
            client.post('/', Document(), parameters={'die': True})
        assert (killed.value.executor, killed.value.returncode) == ('dies', 3)
        with pytest.raises(WorkerDiedError) as local:  # max_restarts=0: dead for good
            f.post('/', Document())
        caplog.clear()
        with pytest.raises(WorkerDiedError) as remote:
            client.post('/', Document())
        assert str(remote.value) == str(local.value) == str(killed.value)
        assert (remote.value.replica, remote.value.pid) == (local.value.replica, local.value.pid)

        async def async_post() -> None:
            await AsyncClient(port=port).post('/', Document())
        with pytest.raises(WorkerDiedError, match="executor 'dies'"):
            asyncio.run(async_post())

        # Over HTTP: a response naming the executor, no traceback of the gateway's own, nothing logged.
        code, body = http_call(port, 'POST', '/index', b'{"data": [{"text": "x"}]}')
        exc = body['header']['status']['exception']
        assert code == 500 and (exc['name'], exc['executor'], exc['message']) == ('WorkerDiedError', 'dies',
                                                                                   str(local.value))
        assert 'Traceback' not in json.dumps(body) and not caplog.records
        # A health probe sees it: 503, which executor and why.
        code, body = http_call(port, 'GET', '/status')
        assert code == 503 and body['status'] == 'unavailable'
        assert body['down'] == [{'executor': 'dies', 'error': str(local.value)}]
        assert client.status()['down'] == body['down'] and body['requests']['failed'] == 4


# -- what the gateway writes, its Client reads back ------------------------------------------------
class Awkward(Executor):
    """Leaves what JSON lists and numbers cannot hold as they are: str, 0-d, empty 2-d,
    complex and non-finite arrays, non-finite floats, complex scalars; /set returns a set."""

    @requests(on='/awkward')
    def awkward(self, docs: DocumentArray, **kwargs) -> dict:
        for d in docs:
            d.blob = np.array(['cat', 'dog'])
            d.embedding = np.array([np.nan, np.inf, -1.0], np.float32)
            d.weight = float('-inf')
            d.tags.update(f=float('nan'), c=np.complex64(1 - 2j), z=np.array([1 + 2j]), s=np.array(['x', 'yz']))
            d.chunks.extend([Document(id='zero', embedding=np.float32(0.5) * np.ones((), np.float32)),
                             Document(id='empty', blob=np.zeros((0, 3), np.float32)),
                             Document(id='complex', embedding=np.array([1 + 2j, 3j]))])
            m = Document(id='m')
            m.scores['cosine'] = float('nan')
            d.matches.append(m)
        return {'inf': float('inf'), 'nan32': np.float32('nan')}

    @requests(on='/set')
    def a_set(self, docs: DocumentArray, **kwargs) -> dict:
        return {'x': {1, 2}}


def strict_json(raw: bytes) -> dict:
    def bare(token: str) -> None:
        raise AssertionError(f'bare {token} in the JSON')
    return json.loads(raw, parse_constant=bare)


def same(a, b) -> bool:
    """``a`` (read back) equals ``b`` (Flow.post's), NaN equal to NaN; arrays stay arrays of
    the same shape. Numpy scalars come back as Python numbers, a complex one as a 0-d array
    (JSON has no complex)."""
    if isinstance(b, np.generic):
        b = np.asarray(b) if isinstance(b, np.complexfloating) else b.item()
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind in 'fc'))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (a != a and b != b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def test_every_answer_the_gateway_writes_is_strict_json_its_client_reads_back_equal():
    port = free_port()
    with Flow(port_expose=port, protocol='http').add(uses=Awkward, name='awkward') as f:
        local = f.post('/awkward', Document(id='q'), return_results=True)[0]
        want, results = local.docs[0], local.parameters['__results__']
        for fmt in ('list', 'base64'):
            conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
            conn.request('POST', '/post', body=json.dumps({'data': [{'id': 'q'}], 'execEndpoint': '/awkward',
                                                            'arrayFormat': fmt}).encode())
            answer = conn.getresponse()
            assert answer.status == 200, fmt
            raw = strict_json(answer.read())
            conn.close()
            assert raw['data']['docs'][0]['weight'] == '-Infinity'  # protobuf's JSON, as Jina 2 wrote it
            assert raw['data']['docs'][0]['matches'][0]['scores']['cosine']['value'] == 'NaN'
            assert raw['parameters']['__results__']['awkward']['inf'] == {'__float__': 'Infinity'}
            resp = Client(port=port, array_format=fmt).post('/awkward', Document(id='q'), return_results=True)[0]
            got = resp.docs[0]
            assert same(got.blob, want.blob) and got.blob.dtype == want.blob.dtype, fmt
            assert same(got.embedding, want.embedding) and got.embedding.dtype == np.float32, fmt
            assert got.weight == -np.inf and np.isnan(got.matches[0].scores['cosine'].value), fmt
            assert same(got.tags, {k: v for k, v in want.tags.items()}), (fmt, got.tags)
            for mine, theirs in zip(got.chunks, want.chunks):
                assert same(mine.embedding, theirs.embedding) and same(mine.blob, theirs.blob), (fmt, mine.id)
            assert same(resp.parameters['__results__'], results), fmt
            # Something JSON cannot carry at all: a 500 naming the field, raised by the Client.
            with pytest.raises(ServerError, match=r"cannot be sent as JSON: parameters\['__results__'\]\['awkward'\]"
                                                  r"\['x'\] holds a set"):
                Client(port=port, array_format=fmt).post('/set', Document())


#: One bad argument each (beside on='/' and one Document), refused by Flow.post and both clients.
BAD_POST_ARGUMENTS = [
    {'on': 3}, {'on': None}, {'request_size': 0}, {'request_size': True}, {'request_size': '10'},
    {'prefetch': 0}, {'prefetch': 1.5}, {'timeout': -1}, {'timeout': 'soon'}, {'timeout': float('nan')},
    {'on_done': 'print'}, {'on_error': 42}, {'on_always': []}, {'parameters': [('a', 1)]},
    {'target_executor': 3}, {'target_peapod': ['a']}, {'target_executor': 'a', 'target_peapod': 'b'},
    {'timout': 1}, {'target_peapd': 'a'}, {'data_type': 'auto'},
]


def test_flow_and_both_clients_refuse_a_bad_post_argument_with_the_same_message():
    from runtime import AsyncClient
    said = {}
    with Flow() as f:
        clients = [Client(port=1), AsyncClient(port=1)]  # refused before any connection is tried
        for bad in BAD_POST_ARGUMENTS:
            args = {'on': '/', 'inputs': Document(), **bad}
            with pytest.raises((TypeError, ValueError)) as flow_info:
                f.post(**args)
            said[tuple(bad)] = str(flow_info.value)
            for client in clients:
                with pytest.raises(type(flow_info.value)) as info:
                    client.post(**args)
                name = type(client).__name__
                assert str(info.value) == str(flow_info.value).replace('post()', f'{name}.post()'), bad
    assert said[('timout',)] == "post() got an unexpected argument 'timout'; did you mean 'timeout'?"
    assert said[('target_peapd',)].endswith("did you mean 'target_peapod'?")
    assert said[('target_executor',)] == 'target_executor must be an executor name or a regex str, got int 3'


def test_client_post_honours_every_flow_post_argument_or_refuses_it_before_sending():
    port = free_port()
    with serving_flow(port), Client(port=port) as client, Client(port=port, timeout=0.2) as patient, \
            Client(port=port, timeout=float('inf')) as unlimited:
        before = client.status()['requests']
        # Refused at the call, each naming the argument and what to pass instead.
        with pytest.raises(TypeError, match=r"Client\.post\(\) got an unexpected argument 'timout'; did you mean "
                                            r"'timeout'\?"):
            client.search(Document(), timout=1)
        with pytest.raises(TypeError, match="unexpected argument 'data_type'; it takes on, inputs, "):
            client.search(Document(), data_type='auto')  # Jina 2 dropped what it did not know
        with pytest.raises(ValueError, match=rf'prefetch=4: Client sends one request at a time.*'
                                             rf'AsyncClient\(port={port}\)\.post\(\.\.\., prefetch=4\)'):
            client.search(Document(), prefetch=4)
        for bad in (0, 1.5, True):
            with pytest.raises(ValueError, match='prefetch must be a positive int'):
                client.search(Document(), prefetch=bad)
        for bad in (0, -1, 'soon', float('nan')):
            with pytest.raises(ValueError, match='timeout must be a positive number of seconds'):
                client.search(Document(), timeout=bad)
        with pytest.raises(TypeError, match='give target_executor or target_peapod'):
            client.search(Document(), target_executor='echo', target_peapod='echo')
        assert client.status()['requests'] == before  # nothing of the refused posts was sent

        # Honoured.
        assert client.search(Document(), return_results=False) is None
        out = client.search([Document(id=str(i)) for i in range(5)], request_size=2, return_results=True,
                            results_in_order=True, prefetch=1)
        assert [d.id for r in out for d in r.docs] == ['0', '1', '2', '3', '4']
        assert client.search(Document(text='t'), target_peapod='echo',
                             return_results=True)[0].docs[0].matches[0].text == 'T'
        with pytest.raises(ServerError, match="target_executor 'nobody' matches no executor"):
            client.search(Document(), target_peapod='nobody')  # Jina 2.0's name reaches the Flow

        # timeout: each answer's, for this post; the kept-alive connection gets it and gives it back.
        with pytest.raises(TimeoutError, match=rf'no answer from http://127.0.0.1:{port} within 0.2 s .*'
                                               r'post\(timeout=\.\.\.\)'):
            client.post('/slow', Document(), parameters={'pause': 0.6}, timeout=0.2)
        # (The gateway runs posts one at a time: this one waits for the slow one to end there.)
        assert client.search(Document(), timeout=5, return_results=True)  # reconnected
        assert client.search(Document(), timeout=0.2, return_results=True)  # kept-alive, now 0.2 s ...
        assert client.post('/slow', Document(), parameters={'pause': 0.4}, return_results=True)  # ... None again
        assert patient.post('/slow', Document(), parameters={'pause': 0.4}, timeout=30, return_results=True)
        with pytest.raises(TimeoutError, match='within 0.2 s'):
            patient.post('/slow', Document(), parameters={'pause': 0.6})  # the Client's own timeout
        assert unlimited.search(Document(), timeout=float('inf'), return_results=True)  # no limit


CONCURRENT_SCRIPT = '''
import sys
from runtime import Client, Document
c = Client(port={port})
ok = 0
for i in range({n}):
    rid = f'{who}-{{i}}'
    r = c.search(Document(id=rid, text=rid), return_results=True)[0]
    assert [d.id for d in r.docs] == [rid], r.docs
    assert r.docs[0].matches[0].text == rid.upper()
    ok += 1
print(ok, flush=True)
'''


def test_eight_concurrent_client_processes_thousand_requests_each_gets_its_own_answers():
    port = free_port()
    with serving_flow(port) as f:
        procs = [child(CONCURRENT_SCRIPT.format(port=port, n=125, who=f'c{k}')) for k in range(8)]
        try:
            counts = [int(Lines(p).readline(timeout=50)) for p in procs]
        finally:
            for p in procs:
                reap(p)
        assert counts == [125] * 8
        assert Client(port=port).status()['requests']['served'] == 1000
        assert f.search(Document(text='in process'), return_results=True)[0].docs[0].matches  # Flow still fine


KILLED_SCRIPT = '''
import socket, sys
body = b'{{"data": [{{"text": "x"}}], "execEndpoint": "/slow", "parameters": {{"pause": 0.5}}}}'
s = socket.create_connection(('127.0.0.1', {port}))
s.sendall(b'POST /post HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\nContent-Length: '
          + str(len(body)).encode() + b'\\r\\n\\r\\n' + body)
print('sent', flush=True)
sys.stdin.read()
'''


def test_a_client_killed_mid_request_leaves_the_gateway_serving():
    port = free_port()
    with serving_flow(port):
        proc = subprocess.Popen([sys.executable, '-c', textwrap.dedent(KILLED_SCRIPT.format(port=port))],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=script_env())
        try:
            assert Lines(proc).readline(timeout=20) == 'sent'
            proc.kill()
            proc.wait(timeout=10)
        finally:
            reap(proc)
        client = Client(port=port)
        resp = client.search(Document(text='after'), return_results=True)[0]
        assert resp.docs[0].matches[0].text == 'AFTER'
        counts = client.status()['requests']
        assert counts['inflight'] == 0 and counts['served'] == 2  # the killed one ran too


def test_port_in_use_fails_start_cleanly():
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f'cannot listen on 127.0.0.1:{port}.*another port_expose'):
            serving_flow(port).start()


BLOCK_SCRIPT = '''
import signal, sys
from runtime import Document, Executor, Flow, requests
class Up(Executor):
    @requests
    def up(self, docs, **kwargs):
        for d in docs:
            d.text = d.text.upper()
with Flow(port_expose={port}, protocol='http').add(uses=Up) as f:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    print('ready', flush=True)
    f.block()
    after = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    print('unblocked', after[0] is before[0], after[1] is before[1], flush=True)
print('closed', flush=True)
'''


def test_block_serves_until_sigterm_then_leaves_nothing_behind():
    port = free_port()
    proc = child(BLOCK_SCRIPT.format(port=port))
    lines = Lines(proc)
    try:
        assert lines.readline(timeout=40) == 'ready'
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers
        r = Client(port=port).post('/', Document(text='served'), return_results=True)
        assert r[0].docs[0].text == 'SERVED'
        proc.send_signal(signal.SIGTERM)
        assert lines.readline(timeout=20) == 'unblocked True True'
        assert lines.readline(timeout=20) == 'closed'
        assert proc.wait(timeout=20) == 0
    finally:
        reap(proc)
    _, alive = psutil.wait_procs(workers, timeout=5)
    assert not alive
    assert not glob.glob(f'/dev/shm/shmflow-{proc.pid}-*')
    assert not glob.glob(os.path.join(tempfile.gettempdir(), f'shmflow-{proc.pid}-*'))
    with socket.socket() as s:  # the port is free again
        s.bind(('127.0.0.1', port))
    with pytest.raises(ConnectionError, match='nothing listens'):
        Client(port=port).post('/', Document())


# -- show_progress counts the input, as Flow.post does ------------------------------------------
class Reshape(Executor):
    """/keep keeps the even ids, /split makes three of each, /fail_odd fails requests 1, 3, 5..."""

    @requests(on='/keep')
    def keep(self, docs: DocumentArray, **kwargs) -> DocumentArray:
        return DocumentArray(d for d in docs if int(d.id) % 2 == 0)

    @requests(on='/split')
    def split(self, docs: DocumentArray, **kwargs) -> DocumentArray:
        return DocumentArray(Document(id=f'{d.id}-{k}') for d in docs for k in range(3))

    @requests(on='/fail_odd')
    def fail_odd(self, docs: DocumentArray, **kwargs) -> None:
        if int(docs[0].id) // 10 % 2:
            raise ValueError('odd request')


#: endpoint -> the summary line of 100 documents in requests of 10.
PROGRESS_LINES = {
    '/keep': r'/keep: 10 requests, 100 docs done, 50 docs out in ',
    '/split': r'/split: 10 requests, 100 docs done, 300 docs out in ',
    '/fail_odd': r'/fail_odd: 10 requests, 50 docs done, 50 docs failed \(5 requests\) in ',
}


def final_progress_line(capfd) -> str:
    import re
    lines = [ln for ln in re.split(r'[\r\n]', capfd.readouterr().err) if ln.strip()]
    return lines[-1]


def test_client_progress_counts_input_documents_done_and_failed_apart_from_output(capfd):
    import re
    port = free_port()
    docs = [Document(id=str(i)) for i in range(100)]
    with Flow(port_expose=port, protocol='http').add(uses=Reshape) as f, Client(port=port) as client:
        for on, expected in PROGRESS_LINES.items():
            for poster in (f, client):
                capfd.readouterr()
                poster.post(on, docs, request_size=10, show_progress=True, continue_on_error=True)
                line = final_progress_line(capfd)
                assert re.search(expected, line), (type(poster).__name__, line)


def test_status_sees_a_process_killed_while_the_flow_is_idle():
    port = free_port()
    with Flow(port_expose=port, protocol='http').add(uses=Dies, name='dies') as f:
        assert http_call(port, 'GET', '/status')[0] == 200
        pid = f._rt.deployments[0].workers[0].pid
        fd = os.pidfd_open(pid)
        try:
            os.kill(pid, signal.SIGKILL)  # no request running: only a health probe can notice
            assert select.select([fd], [], [], 10)[0]  # all of it gone (the Flow reaps it)
        finally:
            os.close(fd)
        code, body = http_call(port, 'GET', '/status')
        assert code == 503 and body['down'][0]['executor'] == 'dies' and 'SIGKILL' in body['down'][0]['error']


class Nests(Executor):
    @requests
    def nest(self, docs, parameters, **kwargs):
        for d in docs:
            inner = d
            for level in range(parameters.get('levels', 9)):
                child = Document(id=f'{d.id}-{level}')
                inner.chunks.append(child)
                inner = child


def test_one_client_shared_by_threads_and_one_interrupted_exchange():
    import http.client as hc
    import threading
    port = free_port()
    with Flow(port_expose=port, protocol='http').add(uses=Nests), Client(port=port) as client:
        ok, errors = [], []

        def posts() -> None:
            for _ in range(10):
                try:
                    (r,) = client.post('/', Document(id='t'), parameters={'levels': 1}, return_results=True)
                    ok.append(r.docs[0].chunks[0].id == 't-0')
                except Exception as exc:  # noqa: BLE001 - counted: none may happen
                    errors.append(exc)
        threads = [threading.Thread(target=posts) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors and ok == [True] * 40  # (one connection, one exchange at a time)
        # An answer deeper than a request may nest reaches the Client whole.
        (r,) = client.post('/', Document(id='d'), parameters={'levels': 9}, return_results=True)
        assert r.docs[0].chunks[0].chunks[0].chunks[0].id == 'd-2'
        # Ctrl-C in the middle of an exchange: the next post starts on a new connection.
        real = hc.HTTPConnection.getresponse

        def interrupted(self, *a, **k):
            raise KeyboardInterrupt

        hc.HTTPConnection.getresponse = interrupted
        try:
            with pytest.raises(KeyboardInterrupt):
                client.post('/', Document())
        finally:
            hc.HTTPConnection.getresponse = real
        assert len(client.post('/', Document(), return_results=True)) == 1


def test_urls_put_an_ipv6_host_in_brackets():
    from runtime.serving.client import http_url
    assert http_url('::1', 8080) == 'http://[::1]:8080' and http_url('127.0.0.1', 80) == 'http://127.0.0.1:80'
    assert Client(host='::1', port=8080).url == 'http://[::1]:8080'


def test_json_keeps_what_a_chunk_or_match_says_of_its_parent_granularity_and_adjacency():
    from runtime.serving.jsoncodec import doc_from_json
    d = doc_from_json({'id': 'p', 'chunks': [{'parentId': 'other'}, {'text': 'x'}],
                       'matches': [{'id': 'm', 'adjacency': 3, 'granularity': 2}]})
    assert (d.chunks[0].parent_id, d.chunks[1].parent_id, d.chunks[1].granularity) == ('other', 'p', 1)
    assert (d.matches[0].adjacency, d.matches[0].granularity) == (3, 2)  # (attaching gave 1 and 0)


def test_the_clients_server_error_is_one_of_runtimes_errors():
    # (a script catches what Client raises by runtime's names, as Jina 2's by jina.excepts)
    import runtime
    from runtime import excepts
    assert runtime.ServerError is excepts.ServerError is ServerError


class HangsOnTag(Executor):
    @requests
    def work(self, docs, **kwargs):
        if any(d.tags.get('hang') for d in docs):
            time.sleep(60)  # (ended by the Flow long before)
        for d in docs:
            d.tags['pid'] = os.getpid()


def test_a_client_timeout_frees_the_gateway_from_a_hung_handler():
    from runtime import RequestTimeoutError
    # The Client's timeout reaches the Flow as post(timeout=): the hung request fails there
    # (and its instance is taken for hung, as in-process); without it every later request,
    # from every client, queued behind the hung post for good while an idle replica waited.
    port = free_port()
    with Flow(port_expose=port, protocol='http', timeout_close=1).add(
            uses=HangsOnTag, name='hangs', replicas=2, max_restarts=1) as f, Client(port=port) as client:
        with pytest.raises((TimeoutError, RequestTimeoutError)):
            client.post('/', Document(tags={'hang': True}), timeout=1.0)
        t0 = time.monotonic()
        got = client.post('/', Document(), return_results=True, timeout=10)
        assert got[0].docs[0].tags['pid'] and time.monotonic() - t0 < 5


def test_a_request_timeout_is_checked_where_it_is_read():
    req = decode_request(b'{"data": [], "timeout": 2.5}', '/search')
    assert req.timeout == 2.5 and decode_request(b'{"data": []}', '/search').timeout is None
    assert json.loads(encode_request(None, '/search', timeout=3))['timeout'] == 3
    for bad in ('-1', '0', 'true', '"5"', '[1]'):
        with pytest.raises(WireError, match='timeout must be a number of seconds > 0'):
            decode_request(f'{{"timeout": {bad}}}'.encode(), '/search')


def test_a_client_gone_mid_upload_is_no_server_error(caplog):
    port = free_port()
    with Flow(port_expose=port, protocol='http') as f, Client(port=port) as client:
        with socket.create_connection(('127.0.0.1', port)) as sock:
            sock.sendall(b'POST /post HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                         b'Content-Length: 1000\r\n\r\n{"data": [')
        assert client.post('/', Document(), return_results=True)[0].docs  # (served after it)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
