"""Bad input everywhere, as properties: whatever junk reaches ``post``, ``Flow.add`` or the
input generators, the call ends within a bounded time in a clear exception (TypeError /
ValueError saying what to pass) or in the documented behaviour, and the Flow keeps working.

One Flow serves every property loop of a test (started once, inside the test function:
starting a Flow per example would cost a process start each); after the loops a valid
request must still come back intact. Examples are derandomized so the suite is
reproducible; each loop's size keeps the file under ~20 s on 2 cores.
"""
from __future__ import annotations

import io
import pathlib
import re
import sys
import threading
import time

import cloudpickle
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime import (BadInputError, Document, DocumentArray, Executor, Flow, from_csv, from_files, from_lines,
                     from_ndarray, from_ndjson, requests)
from runtime.errors import RequestTimeoutError

# Marker travels by value: a worker need not import this module, and hypothesis with it.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: One example may take at most this long (a hang would show up here, or in pytest-timeout).
BOUND_S = 5.0
#: What a message that says what to pass looks like.
HINT = re.compile(r'\b(pass|must|takes|needs|expected|use|give|valid|known|executors)\b')


def _settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


class Marker(Executor):
    """Handles only '/mark' (no default handler): other endpoints pass documents through.
    Echoes the parameters it got, so their types can be checked."""

    @requests(on='/mark')
    def mark(self, docs, parameters, **kwargs):
        for d in docs:
            d.tags['marked'] = True
        return {'params': {k: v for k, v in parameters.items() if k != '__results__'}}


# -- strategies --------------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                    st.binary(max_size=20))
ndarrays = hnp.arrays(dtype=st.sampled_from([np.float32, np.int64, np.bool_, np.uint8, np.complex64]),
                      shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
junk = st.one_of(
    st.text(max_size=30), st.integers(), st.floats(), st.binary(max_size=30),
    st.dictionaries(st.text(max_size=5), scalars, max_size=4),
    st.lists(st.one_of(scalars, st.builds(Document, text=st.text(max_size=5))), max_size=6),
    st.tuples(scalars, scalars),
    ndarrays,
    st.complex_numbers(), st.booleans(),
)


def _wrappable(v) -> bool:
    """An input item post takes, as Jina 2's client took it (data_type AUTO): a Document;
    text, bytes or an array (its content); a dict of fields a Document has; a pair of those."""
    if isinstance(v, tuple):
        return len(v) == 2 and all(_wrappable(x) and not isinstance(x, tuple) for x in v)
    if isinstance(v, dict):
        try:
            Document(v)
        except (TypeError, ValueError):
            return False
        return True
    return isinstance(v, (Document, str, bytes, np.ndarray))


def _unpicklable():
    return st.sampled_from([
        lambda: (lambda x: x),
        lambda: (i for i in range(3)),
        lambda: threading.Lock(),
        lambda: (lambda: None).__code__,
        lambda: memoryview(b'x'),
        lambda: [1, {'deep': lambda: 0}],
    ]).map(lambda make: make())


#: Values that pickle and must arrive with their exact types (invariant 5).
plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10),
              st.binary(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)


def _docs(n: int = 3) -> DocumentArray:
    return DocumentArray(Document(id=f'v{i}', text=f'text {i}', tags={'i': i},
                                  embedding=np.arange(4, dtype=np.float32) + i) for i in range(n))


def _check_clear(exc: BaseException, *names: str) -> None:
    """A TypeError / ValueError whose message says what was wrong: it names the argument
    (one of ``names``) or says what to pass."""
    assert isinstance(exc, (TypeError, ValueError)), f'{type(exc).__name__}: {exc}'
    msg = str(exc)
    assert HINT.search(msg) or any(n in msg for n in names), \
        f'the message neither names {names} nor says what to pass: {msg!r}'


def _still_usable(f: Flow) -> None:
    sent = _docs(5)
    got = f.post('/mark', sent, request_size=2, return_results=True)
    docs = [d for r in got for d in r.docs]
    assert sorted(d.id for d in docs) == [d.id for d in sent]
    for d in docs:
        i = int(d.id[1:])
        assert d.text == f'text {i}' and d.tags == {'i': i, 'marked': True}
        assert np.array_equal(d.embedding, np.arange(4, dtype=np.float32) + i)


