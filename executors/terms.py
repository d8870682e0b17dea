"""An identifier-aware tokenizer for source code and prose, shared by the sparse and LSA executors.

Text becomes *terms*:

- words are runs of letters (and trailing digits) split at ``_`` and camelCase boundaries
  (``ThreadPoolExecutor`` -> thread, pool, executor; ``HTTPServer`` -> http, server;
  ``sha256`` stays one word), then lower-cased (case-folded: ``Straße`` -> ``strasse``).
  Letters are those of any script (``Müller``, ``Привет``, ``नमस्ते``; text that is not
  ASCII is NFKC-normalised first, so composed and decomposed accents meet);
- Chinese, Japanese and Korean text, written without spaces between words, gives the
  overlapping character pairs of each run (``日本語`` -> ``日本``, ``本語``; a lone
  character is kept as it is);
- words of one character, pure numbers and stop words (Python keywords, ``self``, common
  English words: :data:`executors.encoders.STOP_WORDS`) are dropped; a word longer than
  :data:`MAX_WORD_CHARS` is cut to that length;
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

import functools
import re
import sys
import unicodedata
from collections import Counter
from typing import NamedTuple, Sequence

import numpy as np

from .encoders import STOP_WORDS

__all__ = ['stem', 'term_counts', 'path_terms', 'save_strings', 'load_strings', 'TOKENIZER_VERSION',
           'MAX_WORD_CHARS']

#: Bump when the terms a text gives change: indexes and models record it.
#: 2: letters of any script (1 knew only A-Z, a-z), CJK character pairs.
#: 3: words longer than MAX_WORD_CHARS cut.
TOKENIZER_VERSION = 3

#: Longest word kept whole; a longer one is cut to its first MAX_WORD_CHARS characters.
#: Words of a language (German compounds in use stay under 40 letters) and the parts of
#: an identifier split at ``_`` and camelCase are far shorter: a longer run of letters is
#: data (a DNA sequence, a lower-case blob, a Thai clause). Cut rather than dropped: the
#: same long word in a query still finds it (its first MAX_WORD_CHARS characters are as
#: distinctive as the whole), while every term, and so every vocabulary and cache of
#: terms, stays bounded in size whatever the text.
MAX_WORD_CHARS = 64

# An upper-case run not followed by lower case (an acronym: HTTP in HTTPServer), or an
# optional capital followed by lower case (a camelCase part); digits stick to the word
# before them (sha256, utf8, base64), so pure numbers never match.
_WORD = re.compile(r'[A-Z]+[0-9]*(?![a-z])|[A-Z]?[a-z]+[0-9]*')

# Blocks of the scripts written without spaces between words (Han, Hiragana, Katakana,
# Hangul syllables, CJK compatibility ideographs, half-width Katakana; planes 2 and 3 hold
# only CJK ideographs). A run of them is cut into overlapping character pairs, as
# Lucene's CJKAnalyzer does: no dictionary is needed, a query's pairs are found inside
# longer runs (日本語 in 日本語のテキスト), and a pair of Han characters is usually a word
# or part of one. Korean writes spaces, but particles stick to the word (한국어는), so
# its syllables are paired too. Thai, Lao, Khmer and Burmese, also written without
# spaces, are not paired: each run is one term (exact phrases match, parts do not).
_CJK_BLOCKS = ((0x3005, 0x3006), (0x303B, 0x303C), (0x3040, 0x30FF), (0x31F0, 0x31FF), (0x3400, 0x4DBF),
               (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xF900, 0xFAFF), (0xFF66, 0xFF9F), (0x20000, 0x3FFFF))
# Code points not looked up one at a time when the classes are built (that would take
# 0.2 s): ranges of letters of the CJK blocks above ('C'), or of no letters at all
# (surrogates, private use, unassigned planes; None).
_UNSCANNED = ((0x4E00, 0x9FFF, 'C'), (0xAC00, 0xD7A3, 'C'), (0xD800, 0xF8FF, None), (0x20000, 0x3FFFF, 'C'),
              (0x40000, 0xE00FF, None), (0xE01F0, sys.maxunicode, None))


class _UnicodeWords(NamedTuple):
    words: re.Pattern      # _WORD for letters of any script
    cjk: re.Pattern        # a character of a run to cut into pairs


def _char_class(ranges: list[tuple[int, int]]) -> str:
    return ''.join(f'\\U{a:08x}' if a == b else f'\\U{a:08x}-\\U{b:08x}' for a, b in ranges)


@functools.lru_cache(maxsize=None)
def _unicode_words() -> _UnicodeWords:
    """The tokenizer's patterns for text that is not ASCII, built on first use (about
    0.05 s: ``re`` has no Unicode category classes, so they are collected from
    :mod:`unicodedata`; ASCII-only text never pays for it)."""
    classes: dict[str, list[tuple[int, int]]] = {k: [] for k in 'ULMOCXY'}

    def add(kind: str, lo: int, hi: int) -> None:
        got = classes[kind]
        if got and got[-1][1] == lo - 1:
            got[-1] = (got[-1][0], hi)
        else:
            got.append((lo, hi))

    def kind_of(cp: int) -> str | None:
        cat = unicodedata.category(chr(cp))
        if cat[0] not in 'LM':
            return None
        if any(lo <= cp <= hi for lo, hi in _CJK_BLOCKS):
            return 'C'
        if cp > 0xFFFF:
            return 'Y' if cat[0] == 'M' else 'X'
        return {'Lu': 'U', 'Lt': 'U', 'Ll': 'L'}.get(cat, 'M' if cat[0] == 'M' else 'O')

    start = 0
    for lo, hi, kind in _UNSCANNED:
        for cp in range(start, lo):
            k = kind_of(cp)
            if k:
                add(k, cp, cp)
        if kind:
            add(kind, lo, hi)
        start = hi + 1
    u, low, m, o, c, x, y = (_char_class(classes[k]) for k in 'ULMOCXY')
    # _WORD with [A-Z] -> upper and title case, [a-z] -> lower case, each letter followed
    # by its combining marks: on ASCII text it finds exactly what _WORD finds. Letters of
    # scripts without case (Arabic, Hebrew, Devanagari, ...) make words of their own.
    # The classes hold the BMP only: ``re`` tests a character against a BMP class with a
    # table lookup, but against the ranges above it one by one (the word pattern got 10
    # times slower with them). Letters beyond the BMP (historic scripts, Adlam, Osage;
    # NFKC already made mathematical letters plain ones) come last, behind one range test.
    words = re.compile(f'(?:[{u}][{m}]*)+[0-9]*(?![{low}{m}])|(?:[{u}][{m}]*)?(?:[{low}][{m}]*)+[0-9]*'
                       f'|(?:[{o}][{m}]*)+[0-9]*|[{c}]+'
                       f'|(?=[\\U00010000-\\U0010ffff])(?:[{x}][{y}{m}]*)+[0-9]*')
    return _UnicodeWords(words, re.compile(f'[{c}]'))


def _words(text: str) -> list[str]:
    """The raw words of a text (before case folding, stop words and stems)."""
    if text.isascii():
        return _WORD.findall(text)
    return _unicode_words().words.findall(unicodedata.normalize('NFKC', text))


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


_TERMS_OF: dict[str, tuple[str, ...]] = {}   # raw word (any case) -> its terms (none when dropped)


def _terms(raw: str) -> tuple[str, ...]:
    if not raw.isascii() and _unicode_words().cjk.match(raw):
        terms = tuple(raw[i:i + 2] for i in range(len(raw) - 1)) or (raw,)
    else:
        # casefold is lower() on ASCII; beyond it, Straße and STRASSE meet.
        low = raw[:MAX_WORD_CHARS].casefold()
        terms = () if len(low) < 2 or low in STOP_WORDS else (stem(low),)
    # (a long word is not kept as a key: the cache's size stays bounded in bytes too)
    if len(_TERMS_OF) < _STEM_CACHE_MAX and len(raw) <= MAX_WORD_CHARS:
        _TERMS_OF[raw] = terms
    return terms


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
    >>> term_counts('Größe der Straße: 日本語')
    {'gröss': 1, 'der': 1, 'strass': 1, '日本': 1, '本語': 1}
    """
    if not text:
        return {}
    if max_chars is not None:
        text = text[:max_chars]
    out: dict[str, int] = {}
    # Counting raw words first (in C) means the per-word Python work is done once per
    # distinct word of the text, not once per occurrence.
    for raw, n in Counter(_words(text)).items():
        terms = _TERMS_OF.get(raw)
        if terms is None:
            terms = _terms(raw)
        for term in terms:
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
        for raw in _words(p):
            terms.extend(_terms(raw))
    return terms


