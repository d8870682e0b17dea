"""DocumentArrayMemmap reads records in windows bounded in bytes as well as in documents:
iterating, pruning, verifying or rewriting the embeddings of a store of large documents
holds a few MiB at a time, not a thousand documents' worth."""
from __future__ import annotations

import tracemalloc
from typing import Callable

import numpy as np
import pytest

from runtime import Document
from runtime.memmap import DocumentArrayMemmap
from runtime.store.index import Index
from runtime.store.log import READ_BYTES, READ_DOCS

SIZE = 2 << 20   # bytes of text per large document
N = 32           # 64 MiB in all: a window of documents unbounded in bytes holds every one
# A window of 4 MiB of records (as extend() writes them) while it is read and decoded (the
# raw records, their copies and the documents; a switch to a new generation also encodes
# the records anew), plus the document the caller holds: well under the store's 64 MiB.
BOUND = 6 * (4 << 20)


def big(i: int) -> Document:
    return Document(id=f'big-{i}', text=chr(97 + i % 26) * SIZE, tags={'i': i},
                    embedding=np.full(4, i, np.float32))


@pytest.fixture
def store(tmp_path):
    path = str(tmp_path / 'dam')
    with DocumentArrayMemmap(path) as dam:
        dam.extend(big(i) for i in range(N))
    return path


def peak_of(fn: Callable[[], object]) -> tuple[int, object]:
    """(peak bytes that Python allocated while ``fn`` ran, above what was allocated before, what it returned)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        return tracemalloc.get_traced_memory()[1] - base, out
    finally:
        tracemalloc.stop()


def test_iterating_large_documents_holds_a_bounded_window(store):
    with DocumentArrayMemmap(store) as dam:
        def walk() -> list[tuple[str, int]]:
            # one document at a time, dropped right away: what a streaming loop does
            return [(d.id, len(d.text)) for d in dam]
        peak, seen = peak_of(walk)
    assert seen == [(f'big-{i}', SIZE) for i in range(N)]
    assert peak < BOUND, f'iterating {N} documents of {SIZE >> 20} MiB peaked at {peak >> 20} MiB'


def test_prune_of_large_documents_holds_a_bounded_window(store):
    with DocumentArrayMemmap(store) as dam:
        for i in range(0, N, 4):
            del dam[f'big-{i}']
        peak, _ = peak_of(dam.prune)
        assert peak < BOUND, f'pruning {N} documents of {SIZE >> 20} MiB peaked at {peak >> 20} MiB'
        kept = [i for i in range(N) if i % 4]
        assert len(dam) == len(kept)
        assert dam.embeddings[:, 0].tolist() == kept  # rows contiguous again: a view
        for pos in (0, len(kept) - 1):
            d = dam[pos]
            assert d.id == f'big-{kept[pos]}' and d.text == chr(97 + kept[pos] % 26) * SIZE


def test_verify_of_large_documents_holds_a_bounded_window(store):
    with DocumentArrayMemmap(store) as dam:
        peak, checked = peak_of(dam.verify)
    assert checked == N
    assert peak < BOUND, f'verifying {N} documents of {SIZE >> 20} MiB peaked at {peak >> 20} MiB'


def test_assigning_embeddings_of_large_documents_holds_a_bounded_window(store):
    with DocumentArrayMemmap(store) as dam:
        new = np.arange(N * 4, dtype=np.float32).reshape(N, 4)

        def assign() -> None:
            dam.embeddings = new
        peak, _ = peak_of(assign)
        assert peak < BOUND, f'rewriting {N} documents of {SIZE >> 20} MiB peaked at {peak >> 20} MiB'
        assert np.array_equal(dam.embeddings, new)
        assert dam[N - 1].text == chr(97 + (N - 1) % 26) * SIZE


def test_a_document_larger_than_a_window_is_read_alone(tmp_path):
    # Small documents around one bigger than the byte bound, with deletions in between:
    # every window path still yields every live document once, in order.
    path = str(tmp_path / 'dam')
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=f's{i}', text=f'small {i}') for i in range(3000))
        dam.append(Document(id='huge', text='h' * (READ_BYTES + (1 << 20))))
        dam.extend(Document(id=f't{i}', text=f'small {i}') for i in range(3000))
        for i in range(0, 3000, 7):
            del dam[f's{i}']
        want = [f's{i}' for i in range(3000) if i % 7] + ['huge'] + [f't{i}' for i in range(3000)]
        assert [d.id for d in dam] == want
        assert [d.id for d in dam[:]] == want
        assert dam.verify() == len(want)
        dam.prune()
        assert [d.id for d in dam] == want
        assert len(dam['huge'].text) == READ_BYTES + (1 << 20)


def test_windows_are_bounded_in_documents_and_in_bytes():
    ix = Index()
    sizes = [100] * 5 + [READ_BYTES * 2] + [READ_BYTES // 3] * 7 + [10] * (READ_DOCS * 2 + 5)
    off = 0
    for k, n in enumerate(sizes):
        ix.put(f'd{k}', None, off, n, -1)
        off += n
    for slots in (range(len(sizes)), list(range(len(sizes))), list(range(0, len(sizes), 2))):
        windows = [list(w) for w in ix.windows(slots)]
        assert [s for w in windows for s in w] == list(slots)  # each slot once, in order
        for w in windows:
            assert 0 < len(w) <= READ_DOCS
            assert len(w) == 1 or sum(sizes[s] for s in w) <= READ_BYTES
    assert list(ix.windows([])) == []


EMB = (256 << 10) // 4   # a 256 KiB float32 embedding per document
N_EMB = 200              # 50 MiB of embeddings: more than a window of 1,024 documents would bound


def test_a_window_counts_the_embedding_rows_read_beside_the_records(tmp_path):
    # Only the records were counted: with small records and large embeddings a window held
    # a thousand documents' embeddings (100 MiB for 400 rows of 256 KiB).
    path = str(tmp_path / 'emb')
    with DocumentArrayMemmap(path) as dam:
        dam.extend(Document(id=str(i), embedding=np.full(EMB, i, np.float32)) for i in range(N_EMB))
    with DocumentArrayMemmap(path) as dam:
        peak, seen = peak_of(lambda: [int(d.embedding[0]) for d in dam])
        assert seen == list(range(N_EMB))
        assert peak < BOUND, f'iterating {N_EMB} embeddings of 256 KiB peaked at {peak >> 20} MiB'
        peak, _ = peak_of(dam.verify)
        assert peak < BOUND, f'verify peaked at {peak >> 20} MiB'