# -- post --------------------------------------------------------------------------------------
def test_post_survives_junk_and_the_flow_stays_usable():
    with Flow().add(name='marker', uses=Marker) as f:
        calls = []

        def timed(fn, *args, **kwargs):
            t0 = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                assert time.monotonic() - t0 < BOUND_S

        # inputs: refused whole before anything is sent, or a list of Documents (empty: one
        # request with no documents)
        @_settings(600)
        @given(value=junk)
        def inputs(value):
            calls.clear()
            try:
                timed(f.post, '/mark', value, on_done=calls.append)
            except BadInputError as exc:
                _check_clear(exc, 'inputs')
                assert 'pass a Document' in str(exc)
                assert calls == []  # nothing was sent
                return
            # accepted: a list / tuple of Documents or of what Jina 2 wrapped in Documents (empty:
            # one request with no documents), or an array's rows
            if isinstance(value, np.ndarray):
                assert value.ndim >= 2, f'post accepted {value!r}'
                assert sum(len(r.docs) for r in calls) == len(value)  # (no row: no request)
                return
            assert isinstance(value, (list, tuple)) and all(map(_wrappable, value)), f'post accepted {value!r}'
            assert len(calls) == 1 and len(calls[0].docs) == len(value)
            assert [d.id for d, v in zip(calls[0].docs, value) if isinstance(v, Document)] == \
                [v.id for v in value if isinstance(v, Document)]

        # a generator that yields junk after some documents: what it yielded before may have
        # been sent; the post raises naming the item, the rest are never sent
        @_settings(160)
        @given(before=st.integers(0, 5), bad=junk.filter(lambda v: not _wrappable(v)),
               size=st.integers(1, 3))
        def generator_inputs(before, bad, size):
            def gen():
                yield from _docs(before)
                yield bad
                yield Document(id='never')
            calls.clear()
            with pytest.raises(BadInputError, match=rf'inputs item #{before}\b') as info:
                timed(f.post, '/mark', gen, request_size=size, on_done=calls.append)
            _check_clear(info.value, 'inputs')
            assert all(d.id != 'never' for r in calls for d in r.docs)

        # parameters: a dict of picklable values, else refused before anything is sent
        @_settings(240)
        @given(params=st.one_of(
            junk.filter(lambda v: not isinstance(v, dict)).map(lambda v: ('not a dict', v)),
            st.dictionaries(st.text(max_size=5), _unpicklable(), min_size=1, max_size=2)
            .map(lambda v: ('unpicklable', v)),
            st.dictionaries(st.text(max_size=5).filter(lambda k: k != 'marker'), plain, max_size=4)
            .map(lambda v: ('ok', v)),
        ))
        def parameters(params):
            kind, value = params
            calls.clear()
            if kind == 'ok':
                (resp,) = timed(f.post, '/mark', _docs(1), parameters=value, return_results=True)
                echoed = resp.parameters['__results__']['marker']['params']
                assert echoed == value and _types(echoed) == _types(value)
                return
            with pytest.raises(TypeError) as info:
                timed(f.post, '/mark', _docs(1), parameters=value, on_done=calls.append)
            _check_clear(info.value, 'parameters')
            assert calls == []

        # request_size: a positive int (None: the Flow's default, 100), else ValueError naming it
        @_settings(200)
        @given(size=st.one_of(st.integers(max_value=sys.maxsize), st.floats(), st.booleans(), st.text(max_size=5),
                              st.none(), st.just(2.0), st.just('3')))
        def request_size(size):
            calls.clear()
            valid = size is None or (isinstance(size, int) and not isinstance(size, bool) and size >= 1)
            if valid:
                timed(f.post, '/mark', _docs(5), request_size=size, on_done=calls.append)
                assert [len(r.docs) for r in sorted(calls, key=lambda r: r.index)] == _split(5, size or 100)
                return
            with pytest.raises(ValueError) as info:
                timed(f.post, '/mark', _docs(5), request_size=size, on_done=calls.append)
            _check_clear(info.value, 'request_size')
            assert calls == []

        # unknown endpoints: documented pass-through, documents come back unchanged
        @_settings(120)
        @given(endpoint=st.text(max_size=20).filter(lambda e: e != '/mark'))
        def unknown_endpoint(endpoint):
            sent = _docs(3)
            got = timed(f.post, endpoint, sent, return_results=True)
            (resp,) = got
            assert resp.routes == [] and not resp.is_error
            assert [d.id for d in resp.docs] == [d.id for d in sent]
            for a, b in zip(resp.docs, sent):
                assert a.text == b.text and a.tags == b.tags and np.array_equal(a.embedding, b.embedding)

        # endpoint, callbacks and the other options of the wrong type
        @_settings(320)
        @given(arg=st.sampled_from(['on', 'on_done', 'on_error', 'on_always', 'timeout', 'prefetch',
                                    'target_executor']),
               value=junk.filter(lambda v: v is not None and not callable(v)))
        def other_args(arg, value):
            kwargs = {'on': '/mark', 'inputs': _docs(1), 'on_done': calls.append}
            kwargs[arg] = value
            calls.clear()
            try:
                timed(f.post, **kwargs)
            except RequestTimeoutError:  # a valid timeout shorter than the round trip: documented
                assert arg == 'timeout' and value > 0
                return
            except (TypeError, ValueError) as exc:
                _check_clear(exc, arg)
                assert calls == []
                return
            # what may legitimately pass: an endpoint str, a positive number, a regex matching 'marker'
            if arg == 'on':
                assert isinstance(value, str)
            elif arg == 'timeout':
                assert isinstance(value, (int, float)) and value > 0
            elif arg == 'prefetch':
                assert isinstance(value, int) and value >= 1
            elif arg == 'target_executor':
                assert isinstance(value, str) and re.match(value, 'marker')  # (at the start, as Jina 2)
            else:
                raise AssertionError(f'post({arg}={value!r}) was accepted')

        for loop in (inputs, generator_inputs, parameters, request_size, unknown_endpoint, other_args):
            loop()
        _still_usable(f)


