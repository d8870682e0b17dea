"""The pieces split out of ``runtime.flow`` (``control.post_args``, ``control.stop_signals``,
``flow_build``), ``perf.bench_scaling`` (``perf.scaling_shards``), the local transport
(``payloads``), the JSON codec (``jsonarrays``) and the sparse indexer (``bm25``): each
imports on its own, the old names still work, and what moved behaves as it did."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys

import pytest

from runtime.control.post import NO_PARAMETERS
from runtime.control.post_args import check_post_args
from runtime.control.stop_signals import STOP_SIGNALS, StopSignals
from runtime.flow import Flow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('module', ['runtime.control.post_args', 'runtime.control.stop_signals', 'runtime.flow',
                                    'runtime.flow_build', 'runtime.transport.local.payloads',
                                    'runtime.serving.jsonarrays', 'executors.bm25',
                                    'perf.scaling_shards', 'perf.bench_scaling', 'runtime.transport.ray.options',
                                    'runtime.transport.ray.workers', 'runtime.transport.ray.transport',
                                    'runtime.transport.local.worker_logs', 'runtime.transport.local.last_words',
                                    'executors.sparse_merge', 'runtime.flow_serving', 'runtime.control.jina2_options',
                                    'runtime.memmap_jina2'])
def test_each_new_module_imports_first_in_a_fresh_interpreter(module):
    # Imported first, a module in an import cycle fails with "partially initialized module".
    proc = subprocess.run([sys.executable, '-c', f'import {module}'], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_old_names_still_import_from_where_they_were():
    from perf.bench_scaling import INDEX_SIZE, TOP_K, MatIndexer
    from runtime.flow import STOP_SIGNALS as from_flow
    assert from_flow == STOP_SIGNALS == (signal.SIGTERM, signal.SIGHUP)
    assert MatIndexer.__module__ == 'perf.scaling_shards' and TOP_K == 10 and INDEX_SIZE['tiny'] == 2_000
    from executors.sparse import bm25_scores
    from runtime.serving.jsoncodec import MAX_DIM, WireError, decode_array, encode_array, json_kind
    from runtime.transport.local.pool import LocalTransport
    assert bm25_scores.__module__ == 'executors.bm25' and MAX_DIM == 2 ** 31 and json_kind([]) == 'a list'
    assert decode_array(encode_array(__import__('numpy').arange(3.0), 'base64'), 'x').tolist() == [0.0, 1.0, 2.0]
    assert issubclass(WireError, ValueError) and callable(LocalTransport.open_result)


def _check(**given):
    args = {'on': '/', 'on_done': None, 'on_error': None, 'on_always': None, 'parameters': None,
            'target_executor': None, 'request_size': 100, 'prefetch': None, 'timeout': None, 'extra': {},
            'default_prefetch': 16}
    args.update(given)
    return check_post_args(*args.values())


def test_post_args_common_case_shares_the_empty_parameters_blob():
    assert _check() == (None, 16, NO_PARAMETERS)
    assert _check(parameters={})[2] is NO_PARAMETERS  # nothing pickled for an empty dict
    target, window, blob = _check(parameters={'k': [1, 2]}, prefetch=3)
    assert (target, window, pickle.loads(blob)) == (None, 3, {'k': [1, 2]})


def test_post_args_take_target_peapod_without_changing_the_callers_dict():
    extra = {'target_peapod': 'idx'}
    assert _check(extra=extra)[0] == 'idx'
    assert extra == {'target_peapod': 'idx'}
    with pytest.raises(TypeError, match='not both'):
        _check(extra=extra, target_executor='enc')
    with pytest.raises(TypeError, match="unexpected argument 'bogus'"):
        _check(extra={'bogus': 1})


@pytest.mark.parametrize('given, error, text', [
    ({'timeout': 0}, ValueError, 'timeout must be a positive number'),
    ({'on': 3}, TypeError, 'on must be an endpoint str'),
    ({'request_size': True}, ValueError, 'request_size must be a positive int'),
    ({'prefetch': 0}, ValueError, 'prefetch must be a positive int'),
    ({'on_error': 'x'}, TypeError, 'on_error must be a function'),
    ({'parameters': [1]}, TypeError, 'parameters must be a dict'),
    ({'parameters': {'f': lambda: 0}}, TypeError, 'parameters must hold picklable values'),
])
def test_post_args_refusals_name_the_argument(given, error, text):
    with pytest.raises(error, match=text):
        _check(**given)


def test_every_flow_has_its_own_stop_signals():
    f = Flow()
    g = f.add(name='a')
    h = g.add(name='b')
    assert len({id(x._stop_signals) for x in (f, g, h)}) == 3


def test_stop_signals_put_back_the_default_handlers_and_leave_a_programs_own_alone():
    before = [signal.getsignal(s) for s in STOP_SIGNALS]
    stop = StopSignals()
    stop.catch()
    try:
        if before == [signal.SIG_DFL, signal.SIG_DFL]:  # pytest leaves them at the defaults
            assert all(signal.getsignal(s) is not signal.SIG_DFL for s in STOP_SIGNALS)
    finally:
        stop.restore()
    assert [signal.getsignal(s) for s in STOP_SIGNALS] == before
    assert stop.caught is None
    stop.die_if_caught()  # nothing caught: returns

    def own(signum, frame):
        pass

    old = signal.signal(signal.SIGHUP, own)
    try:
        stop.catch()
        assert signal.getsignal(signal.SIGHUP) is own
        stop.restore()
        assert signal.getsignal(signal.SIGHUP) is own
    finally:
        signal.signal(signal.SIGHUP, old)


def test_a_misspelt_flow_or_add_argument_is_named_with_what_was_meant():
    with pytest.raises(TypeError, match=r"^Flow\(\) got an unexpected argument 'prefech'; did you mean 'prefetch'\?$"):
        Flow(prefech=3)
    with pytest.raises(TypeError, match=r"^add\(\) got an unexpected argument 'repilcas'; did you mean 'replicas'\?$"):
        Flow().add(repilcas=2)
    with pytest.raises(TypeError, match=r"^add\(\) got an unexpected argument 'zzz'; it takes name, needs, uses, "):
        Flow().add(zzz=1)  # nothing close: what it takes
    with pytest.raises(TypeError, match=r'add\(port_expose=...\) placed a Jina 2 executor on another machine.*'
                                        r'to serve the Flow itself, give Flow\(port_expose=...\)'):
        Flow().add(port_expose=1)  # a Jina 2 option keeps its own advice (a pod's port, not the gateway's)


def test_a_handler_the_program_sets_while_a_flow_runs_outlives_the_flow():
    def graceful(signum, frame):
        pass
    before = [signal.getsignal(s) for s in STOP_SIGNALS]
    stop = StopSignals()
    stop.catch()
    try:
        signal.signal(signal.SIGTERM, graceful)  # the program's own, set while the Flow runs
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    finally:
        stop.restore()
    try:
        assert signal.getsignal(signal.SIGTERM) is graceful
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        for s, old in zip(STOP_SIGNALS, before):
            signal.signal(s, old)


def test_a_handler_c_code_took_away_under_python_is_replaced():
    # ray.shutdown puts SIGTERM's default back from C, under the handler Python still lists:
    # a Flow that trusted that list would leave the process to die of SIGTERM at once.
    import ctypes
    import os
    from runtime.procfs import takes_signal

    def stale(signum, frame):
        pass
    before = signal.signal(signal.SIGTERM, stale)
    libc_signal = ctypes.CDLL(None).signal
    libc_signal.restype, libc_signal.argtypes = ctypes.c_void_p, (ctypes.c_int, ctypes.c_void_p)
    libc_signal(signal.SIGTERM, 0)  # SIG_DFL, as C code does
    try:
        assert signal.getsignal(signal.SIGTERM) is stale and takes_signal(os.getpid(), signal.SIGTERM) is False
        stop = StopSignals()
        stop.catch()
        try:
            assert takes_signal(os.getpid(), signal.SIGTERM) is True
        finally:
            stop.restore()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # (what the process really had)
    finally:
        signal.signal(signal.SIGTERM, before)
