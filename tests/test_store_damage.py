"""Damaged DocumentArrayMemmap files: every outcome is the right documents or a
CorruptStoreError naming the file, never a wrong document, a raw exception, a crash or a
silent loss; ``repair()`` keeps a copy of what it drops.

The corruptions run in a child process, so that a crash (a segfault from a dtype read off
disk) fails the test instead of killing pytest.
"""
from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import zlib

import numpy as np
import pytest

from childio import REPO, script_env
from runtime import CorruptStoreError, Document
from runtime.memmap import DocumentArrayMemmap

FUZZ = r'''
import json, os, shutil, sys, time, traceback, zlib
import numpy as np
from runtime import Document
from runtime.errors import CorruptStoreError
from runtime.memmap import DocumentArrayMemmap
from runtime.store.format import META, meta_bytes

root, budget = sys.argv[1], int(sys.argv[2])
path = os.path.join(root, 'dam')
history = {}  # every version of every document ever stored: (id, text) -> Document


def doc(i, version=0, **kw):
    d = Document(id=f'doc-{i}', text=f'text {i} v{version}', tags={'i': i, 'v': version}, **kw)
    history[(d.id, d.text)] = d
    return d


# A small store with every kind of record: PUTs with a matrix row and with an inline
# embedding, a DEL, an update, a layout record; an index snapshot covering part of the log.
with DocumentArrayMemmap(path) as dam:
    dam.extend(doc(i, embedding=np.arange(4, dtype=np.float32) + i) for i in range(8))
    dam.append(doc(8, embedding=np.ones(3, np.float64)))  # inline: another layout
    dam.append(doc(9))                                     # no embedding
    del dam['doc-3']
    dam['doc-5'] = doc(5, 1, embedding=np.full(4, 50, np.float32))
    dam.flush()
    dam.extend(doc(i, embedding=np.arange(4, dtype=np.float32) * i) for i in range(10, 13))
    del dam['doc-0']
expected = [d for d in DocumentArrayMemmap(path)]
DocumentArrayMemmap(path).close()
pristine = {}
for name in os.listdir(path):
    with open(os.path.join(path, name), 'rb') as fp:
        data = fp.read()
    pristine[name] = (data.rstrip(b'\0'), len(data))  # the matrix file is mostly zeros


def restore():
    shutil.rmtree(path)
    os.mkdir(path, 0o700)
    for name, (data, size) in pristine.items():
        with open(os.path.join(path, name), 'wb') as fp:
            fp.write(data)
            fp.truncate(size)


def same(a, b):
    return a == b and a.text == b.text and a.tags == b.tags and (
        (a.embedding is None and b.embedding is None)
        or (a.embedding is not None and b.embedding is not None and a.embedding.dtype == b.embedding.dtype
            and np.array_equal(a.embedding, b.embedding)))


def named_file(exc):
    return os.path.dirname(exc.file) == path and os.path.basename(exc.file) in pristine


def check_store(dam, want):
    """Raise AssertionError on a wrong or missing document."""
    got = list(dam)
    assert [d.id for d in got] == [d.id for d in want], ('ids', [d.id for d in got])
    for a, b in zip(got, want):
        assert same(a, b), ('content', a.id)
    for k, b in enumerate(want):
        assert same(dam[b.id], b) and same(dam[k], b), ('lookup', b.id)


def trial(name, pos, mask, repair):
    """'ok' or 'detected', else a description of what went wrong."""
    with open(os.path.join(path, name), 'r+b') as fp:
        fp.seek(pos)
        byte = fp.read(1)
        fp.seek(pos)
        fp.write(bytes([byte[0] ^ mask]))
    outcome = 'ok'
    try:
        with DocumentArrayMemmap(path) as dam:
            check_store(dam, expected)
            dam.verify()
            dam.append(Document(id='new', text='after'))
        with DocumentArrayMemmap(path) as dam:  # the writer cut nothing
            check_store(dam, expected + [Document(id='new', text='after')])
    except CorruptStoreError as exc:
        if not named_file(exc):
            return f'CorruptStoreError names {exc.file!r}'
        outcome = 'detected'
    except AssertionError as exc:
        return f'wrong or lost documents: {exc}'
    except Exception:
        return 'raw exception: ' + traceback.format_exc(limit=3)
    if outcome == 'detected' and repair:  # (a repair fsyncs: ~40 ms, so one flip in four)
        problem = check_repair()
        if problem:
            return problem
    return outcome


def check_repair():
    try:
        where = DocumentArrayMemmap.repair(path)
        with DocumentArrayMemmap(path, verify=True) as dam:
            got = list(dam)
    except Exception:
        return 'repair failed: ' + traceback.format_exc(limit=3)
    report = []
    if where is not None:
        with open(os.path.join(where, 'report.json')) as fp:
            report = json.load(fp)['dropped']
        if os.path.getsize(os.path.join(where, 'records.bin')) != sum(
                r.get('length', 0) for r in report if r.get('copy') == 'records.bin'):
            return 'repair: the copy of the dropped records is incomplete'
    want = {d.id: d for d in expected}
    changed = [d.id for d in got if d.id not in want or not same(d, want[d.id])]
    missing = [i for i in want if i not in {d.id for d in got}]
    dropped_ids = {r.get('id') for r in report}
    ranges = [r for r in report if 'id' not in r]
    # A damaged update or delete record can bring back an older version: allowed only when
    # repair says it dropped records; every document must be one that was once stored.
    for d in got:
        if history.get((d.id, d.text)) is None or not same(d, history[(d.id, d.text)]):
            return f'repair returned a document never stored: {d.id} {d.text!r}'
    if (changed or missing) and not ranges and not set(missing) <= dropped_ids:
        return f'repair lost {missing} / changed {changed} without saying so'
    if where is None and (changed or missing):
        return 'repair dropped documents without keeping a copy'
    return None


# Targeted: layouts that must never reach numpy (object dtype: a segfault; zero sizes:
# ZeroDivisionError) even with a valid checksum.
targeted = {}
for dtype, shape in [('O', [4]), ('|O', [4]), ('<f4', [0]), ('<f4', []), ('<V16', [1]), ('<M8[s]', [4]),
                     ('<f4', [1 << 40]), ('nonsense', [4]), (None, [4]), ('<f4', [-4]), ('<f4', '4')]:
    restore()
    meta = json.loads(pristine[META][0])
    meta.pop('crc')
    meta['emb_dtype'], meta['emb_shape'] = dtype, shape
    meta['crc'] = zlib.crc32(json.dumps(meta, sort_keys=True).encode())
    with open(os.path.join(path, META), 'w') as fp:
        json.dump(meta, fp)
    try:
        with DocumentArrayMemmap(path) as dam:
            check_store(dam, expected)
        targeted[f'{dtype} {shape}'] = 'opened'
    except CorruptStoreError as exc:
        targeted[f'{dtype} {shape}'] = 'detected' if named_file(exc) else f'names {exc.file}'
    except Exception as exc:
        targeted[f'{dtype} {shape}'] = f'raw {type(exc).__name__}: {exc}'

# Single-byte flips spread over every file, in proportion to its bytes of data.
rng = np.random.default_rng(1234)
spots = []
for name, (data, size) in sorted(pristine.items()):
    n = len(data)
    if n == 0:
        continue
    take = min(n, max(20, budget * n // sum(len(d) for d, _ in pristine.values())))
    for pos in sorted(rng.choice(n, take, replace=False).tolist()):
        spots.append((name, pos))
results, t0 = {}, time.perf_counter()
for k, (name, pos) in enumerate(spots):
    restore()
    mask = 0xFF if k % 3 == 0 else 1 << int(rng.integers(8))
    results[f'{name}@{pos}^{mask:#x}'] = trial(name, pos, mask, repair=k % 4 == 0)
print(json.dumps({'targeted': targeted, 'results': results, 'seconds': time.perf_counter() - t0,
                  'files': sorted(pristine)}))
'''