def _split(n: int, size: int) -> list[int]:
    return [min(size, n - i) for i in range(0, n, size)]


def _types(value):
    """The structure of ``value`` with every leaf replaced by its exact type."""
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value)


def test_huge_request_size_sends_one_request_or_is_refused_by_name():
    with Flow() as f:  # no executor needed: the failure is in the parent
        for inputs in ([Document(), Document()], (Document() for _ in range(2))):
            try:
                got = f.post('/', inputs, request_size=2**64, return_results=True)
            except ValueError as exc:
                assert 'request_size' in str(exc), str(exc)
            else:
                assert [len(r.docs) for r in got] == [2]


# -- Flow.add ----------------------------------------------------------------------------------
def _either(valid, bad):
    """(is_valid, value) pairs."""
    return st.one_of(valid.map(lambda v: (True, v)), bad.map(lambda v: (False, v)))


class _NotAnExecutor:
    pass


ADD_ARGS = {
    'uses': _either(st.sampled_from([Marker, None, 'Marker', {'jtype': 'Marker'}]),
                    st.one_of(st.integers(), st.floats(), st.lists(st.integers(), max_size=2),
                              st.sampled_from([int, dict, _NotAnExecutor, Marker()]),
                              st.text(min_size=1, max_size=8).filter(lambda t: not t.isidentifier()),
                              st.dictionaries(st.sampled_from(['with', 'metas', 'other']), st.none(),
                                              max_size=2))),
    'replicas': _either(st.integers(1, 4),
                        st.one_of(st.integers(max_value=0), st.floats(), st.just(True), st.text(max_size=3))),
    'shards': _either(st.integers(1, 4),
                      st.one_of(st.integers(max_value=0), st.floats(), st.just(True), st.text(max_size=3))),
    'max_restarts': _either(st.integers(0, 5), st.one_of(st.integers(max_value=-1), st.just(True),
                                                         st.floats(min_value=0.5), st.text(min_size=1, max_size=3))),
    'max_retries': _either(st.integers(0, 5), st.one_of(st.integers(max_value=-1), st.just(True),
                                                        st.floats(min_value=0.5), st.text(min_size=1, max_size=3))),
    'polling': _either(st.sampled_from(['any', 'all', 'ANY', {'*': 'all'}, {'/x': 'any', '*': 'ALL'}]),
                       st.one_of(st.integers(), st.lists(st.text(max_size=3), max_size=2),
                                 st.text(max_size=5).filter(lambda t: t.lower() not in ('any', 'all')),
                                 st.dictionaries(st.text(max_size=3), st.text(max_size=3).filter(
                                     lambda t: t.lower() not in ('any', 'all')), min_size=1, max_size=2))),
    'needs': _either(st.sampled_from(['first', 'gateway', ['first', 'gateway'], ('first',)]),
                     st.one_of(st.integers(), st.just([]), st.just(['first', 'first']),
                               st.text(max_size=5).filter(lambda t: t not in ('first', 'gateway')),
                               st.lists(st.integers(), min_size=1, max_size=2))),
    'name': _either(st.text(min_size=1, max_size=8).filter(lambda t: t != 'first'),
                    st.one_of(st.just(''), st.just('first'), st.integers(), st.lists(st.text(), max_size=1))),
    'env': _either(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=2),
                   st.one_of(st.integers(), st.text(min_size=1, max_size=5),
                             st.lists(st.text(), min_size=1, max_size=2))),
}


