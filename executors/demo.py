"""The demo behind ``make demo``: index the Python standard library's source files.

Reads every ``.py`` file of the running Python's standard library (site-packages
excluded) with ``from_files``, embeds each file in its own executor process (a byte
histogram, a stand-in until the real text encoder lands), stores the results in a
``DocumentArrayMemmap`` and answers a few queries by cosine similarity.

Usage::

    python -m executors.demo [--path DIR] [--workspace DIR] [--query TEXT ...]
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import sysconfig
import time

import numpy as np

from runtime import Document, DocumentArray, DocumentArrayMemmap, Executor, Flow, from_files, requests

DIM = 256


def byte_histograms(texts: list[str]) -> np.ndarray:
    """L2-normalised byte histograms: (len(texts), 256) float32."""
    out = np.zeros((len(texts), DIM), np.float32)
    for i, t in enumerate(texts):
        out[i] = np.bincount(np.frombuffer(t.encode('utf-8', 'replace'), np.uint8), minlength=DIM)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


class ByteHistogramEncoder(Executor):
    """Embeds each document's text as its normalised byte histogram."""

    @requests
    def encode(self, docs: DocumentArray, **kwargs) -> None:
        docs.embeddings = byte_histograms(docs.texts)


def _read(doc: Document) -> Document:
    # A few standard-library test files are deliberately not utf-8: keep them, replaced.
    with open(doc.uri, encoding='utf-8', errors='replace') as fp:
        doc.text = fp.read()
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog='python -m executors.demo', description=__doc__.splitlines()[0])
    ap.add_argument('--path', default=sysconfig.get_paths()['stdlib'], help='folder of .py files to index')
    ap.add_argument('--workspace', default='workspace/demo', help='where the index is stored')
    ap.add_argument('--query', action='append', help='query text (repeatable)')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')

    store = os.path.join(args.workspace, 'files')
    shutil.rmtree(store, ignore_errors=True)
    dam = DocumentArrayMemmap(store)
    pattern = os.path.join(args.path, '**', '*.py')
    files = (_read(d) for d in from_files(pattern) if 'site-packages' not in d.uri)

    def keep(resp) -> None:
        for d in resp.docs:
            d.text = None  # the store keeps the path and the embedding, not the source
        dam.extend(resp.docs)

    t0 = time.perf_counter()
    with Flow().add(uses=ByteHistogramEncoder, replicas=os.cpu_count() or 1) as f:
        f.index(files, request_size=32, on_done=keep, show_progress=True)
    dam.flush()
    wall = time.perf_counter() - t0
    print(f'indexed {len(dam)} files from {args.path} in {wall:.1f} s ({len(dam) / wall:,.0f} files/s)')

    t0 = time.perf_counter()
    emb = DocumentArrayMemmap(store).embeddings
    print(f'reopened the index: {emb.shape[0]} embeddings in {1e3 * (time.perf_counter() - t0):.1f} ms')
    for q in args.query or ['import os\nos.path.join', 'class Thread(', 'def parse_args(']:
        scores = emb @ byte_histograms([q])[0]
        best = np.argsort(-scores)[:3]
        print(f'\nquery {q!r}:')
        for i in best:
            print(f'  {scores[i]:.3f}  {dam[int(i)].uri}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
