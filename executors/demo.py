"""The demo behind ``make demo``: a hybrid code-search engine over the Python standard library.

Indexes the ``.py`` files of the running Python's standard library (or every text file
under ``--path``: a repository of yours, any language), leaving test folders out unless
``--include-tests``. Each file is cut into passages (``TextSegmenter``), then two
branches run in parallel (``needs=``): a lexical one (``SparseIndexer``: BM25 over an
inverted index, identifiers split at ``_`` and camelCase, file and folder names as a
field) and a learned one (``LSAEncoder``: TF-IDF + truncated SVD fitted on the corpus in
a first ``/fit`` pass, then ``MemmapIndexer``); a ``FusionRanker`` joins their rankings.
Queries print the best passages (file, line, score), or one JSON object per query with
``--json``.

A second run reuses the index in ``--workspace`` when the files (paths, sizes, mtimes)
and settings did not change (a fingerprint in ``<workspace>/demo-index.json``);
``--reindex`` rebuilds it (the LSA model is refitted only if the passages changed). A
workspace under ``--path`` (``--path .`` with the default ``./workspace``) is left out of
the index. The index lives in the workspace's ``sparse/``, ``dense/`` and ``lsa/``
folders, each marked by a ``.demo-owned`` file: a build empties only folders so marked,
and refuses to start if a folder of one of those names is someone else's.

Usage::

    python -m executors.demo [--path DIR] [--query TEXT ...] [--top-k K] [--json]
                             [--include-tests] [--workspace DIR] [--reindex]

Example
-------
>>> main(['--path', 'src', '--workspace', '/tmp/ws', '--query', 'open a socket', '--json'])  # doctest: +SKIP
{"query": "open a socket", "hits": [{"path": "net/client.py", "line": 12, "score": 1.63}, ...]}
0
"""
from __future__ import annotations

import argparse
import fcntl
import importlib.util
import json
import logging
import os
import re
import shutil
import statistics
import sys
import sysconfig
import time
from typing import Any, Callable, Iterator

from runtime import Document, Flow, Response

from .corpus import corpus_fingerprint, is_test_path, list_files, read_files
from .fusion import FusionRanker
from .indexers import MemmapIndexer
from .lsa import LSAEncoder
from .segmenters import TextSegmenter
from .sparse import SparseIndexer
from .terms import TOKENIZER_VERSION

__all__ = ['main', 'list_files', 'read_files', 'is_test_path', 'corpus_fingerprint', 'build_flow', 'search',
           'route_summary']

logger = logging.getLogger(__name__)

MARKER = 'demo-index.json'
#: Held by every run (shared), alone by one that builds the index (see main).
LOCK = 'demo.lock'
MARKER_VERSION = 5
#: The first marker version whose demo wrote OWNED into its folders.
_OWNED_SINCE = 5
#: The executors' names in the Flow, hence their folders in the workspace.
SPARSE, LSA, DENSE, FUSION = 'sparse', 'lsa', 'dense', 'fusion'
#: Written into each folder the demo makes in the workspace (see _claim_folders): a build
#: empties a folder only if it holds this file, for the workspace may hold the user's own
#: folders (``--workspace`` a project's folder with an ``indexer/`` package in it).
OWNED = '.demo-owned'
#: What the executors of a demo older than OWNED wrote in each of its folders ('indexer'
#: was the dense branch's first name; shards of the sparse index are numbered folders).
_LEGACY_LAYOUT = {SPARSE: {'sparse'}, DENSE: {'index'}, LSA: {'lsa'}, 'indexer': {'index'}}
DEFAULT_QUERIES = ('parse command line arguments', 'read a gzip file', 'thread pool executor shutdown',
                   'send an email with smtp', 'walk a directory tree')
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


_LINE_END = re.compile(r'\r\n|\r|\n')


def _best_line(text: str, first_line: int, query: str) -> tuple[int, str]:
    """The line of a passage that shares the most words with the query (to show), with
    its number; ``first_line`` is the number of the passage's first line that is not blank
    (``tags['line']``)."""
    words = {w for w in re.split(r'[\W_]+', query.lower()) if len(w) > 2}
    best, best_hits, first = None, 0, 0
    for k, line in enumerate(_LINE_END.split(text)):
        if not line.strip():
            continue
        if best is None:
            best, first = (k, line), k
        low = line.lower()
        hits = sum(w in low for w in words)
        if hits > best_hits:
            best, best_hits = (k, line), hits
    if best is None:
        return first_line, ''
    k, line = best
    # Count from the first line with content, as tags['line'] does: the blank lines before
    # it (empty, only spaces, or ending in '\r\n') are not in first_line.
    return first_line + k - first, line.strip()