def test_add_refuses_junk_by_name_and_leaves_the_flow_unchanged():
    base = Flow().add(name='first', uses=Marker)

    @_settings(1000)
    @given(st.fixed_dictionaries({}, optional=ADD_ARGS))
    def loop(args):
        kwargs = {k: v for k, (_, v) in args.items()}
        bad = [k for k, (ok, _) in args.items() if not ok]
        t0 = time.monotonic()
        try:
            new = base.add(**kwargs)
        except (TypeError, ValueError) as exc:
            assert bad, f'add({kwargs!r}) refused valid arguments: {exc}'
            _check_clear(exc, *bad, *[f'{k}=' for k in bad])
        else:
            assert not bad, f'add() accepted {bad} = {[kwargs[k] for k in bad]!r}'
            assert new is not base and new.num_executors == 2
        assert time.monotonic() - t0 < BOUND_S
        assert base.num_executors == 1  # add never changes the Flow it is called on

    loop()
    with base as f:  # and it still starts and serves
        _still_usable(f)


def test_add_names_a_bad_uses_with_or_uses_metas():
    unclear = []
    for kwargs in ({'uses_with': 'dim=3'}, {'uses_with': [1, 2]}, {'uses_with': 5}, {'uses_metas': 'enc'},
                   {'uses': {'jtype': 5}}, {'uses': {'jtype': 'Marker', 'with': 5}},
                   {'uses': {'jtype': 'Marker', 'metas': 'x'}}):
        kwargs.setdefault('uses', Marker)
        try:
            Flow().add(**kwargs)
        except (TypeError, ValueError) as exc:
            if not re.search(r'uses_with|uses_metas|jtype|with|metas', str(exc)):
                unclear.append((kwargs, str(exc)))
        else:
            unclear.append((kwargs, 'accepted'))
    assert not unclear


def test_add_refuses_a_timeout_ready_that_is_not_a_number():
    for value in ('soon', [1]):
        with pytest.raises((TypeError, ValueError), match='timeout_ready'):
            Flow().add(uses=Marker, timeout_ready=value)


# -- generators --------------------------------------------------------------------------------
def _lines_like(value) -> bool:
    """A list, tuple or dict of str / bytes is an iterable of lines: valid, whatever they say."""
    return isinstance(value, (list, tuple, dict)) and all(isinstance(x, (str, bytes)) for x in value)


def _has_non_str_items(value) -> bool:
    if isinstance(value, (str, bytes)) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return False
    try:
        return any(not isinstance(x, (str, bytes)) for x in value)
    except TypeError:  # not iterable
        return False


