"""Jina 2.0.24's Flow API that scripts (and its own hello demos) use: the gateway properties
``protocol`` / ``port_expose`` / ``host`` (set on a running Flow, they serve it at once),
``expose_endpoint``, ``cors``, ``join``, ``num_pods`` / ``num_peas``, ``inspect`` /
``gather_inspect``, and every option of its pod / Flow / client parsers honoured or refused
with what it meant (never a generic "unexpected argument" or a misleading "did you mean")."""
from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from childio import Lines, reap, script_env
from runtime import Client, Document, DocumentArray, Executor, Flow, requests


class Up(Executor):
    """Upper-cases texts; '/foo' tags them, so a test sees which endpoint ran."""

    @requests
    def up(self, docs: DocumentArray, **kwargs) -> None:
        for d in docs:
            d.text = (d.text or '').upper()

    @requests(on='/foo')
    def foo(self, docs: DocumentArray, **kwargs) -> None:
        for d in docs:
            d.tags['ran'] = 'foo'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def http_call(port: int, method: str, path: str, body: bytes | None = None,
              headers: dict | None = None) -> tuple[int, dict, dict]:
    """(status, headers, JSON body or {}) of one request to the gateway on ``port``."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {'Content-Type': 'application/json'})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, dict(resp.getheaders()), json.loads(raw) if raw else {}
    finally:
        conn.close()


def listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(('127.0.0.1', port)) == 0


# -- protocol / port_expose / host: Jina 2's properties ----------------------------------------
DEMO_SCRIPT = '''
from runtime import Document, Executor, Flow, requests
class Up(Executor):
    @requests
    def up(self, docs, **kwargs):
        for d in docs:
            d.text = (d.text or '').upper()
f = Flow().add(uses=Up)
with f:
    f.index([Document(text='indexed first')])
    # jina hello chatbot (helloworld/chatbot/app.py:60-66): switch to REST at runtime, then block
    f.protocol = 'http'
    f.port_expose = {port}
    print('ready', f.protocol, f.port_expose, flush=True)
    f.block()
print('closed', flush=True)
'''


def test_protocol_and_port_expose_set_inside_with_serve_the_running_flow_as_jina2s_hello_demos_do():
    port = free_port()
    proc = subprocess.Popen([sys.executable, '-c', textwrap.dedent(DEMO_SCRIPT.format(port=port))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=script_env())
    lines = Lines(proc)
    try:
        assert lines.readline(timeout=60) == f'ready http {port}'
        resp = Client(port=port).post('/search', Document(text='served'), return_results=True)
        assert resp[0].docs[0].text == 'SERVED'
        proc.send_signal(signal.SIGTERM)
        assert lines.readline(timeout=30) == 'closed'
        assert proc.wait(timeout=30) == 0
    finally:
        reap(proc)


def test_port_expose_on_a_running_flow_moves_the_gateway_and_frees_the_old_port():
    first, second = free_port(), free_port()
    with Flow(port_expose=first, protocol='http').add(uses=Up) as f:
        assert (f.port_expose, f.protocol, f.host) == (first, 'http', '127.0.0.1')
        f.port_expose = second
        assert f.port_expose == second
        code, _, body = http_call(second, 'POST', '/search', json.dumps({'data': [{'text': 'x'}]}).encode())
        assert code == 200 and body['data']['docs'][0]['text'] == 'X'
        assert not listens(first)  # the old gateway was closed
        f.protocol = 'http'  # what it serves already: nothing moves
        assert f.port_expose == second and listens(second)
        # Refused as Flow(...) refuses them, and the gateway keeps serving as it did
        with pytest.raises(ValueError, match=r"protocol='grpc' is not served.*protocols are: 'http'"):
            f.protocol = 'grpc'
        with pytest.raises(ValueError, match='port_expose must be a TCP port number'):
            f.port_expose = 'eighty'
        with socket.socket() as taken:
            taken.bind(('127.0.0.1', 0))
            taken.listen()
            with pytest.raises(OSError, match='cannot listen'):
                f.port_expose = taken.getsockname()[1]
        assert (f.port_expose, f.protocol) == (second, 'http')
        assert http_call(second, 'GET', '/status')[0] == 200
        # Jina 2 post's data_type: what it meant, not a generic refusal
        with pytest.raises(TypeError, match=r"'data_type'.*Jina 2's data_type told.*always read as AUTO.*"
                                            r"Document\(content=x\)"):
            f.post('/', ['raw text'], data_type='CONTENT')
    assert not listens(second)


def test_gateway_properties_before_start_read_the_settings_and_set_what_with_serves():
    f = Flow().add(uses=Up)
    assert (f.protocol, f.port_expose, f.host) == (None, None, '127.0.0.1')  # no gateway asked for
    g = Flow(port_expose=12399, protocol='HTTP').add()
    assert (g.protocol, g.port_expose) == ('http', 12399)
    port = free_port()
    f.protocol = 'http'
    f.port_expose = port
    assert (f.protocol, f.port_expose) == ('http', port)
    with pytest.raises(ValueError, match=r"protocol='websocket' is not served.*protocols are: 'http'"):
        f.protocol = 'websocket'
    f2 = f.add(name='more')  # a Flow made from it keeps them, as Jina 2's copies did
    assert (f2.protocol, f2.port_expose) == ('http', port)
    assert not listens(port)
    with f2:
        assert http_call(port, 'GET', '/status')[0] == 200
    assert not listens(port)


def test_an_asyncflow_has_the_same_gateway_properties():
    from runtime import AsyncFlow
    af = AsyncFlow().add(uses=Up)
    assert af.protocol is None
    port = free_port()
    af.port_expose = port  # (on the Flow it runs, not a plain attribute of the AsyncFlow)
    assert (af.port_expose, af.protocol) == (port, 'http')
    with af:
        assert http_call(port, 'GET', '/status')[0] == 200


# -- expose_endpoint and cors ------------------------------------------------------------------
def test_expose_endpoint_serves_an_http_path_per_endpoint_and_cors_lets_pages_call_it():
    port = free_port()
    f = Flow(port_expose=port, protocol='http', cors=True).add(uses=Up)
    f.expose_endpoint('/foo', path='/bar', methods=['GET', 'POST'], status_code=201)
    with f:
        code, _, body = http_call(port, 'POST', '/bar', json.dumps({'data': [{'text': 'q'}]}).encode())
        assert code == 201 and body['header']['execEndpoint'] == '/foo'
        assert body['data']['docs'][0]['tags'] == {'ran': 'foo'}
        code, _, body = http_call(port, 'GET', '/bar')  # no body: a request without documents
        assert code == 201 and body['header']['execEndpoint'] == '/foo'
        code, _, body = http_call(port, 'PUT', '/bar', b'{}')
        assert code == 405 and 'PUT is not allowed on /bar' in body['error']['message']
        code, _, body = http_call(port, 'GET', '/nothing')
        assert code == 404 and 'GET /bar' in body['error']['message']
        assert http_call(port, 'GET', '/post')[0] == 405  # the gateway's own routes are as they were
        f.expose_endpoint('/foo', path='/later')  # on the running Flow: served at once
        assert http_call(port, 'POST', '/later', b'{"data": []}')[0] == 200
        # CORS (Jina 2's Flow(cors=True), which its hello demos' web pages need)
        code, headers, _ = http_call(port, 'OPTIONS', '/post', headers={
            'Origin': 'null', 'Access-Control-Request-Method': 'POST',
            'Access-Control-Request-Headers': 'content-type'})
        assert code == 200 and headers['Access-Control-Allow-Origin'] == 'null'
        assert 'POST' in headers['Access-Control-Allow-Methods']
        code, headers, _ = http_call(port, 'POST', '/search', b'{"data": []}',
                                     headers={'Origin': 'http://page', 'Content-Type': 'application/json'})
        assert code == 200 and headers['Access-Control-Allow-Origin'] == 'http://page'


def test_expose_endpoint_refuses_what_this_gateway_cannot_honour():
    f = Flow().add()
    with pytest.raises(TypeError, match=r"summary=.*OpenAPI docs, which this gateway does not serve"):
        f.expose_endpoint('/foo', summary='my endpoint')
    with pytest.raises(TypeError, match=r"response_model=.*Jina 2's standard JSON"):
        f.expose_endpoint('/foo', response_model=dict)
    with pytest.raises(ValueError, match='/status is a route of the gateway itself'):
        f.expose_endpoint('/foo', path='/status')
    with pytest.raises(ValueError, match="methods=.*takes GET, POST"):
        f.expose_endpoint('/foo', methods=['FETCH'])
    with pytest.raises(TypeError, match=r"unexpected argument 'pth'; did you mean 'path'"):
        f.expose_endpoint('/foo', pth='/x')
    with pytest.raises(TypeError, match='cors must be True'):
        Flow(cors='yes')


# -- join, num_pods / num_peas, inspect --------------------------------------------------------
def test_join_is_needs_and_the_pod_counts_are_jina2s():
    base = Flow().add(name='a').add(name='b', needs='gateway')
    joined = base.join(['a', 'b'])
    assert [(s['resolved_name'], s['needs']) for s in joined._specs] == \
        [(s['resolved_name'], s['needs']) for s in base.needs(['a', 'b'])._specs]
    f = Flow().add(name='a', replicas=2).add(name='b', shards=2, uses_after=Up)
    assert (f.num_pods, f.num_peas, f.num_executors) == (2, 5, 3)
    with pytest.raises(NotImplementedError, match=r"inspect pod.*f\.add\(name='eval', uses=MyEvaluator\)"):
        f.inspect(uses=Up)
    assert f.gather_inspect() is f  # Jina 2's answer for a Flow without inspect pods


# -- every Jina 2 option: honoured, or refused with what it meant -----------------------------
#: The option names of Jina 2.0.24's parsers (jina/parsers: peapods/*, flow.py, client.py, the
#: gateway's) and the client options its post took.
JINA2_NAMES = """asyncio compress compress_min_bytes compress_min_ratio connect_to_predecessor cors ctrl_with_ipc
daemon default_swagger_ui description disable_remote docker_kwargs dump_path dynamic_routing dynamic_routing_in
dynamic_routing_out entrypoint env expose_endpoints expose_public external gpus grpc_data_requests host host_in
host_out hosts_in_connect identity infrastructure inspect install_requirements k8s_custom_resource_dir
k8s_init_container_command k8s_mount_path k8s_namespace k8s_uses_init log_config memory_hwm name native
no_crud_endpoints no_debug_endpoints no_dynamic_routing noblock_on_start num_part on_error_strategy parallel pea_id
pea_role peas_hosts pod_role polling port port_ctrl port_expose port_in port_jinad port_out prefetch
prefetch_on_recv protocol proxy pull_latest py_modules quiet quiet_error quiet_remote_logs replicas routing_table
runs_in_docker runtime runtime_backend runtime_cls scheduling shards socket_in socket_out ssh_keyfile ssh_password
ssh_server static_routing_table timeout_ctrl timeout_ready title upload_files uses uses_after uses_before
uses_metas uses_requests uses_with version version_full volumes workspace workspace_id zmq_identity data_type
https results_as_docarray continue_on_error return_results show_progress request_size target_peapod""".split()


@pytest.mark.parametrize('where', ['Flow', 'add'])
def test_no_jina2_option_gets_a_generic_refusal(where):
    generic = []
    for name in JINA2_NAMES:
        try:
            # (a value no option takes: honoured ones refuse it naming themselves)
            Flow(**{name: object()}) if where == 'Flow' else Flow().add(**{name: object()})
        except Exception as exc:
            if 'unexpected argument' in str(exc) or 'did you mean' in str(exc):
                generic.append(f'{name}: {exc}')
    assert not generic, '\n'.join(generic)


@pytest.mark.parametrize('call, words', [
    (lambda: Flow().add(on_error_strategy='THROW_EARLY'), r'SKIP_HANDLE.*goes to no later executor.*on_error'),
    (lambda: Flow().add(scheduling='ROUND_ROBIN'), r'fewest requests outstanding.*LOAD_BALANCE'),
    (lambda: Flow().add(memory_hwm=4), r'that many GB.*max_restarts'),
    (lambda: Flow().add(volumes=['/data']), r'Docker image or Jina Hub.*uses=MyExecutor'),
    (lambda: Flow(name='my-flow'), r"named a Jina 2 Flow.*add\(name=\.\.\.\)"),
    (lambda: Flow().add(native=1), r'Python class run in its own runtime'),
    (lambda: Flow().add(timeout_ctrl=5000), r'control requests.*timeout_ready.*timeout_close'),
    (lambda: Flow(timeout_ctrl=5000), r'control requests.*timeout_ready.*timeout_close'),
    (lambda: Flow(prefetch_on_recv=2), r'one more as each answer comes back.*Flow\(prefetch=N\)'),
    (lambda: Flow().add(prefetch=4), r'give it to Flow\(prefetch=N\)'),
    (lambda: Flow().add(request_size=10), r'default of the Flow.s posts.*Flow\(request_size=\.\.\.\)'),
    (lambda: Flow(compress='LZ4'), r'compressed the messages'),
])
def test_jina2_options_are_refused_with_what_they_meant(call, words):
    with pytest.raises(TypeError, match=words) as info:
        call()
    assert 'unexpected argument' not in str(info.value) and 'did you mean' not in str(info.value)


def test_jina2_options_that_ask_for_what_happens_here_are_honoured():
    f = Flow(prefetch_on_recv=1, native=True, parallel=2).add(name='a', native=False, scheduling='LOAD_BALANCE')
    assert f._specs[0]['shards'] == 2  # parallel: Jina 2's name of shards
    with pytest.raises(TypeError, match='shards or parallel'):
        Flow(parallel=2, shards=2)


# -- moving the gateway while posts run, or while the Flow closes --------------------------------
def _wait_for(condition, what: str, timeout: float = 20.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'not within {timeout} s: {what}'
        time.sleep(0.005)


def test_moving_the_gateway_from_a_callback_while_a_request_waits_on_the_old_one_does_not_hang():
    # The old gateway's request waits for the running post, whose callback moves the gateway:
    # closing the old one there waited for that request for ever.
    import threading
    p1, p2 = free_port(), free_port()
    answers = []
    with Flow(port_expose=p1, protocol='http').add(uses=Up) as f:
        old = f._gateway

        def move(resp):
            if answers:
                return
            client = threading.Thread(target=lambda: answers.append(
                http_call(p1, 'POST', '/index', json.dumps({'data': [{'text': 'b'}]}).encode())))
            client.start()
            answers.append(client)
            _wait_for(lambda: old.counts['inflight'] == 1, 'the request reached the old gateway')
            f.port_expose = p2

        f.post('/', [Document(text='a'), Document(text='c')], request_size=1, on_done=move)
        new_port = f.port_expose
        assert new_port == p2 and f._gateway is not old
        answers[0].join(30)
        status, _, body = answers[1]
        assert status == 200 and body['data']['docs'][0]['text'] == 'B'  # the old one finished it
        _wait_for(lambda: not listens(p1), 'the old port is free')
        assert http_call(new_port, 'POST', '/index', json.dumps({'data': [{'text': 'd'}]}).encode())[0] == 200
    assert not listens(new_port)
    assert not [t for t in threading.enumerate() if t.name.startswith('shmflow-gateway')]


def test_a_setter_while_the_flow_closes_only_keeps_the_setting():
    # A setter in another thread while close() waited for a post started a gateway that
    # outlived the Flow (its port bound, its thread alive).
    import threading
    p2 = free_port()
    f = Flow().add(uses=Up)
    with f:
        held = threading.Event()
        done = threading.Event()

        def closing():  # (what a close under way in another thread holds)
            with f._closing:
                held.set()
                done.wait(30)
        t = threading.Thread(target=closing)
        t.start()
        held.wait(30)
        try:
            f.port_expose = p2
            assert f._gateway is None and not listens(p2) and f.port_expose == p2
        finally:
            done.set()
            t.join(30)
    assert not listens(p2) and f._gateway is None
    with f:  # the setting is what the next start serves
        assert listens(p2)
    assert not listens(p2)


def test_gateway_options_alone_do_not_serve_until_a_port_or_protocol_is_given():
    p = free_port()
    with Flow(cors=False, host='127.0.0.1', max_body_bytes=1 << 20).add(uses=Up) as f:
        assert f._gateway is None and f.protocol is None and f.port_expose is None
        f.port_expose = p
        assert f._gateway.max_body_bytes == 1 << 20 and f.host == '127.0.0.1' and listens(p)
    with pytest.raises(TypeError, match=r"add\(host=...\) placed a Jina 2 executor on another machine"):
        Flow().add(host='10.0.0.7')


def test_a_405_says_which_methods_are_allowed():
    p = free_port()
    with Flow(port_expose=p, protocol='http').add(uses=Up):
        status, headers, body = http_call(p, 'GET', '/index')
    assert (status, headers.get('Allow')) == (405, 'POST') and 'GET is not allowed on /index' in json.dumps(body)


class SlowUp(Up):
    """Up, 50 ms a request: a post of some documents holds the Flow a while."""

    @requests
    def up(self, docs: DocumentArray, **kwargs) -> None:
        import time
        time.sleep(0.05)
        super().up(docs)


def test_an_asyncflow_moves_its_gateway_inside_async_for_while_a_request_waits_on_the_old_one():
    # The setter runs on the event loop, which the running post waits for: closing the old
    # gateway there (its request waiting for that post) hung the loop for good.
    import asyncio
    import threading

    from runtime import AsyncFlow

    p1, p2 = free_port(), free_port()
    answers: list = []

    async def main() -> int:
        n = 0
        async with AsyncFlow(port_expose=p1, protocol='http').add(uses=SlowUp) as f:
            old = f._flow._gateway
            client = threading.Thread(target=lambda: answers.append(
                http_call(p1, 'POST', '/index', json.dumps({'data': [{'text': 'b'}]}).encode())))
            # (more requests than the window: the post is still running while the loop waits)
            async for _ in f.post('/', [Document(text='a') for _ in range(40)], request_size=1):
                n += 1
                if n == 1:
                    client.start()
                    _wait_for(lambda: old.counts['inflight'] == 1, 'the request reached the old gateway')
                    f.port_expose = p2
                    assert f.port_expose == p2 and listens(p2)
            client.join(30)
        return n

    assert asyncio.run(main()) == 40
    assert answers[0][0] == 200 and answers[0][2]['data']['docs'][0]['text'] == 'B'
    assert not listens(p1) and not listens(p2)


def test_gateway_options_kept_for_later_survive_save_and_load(tmp_path):
    path = str(tmp_path / 'flow.yml')
    Flow(cors=True, host='localhost').add(uses=Up).save_config(path)
    g = Flow.load_config(path)
    assert g.protocol is None and g.host == 'localhost'  # not serving, options kept
    p = free_port()
    with g:
        g.port_expose = p
        assert g._gateway.cors and g._gateway.host == 'localhost'
