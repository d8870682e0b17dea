"""An identifier-aware tokenizer for source code and prose, shared by the sparse and LSA executors.

Text becomes *terms*:

- words are runs of letters (and trailing digits) split at ``_`` and camelCase boundaries
  (``ThreadPoolExecutor`` -> thread, pool, executor; ``HTTPServer`` -> http, server;
  ``sha256`` stays one word), then lower-cased;
- words of one character, pure numbers and stop words (Python keywords, ``self``, common
  English words: :data:`executors.encoders.STOP_WORDS`) are dropped;
- a light suffix stripper maps inflections to one stem (``compress``, ``compressed``,
  ``compression``, ``compressor`` -> ``compress``; ``parse``, ``parser``, ``parsing`` ->
  ``pars``): a query says "compress data" where the code says ``compression``.

Every function works on one text at a time and returns counts, never a list of tokens of
a whole corpus: callers stream.

Example
-------
>>> sorted(term_counts('def parse_args(argv): parser = ArgParser()').items())
[('arg', 2), ('argv', 1), ('pars', 3)]
>>> path_terms('/usr/lib/python3.11/concurrent/futures/thread.py', depth=2)
['futur', 'thread']
"""
from __future__ import annotations

import re
from collections import Counter

from .encoders import STOP_WORDS

__all__ = ['stem', 'term_counts', 'path_terms', 'TOKENIZER_VERSION']

#: Bump when the terms a text gives change: indexes and models record it.
TOKENIZER_VERSION = 1

# An upper-case run not followed by lower case (an acronym: HTTP in HTTPServer), or an
# optional capital followed by lower case (a camelCase part); digits stick to the word
# before them (sha256, utf8, base64), so pure numbers never match.
_WORD = re.compile(r'[A-Z]+[0-9]*(?![a-z])|[A-Z]?[a-z]+[0-9]*')

# Longest first: the first suffix that leaves a stem of >= 3 letters is stripped.
_SUFFIXES = ('ations', 'ation', 'ings', 'ing', 'ions', 'ion', 'ers', 'er', 'ors', 'or', 'ies', 'es', 'ed',
             'ly', 's', 'e')
_STEMS: dict[str, str] = {}   # word -> stem; bounded by the vocabulary, not the corpus
_STEM_CACHE_MAX = 1 << 20


def stem(word: str) -> str:
    """The stem of a lower-case word: one suffix stripped (``ies`` -> ``y``; a final ``ss``
    is kept, so ``compress`` and ``compressed`` meet).

    Example
    -------
    >>> [stem(w) for w in ('compression', 'compresses', 'compress', 'directories', 'args')]
    ['compress', 'compress', 'compress', 'directory', 'arg']
    """
    got = _STEMS.get(word)
    if got is not None:
        return got
    out = word
    if len(word) > 3:
        for suf in _SUFFIXES:
            if word.endswith(suf) and len(word) - len(suf) >= 3:
                if suf == 's' and word.endswith(('ss', 'us', 'is')):
                    break
                out = word[:-len(suf)] + ('y' if suf == 'ies' else '')
                break
    if len(_STEMS) < _STEM_CACHE_MAX:
        _STEMS[word] = out
    return out


_TERM_OF: dict[str, str | None] = {}   # raw word (any case) -> term, or None when dropped


def _term(raw: str) -> str | None:
    low = raw.lower()
    if len(low) < 2 or low in STOP_WORDS:
        term = None
    else:
        term = stem(low)
    if len(_TERM_OF) < _STEM_CACHE_MAX:
        _TERM_OF[raw] = term
    return term


def term_counts(text: str | None, max_chars: int | None = None) -> dict[str, int]:
    """How often each term occurs in ``text`` (see the module docstring for what a term is).

    Parameters
    ----------
    text : str or None
    max_chars : int, optional
        Read only the first ``max_chars`` characters (a huge generated file should not
        cost more than a normal one).

    Example
    -------
    >>> term_counts('HTTPServer serves HTTP requests')
    {'http': 2, 'serv': 2, 'request': 1}
    """
    if not text:
        return {}
    if max_chars is not None:
        text = text[:max_chars]
    out: dict[str, int] = {}
    # Counting raw words first (in C) means the per-word Python work is done once per
    # distinct word of the text, not once per occurrence.
    for raw, n in Counter(_WORD.findall(text)).items():
        term = _TERM_OF[raw] if raw in _TERM_OF else _term(raw)
        if term:
            out[term] = out.get(term, 0) + n
    return out


def path_terms(path: str | None, depth: int = 3) -> list[str]:
    """The terms of the last ``depth`` components of a path (file name without its
    extension, and the folders above it): the *name field* of a passage.

    Example
    -------
    >>> path_terms('Lib/email/mime/multipart.py')
    ['email', 'mim', 'multipart']
    """
    if not path:
        return []
    parts = [p for p in path.replace('\\', '/').split('/') if p][-depth:]
    if parts:
        parts[-1] = parts[-1].rsplit('.', 1)[0] if '.' in parts[-1][1:] else parts[-1]
    terms: list[str] = []
    for p in parts:
        for raw in _WORD.findall(p):
            term = _term(raw)
            if term:
                terms.append(term)
    return terms