def _settings(args: argparse.Namespace) -> dict:
    return {'format': 'executors.demo', 'version': MARKER_VERSION, 'path': os.path.abspath(args.path),
            'patterns': args.pattern, 'include_tests': args.include_tests,
            'segmenter': TextSegmenter(max_chars=args.max_chars).settings, 'lsa_dim': args.dim,
            'shards': args.shards, 'tokenizer': TOKENIZER_VERSION}


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number >= ``low``, so that a mistyped option value is a
    usage error before the workspace is touched (a build deletes the old index first).

    >>> _int_at_least(1)('8'), _int_at_least(1).__name__
    (8, 'int >= 1')
    """
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not a whole number: pass one >= {low}') from None
        if value < low:
            raise argparse.ArgumentTypeError(f'must be {low} or more, got {value}')
        return value
    parse.__name__ = f'int >= {low}'   # (argparse names the type by it in some errors)
    return parse


def _is_demo_folder(folder: str, legacy: bool) -> bool:
    """Whether a folder of the workspace is one the demo made: it holds OWNED, or (``legacy``:
    the workspace holds an older demo's marker) nothing but what that demo's executor wrote."""
    if os.path.isfile(os.path.join(folder, OWNED)):
        return True
    if not legacy:
        return False
    name = os.path.basename(folder)
    expected = _LEGACY_LAYOUT[name]
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return False
    return all(e.is_dir(follow_symlinks=False) and (e.name in expected or (name == SPARSE and e.name.isdigit()))
               for e in entries)


def _claim_folders(workspace: str, marker: str, legacy: bool) -> str | None:
    """Make the workspace ready for a build: delete the marker, empty the index folders the
    demo made (the LSA model's is kept: the model is refitted only if the passages
    changed), and create those missing, each with OWNED in it. Returns why it refused
    instead (a folder the demo did not make is where it would write), having touched
    nothing."""
    names = (SPARSE, DENSE, LSA)
    for name in names:
        path = os.path.join(workspace, name)
        if os.path.lexists(path) and not (os.path.isdir(path) and _is_demo_folder(path, legacy)):
            return (f'{path} was not made by this demo (it holds no {OWNED} file), and building the index '
                    f'would {"write into" if name == LSA else "delete"} it: move it away, or pass another '
                    f'--workspace (a new folder)')
    # First: a run killed from here on leaves no marker, so the next one builds again.
    if os.path.exists(marker):
        os.unlink(marker)
    old = os.path.join(workspace, 'indexer')   # no longer written: removed if an old demo's, else left alone
    if os.path.isdir(old) and _is_demo_folder(old, legacy):
        shutil.rmtree(old)
    for name in names:
        path = os.path.join(workspace, name)
        os.makedirs(path, exist_ok=True)
        if name != LSA:
            # All but OWNED: a run killed on the way still owns what is left.
            for entry in os.scandir(path):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                elif entry.name != OWNED:
                    os.unlink(entry.path)
        _write_owned(path)
    return None


def _write_owned(folder: str) -> None:
    with open(os.path.join(folder, OWNED), 'w', encoding='utf-8') as fp:
        fp.write('Made by python -m executors.demo, which deletes what this folder holds when it builds its index '
                 'again.\n')


def build_flow(workspace: str, max_chars: int = 1200, dim: int = 256, shards: int = 1,
               fusion: str = 'sum', profile: bool = False, ray: str | None = None) -> Flow:
    """The demo's Flow: segmenter, then the sparse and dense branches in parallel, joined by
    a fusion step.

    ::

        gateway -> segmenter -+-> sparse (BM25) ----------------+-> fusion
                              +-> lsa (encoder) -> dense (knn) -+

    Example
    -------
    >>> with build_flow('ws') as f:  # doctest: +SKIP
    ...     f.post('/fit', docs); f.index(docs); print(search(f, ['send mail'], 5))
    """
    polling = {'/index': 'any', '*': 'all'} if shards > 1 else 'any'
    # ray: a Ray cluster's address ('auto', 'ray://host:port'), or 'local' for a private Ray.
    backend = {} if ray is None else {'backend': 'ray', 'ray_address': None if ray == 'local' else ray}
    return (Flow(workspace=workspace, profile=profile, **backend)
            .add(name='segmenter', uses=TextSegmenter, uses_with={'max_chars': max_chars})
            .add(name=SPARSE, uses=SparseIndexer, uses_with={'rank_tag': SPARSE}, needs='segmenter',
                 shards=shards, polling=polling)
            .add(name=LSA, uses=LSAEncoder, uses_with={'dim': dim}, needs='segmenter')
            .add(name=DENSE, uses=MemmapIndexer, uses_with={'rank_tag': DENSE}, needs=LSA)
            .add(name=FUSION, uses=FusionRanker, uses_with={'branches': {SPARSE: 1.0, DENSE: 1.0}, 'method': fusion},
                 needs=[SPARSE, DENSE]))


def search(f: Flow, queries: list[str], top_k: int, depth: int = 50,
           extra: dict[str, Any] | None = None) -> list[tuple[str, list[Document], float]]:
    """``(query, matches, seconds)`` for each query, one request each; each branch ranks
    ``max(depth, top_k)`` candidates for the fusion (``extra``: more parameters, e.g. the
    fusion's method and weights).

    Example
    -------
    >>> for q, matches, s in search(f, ['read a gzip file'], 5): print(matches[0].tags['path'])  # doctest: +SKIP
    gzip.py
    """
    wide = max(depth, top_k)
    params = {'limit': top_k, SPARSE: {'limit': wide}, DENSE: {'limit': wide}, **(extra or {})}
    out = []
    for q in queries:
        t0 = time.perf_counter()
        res = f.search(Document(text=q), parameters=params, return_results=True)
        out.append((q, list(res[0].docs[0].matches), time.perf_counter() - t0))
    return out


def _index(f: Flow, args: argparse.Namespace, files: list[tuple[str, str]], say: Callable[..., None]) -> dict:
    skipped: list[str] = []
    counts = {'files': 0, 'passages': 0}

    def counted(skipped_to: list[str]) -> Iterator[Document]:
        counts['files'] = 0
        for d in read_files(files, skipped_to):
            counts['files'] += 1
            yield d

    stats = RouteStats()
    fit_stats = RouteStats()

    def done(resp: Response) -> None:
        counts['passages'] += len(resp.docs)
        stats.add(resp)

    progress = not args.json
    t0 = time.perf_counter()
    # Pass 1: the LSA encoder learns the corpus (the other executors have no /fit: they pass).
    f.post('/fit', counted(skipped), request_size=args.request_size, on_done=fit_stats.add, show_progress=progress)
    t1 = time.perf_counter()
    # Pass 2: the first /index request fits the model, then every passage is encoded and stored.
    f.index(counted([]), request_size=args.request_size, on_done=done, show_progress=progress)
    # The sparse index merges its new postings on /status: now, not in the first query.
    f.post('/status')
    wall = time.perf_counter() - t0
    for s in skipped:
        say(f'skipped {s}')
    say(f'indexed {counts["files"]:,} files -> {counts["passages"]:,} passages from {args.path} '
        f'in {wall:.1f} s (fit pass {t1 - t0:.1f} s, index pass {wall - (t1 - t0):.1f} s): '
        f'{counts["files"] / wall:,.0f} files/s, {counts["passages"] / wall:,.0f} passages/s')
    say('fit pass:\n' + fit_stats.table(t1 - t0))
    say('index pass:\n' + stats.table(wall - (t1 - t0)))
    return {'files': counts['files'], 'passages': counts['passages'], 'seconds': round(wall, 2),
            'skipped': len(skipped)}


def _printable(path: str) -> str:
    r"""A path as valid UTF-8: the bytes of a name that is not UTF-8 as ``\xNN``.

    >>> _printable('lat\udce9n.py')
    'lat\\xe9n.py'
    """
    return path.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')


def _print_results(results: list[tuple[str, list[Document], float]], args: argparse.Namespace,
                   say: Callable[..., None]) -> None:
    for q, matches, seconds in results:
        hits = []
        for m in matches:
            line, preview = _best_line(m.text or '', int(m.tags.get('line', 1)), q)
            path = m.tags.get('path') or (os.path.relpath(m.uri, args.path) if m.uri else m.parent_id)
            hits.append((path, line, float(m.scores['fused']), preview))
        if args.json:
            # (a file name that is no UTF-8 holds surrogate escapes, which no UTF-8 writer takes)
            print(json.dumps({'query': q, 'hits': [{'path': _printable(p), 'line': ln, 'score': round(s, 6)}
                                                    for p, ln, s, _ in hits]}), flush=True)
            continue
        print(f'\nquery: {q!r}  ({1e3 * seconds:.0f} ms)')
        if not hits:
            print('  (no results)')
        for p, ln, s, preview in hits:
            print(f'  {s:.3f}  {p}:{ln}  {preview[:90]}')
    if results:
        lat = [s for _, _, s in results]
        say(f'\nsearch latency: median {1e3 * statistics.median(lat):.1f} ms over {len(lat)} queries '
            f'(one query per request, through the Flow)')


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
    stdlib = sysconfig.get_paths()['stdlib']
    ap = argparse.ArgumentParser(prog='python -m executors.demo', description=__doc__.split('\n\n')[0])
    ap.add_argument('--path', default=None,
                    help='folder to index (default: the standard library of this Python)')
    ap.add_argument('--pattern', action='append',
                    help="glob of files under --path (repeatable; default '**/*.py' for the standard library, "
                         "'**/*' (every text file) for --path)")
    ap.add_argument('--include-tests', action='store_true',
                    help='index test folders (test/, tests/, idle_test/) and test_*.py files too')
    ap.add_argument('--workspace', default='workspace', help='where the index is stored (default ./workspace)')
    ap.add_argument('--query', action='append', help='query text (repeatable; default: a few examples)')
    ap.add_argument('--top-k', '--top', dest='top_k', type=_int_at_least(1), default=5,
                    help='results per query (default 5)')
    ap.add_argument('--json', action='store_true',
                    help='print one JSON object per query on stdout ({"query", "hits": [{"path", "line", '
                         '"score"}]}); everything else goes to stderr')
    ap.add_argument('--reindex', action='store_true', help='index again even if the workspace holds the index')
    ap.add_argument('--fusion', choices=('sum', 'rrf'), default='sum',
                    help='how the branches are fused: normalised score sum (default) or reciprocal rank')
    ap.add_argument('--shards', type=_int_at_least(1), default=1, help='shards of the sparse index (default 1)')
    ap.add_argument('--max-chars', type=_int_at_least(2), default=1200,
                    help='largest passage in characters (default 1200)')
    ap.add_argument('--dim', type=_int_at_least(1), default=256, help='LSA embedding size (default 256)')
    ap.add_argument('--profile', action='store_true',
                    help="print the Flow's profile summary (where the time went) at the end")
    ap.add_argument('--ray', default=None, metavar='ADDRESS',
                    help="run the Flow's executors as Ray actors: 'auto' (the cluster this machine joined), "
                         "'ray://host:port', or 'local' (a private Ray); the workspace must be on a path every "
                         'node sees')
    ap.add_argument('--request-size', type=_int_at_least(1), default=8, help='files per request (default 8)')
    args = ap.parse_args(argv)
    if args.pattern is None:
        args.pattern = ['**/*.py'] if args.path is None else ['**/*']
    args.path = args.path or stdlib
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    # Every value is checked before the workspace is touched: a build deletes the old index
    # first, and a value refused after that would cost the next run a whole build.
    if not os.path.isdir(args.path):
        ap.error(f'--path {args.path!r} is not a folder')
    if os.path.exists(args.workspace) and not os.path.isdir(args.workspace):
        ap.error(f'--workspace {args.workspace!r} is a file, not a folder: pass a folder (it is created if missing)')
    if os.path.realpath(args.workspace) == os.path.realpath(args.path):
        ap.error(f'--workspace {args.workspace!r} is the folder --path indexes: pass another one (a folder '
                 f'inside --path, such as the default ./workspace, is left out of the index)')
    if args.ray is not None and importlib.util.find_spec('ray') is None:
        ap.error("--ray needs the ray package: pip install 'ray[default]', or leave --ray out")
    out = sys.stderr if args.json else sys.stdout

    def say(*a: Any) -> None:
        print(*a, file=out, flush=True)

    # The workspace is left out: under --path (`--path .` with the default ./workspace) its
    # files would be indexed, and since the marker changes every build, every run would
    # find the corpus changed and build again.
    files = list(list_files(args.path, args.pattern, args.include_tests, exclude=[args.workspace]))
    if not files:
        print(f'nothing to index: no file under {args.path} matches --pattern {" ".join(args.pattern)!r} '
              f'(hidden, cache{"" if args.include_tests else ", test"} and installed-package folders and the '
              f'workspace are left out)', file=sys.stderr)
        return 1
    os.makedirs(args.workspace, exist_ok=True)
    # Runs that only search may share a workspace; one that (re)builds it must be alone:
    # it deletes the index folders first, and another run's indexers would lose their files.
    lock_path = os.path.join(args.workspace, LOCK)
    fresh_lock = not os.path.exists(lock_path)  # (made by this run: removed if it refuses the workspace)
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        print(f'another run is building the index in {args.workspace}: wait for it to finish, or pass another '
              f'--workspace', file=sys.stderr)
        return 1
    try:
        return _run(args, files, lock, say, lock_path if fresh_lock else None)
    finally:
        os.close(lock)  # (a second run in this process must not find it held)


def _run(args: argparse.Namespace, files: list[tuple[str, str]], lock: int, say: Callable[..., None],
         fresh_lock: str | None = None) -> int:
    """Build the index if it is missing or stale (``lock`` then taken alone), and search;
    ``fresh_lock``: the lock file's path if this run made it (a refused workspace keeps
    nothing of the run)."""
    marker_path = os.path.join(args.workspace, MARKER)
    wanted = {**_settings(args), 'fingerprint': corpus_fingerprint(files)}
    try:
        with open(marker_path, encoding='utf-8') as fp:
            found = json.load(fp)
    except (OSError, ValueError):
        found = None
    if not (isinstance(found, dict) and found.get('format') == 'executors.demo'):
        found = None
    same = found is not None and all(found.get(k) == v for k, v in wanted.items())
    reindex = args.reindex or not same
    if reindex:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f'the index in {args.workspace} must be built again, but another run is using it: wait for it '
                  f'to finish, or pass another --workspace', file=sys.stderr)
            return 1
        # A demo older than OWNED marked no folder: its marker vouches for its folders.
        refused = _claim_folders(args.workspace, marker_path,
                                 legacy=found is not None and isinstance(found.get('version'), int)
                                 and found['version'] < _OWNED_SINCE)
        if refused:
            if fresh_lock is not None:  # (held alone: no other run has it open)
                os.unlink(fresh_lock)
            print(refused, file=sys.stderr)
            return 1
        why = ('--reindex' if args.reindex else 'no index in the workspace yet' if found is None
               else 'the files changed' if all(found.get(k) == v for k, v in wanted.items() if k != 'fingerprint')
               else 'the path or settings changed')
        say(f'indexing {len(files):,} files of {args.path} into {args.workspace} ({why})')
    else:
        say(f'reusing the index in {args.workspace}: {found["files"]:,} files, {found["passages"]:,} passages '
            f'of {found["path"]} (unchanged; --reindex to build it again)')

    t0 = time.perf_counter()
    with build_flow(args.workspace, args.max_chars, args.dim, args.shards, args.fusion, args.profile,
                    args.ray) as f:
        say(f'started {f.num_executors} executors in {time.perf_counter() - t0:.1f} s')
        if reindex:
            numbers = _index(f, args, files, say)
            if not numbers['passages']:
                # No marker: the next run looks again. The LSA model cannot be fitted on
                # nothing, so searching would only fail.
                print(f'nothing to index: the {len(files):,} files under {args.path} hold no text '
                      f'(empty, binary or unreadable)', file=sys.stderr)
                return 1
            # Written last: an interrupted run leaves no marker, so the next one starts over.
            with open(marker_path, 'w', encoding='utf-8') as fp:
                json.dump({**wanted, **numbers, 'python': sys.version.split()[0], 'indexed_at': time.time()},
                          fp, indent=1)
        results = search(f, args.query or list(DEFAULT_QUERIES), args.top_k)
        _print_results(results, args, say)
        if args.profile:
            say('\nprofile summary:\n' + str(f.profile_summary()))
    say(f'\ntotal {time.perf_counter() - t0:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