def test_single_byte_flips_in_every_file_are_detected_or_harmless(tmp_path):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, '-c', FUZZ, str(tmp_path), '400'], cwd=REPO, env=script_env(),
                          capture_output=True, text=True, timeout=55)
    assert proc.returncode == 0, f'the child crashed (rc {proc.returncode}):\n{proc.stderr[-3000:]}'
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['files'] == sorted(['meta.json', 'records.0.bin', 'embeddings.0.bin', 'index.0.pkl', 'writer.lock'])
    bad_layouts = {k: v for k, v in out['targeted'].items() if v != 'detected'}
    assert not bad_layouts, bad_layouts
    results = out['results']
    assert len(results) >= 350
    failures = {k: v for k, v in results.items() if v not in ('ok', 'detected')}
    assert not failures, f'{len(failures)} of {len(results)} corruptions went wrong: ' + '\n'.join(
        f'{k}: {v}' for k, v in list(failures.items())[:10])
    detected = {k.split('@')[0] for k, v in results.items() if v == 'detected'}
    assert {'meta.json', 'records.0.bin', 'embeddings.0.bin'} <= detected  # every data file is checked
    assert time.monotonic() - t0 < 40


def test_files_are_private_to_their_owner(tmp_path):
    with DocumentArrayMemmap(tmp_path / 'dam') as dam:
        dam.append(Document(text='secret', embedding=np.ones(4, np.float32)))
        dam.flush()
        dam.prune()
        dam.flush()
    assert stat.S_IMODE(os.stat(tmp_path / 'dam').st_mode) == 0o700
    names = os.listdir(tmp_path / 'dam')
    assert {'meta.json', 'records.1.bin', 'embeddings.1.bin', 'index.1.pkl', 'writer.lock'} <= set(names)
    for name in names:
        assert stat.S_IMODE(os.stat(tmp_path / 'dam' / name).st_mode) == 0o600, name