def _ends_path(path: str) -> str:
    if not path.endswith('.npy'):
        raise ValueError(f'a list of strings is saved as a .npy file: got {path!r}; pass a name ending in .npy')
    return path[:-len('.npy')] + '-ends.npy'


def save_strings(path: str, strings: Sequence[str]) -> None:
    """Save a list of strings (a vocabulary, document ids) as two arrays: ``path`` holds
    their UTF-8 bytes one after the other (uint8), ``<name>-ends.npy`` where each ends
    (int32; int64 past 2 GiB). ``np.array(strings, dtype=str)`` would pad every string to
    the longest one, 4 bytes a character: one long path or word made the whole file
    hundreds of times larger. Any Python string round-trips, a file name's surrogate
    escapes included.

    Example
    -------
    >>> save_strings('/tmp/terms-doc.npy', ['gzip', 'caf\u00e9', ''])
    >>> load_strings('/tmp/terms-doc.npy')
    ['gzip', 'café', '']
    """
    encoded = [s.encode('utf-8', 'surrogatepass') for s in strings]
    ends = np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), dtype=np.int64)
    np.save(path, np.frombuffer(b''.join(encoded), np.uint8))
    # (int32 while it fits: most terms are shorter than their end's 8 bytes)
    np.save(_ends_path(path), ends.astype(np.int32) if len(ends) and ends[-1] < 2**31 else ends)


def load_strings(path: str) -> list[str]:
    """The list of strings that ``save_strings`` saved at ``path``.

    Example
    -------
    >>> load_strings('/tmp/terms-doc.npy')  # doctest: +SKIP
    ['gzip', 'café', '']
    """
    data = np.load(path)
    if data.dtype != np.uint8:
        raise ValueError(f'{path} holds a {data.dtype} array, not the UTF-8 bytes of a list of strings '
                         f'(written by another version?): write it again with save_strings')
    raw = data.tobytes()
    ends = np.load(_ends_path(path)).tolist()
    starts = [0, *ends[:-1]]
    return [raw[a:b].decode('utf-8', 'surrogatepass') for a, b in zip(starts, ends)]
