"""The demo behind ``make demo``: a code search engine over the Python standard library.

Indexes every ``.py`` file of the running Python's standard library (site-packages
excluded), or the files of ``--path``: each file is cut into passages
(``TextSegmenter``), embedded by ``HashingTextEncoder`` in one process per core, and
stored with ``MemmapIndexer`` in ``--workspace``. Then it answers queries with the best
passages (file, line, score). A second run reuses the index unless ``--reindex`` is given
or the path, patterns or encoder / segmenter settings changed (they are recorded in
``<workspace>/demo-index.json``).

Usage::

    python -m executors.demo [--path DIR] [--workspace DIR] [--query TEXT ...] [--reindex]

Example
-------
>>> main(['--path', 'src', '--workspace', '/tmp/ws', '--query', 'open a socket'])  # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import statistics
import sys
import sysconfig
import time
from typing import Any, Iterator

from runtime import Document, Flow, Response, from_files

from .encoders import HashingTextEncoder
from .indexers import MemmapIndexer
from .segmenters import TextSegmenter

__all__ = ['main', 'read_files', 'route_summary']

logger = logging.getLogger(__name__)

MARKER = 'demo-index.json'
INDEXER = 'indexer'   # the indexer's name in the Flow, hence its folder in the workspace
DEFAULT_QUERIES = ('parse command line arguments', 'read a gzip file', 'thread pool executor shutdown',
                   'send an email with smtp', 'walk a directory tree')
#: Folders of installed packages: the standard library's sources are the rest.
SKIP_DIRS = frozenset({'site-packages', 'dist-packages', '__pycache__'})


def read_files(root: str, patterns: list[str], skipped: list[str]) -> Iterator[Document]:
    """One Document per file under ``root`` matching ``patterns``, text read as utf-8.

    A few files are not valid utf-8 (the standard library's tests include some on
    purpose): they are read with replacement characters rather than refused, as
    ``from_files(read_mode='r')`` would. Files under a ``site-packages`` /
    ``dist-packages`` folder (below ``root``) are left out; unreadable files are appended
    to ``skipped``.

    Example
    -------
    >>> docs = list(read_files('/usr/lib/python3.11', ['json/*.py'], []))  # doctest: +SKIP
    """
    globs = [os.path.join(root, p) for p in patterns]
    for doc in from_files(globs, read_mode=None):
        rel = os.path.relpath(doc.uri, root)
        if SKIP_DIRS.intersection(rel.split(os.sep)[:-1]):
            continue
        try:
            with open(doc.uri, encoding='utf-8', errors='replace') as fp:
                doc.text = fp.read()
        except OSError as exc:
            skipped.append(f'{doc.uri}: {exc}')
            continue
        yield doc


class RouteStats:
    """Per-executor totals from ``Response.routes``: requests, documents, handler time.

    Example
    -------
    >>> stats = RouteStats(); f.index(docs, on_done=stats.add)  # doctest: +SKIP
    >>> print(stats.table(wall=12.0))  # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, resp: Response) -> None:
        """Count one finished request (use it as, or call it from, an ``on_done`` callback).

        Example
        -------
        >>> f.index(docs, on_done=stats.add)  # doctest: +SKIP
        """
        ndocs = len(resp.docs)
        for hop in resp.routes:
            row = self.rows.setdefault(hop['executor'], {'requests': 0, 'docs': 0, 'handler': 0.0, 'overhead': 0.0,
                                                         'processes': set()})
            row['requests'] += 1
            row['docs'] += ndocs
            row['handler'] += hop['end'] - hop['start']
            # In the executor's process but outside the handler: reading the payload and
            # writing the answer.
            row['overhead'] += (hop['start'] - hop['received']) + (hop['sent'] - hop['end'])
            row['processes'].add(hop['pid'])

    def table(self, wall: float) -> str:
        """The summary as text; ``busy`` is handler time / (wall time * processes), and
        ``io ms/req`` the time in the executor's process outside the handler (reading the
        request, writing the answer).

        Example
        -------
        >>> print(RouteStats().table(wall=1.0))
        executor     procs  requests  docs out  handler s  ms/request  io ms/req   busy
        """
        lines = [f'{"executor":<12}{"procs":>6}{"requests":>10}{"docs out":>10}{"handler s":>11}'
                 f'{"ms/request":>12}{"io ms/req":>11}{"busy":>7}']
        for name, r in self.rows.items():
            n, procs = r['requests'], len(r['processes'])
            busy = r['handler'] / (wall * procs) if wall > 0 else 0.0
            lines.append(f'{name:<12}{procs:>6}{n:>10}{r["docs"]:>10}{r["handler"]:>11.2f}'
                         f'{1e3 * r["handler"] / n:>12.1f}{1e3 * r["overhead"] / n:>11.2f}{busy:>7.0%}')
        return '\n'.join(lines)