def test_a_damaged_embedding_row_is_an_error_and_repair_keeps_a_copy(tmp_path):
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', embedding=np.full(8, i, np.float32)) for i in range(10))
    with open(path / 'embeddings.0.bin', 'r+b') as fp:  # one bit of row 4
        fp.seek(4 * 32 + 3)
        b = fp.read(1)
        fp.seek(4 * 32 + 3)
        fp.write(bytes([b[0] ^ 0x10]))
    with DocumentArrayMemmap(path) as dam:
        assert dam['d3'].embedding[0] == 3
        with pytest.raises(CorruptStoreError, match=r"embeddings\.0\.bin, byte 128: the embedding of document 'd4'"):
            dam['d4']
        with pytest.raises(CorruptStoreError) as err:
            dam.verify()
        assert err.value.offset == 128 and err.value.file == str(path / 'embeddings.0.bin')
        where = dam.repair()  # on the open array: it sees the result at once
        assert [d.id for d in dam] == [f'd{i}' for i in range(10) if i != 4]
        assert dam.verify() == 9
    report = json.loads(open(os.path.join(where, 'report.json')).read())['dropped']
    assert [r['id'] for r in report] == ['d4'] and report[0]['embedding_offset'] == 128
    row = np.frombuffer(open(os.path.join(where, 'embeddings.bin'), 'rb').read(), np.float32)
    assert row.shape == (8,) and row[1] == 4  # the damaged row itself, kept
    assert DocumentArrayMemmap.repair(path) is None  # nothing left to repair


def test_a_damaged_record_is_never_cut_off_by_the_next_writer(tmp_path):
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', text='x' * 50) for i in range(20))
    os.unlink(path / 'index.0.pkl')
    records = path / 'records.0.bin'
    size = os.path.getsize(records)
    with open(records, 'r+b') as fp:  # the last record: once read as a torn tail and cut off
        fp.seek(size - 3)
        fp.write(b'\xff')
    for _ in range(2):
        with pytest.raises(CorruptStoreError, match='records.0.bin'):
            DocumentArrayMemmap(path)
    assert os.path.getsize(records) == size
    code = textwrap.dedent(f'''
        from runtime.memmap import DocumentArrayMemmap
        DocumentArrayMemmap({str(path)!r}).append(__import__('runtime').Document())
    ''')
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=script_env(), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode != 0 and 'CorruptStoreError' in proc.stderr
    assert os.path.getsize(records) == size


# -- failures part way: no leaked descriptor, no masked error, no window for another writer ----
def _open_fds() -> set[str]:
    return set(os.listdir('/proc/self/fd'))


def _deny_opening(monkeypatch, target: str) -> None:
    # chmod does not stop root (the CI user here): refuse the open itself.
    real_open = os.open

    def deny(path, flags, *args, **kwargs):
        if os.fspath(path) == target:
            raise PermissionError(errno.EACCES, 'Permission denied', target)
        return real_open(path, flags, *args, **kwargs)
    monkeypatch.setattr(os, 'open', deny)


@pytest.mark.skipif(not os.path.isdir('/proc/self/fd'), reason='counts /proc/self/fd')
def test_an_open_or_reload_that_fails_part_way_leaks_no_file_descriptor(tmp_path, monkeypatch):
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', embedding=np.full(4, i, np.float32)) for i in range(3))
    emb_file = str(path / 'embeddings.0.bin')
    before = _open_fds()
    with monkeypatch.context() as m:  # the record file opens, the matrix file does not
        _deny_opening(m, emb_file)
        with pytest.raises(PermissionError, match='embeddings.0.bin'):
            DocumentArrayMemmap(path)
    assert _open_fds() == before
    def no_memory(self):
        raise OSError(errno.ENOMEM, 'Cannot allocate memory')
    with monkeypatch.context() as m:  # the matrix file opens but cannot be mapped
        m.setattr('runtime.store.embeddings.EmbeddingStore.map', no_memory)
        with pytest.raises(OSError, match='Cannot allocate memory'):
            DocumentArrayMemmap(path)
    assert _open_fds() == before
    with DocumentArrayMemmap(path) as reader:
        opened = _open_fds()
        with monkeypatch.context() as m:
            _deny_opening(m, emb_file)
            with pytest.raises(PermissionError):
                reader.reload()
        assert _open_fds() == opened  # and the store is still what it was
        assert [int(d.embedding[0]) for d in reader] == [0, 1, 2]
    assert _open_fds() == before