def _source(valid_text: str, binary_ok: bool, non_str_items_ok: bool = True):
    """The ``fp`` of from_csv / from_ndjson: valid forms, and junk. (JSON parses bytes, so
    from_ndjson reads a binary file too; CSV needs text.) ``non_str_items_ok=False`` leaves
    out iterables holding non-str items: a known bug, see
    test_ndjson_and_lines_name_a_line_that_is_not_a_str."""
    lines = valid_text.splitlines(keepends=True)
    binary = st.builds(io.BytesIO, st.just(valid_text.encode()))
    valid = st.one_of(st.builds(io.StringIO, st.just(valid_text)), st.just(lines), st.just('missing-file.txt'))
    bad = st.one_of(junk.filter(lambda v: not _lines_like(v) and (non_str_items_ok or not _has_non_str_items(v))),
                    st.text(max_size=10).map(lambda t: t + '\nmore'))
    return _either(st.one_of(valid, binary) if binary_ok else valid, bad if binary_ok else st.one_of(bad, binary))


def _common():
    """The arguments every generator takes."""
    return {
        'size': _either(st.one_of(st.none(), st.integers(1, 5)),
                        st.one_of(st.integers(max_value=0), st.floats(), st.just(True), st.text(max_size=3))),
        'sampling_rate': _either(st.one_of(st.none(), st.floats(0.01, 1.0)),
                                 st.one_of(st.floats().filter(lambda x: not 0 < x <= 1), st.just(True),
                                           st.text(max_size=3), st.integers(min_value=2))),
        'seed': _either(st.one_of(st.none(), st.integers(), st.text(max_size=3)),
                        st.one_of(st.lists(st.integers(), min_size=1, max_size=2),
                                  st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=1))),
    }


def _resolver():
    return _either(st.one_of(st.none(), st.just({'question': 'text'})),
                   st.one_of(st.integers(), st.text(min_size=1, max_size=3),
                             st.lists(st.text(), min_size=1, max_size=2)))


GENERATORS = {
    'from_csv': (from_csv, {'fp': _source('id,question,lang\nq1,why?,en\nq2,how?,de\n', binary_ok=False)}, {
        'field_resolver': _resolver(),
        'dialect': _either(st.sampled_from(['excel', 'excel-tab']),
                           st.one_of(st.integers(), st.text(max_size=5).filter(
                               lambda t: t not in ('excel', 'excel-tab', 'unix')))),
        **_common()}),
    'from_ndjson': (from_ndjson, {'fp': _source('{"id": "a", "text": "x", "n": 1}\n{"id": "b", "text": "y"}\n',
                                                binary_ok=True, non_str_items_ok=False)}, {
        'field_resolver': _resolver(),
        **_common()}),
    'from_ndarray': (from_ndarray, {
        'array': _either(st.one_of(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4)),
                                   st.lists(st.integers(-5, 5), min_size=1, max_size=4)),
                         st.one_of(st.text(max_size=5), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                                   st.none(), hnp.arrays(np.float32, ()), st.just(np.array(['a', 'b'])),
                                   st.just(np.array([object(), 1], dtype=object))))}, {
        'axis': _either(st.just(0), st.one_of(st.integers(min_value=3), st.integers(max_value=-4), st.text(max_size=2),
                                              st.floats(), st.just([0]))),
        'shuffle': _either(st.booleans(), st.none()),  # documented as a bool; anything is taken as truthy
        'size': _common()['size'], 'seed': _common()['seed']}),
    'from_files': (from_files, {
        'patterns': _either(st.one_of(st.sampled_from(['*.txt', '**/*.txt', 'sub/*', pathlib.Path('a.txt'),
                                                       ['*.txt', '*.csv'], 'no-match-*']),
                                      # relative globs only: the test runs in its own empty-ish directory
                                      st.text(alphabet='ab*?[]!/._-', max_size=8).filter(
                                          lambda t: t and not t.startswith('/') and '..' not in t)),
                            st.one_of(st.integers(), st.floats(), st.none(), st.just([]), st.just(b'*.txt'),
                                      st.lists(st.integers(), min_size=1, max_size=2)))}, {
        'recursive': _either(st.booleans(), st.none()),
        'read_mode': _either(st.sampled_from([None, 'r', 'rb']),
                             st.one_of(st.integers(), st.text(max_size=3).filter(lambda t: t not in ('r', 'rb')))),
        **_common()}),
    'from_lines': (from_lines, {}, {
        'lines': _either(st.one_of(st.none(), st.lists(st.text(max_size=10), max_size=4)),
                         st.one_of(st.integers(), st.text(min_size=1, max_size=5), st.binary(min_size=1, max_size=5))),
        'filepath': _either(st.one_of(st.none(), st.just('a.txt'), st.just(pathlib.Path('lines.ndjson'))),
                            st.one_of(st.integers(), st.lists(st.text(), min_size=1, max_size=2))),
        'read_mode': _either(st.sampled_from(['r', 'rb']), st.one_of(st.integers(), st.text(max_size=3).filter(
            lambda t: t not in ('r', 'rb')))),
        'line_format': _either(st.sampled_from([None, 'json', 'csv']),
                               st.one_of(st.integers(),
                                         st.text(max_size=4).filter(lambda t: t not in ('json', 'csv')))),
        'field_resolver': _resolver(),
        **_common()}),
}


