"""The corpus of the demo (``executors.demo``): which files of a folder are indexed, read as
Documents, and the fingerprint that tells whether they changed since the last run.

Example
-------
>>> files = list(list_files('src', ['**/*.py']))          # (path, path relative to src)
>>> docs = list(read_files(files, skipped := []))          # doctest: +SKIP
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from typing import Iterable, Iterator

from runtime import Document

__all__ = ['list_files', 'read_files', 'corpus_fingerprint', 'is_test_path', 'SKIP_DIRS', 'TEST_DIRS',
           'TEST_FILES', 'BINARY_EXT', 'MAX_FILE_BYTES']

#: Folders never indexed: installed packages (the standard library's sources are the
#: rest), caches, version control and virtual environments.
SKIP_DIRS = frozenset({'site-packages', 'dist-packages', '__pycache__', 'node_modules', 'venv', '.venv',
                       '.git', '.hg', '.svn', '.tox', '.mypy_cache', '.pytest_cache'})
#: Test folders and files, left out unless --include-tests: in the standard library they
#: are 62% of the passages and crowd the modules out of the answers.
TEST_DIRS = frozenset({'test', 'tests', 'idle_test'})
TEST_FILES = ('test_*', '*_test.py', 'conftest.py')
#: Not text, whatever the content says.
BINARY_EXT = frozenset('.pyc .pyo .so .o .a .dll .dylib .exe .bin .png .jpg .jpeg .gif .ico .bmp .pdf .zip .gz '
                       '.bz2 .xz .tar .whl .egg .jar .class .woff .woff2 .ttf .otf .mo .db .sqlite .npy .npz '
                       '.pkl .wav .mp3 .mp4'.split())
MAX_FILE_BYTES = 2_000_000


def is_test_path(rel: str) -> bool:
    """Whether a path (relative to the indexed root) is in a test folder or is a test file.

    Example
    -------
    >>> is_test_path('test/test_os.py'), is_test_path('idlelib/idle_test/x.py'), is_test_path('os.py')
    (True, True, False)
    """
    parts = rel.replace(os.sep, '/').split('/')
    return bool(TEST_DIRS.intersection(parts[:-1])) or any(fnmatch.fnmatch(parts[-1], p) for p in TEST_FILES)


def list_files(root: str, patterns: list[str], include_tests: bool = False,
               exclude: Iterable[str] = ()) -> Iterator[tuple[str, str]]:
    """``(path, path relative to root)`` of the files under ``root`` matching ``patterns``
    (globs on the relative path; ``**/`` matches any folders, none included), sorted,
    without the ``SKIP_DIRS`` folders, hidden folders, the ``exclude`` folders (compared by
    real path, so a link to one is left out too; the demo passes its workspace) and
    (unless ``include_tests``) test folders and files. Symbolic links to folders are
    followed once.

    Example
    -------
    >>> [rel for _, rel in list_files('/usr/lib/python3.11', ['json/*.py'])][:2]  # doctest: +SKIP
    ['json/__init__.py', 'json/decoder.py']
    >>> [rel for _, rel in list_files('.', ['**/*'], exclude=['./workspace'])]  # doctest: +SKIP
    ['README.md', 'src/app.py']
    """
    regexes = []
    for p in patterns:
        # '**/x' also matches 'x' at the top; fnmatch's '*' crosses '/', which is what '**' means.
        regexes.append(re.compile(fnmatch.translate(p)))
        if p.startswith('**/'):
            regexes.append(re.compile(fnmatch.translate(p[3:])))
    # Marked seen before the walk: a folder found there is passed over like a visited one.
    seen_dirs: set[str] = {os.path.realpath(p) for p in exclude}
    for top, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(top)
        if real in seen_dirs:   # excluded, a link cycle, or a folder reached twice
            dirs[:] = []
            continue
        seen_dirs.add(real)
        rel_top = os.path.relpath(top, root)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith('.')
                         and (include_tests or d not in TEST_DIRS))
        for name in sorted(files):
            rel = name if rel_top == '.' else os.path.join(rel_top, name)
            rel_posix = rel.replace(os.sep, '/')
            if not any(r.match(rel_posix) for r in regexes):
                continue
            if not include_tests and is_test_path(rel_posix):
                continue
            if os.path.splitext(name)[1].lower() in BINARY_EXT:
                continue
            yield os.path.join(top, name), rel_posix


def read_files(files: list[tuple[str, str]], skipped: list[str]) -> Iterator[Document]:
    """One Document per file: ``text`` (utf-8, undecodable bytes replaced; ``'\\r\\n'`` and
    ``'\\r'`` line ends read as ``'\\n'``), ``uri`` (the path) and ``tags['path']``
    (relative to the indexed root). Files that look binary (a NUL byte) or are larger than
    ``MAX_FILE_BYTES`` are left out and, with unreadable ones, appended to ``skipped``.

    Example
    -------
    >>> docs = list(read_files([('/tmp/a.py', 'a.py')], []))  # doctest: +SKIP
    """
    for path, rel in files:
        try:
            with open(path, 'rb') as fp:
                raw = fp.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            skipped.append(f'{rel}: {exc}')
            continue
        if len(raw) > MAX_FILE_BYTES:
            skipped.append(f'{rel}: larger than {MAX_FILE_BYTES:,} bytes')
            continue
        if b'\0' in raw[:8192]:
            skipped.append(f'{rel}: binary')
            continue
        text = raw.decode('utf-8', errors='replace')
        if '\r' in text:
            # Universal newlines, as Python's text mode reads a file: the segmenter counts
            # lines at '\n' only, so a file with '\r' line ends would be one long line.
            text = text.replace('\r\n', '\n').replace('\r', '\n')
        yield Document(id=rel, text=text, uri=path, tags={'path': rel})


def corpus_fingerprint(files: list[tuple[str, str]]) -> str:
    """A hash of every file's relative path, size and modification time (cheap: no reading).

    Example
    -------
    >>> len(corpus_fingerprint([]))
    32
    """
    h = hashlib.blake2b(digest_size=16)
    for path, rel in files:
        try:
            st = os.stat(path)
            h.update(f'{rel}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode('utf-8', 'surrogatepass'))
        except OSError:
            h.update(f'{rel}\0missing\n'.encode('utf-8', 'surrogatepass'))
    return h.hexdigest()