def route_summary(responses: list[Response], wall: float) -> str:
    """The per-executor table of a list of responses (see RouteStats).

    Example
    -------
    >>> print(route_summary(f.index(docs, return_results=True), wall=3.0))  # doctest: +SKIP
    """
    stats = RouteStats()
    for r in responses:
        stats.add(r)
    return stats.table(wall)


def _best_line(text: str, first_line: int, query: str) -> tuple[int, str]:
    """The line of a passage that shares the most words with the query (to show)."""
    words = {w for w in re.split(r'[^a-z0-9]+', query.lower()) if len(w) > 2}
    best, best_hits = None, 0
    for k, line in enumerate(text.split('\n')):
        if not line.strip():
            continue
        if best is None:
            best = (k, line)
        low = line.lower()
        hits = sum(w in low for w in words)
        if hits > best_hits:
            best, best_hits = (k, line), hits
    if best is None:
        return first_line, ''
    k, line = best
    # tags['line'] is the first non-blank line; count from the passage's real first line.
    lead = len(text) - len(text.lstrip('\n'))
    start = first_line - text[:lead].count('\n')
    return start + k, line.strip()


def _settings(args: argparse.Namespace) -> dict:
    seg = TextSegmenter(max_chars=args.max_chars, overlap=args.overlap)
    enc = HashingTextEncoder(**_encoder_args(args))
    return {'format': 'executors.demo', 'version': 1, 'path': os.path.abspath(args.path),
            'patterns': args.pattern, 'segmenter': seg.settings, 'encoder': enc.settings}


def _encoder_args(args: argparse.Namespace) -> dict:
    return {'dim': args.dim, 'uri_weight': args.uri_weight}


def _flow(args: argparse.Namespace, replicas: int) -> Flow:
    return (Flow(workspace=args.workspace)
            .add(name='segmenter', uses=TextSegmenter, uses_with={'max_chars': args.max_chars, 'overlap': args.overlap})
            .add(name='encoder', uses=HashingTextEncoder, uses_with=_encoder_args(args), replicas=replicas)
            .add(name=INDEXER, uses=MemmapIndexer))


def _index(f: Flow, args: argparse.Namespace, replicas: int) -> dict:
    skipped: list[str] = []
    counts = {'files': 0, 'passages': 0}
    files = read_files(args.path, args.pattern, skipped)

    def counted() -> Iterator[Document]:
        for d in files:
            counts['files'] += 1
            yield d

    stats = RouteStats()

    def done(resp: Response) -> None:
        counts['passages'] += len(resp.docs)
        stats.add(resp)

    t0 = time.perf_counter()
    f.index(counted(), request_size=args.request_size, on_done=done, show_progress=True)
    wall = time.perf_counter() - t0
    for s in skipped:
        print(f'skipped {s}')
    print(f'indexed {counts["files"]:,} files -> {counts["passages"]:,} passages from {args.path} '
          f'in {wall:.1f} s: {counts["files"] / wall:,.0f} files/s, {counts["passages"] / wall:,.0f} passages/s '
          f'({replicas} encoder replicas)')
    print(stats.table(wall))
    return {'files': counts['files'], 'passages': counts['passages'], 'seconds': round(wall, 2),
            'skipped': len(skipped)}