def test_a_failed_switch_to_writing_raises_its_own_error_not_the_reloads(tmp_path, monkeypatch):
    from runtime.store.log import RecordLog
    from runtime.store.store import Store
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}') for i in range(3))
    with open(path / 'records.0.bin', 'ab') as fp:  # a torn tail: the next writer cuts it off
        fp.write(b'SR')
    full = OSError(errno.ENOSPC, 'No space left on device')

    def no_space(self, size):
        raise full

    def no_access(self, salvage=None):
        raise PermissionError(errno.EACCES, 'Permission denied', str(path / 'meta.json'))
    reader = DocumentArrayMemmap(path)
    # The reload after the failure works: the original error, the array still usable.
    with monkeypatch.context() as m:
        m.setattr(RecordLog, 'truncate', no_space)
        with pytest.raises(OSError) as err:
            reader.append(Document(id='x'))
        assert err.value is full
        assert len(reader) == 3
    # The reload fails too: an error that names both and says what to do, caused by the first.
    with monkeypatch.context() as m:
        m.setattr(RecordLog, 'truncate', no_space)
        m.setattr(Store, 'load', no_access)
        with pytest.raises(RuntimeError) as err:
            reader.append(Document(id='x'))
    msg = str(err.value)
    assert err.value.__cause__ is full
    assert isinstance(err.value.__context__, PermissionError)
    assert 'No space left on device' in msg and 'Permission denied' in msg and 'open it again' in msg, msg
    with pytest.raises(ValueError, match='closed'):  # its state is unknown: never read through it
        len(reader)
    reader.close()
    with DocumentArrayMemmap(path) as dam:  # the lock was given back
        dam.append(Document(id='x'))
        assert [d.id for d in dam] == ['d0', 'd1', 'd2', 'x']