def test_ndjson_and_lines_name_a_line_that_is_not_a_str():
    unclear = []
    for label, make in (('from_ndjson([None])', lambda: from_ndjson([None])),
                        ('from_ndjson([json, 2])', lambda: from_ndjson(['{"a": 1}', 2])),
                        ('from_ndjson(np.zeros(2))', lambda: from_ndjson(np.zeros(2))),
                        ('from_lines(lines=[None])', lambda: from_lines(lines=[None])),
                        ("from_lines(lines=['ok', 2])", lambda: from_lines(lines=['ok', 2])),
                        ("from_lines(lines=[1], line_format='json')",
                         lambda: from_lines(lines=[1], line_format='json'))):
        try:
            list(make())
        except (TypeError, ValueError) as exc:
            if 'line' not in str(exc).lower():
                unclear.append((label, f'{type(exc).__name__}: {exc}'))
        except Exception as exc:
            unclear.append((label, f'{type(exc).__name__}: {exc}'))
        else:
            unclear.append((label, 'accepted'))
    assert not unclear


def test_generators_refuse_junk_and_whatever_they_yield_goes_through_the_flow(tmp_path, monkeypatch):
    (tmp_path / 'sub').mkdir()
    for name, text in (('a.txt', 'alpha\nbeta\n'), ('b.csv', 'text\nx\n'), ('sub/c.txt', 'gamma\n'),
                       ('lines.ndjson', '{"text": "l1"}\n{"text": "l2"}\n'), ('bin.dat', '\xff\xfe')):
        (tmp_path / name).write_bytes(text.encode('latin-1'))
    monkeypatch.chdir(tmp_path)  # from_files globs and relative paths stay in here

    with Flow().add(name='marker', uses=Marker) as f:
        @_settings(1000)
        @given(data=st.data(), which=st.sampled_from(sorted(GENERATORS)))
        def loop(data, which):
            fn, required, optional = GENERATORS[which]
            args = data.draw(st.fixed_dictionaries(required, optional=optional), label='args')
            kwargs = {k: v for k, (_, v) in args.items()}
            bad = [k for k, (ok, _) in args.items() if not ok]
            t0 = time.monotonic()
            try:
                gen = fn(**kwargs)
            except (TypeError, ValueError) as exc:
                _check_clear(exc, *bad)
                return
            except Exception as exc:  # anything else at call time is a bug
                raise AssertionError(f'{which}({kwargs!r}) raised {type(exc).__name__}: {exc}') from exc
            # accepted at call time: documented lazy errors (a file that is not there, bad
            # content, a seed random.Random refuses) come out of post; else documents do
            docs = []
            try:
                f.post('/mark', gen, request_size=3, on_done=lambda r: docs.extend(r.docs))
            except (TypeError, ValueError) as exc:
                assert str(exc), f'{which}: an empty message'
                return
            except OSError as exc:  # a path that does not exist or is a directory
                assert isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)), exc
                assert exc.filename is not None
                return
            finally:
                assert time.monotonic() - t0 < BOUND_S
            assert all(d.tags.get('marked') for d in docs)
            # junk accepted all the way: only the flags documented as "anything truthy", and a
            # seed (looked at only when sampling / shuffling; numpy also takes a list of ints)
            assert set(bad) <= {'shuffle', 'recursive', 'seed'}, f'{which} accepted {bad}: {kwargs!r}'

        loop()
        _still_usable(f)
