"""Copies and pickles of a DocumentArrayMemmap are handles on the same directory.

A handle's file descriptors, maps and writer lock belong to the process and the handle
that opened them: a copy that carried them closed the original's files when it went, and
one unpickled in an executor read and wrote whatever file had those descriptor numbers
there (an append acknowledged and lost).
"""
import copy
import pickle

import pytest

from runtime import Document, DocumentArrayMemmap, Executor, Flow, requests


def _dam(tmp_path, n=3):
    dam = DocumentArrayMemmap(tmp_path / 'dam')
    dam.extend(Document(id=f'd{i}', text=f't{i}') for i in range(n))
    return dam


@pytest.mark.parametrize('how', [copy.copy, copy.deepcopy, lambda d: pickle.loads(pickle.dumps(d))])
def test_a_copy_is_another_handle_and_the_original_goes_on(tmp_path, how):
    dam = _dam(tmp_path)
    other = how(dam)
    assert other is not dam and other.path == dam.path and [d.text for d in other] == ['t0', 't1', 't2']
    other.close()
    del other
    dam.append(Document(id='late', text='late'))  # (its files and lock are still its own)
    dam.close()
    again = DocumentArrayMemmap(tmp_path / 'dam')
    assert [d.id for d in again] == ['d0', 'd1', 'd2', 'late']
    again.close()


class Lookup(Executor):
    def __init__(self, store=None, **kwargs):
        super().__init__(**kwargs)
        self.store = store

    @requests
    def lookup(self, docs, **kwargs):
        for d in docs:
            d.text = self.store[d.id].text


def test_a_memmap_given_to_an_executor_is_opened_there(tmp_path):
    dam = _dam(tmp_path)
    dam.flush()
    with Flow().add(uses=Lookup, uses_with={'store': dam}) as f:
        got = f.post('/', [Document(id='d1')], return_results=True)[0].docs[0].text
    assert got == 't1'
    dam.append(Document(id='after'))  # (the executor's handle went with its process)
    assert len(dam) == 4
    dam.close()


def test_a_store_that_lost_only_its_meta_is_damaged_and_repaired(tmp_path):
    import os
    from runtime import CorruptStoreError
    dam = _dam(tmp_path, 50)
    dam.close()
    os.unlink(tmp_path / 'dam' / 'meta.json')  # (an interrupted copy, a stray rm)
    with pytest.raises(CorruptStoreError, match=r'meta\.json.*is missing.*repair'):
        DocumentArrayMemmap(tmp_path / 'dam')
    DocumentArrayMemmap.repair(tmp_path / 'dam')
    with DocumentArrayMemmap(tmp_path / 'dam') as again:
        assert [d.text for d in again] == [f't{i}' for i in range(50)]