def _probe_writer(dam: DocumentArrayMemmap) -> str:
    """Whether a forked child could write to ``dam``'s directory now."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            dam.append(Document(id=f'intruder-{os.getpid()}'))
            msg = b'wrote'
        except RuntimeError as exc:
            msg = b'refused' if 'another process is writing' in str(exc) else b'other'
        except BaseException:
            msg = b'other'
        os.write(w, msg)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, 'rb') as fp:
        got = fp.read().decode()
    assert os.waitpid(pid, 0)[1] == 0
    return got


@pytest.mark.parametrize('damaged', [True, False])
def test_no_other_process_writes_while_a_writer_repairs(tmp_path, monkeypatch, damaged):
    from runtime.store import maintenance
    from runtime.store.store import Store
    path = tmp_path / 'dam'
    dam = DocumentArrayMemmap(path)
    dam.extend(Document(id=f'd{i}', embedding=np.full(8, i, np.float32)) for i in range(10))
    if damaged:
        with open(path / 'embeddings.0.bin', 'r+b') as fp:  # one bit of row 4
            fp.seek(4 * 32 + 3)
            b = fp.read(1)
            fp.seek(4 * 32 + 3)
            fp.write(bytes([b[0] ^ 0x10]))
    parent, probes = os.getpid(), []

    def probed(fn):  # after each step of repair, a child process tries to write
        def step(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            finally:
                if os.getpid() == parent:
                    probes.append((fn.__name__, _probe_writer(dam)))
        return step
    for name in ('release_lock', 'take_lock', 'load', 'flush'):
        monkeypatch.setattr(Store, name, probed(getattr(Store, name)))
    for name in ('_drop_damaged_rows', '_keep_copies', 'switch_generation'):
        monkeypatch.setattr(maintenance, name, probed(getattr(maintenance, name)))
    where = dam.repair()
    monkeypatch.undo()
    assert (where is not None) == damaged
    assert probes and all(got == 'refused' for _, got in probes), probes
    assert _probe_writer(dam) == 'refused'  # the writer keeps its lock after repair
    dam.append(Document(id='after'))
    assert [d.id for d in dam] == [f'd{i}' for i in range(10) if not (damaged and i == 4)] + ['after']
    dam.close()


def test_a_repair_that_fails_keeps_the_damage_visible(tmp_path, monkeypatch):
    from runtime.store import maintenance
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', embedding=np.full(8, i, np.float32)) for i in range(10))
    with open(path / 'embeddings.0.bin', 'r+b') as fp:
        fp.seek(4 * 32 + 3)
        b = fp.read(1)
        fp.seek(4 * 32 + 3)
        fp.write(bytes([b[0] ^ 0x10]))

    def no_space(*args):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(maintenance, '_keep_copies', no_space)
    with pytest.raises(OSError, match='No space left'):
        DocumentArrayMemmap.repair(path)
    monkeypatch.undo()
    with DocumentArrayMemmap(path) as dam:  # not silently dropped: no copy of it was kept
        assert len(dam) == 10
        with pytest.raises(CorruptStoreError, match="'d4'"):
            dam['d4']


def test_a_prune_that_fails_after_its_switch_leaves_the_new_store_whole(tmp_path, monkeypatch):
    # The directory fsync after meta.json names the new generation fails (a filesystem that
    # refuses it, an interrupt): the new generation is the store now and must stay.
    from runtime.store import maintenance
    path = str(tmp_path / 'dam')
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', text=f'text {i}', embedding=np.ones(4, np.float32)) for i in range(100))
        del dam['d0']

        def refuses(_path):
            raise OSError(errno.EINVAL, 'Invalid argument')
        monkeypatch.setattr(maintenance, 'fsync_dir', refuses)
        with pytest.raises(OSError):
            dam.prune()
        monkeypatch.undo()
        assert len(dam) == 99 and dam['d5'].text == 'text 5'
    with DocumentArrayMemmap(path) as dam:
        assert len(dam) == 99 and dam.verify() == 99


def test_a_missing_store_file_is_named_without_sending_the_user_to_repair(tmp_path):
    # repair() cannot rebuild a missing records or embeddings file: the error must not say it does.
    path = str(tmp_path / 'dam')
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', embedding=np.ones(4, np.float32)) for i in range(3))
    os.unlink(os.path.join(path, 'embeddings.0.bin'))
    with pytest.raises(CorruptStoreError, match='put the missing file back') as info:
        DocumentArrayMemmap(path)
    assert 'repair() cannot rebuild it' in str(info.value)


# -- a record file cut short: a synced index snapshot tells it from a torn tail ----------------
def _cut_store(path, sync: str) -> list[int]:
    """20 documents appended one at a time (``sizes[k]``: the record file's size after k of
    them), then the snapshot written as ``sync`` says; the store is closed."""
    sizes = [0]
    with DocumentArrayMemmap(path) as dam:
        for i in range(20):
            dam.append(Document(id=f'd{i}', text=f'text {i}', embedding=np.full(4, i, np.float32)))
            sizes.append(os.path.getsize(os.path.join(path, 'records.0.bin')))
        if sync == 'flush(sync=True)':
            dam.flush(sync=True)
        elif sync == 'flush() then flush(sync=True)':  # nothing new to snapshot: synced anyway
            dam.flush()
            dam.flush(sync=True)
        elif sync == 'flush()':
            dam.flush()
        elif sync == 'synced, then appended and flush()':  # the newer, unsynced snapshot counts
            dam.flush(sync=True)
            dam.append(Document(id='d20', text='text 20', embedding=np.full(4, 20, np.float32)))
            sizes.append(os.path.getsize(os.path.join(path, 'records.0.bin')))
            dam.flush()
    return sizes


def _texts(path) -> list[str]:
    with DocumentArrayMemmap(path) as dam:
        return [d.text for d in dam]


@pytest.mark.parametrize('sync', ['flush(sync=True)', 'flush() then flush(sync=True)'])
@pytest.mark.parametrize('mid_record', [True, False])
def test_a_records_file_cut_below_a_synced_snapshot_is_an_error_not_a_torn_tail(tmp_path, sync, mid_record):
    path = tmp_path / 'dam'
    sizes = _cut_store(path, sync)
    records = str(path / 'records.0.bin')
    cut = sizes[17] + 5 if mid_record else sizes[17]  # d17, d18 and d19 are cut off
    os.truncate(records, cut)
    for _ in range(2):  # and the failed open cut nothing more
        with pytest.raises(CorruptStoreError) as err:
            DocumentArrayMemmap(path)
        assert err.value.file == records and err.value.offset == cut
        msg = str(err.value)
        assert f'{cut} bytes long' in msg and f'covers {sizes[20]} bytes' in msg, msg
        assert '3 of the 20 documents' in msg and "'d17'" in msg, msg
        assert 'restore the file' in msg and 'repair(' in msg, msg
        assert os.path.getsize(records) == cut
    where = DocumentArrayMemmap.repair(path)  # the documented way to keep what is left
    assert where is not None
    report = json.loads(open(os.path.join(where, 'report.json')).read())['dropped']
    cut_entry = [r for r in report if r.get('ids')]
    assert cut_entry and cut_entry[0]['ids'] == ['d17', 'd18', 'd19'] and cut_entry[0]['file'] == records
    with DocumentArrayMemmap(path, verify=True) as dam:
        assert [d.id for d in dam] == [f'd{i}' for i in range(17)]
        assert int(dam['d16'].embedding[0]) == 16
        dam.append(Document(id='after'))
    assert _texts(path)[-1] is None and len(_texts(path)) == 18


@pytest.mark.parametrize('sync', ['flush()', 'synced, then appended and flush()'])
def test_a_records_file_cut_below_an_unsynced_snapshot_replays_as_after_a_power_loss(tmp_path, caplog, sync):
    # flush(sync=False) and a power loss legitimately leave a snapshot covering more than
    # survived: what is left opens, and only what was cut is lost.
    path = tmp_path / 'dam'
    sizes = _cut_store(path, sync)
    os.truncate(path / 'records.0.bin', sizes[-2] + 5)  # the last document is cut off
    whole = len(sizes) - 2
    assert _texts(path) == [f'text {i}' for i in range(whole)]
    assert 'ignoring the index snapshot' in caplog.text and 'unsynced flush' in caplog.text
    with DocumentArrayMemmap(path) as dam:
        dam.append(Document(id='after', text='after'))  # the writer drops the torn tail first
    assert _texts(path) == [f'text {i}' for i in range(whole)] + ['after']


def test_a_crash_mid_append_after_a_synced_snapshot_still_recovers(tmp_path):
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', text=f'text {i}') for i in range(10))
        dam.flush(sync=True)
        covered = os.path.getsize(path / 'records.0.bin')
        dam.append(Document(id='d10', text='text 10'))
        dam.append(Document(id='d11', text='text 11'))
        crash = shutil.copytree(path, tmp_path / 'crash')  # before any flush: the synced snapshot
    size = os.path.getsize(crash / 'records.0.bin')
    for cut, whole in ((size - 1, 11), (covered + 3, 10), (covered, 10)):  # torn after what it covers
        os.truncate(crash / 'records.0.bin', cut)
        assert _texts(crash) == [f'text {i}' for i in range(whole)]
    with DocumentArrayMemmap(crash) as dam:
        dam.append(Document(id='after', text='after'))
    assert _texts(crash) == [f'text {i}' for i in range(10)] + ['after']


def _rewrite_snapshot(snapshot, *drop: str) -> None:
    # Rewrite a snapshot as an older version wrote it: without the keys ``drop``.
    from runtime.store import index
    raw = open(snapshot, 'rb').read()
    head = len(index._MAGIC) + index._FRAME.size
    body = pickle.loads(raw[head:])
    for key in drop:
        body.pop(key)
    body = pickle.dumps(body, protocol=5)
    with open(snapshot, 'wb') as fp:
        fp.write(index._MAGIC + index._FRAME.pack(zlib.crc32(body), len(body)) + body)


def test_a_snapshot_from_before_the_synced_flag_opens_and_counts_as_unsynced(tmp_path, caplog):
    path = tmp_path / 'dam'
    sizes = _cut_store(path, 'flush(sync=True)')
    _rewrite_snapshot(path / 'index.0.pkl', 'synced', 'synced_bytes')
    assert _texts(path) == [f'text {i}' for i in range(20)]
    assert 'ignoring the index snapshot' not in caplog.text  # it was used, not replayed past
    os.truncate(path / 'records.0.bin', sizes[17] + 5)
    assert _texts(path) == [f'text {i}' for i in range(17)]  # as before the flag: a torn tail


def test_a_snapshot_with_only_the_synced_flag_counts_all_it_covers_as_synced(tmp_path, caplog):
    # The format between the flag and synced_bytes: True means every byte it covers.
    path = tmp_path / 'dam'
    sizes = _cut_store(path, 'flush(sync=True)')
    _rewrite_snapshot(path / 'index.0.pkl', 'synced_bytes')
    assert _texts(path) == [f'text {i}' for i in range(20)]
    assert 'ignoring the index snapshot' not in caplog.text
    os.truncate(path / 'records.0.bin', sizes[17] + 5)
    with pytest.raises(CorruptStoreError, match=f'the first {sizes[20]} of which were synced'):
        DocumentArrayMemmap(path)


def test_the_snapshot_a_prune_writes_is_synced(tmp_path):
    # A prune fsyncs the new generation's records before its snapshot: a cut is caught there too.
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', text=f'text {i}') for i in range(10))
        del dam['d0']
        dam.prune()
    records = path / 'records.1.bin'
    os.truncate(records, os.path.getsize(records) - 5)
    with pytest.raises(CorruptStoreError, match='1 of the 9 documents') as err:
        DocumentArrayMemmap(path)
    assert err.value.file == str(records)


# -- what a cut file lost: deletions too; synced bytes outlive later flushes -----------------
@pytest.mark.parametrize('after', ['a delete', 'a delete, an update and an append'])
def test_a_cut_that_loses_a_deletion_says_so_and_repair_keeps_the_document_deleted(tmp_path, after):
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', text=f'text {i}', embedding=np.full(4, i, np.float32)) for i in range(10))
        dam.flush(sync=True)
        cut = os.path.getsize(path / 'records.0.bin')
        del dam['d3']  # an erasure the user relies on, durably synced below
        if after != 'a delete':
            dam['d5'] = Document(id='d5', text='text 5 v2', embedding=np.full(4, 50, np.float32))
            dam.append(Document(id='d10', text='text 10'))
        dam.flush(sync=True)
    records = str(path / 'records.0.bin')
    os.truncate(records, cut)  # the DEL record (and what followed) is cut off
    with pytest.raises(CorruptStoreError) as err:
        DocumentArrayMemmap(path)
    msg = str(err.value)
    assert err.value.file == records and err.value.offset == cut
    assert f'records after byte {cut} are gone' in msg and 'added, changed or deleted' in msg, msg
    assert ' 0 of the ' not in msg, msg
    if after != 'a delete':
        assert "2 of the 10 documents the snapshot lists were last written there ('d5', 'd10')" in msg, msg
    where = DocumentArrayMemmap.repair(path)
    entry = [r for r in json.loads(open(os.path.join(where, 'report.json')).read())['dropped']
             if 'deleted_again' in r]
    assert len(entry) == 1 and entry[0]['deleted_again'] == ['d3'], entry
    want = [f'd{i}' for i in range(10) if i != 3]
    with DocumentArrayMemmap(path, verify=True) as dam:
        assert [d.id for d in dam] == want and 'd3' not in dam
        if after != 'a delete':  # the update was cut: back at the version before it, and said so
            assert entry[0]['ids'] == ['d5', 'd10'] and entry[0]['earlier_version'] == ['d5']
            assert dam['d5'].text == 'text 5' and int(dam['d5'].embedding[0]) == 5
        else:
            assert entry[0]['ids'] == [] and entry[0]['earlier_version'] == []


def _synced_then_unsynced(path) -> tuple[int, int]:
    # 20 documents and flush(sync=True), then one more and close() (an unsynced flush):
    # (size after the sync, size at the end).
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', text=f'text {i}', embedding=np.full(4, i, np.float32)) for i in range(20))
        dam.flush(sync=True)
        synced = os.path.getsize(path / 'records.0.bin')
        dam.append(Document(id='late', text='late', embedding=np.zeros(4, np.float32)))
    return synced, os.path.getsize(path / 'records.0.bin')


def test_a_cut_below_a_sync_is_an_error_after_later_unsynced_flushes_too(tmp_path):
    path = tmp_path / 'dam'
    synced, size = _synced_then_unsynced(path)
    records = str(path / 'records.0.bin')
    os.truncate(records, synced // 2)  # e.g. an interrupted copy
    with pytest.raises(CorruptStoreError) as err:
        DocumentArrayMemmap(path)
    assert err.value.offset == synced // 2
    assert f'covers {size} bytes of it, the first {synced} of which were synced' in str(err.value)
    assert DocumentArrayMemmap.repair(path) is not None
    assert len(_texts(path)) < 20


def test_a_cut_between_the_sync_and_an_unsynced_flush_is_a_power_loss(tmp_path, caplog):
    path = tmp_path / 'dam'
    synced, size = _synced_then_unsynced(path)
    os.truncate(path / 'records.0.bin', size - 3)  # only what was never synced is lost
    assert _texts(path) == [f'text {i}' for i in range(20)]
    assert 'unsynced flush' in caplog.text
    with DocumentArrayMemmap(path) as dam:
        dam.append(Document(id='after', text='after'))  # drops the torn tail
    assert _texts(path) == [f'text {i}' for i in range(20)] + ['after']
    os.truncate(path / 'records.0.bin', synced - 1)  # and the synced part is still watched
    with pytest.raises(CorruptStoreError, match=f'the first {synced} of which were synced'):
        DocumentArrayMemmap(path)


def test_dropping_a_torn_tail_keeps_the_count_of_synced_bytes_on_disk(tmp_path):
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f'd{i}', text=f'text {i}') for i in range(10))
        dam.flush(sync=True)
        synced = os.path.getsize(path / 'records.0.bin')
        dam.append(Document(id='d10', text='text 10'))
        crash = shutil.copytree(path, tmp_path / 'crash')  # killed before any flush
    os.truncate(crash / 'records.0.bin', os.path.getsize(crash / 'records.0.bin') - 1)  # torn tail
    dam = DocumentArrayMemmap(crash)
    dam.append(Document(id='after', text='after'))  # drops the torn tail (and replaced the snapshot)
    again = shutil.copytree(crash, tmp_path / 'again')  # killed again, before any flush
    dam.close()
    os.truncate(again / 'records.0.bin', synced - 5)
    with pytest.raises(CorruptStoreError, match=f'the first {synced} of which were synced'):
        DocumentArrayMemmap(again)


def test_a_reader_that_starts_writing_keeps_what_another_process_synced(tmp_path):
    # The reader opened before the other writer's flush(sync=True); its own (unsynced) flush
    # afterwards must not forget that those bytes were synced.
    path = tmp_path / 'dam'
    DocumentArrayMemmap(path).close()
    reader = DocumentArrayMemmap(path)
    writer = textwrap.dedent(f'''
        import os
        from runtime import Document
        from runtime.memmap import DocumentArrayMemmap
        with DocumentArrayMemmap({str(path)!r}) as dam:
            dam.extend(Document(id=f'd{{i}}', text=f'text {{i}}') for i in range(20))
            dam.flush(sync=True)
            print(os.path.getsize(os.path.join({str(path)!r}, 'records.0.bin')))
    ''')
    out = subprocess.run([sys.executable, '-c', writer], env=script_env(), cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    synced = int(out.stdout)
    reader.append(Document(id='late', text='late'))  # catches up, then writes
    reader.close()
    os.truncate(path / 'records.0.bin', synced // 2)
    with pytest.raises(CorruptStoreError, match=f'the first {synced} of which were synced'):
        DocumentArrayMemmap(path)


# -- a reader opening while the writer fixes the embedding layout --------------------------
def _read_meta_once_stale(monkeypatch, stale: tuple) -> None:
    # The reader reads meta.json (``stale``) before the writer's changes, the rest after.
    from runtime.store.store import Store
    orig, first = Store.read_meta, [stale]

    def read_meta(self):
        return first.pop() if first else orig(self)
    monkeypatch.setattr(Store, 'read_meta', read_meta)


def test_a_reader_opening_while_the_first_embedding_is_added_sees_a_whole_store(tmp_path, monkeypatch):
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.append(Document(id='t', text='no embedding yet'))
    # The writer fixes the layout (meta.json, the layout record), writes a row and a
    # snapshot covering it, all between the reader's read of meta.json and of the snapshot.
    with DocumentArrayMemmap(path) as dam:
        dam.append(Document(id='e', embedding=np.ones(4, np.float32)))
        dam.flush()
    _read_meta_once_stale(monkeypatch, (0, None))
    with DocumentArrayMemmap(path) as dam:
        assert [d.id for d in dam] == ['t', 'e'] and dam['e'].embedding.tolist() == [1, 1, 1, 1]
        assert dam.verify() == 2


def test_a_reader_opening_while_the_first_embedding_is_added_and_pruned_reads_the_new_generation(
        tmp_path, monkeypatch):
    path = tmp_path / 'dam'
    with DocumentArrayMemmap(path) as dam:
        dam.append(Document(id='t', text='no embedding yet'))
    with DocumentArrayMemmap(path) as dam:
        dam.append(Document(id='e', embedding=np.ones(4, np.float32)))
        dam.flush()
        old = {name: open(path / name, 'rb').read() for name in ('records.0.bin', 'embeddings.0.bin', 'index.0.pkl')}
        dam.prune()
    for name, raw in old.items():  # the reader opened generation 0 before the prune removed it
        with open(path / name, 'wb') as fp:
            fp.write(raw)
    _read_meta_once_stale(monkeypatch, (0, None))
    with DocumentArrayMemmap(path) as dam:
        assert [d.id for d in dam] == ['t', 'e'] and dam['e'].embedding.tolist() == [1, 1, 1, 1]
    assert not os.path.exists(path / 'records.0.bin')


def test_a_reader_whose_generation_is_pruned_while_it_reads_the_first_layout_opens_the_new_one(tmp_path, monkeypatch):
    # The reader has opened generation 0's records (no layout yet); before it reads them the
    # writer adds the first embedding (its layout record) and prunes, removing
    # embeddings.0.bin: the layout record it then meets names a matrix that is gone. That is
    # a switch of generations, not damage: it opens generation 1.
    from runtime.store.store import Store
    path = str(tmp_path / 'dam')
    writer = DocumentArrayMemmap(path)
    writer.extend([Document(id='a', text='no embedding yet')])
    writer.flush()
    load_index = Store._load_index

    def writer_acts_between_open_and_read(store, salvage):
        if store is not writer._store:
            monkeypatch.setattr(Store, '_load_index', load_index)  # (once)
            writer.extend([Document(id='b', embedding=np.ones(3, np.float32))])
            writer.prune()
        return load_index(store, salvage)
    monkeypatch.setattr(Store, '_load_index', writer_acts_between_open_and_read)
    try:
        reader = Store(path)  # what DocumentArrayMemmap(path) does in another process
        assert sorted(reader.ix.ids) == ['a', 'b'] and reader.gen == 1
        reader.close()
    finally:
        writer.close()
