"""TextSegmenter: cut long texts (source files, articles) into passages that can be indexed.

Example
-------
>>> from runtime import Document, DocumentArray
>>> docs = DocumentArray([Document(text='a = 1\\n\\nb = 2\\n', uri='x.py')])
>>> out = TextSegmenter(max_chars=8).segment(docs, {})
>>> [(c.text, c.tags['line'], c.uri) for c in out]
[('a = 1\\n\\n', 1, 'x.py'), ('b = 2\\n', 3, 'x.py')]
"""
from __future__ import annotations

import logging
from typing import Any, Iterator

from runtime import Document, DocumentArray, Executor, requests

__all__ = ['TextSegmenter', 'split_text']

logger = logging.getLogger(__name__)


def _atoms(text: str, budget: int) -> tuple[list[tuple[str, int]], list[int]]:
    """Cut ``text`` into atoms (whole lines, or pieces of lines longer than ``budget``),
    each with its 1-based line number, and the atom index where each paragraph starts.

    A paragraph is a run of non-blank lines with the blank lines after it (blank lines at
    the very start belong to the first paragraph), so a passage never starts on a blank
    line but the atoms still cover the text exactly.
    """
    # Only '\n' ends a line, as in editors and tracebacks (str.splitlines also splits at
    # form feeds and other separators, which some source files contain).
    parts = text.split('\n')
    lines = [p + '\n' for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    atoms: list[tuple[str, int]] = []
    para_starts: list[int] = []
    prev_blank = True
    for no, line in enumerate(lines, 1):
        blank = not line.strip()
        if not blank and prev_blank and atoms:
            para_starts.append(len(atoms))
        if not para_starts:
            para_starts.append(0)
        prev_blank = blank
        if len(line) <= budget:
            atoms.append((line, no))
        else:  # a minified or generated line: cut it, every piece keeps the line number
            atoms.extend((line[i:i + budget], no) for i in range(0, len(line), budget))
    return atoms, para_starts


def split_text(text: str | None, max_chars: int = 1200, overlap: int = 0) -> Iterator[tuple[str, int, int]]:
    """Cut ``text`` into passages of at most ``max_chars`` characters.

    Paragraphs (blocks separated by blank lines: in source code, functions, classes and
    the blocks inside them) are packed whole into a passage while they fit; a paragraph
    longer than ``max_chars`` is cut between lines, and a line longer than that within
    the line. With ``overlap`` > 0 each passage starts with the last whole lines (at most
    ``overlap`` characters) of the one before, so that text at a boundary is found with
    its context. With ``overlap=0`` the passages concatenate back to the text exactly
    (except passages of only whitespace, which are left out).

    Parameters
    ----------
    text : str or None
        None or '' gives no passages.
    max_chars : int
        Largest passage, in characters.
    overlap : int
        Characters (whole lines) repeated from the previous passage; less than
        ``max_chars // 2``.

    Yields
    ------
    (passage text, first line, last line)
        The 1-based numbers of its first and last lines that are not blank (lines end at
        '\\n' only).

    Example
    -------
    >>> list(split_text('x = 1\\ny = 2\\n\\nz = 3\\n', max_chars=14))
    [('x = 1\\ny = 2\\n\\n', 1, 2), ('z = 3\\n', 4, 4)]
    """
    if not text:
        return
    budget = max_chars - overlap
    atoms, para_starts = _atoms(text, budget)
    bounds = para_starts + [len(atoms)]
    cur: list[int] = []        # atom indices of the passage being built
    cur_len = 0
    fresh = 0                  # how many of them are new (not repeated from the previous one)

    def emit() -> Iterator[tuple[str, int, int]]:
        body = ''.join(atoms[i][0] for i in cur)
        if body.strip():
            # Line numbers of the first and last lines with content: a passage may begin
            # with the blank line that ended a paragraph cut in two.
            shown = [atoms[i][1] for i in cur if atoms[i][0].strip()]
            yield body, shown[0], shown[-1]

    def restart() -> None:
        # The next passage starts with the tail of this one (whole atoms, <= overlap chars).
        nonlocal cur, cur_len, fresh
        tail: list[int] = []
        size = 0
        for i in reversed(cur):
            if size + len(atoms[i][0]) > overlap:
                break
            tail.append(i)
            size += len(atoms[i][0])
        cur, cur_len, fresh = tail[::-1], size, 0

    for p in range(len(para_starts)):
        lo, hi = bounds[p], bounds[p + 1]
        para_len = sum(len(atoms[i][0]) for i in range(lo, hi))
        if cur_len + para_len > max_chars and fresh:
            yield from emit()
            restart()
        if cur_len + para_len <= max_chars:
            cur.extend(range(lo, hi))
            cur_len += para_len
            fresh += hi - lo
            continue
        for i in range(lo, hi):  # too big for one passage: cut it between atoms
            size = len(atoms[i][0])
            if cur_len + size > max_chars and fresh:
                yield from emit()
                restart()
            cur.append(i)
            cur_len += size
            fresh += 1
    if fresh:
        yield from emit()


class TextSegmenter(Executor):
    """Split each document's text into passages (chunks) of at most ``max_chars`` characters.

    **Output: flattened.** By default (``flatten=True``) the handler returns the passages
    themselves as the request's documents, so the encoder and the indexer that follow
    embed and store passages without any traversal. Each passage keeps where it came
    from: ``parent_id`` (the original document's id), ``uri`` (the original's uri, e.g.
    the file path), ``tags['line']`` / ``tags['end_line']`` (1-based first and last line),
    ``tags['chunk']`` (its number in the document), the original's other tags, and the id
    ``'<parent id>/<chunk number>'`` (so indexing the same document again into one shard
    replaces its passages of the same numbers instead of adding copies; ``/update``
    replaces all of them: a shorter new version leaves none of the old behind). With
    ``flatten=False`` the passages go into each
    document's ``chunks`` instead and the documents stay.

    Every endpoint segments except ``/search``, ``/delete`` and ``/status``, whose
    documents (queries, ids) go through unchanged.

    A document without text (or with only whitespace) yields no passage; with
    ``flatten=True`` it therefore leaves the request (logged at DEBUG).

    Parameters
    ----------
    max_chars : int
        Largest passage (default 1200 characters, about 30 lines of code).
    overlap : int
        Characters (whole lines) repeated from the previous passage (default 0).
    flatten : bool
        Return the passages as the documents (default) or put them in ``doc.chunks``.

    Example
    -------
    >>> from runtime import Flow
    >>> f = Flow().add(uses=TextSegmenter, uses_with={'max_chars': 800}).add(uses=HashingTextEncoder)  # doctest: +SKIP
    """

    def __init__(self, max_chars: int = 1200, overlap: int = 0, flatten: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 2:
            raise ValueError(f'max_chars must be an int >= 2, got {max_chars!r}')
        if not isinstance(overlap, int) or isinstance(overlap, bool) or not 0 <= overlap < max_chars // 2:
            raise ValueError(f'overlap must be an int in [0, max_chars // 2), got {overlap!r} '
                             f'(max_chars={max_chars})')
        self.max_chars, self.overlap, self.flatten = max_chars, overlap, bool(flatten)

    @property
    def settings(self) -> dict:
        """What changes the passages (to tell whether an index is still valid).

        >>> TextSegmenter(max_chars=500).settings['max_chars']
        500
        """
        return {'segmenter': type(self).__name__, 'max_chars': self.max_chars, 'overlap': self.overlap,
                'version': 1}

    def chunks_of(self, doc: Document) -> list[Document]:
        """The passages of one document.

        Example
        -------
        >>> [c.tags['line'] for c in TextSegmenter(max_chars=4).chunks_of(Document(text='ab\\ncd\\n'))]
        [1, 2]
        """
        out = []
        tags = dict(doc.tags) if doc.tags else {}
        for k, (text, line, end_line) in enumerate(split_text(doc.text, self.max_chars, self.overlap)):
            c = Document(id=f'{doc.id}/{k}', text=text, uri=doc.uri, mime_type=doc.mime_type,
                         tags={**tags, 'line': line, 'end_line': end_line, 'chunk': k})
            c.parent_id = doc.id
            c.granularity = doc.granularity + 1
            out.append(c)
        return out

    @requests(on=['/search', '/delete', '/status'])
    def passthrough(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> None:
        """Queries, deletions and status requests go through whole: a query is not a file
        to cut up, and deletions name ids.

        Example
        -------
        >>> TextSegmenter().passthrough(DocumentArray([Document(text='a query')]), {}) is None
        True
        """

    @requests
    def segment(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> DocumentArray | None:
        """Cut every document of the request into passages (see the class docstring).

        Example
        -------
        >>> out = TextSegmenter(max_chars=4).segment(DocumentArray([Document(text='ab\\ncd\\n')]), {})
        >>> len(out), out[0].parent_id != ''
        (2, True)
        """
        return self._cut(docs, keep_empty=False)

    @requests(on='/update')
    def update(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> DocumentArray | None:
        """As ``segment``, but a document that gives no passages (its text emptied) goes on
        whole: the indexers then remove the passages they stored for it.

        Example
        -------
        >>> [d.id for d in TextSegmenter().update(DocumentArray([Document(id='a', text='')]), {})]
        ['a']
        """
        return self._cut(docs, keep_empty=True)

    def _cut(self, docs: DocumentArray, keep_empty: bool) -> DocumentArray | None:
        if not self.flatten:
            for d in docs:
                d.chunks = self.chunks_of(d)
            return None
        out: list[Document] = []
        for d in docs:
            chunks = self.chunks_of(d)
            if not chunks:
                logger.debug('TextSegmenter: document %s (%s) has no text, no passages', d.id, d.uri or 'no uri')
                if keep_empty:
                    chunks = [d]
            out.extend(chunks)
        return DocumentArray(out)