def _search(f: Flow, args: argparse.Namespace, queries: list[str]) -> None:
    latencies = []
    for q in queries:
        t0 = time.perf_counter()
        res = f.search(Document(text=q), parameters={'limit': args.top}, return_results=True)
        latencies.append(time.perf_counter() - t0)
        print(f'\nquery: {q!r}  ({1e3 * latencies[-1]:.0f} ms)')
        matches = res[0].docs[0].matches
        if not len(matches):
            print('  (no results: the index is empty)')
        for m in matches:
            line, preview = _best_line(m.text or '', int(m.tags.get('line', 1)), q)
            shown = os.path.relpath(m.uri, args.path) if m.uri else m.parent_id
            print(f'  {m.scores["cosine"]:.3f}  {shown}:{line}  {preview[:90]}')
    if latencies:
        print(f'\nsearch latency: median {1e3 * statistics.median(latencies):.1f} ms over {len(latencies)} '
              f'queries (encode + exact search, one query per request)')


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv[1:]``); ``--help`` lists them.

    Example
    -------
    >>> main(['--path', '.', '--query', 'parse command line arguments'])  # doctest: +SKIP
    0
    """
    ap = argparse.ArgumentParser(prog='python -m executors.demo', description=__doc__.split('\n\n')[0])
    ap.add_argument('--path', default=sysconfig.get_paths()['stdlib'],
                    help='folder to index (default: the standard library of this Python)')
    ap.add_argument('--pattern', action='append', help="glob of files under --path (repeatable; default '**/*.py')")
    ap.add_argument('--workspace', default='workspace', help='where the index is stored (default ./workspace)')
    ap.add_argument('--query', action='append', help='query text (repeatable; default: a few examples)')
    ap.add_argument('--reindex', action='store_true', help='index again even if the workspace holds the index')
    ap.add_argument('--replicas', type=int, default=os.cpu_count() or 1,
                    help='encoder processes (default: number of cores)')
    ap.add_argument('--top', type=int, default=3, help='results per query (default 3)')
    ap.add_argument('--max-chars', type=int, default=1200, help='largest passage in characters (default 1200)')
    ap.add_argument('--overlap', type=int, default=0, help='characters repeated between passages (default 0)')
    ap.add_argument('--dim', type=int, default=768, help='embedding size (default 768)')
    ap.add_argument('--uri-weight', type=float, default=0.5,
                    help='weight of the file and folder name in a passage embedding (default 0.5)')
    ap.add_argument('--request-size', type=int, default=8, help='files per request (default 8)')
    args = ap.parse_args(argv)
    args.pattern = args.pattern or ['**/*.py']
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    if not os.path.isdir(args.path):
        ap.error(f'--path {args.path!r} is not a folder')

    os.makedirs(args.workspace, exist_ok=True)
    marker_path = os.path.join(args.workspace, MARKER)
    wanted = _settings(args)
    try:
        with open(marker_path, encoding='utf-8') as fp:
            found = json.load(fp)
    except (OSError, ValueError):
        found = None
    same = found is not None and all(found.get(k) == v for k, v in wanted.items())
    reindex = args.reindex or not same
    if reindex:
        # Only what this demo wrote: the workspace may be a folder with other things in it.
        if os.path.exists(marker_path):
            os.unlink(marker_path)
        shutil.rmtree(os.path.join(args.workspace, INDEXER), ignore_errors=True)
        why = ('--reindex' if args.reindex else 'no index in the workspace yet' if found is None
               else 'the path or settings changed')
        print(f'indexing {args.path} into {args.workspace} ({why})')
    else:
        print(f'reusing the index in {args.workspace}: {found["files"]:,} files, {found["passages"]:,} passages '
              f'of {found["path"]} (--reindex to build it again)')

    t0 = time.perf_counter()
    with _flow(args, args.replicas if reindex else 1) as f:
        print(f'started {f.num_executors} executors in {time.perf_counter() - t0:.1f} s')
        if reindex:
            numbers = _index(f, args, args.replicas)
            # Written last: an interrupted run leaves no marker, so the next one starts over.
            with open(marker_path, 'w', encoding='utf-8') as fp:
                json.dump({**wanted, **numbers, 'python': sys.version.split()[0], 'indexed_at': time.time()},
                          fp, indent=1)
        _search(f, args, args.query or list(DEFAULT_QUERIES))
    print(f'\ntotal {time.perf_counter() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
