"""HashingTextEncoder: text -> a fixed-size, L2-normalised embedding by feature hashing.

No model, no vocabulary, no download: every feature (a word, a word pair, a character
n-gram of a word) is hashed into one of ``dim`` buckets with a sign, weighted by its
sublinear term frequency ``1 + log(tf)``. Similar texts share features, so their vectors
have a large dot product; it is a bag-of-words retriever, not a semantic model.

How text becomes features (tuned on source code, fine for prose):

- *Identifiers* are runs of letters, digits and ``_`` (non-ASCII bytes count as letters).
  Each is split into lower-cased *words* at ``_`` and camelCase boundaries
  (``ThreadPoolExecutor`` -> thread, pool, executor; ``HTTPServer`` -> http, server).
  Words of one character, pure numbers and stop words (Python keywords, ``self``, common
  English words) are dropped.
- Feature families: words; the whole identifier when it has several words
  (``parse_args``); pairs of consecutive words (``thread pool``, ``pool executor``);
  character n-grams of each word (``parser`` shares ``pars`` with ``parse``), a cheap
  substitute for stemming. Each family is normalised on its own and weighted
  (``family_weights``), so the many n-grams do not drown the words.

Everything is vectorised over the whole request: the text is one ``uint8`` array, word
boundaries are boolean masks, and the hash of any substring comes from a prefix array of
a polynomial hash in ``uint64`` arithmetic (``(H[e] - H[s]) * P**-s``, exact modulo
2**64), mixed with the splitmix64 finaliser. The hash is fixed by this file (no salt, no
dependence on the Python build or the process), so the same text gives the same vector
everywhere.

Example
-------
>>> from runtime import Document, DocumentArray
>>> enc = HashingTextEncoder(dim=64)
>>> docs = DocumentArray([Document(text='read a gzip file'), Document(text='')])
>>> enc.encode(docs, {})
>>> docs.embeddings.shape, float(np.linalg.norm(docs[0].embedding)).__round__(3)
((2, 64), 1.0)
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from runtime import DocumentArray, Executor, requests

__all__ = ['HashingTextEncoder', 'hash_features']

logger = logging.getLogger(__name__)

_U64 = np.uint64
_P = 0x100000001B3                 # odd multiplier of the polynomial hash (the FNV-1a 64 prime)
_P_INV = pow(_P, -1, 1 << 64)      # exists because _P is odd: substring hashes need it
_MASK40 = (1 << 40) - 1            # feature identity kept when counting term frequencies
# Salts keep the families apart: the word 'pool' and the 4-gram 'pool' are different features.
_SALT_WORD, _SALT_IDENT, _SALT_PAIR, _SALT_CHAR = (_U64(0x9E3779B97F4A7C15), _U64(0xC2B2AE3D27D4EB4F),
                                                    _U64(0x165667B19E3779F9), _U64(0xD6E8FEB86659FD93))
FAMILIES = ('words', 'identifiers', 'pairs', 'chars')

#: Dropped as words (their n-grams too): Python keywords and a few builtins that are in
#: almost every passage of code, and the commonest English function words.
STOP_WORDS = frozenset('''
and as assert async await break class continue def del elif else except finally for from
global if import in is lambda nonlocal not or pass raise return try while with yield
self cls none true false
a an the of to on at by be are was were this that these those it its or if into than then
there their we you your our can may will would should could has have had do does did not no
so such but also any all some each other only just more most very via per
'''.split())

# Byte classes (ASCII; every byte >= 0x80, i.e. any non-ASCII utf-8 byte, counts as a letter).
_LOWER_TABLE = np.arange(256, dtype=np.uint8)
_LOWER_TABLE[ord('A'):ord('Z') + 1] += 32
_IS_UPPER = np.zeros(256, bool)
_IS_UPPER[ord('A'):ord('Z') + 1] = True
_IS_ALNUM = np.zeros(256, bool)        # the characters of a word
_IS_ALNUM[ord('a'):ord('z') + 1] = _IS_ALNUM[ord('A'):ord('Z') + 1] = True
_IS_ALNUM[ord('0'):ord('9') + 1] = True
_IS_ALNUM[0x80:] = True
_IS_DIGIT = np.zeros(256, bool)
_IS_DIGIT[ord('0'):ord('9') + 1] = True
_IS_IDENT = _IS_ALNUM.copy()           # the characters of an identifier: words joined by '_'
_IS_IDENT[ord('_')] = True


_POWERS: dict[int, np.ndarray] = {}


def _powers(base: int, n: int) -> np.ndarray:
    """``base ** i`` modulo 2**64 for i in [0, n), as uint64 (integer multiplication in
    numpy wraps, which is exactly arithmetic modulo 2**64). Cached and grown by doubling:
    every request needs them, and they never change."""
    have = _POWERS.get(base)
    if have is None or len(have) < n:
        size = max(n, 2 * len(have) if have is not None else 1 << 16)
        have = np.full(size, base, dtype=_U64)
        have[0] = 1
        have = np.cumprod(have, dtype=_U64)
        _POWERS[base] = have
    return have[:n]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads the bits of the polynomial hash over all 64."""
    x = x ^ (x >> _U64(30))
    x = x * _U64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> _U64(27))
    x = x * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _word_hashes(words: Sequence[str]) -> np.ndarray:
    """The raw (unsalted, unmixed) hash of each lower-case word, as hash_features computes
    it for the words of a text: stop words are compared on it."""
    if not words:
        return np.zeros(0, _U64)
    text = '\n'.join(words).encode()
    b = np.frombuffer(text, np.uint8)
    starts = np.array([0] + [i + 1 for i, c in enumerate(text) if c == ord('\n')], np.int64)
    ends = np.append(starts[1:] - 1, len(b))
    h = _prefix_hash(b)
    return _substring_hash(h, starts, ends)


def _prefix_hash(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, P**-i): H[i] is the polynomial hash of b[:i] (H has len(b) + 1 entries)."""
    n = len(b)
    h = np.zeros(n + 1, _U64)
    # The +1 makes every byte count (a 0 byte would otherwise hash like no byte at all).
    np.cumsum((b.astype(_U64) + _U64(1)) * _powers(_P, n), dtype=_U64, out=h[1:])
    return h, _powers(_P_INV, n + 1)


def _substring_hash(hp: tuple[np.ndarray, np.ndarray], starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Hash of b[s:e] for each (s, e): independent of where the substring lies, so equal
    substrings hash equally (length mixed in, so 'ab' and 'ab\\x00' differ too)."""
    h, inv = hp
    raw = (h[ends] - h[starts]) * inv[starts]
    return raw + (ends - starts).astype(_U64) * _U64(0x2545F4914F6CDD1D)


_STOP_HASHES = None


def _stop_hashes() -> np.ndarray:
    global _STOP_HASHES
    if _STOP_HASHES is None:
        _STOP_HASHES = np.unique(_word_hashes(sorted(STOP_WORDS)))
    return _STOP_HASHES


def hash_features(texts: Sequence[str | None], char_ngrams: tuple[int, int] = (4, 5),
                  max_chars: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The hashed features of each text, by family.

    Parameters
    ----------
    texts : sequence of str or None
        None or '' gives no features.
    char_ngrams : (int, int)
        Smallest and largest n of the character n-grams of words; (0, 0) for none.
    max_chars : int, optional
        Only the first ``max_chars`` characters of each text are read.

    Returns
    -------
    dict
        family name -> (doc index per feature (int64), 64-bit feature hash (uint64)), for the
        families in ``FAMILIES``; a feature that occurs k times in a text appears k times.

    Example
    -------
    >>> doc, h = hash_features(['ThreadPoolExecutor.shutdown()'])['words']
    >>> len(h)  # thread, pool, executor, shutdown
    4
    """
    empty = np.zeros(0, np.int64), np.zeros(0, _U64)
    parts = [(t[:max_chars] if max_chars else t) if t else '' for t in texts]
    # One array for the whole request; '\n' between texts so that no word spans two of them.
    blob = '\n'.join(parts).encode('utf-8', 'surrogatepass')
    if not blob.strip():
        return {f: empty for f in FAMILIES}
    b = np.frombuffer(blob, np.uint8)
    n = len(b)
    lens = np.fromiter((len(p.encode('utf-8', 'surrogatepass')) for p in parts), np.int64, len(parts))
    doc_start = np.concatenate(([0], np.cumsum(lens + 1)[:-1]))

    alnum = _IS_ALNUM[b]
    upper = _IS_UPPER[b]
    lower_or_digit = alnum & ~upper
    # A word starts after a non-word byte, at a lower->Upper step (fooBar), and at the last
    # capital of a run followed by a lower-case letter (HTTPServer -> HTTP, Server).
    prev_alnum = np.concatenate(([False], alnum[:-1]))
    start = alnum & ~prev_alnum
    camel = np.zeros(n, bool)
    camel[1:] = upper[1:] & lower_or_digit[:-1]
    camel[1:-1] |= upper[1:-1] & upper[:-2] & lower_or_digit[2:] & ~_IS_DIGIT[b[2:]]
    start |= camel & alnum
    next_start = np.concatenate((start[1:], [True]))
    next_alnum = np.concatenate((alnum[1:], [False]))
    end = alnum & (~next_alnum | next_start)
    w_start = np.flatnonzero(start)
    w_end = np.flatnonzero(end) + 1
    if not len(w_start):
        return {f: empty for f in FAMILIES}

    low = _LOWER_TABLE[b]
    hp = _prefix_hash(low)
    w_hash = _substring_hash(hp, w_start, w_end)
    w_len = w_end - w_start
    keep = (w_len > 1) & ~np.isin(w_hash, _stop_hashes())
    # Pure numbers say little about what code does.
    digit_cum = np.concatenate(([0], np.cumsum(_IS_DIGIT[b])))
    keep &= (digit_cum[w_end] - digit_cum[w_start]) < w_len
    w_start, w_end, w_hash = w_start[keep], w_end[keep], w_hash[keep]
    w_doc = np.searchsorted(doc_start, w_start, side='right') - 1
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {'words': (w_doc, _mix(w_hash ^ _SALT_WORD))}

    # Identifiers made of several words, whole ('parse_args' matches 'parse_args' best).
    ident = _IS_IDENT[b]
    i_start = np.flatnonzero(ident & ~np.concatenate(([False], ident[:-1])))
    i_end = np.flatnonzero(ident & ~np.concatenate((ident[1:], [False]))) + 1
    words_before = np.searchsorted(w_start, i_start)
    words_in = np.searchsorted(w_start, i_end) - words_before
    multi = words_in > 1
    i_start, i_end = i_start[multi], i_end[multi]
    i_doc = np.searchsorted(doc_start, i_start, side='right') - 1
    out['identifiers'] = (i_doc, _mix(_substring_hash(hp, i_start, i_end) ^ _SALT_IDENT))

    # Pairs of consecutive kept words of the same text.
    same = w_doc[1:] == w_doc[:-1]
    pair = w_hash[:-1][same] * _U64(0x9FB21C651E98DF25) + w_hash[1:][same]
    out['pairs'] = (w_doc[1:][same], _mix(pair ^ _SALT_PAIR))

    # Character n-grams inside each kept word.
    lo, hi = char_ngrams
    if lo > 0 and hi >= lo:
        w_len = w_end - w_start
        g_doc, g_hash = [], []
        for k in range(lo, hi + 1):
            # The starts of every k-gram of every word, as one concatenation of ranges
            # [w_start, w_end - k] (no loop over words).
            count = np.maximum(w_len - k + 1, 0)
            total = int(count.sum())
            if not total:
                continue
            first = np.cumsum(count) - count
            s = np.repeat(w_start, count) + (np.arange(total) - np.repeat(first, count))
            g_hash.append(_mix(_substring_hash(hp, s, s + k) ^ _SALT_CHAR))
            g_doc.append(np.repeat(w_doc, count))
        out['chars'] = (np.concatenate(g_doc), np.concatenate(g_hash)) if g_doc else empty
    else:
        out['chars'] = empty
    return out


def _uri_words(uri: str) -> list[str]:
    """The file name (without extension) and folder name of a uri or path."""
    parts = uri.replace('\\', '/').rstrip('/').split('/')
    return [p.rsplit('.', 1)[0] if k == len(parts[-2:]) - 1 else p for k, p in enumerate(parts[-2:])]


class HashingTextEncoder(Executor):
    """Embed ``doc.text`` as an L2-normalised float32 vector of ``dim`` by feature hashing.

    Deterministic (a fixed hash, no salt), stateless and model-free; CPU-bound, so give it
    ``replicas=os.cpu_count()``. A document without text (None or '', or only stop words
    and punctuation) gets a zero vector, which has cosine 0 with everything.

    Parameters
    ----------
    dim : int
        Embedding size (default 768).
    char_ngrams : (int, int)
        Range of n of the character n-grams of words (default (4, 5)); (0, 0) turns them off.
    family_weights : dict, optional
        Weight of each feature family ('words', 'identifiers', 'pairs', 'chars') in the
        final vector (each family's part is L2-normalised before weighting).
    sublinear_tf : bool
        Weight a feature occurring tf times by ``1 + log(tf)`` (default) instead of tf.
    max_chars : int, optional
        Read only the first ``max_chars`` characters of each text.
    uri_weight : float
        Weight of one more family: the words of the file and folder name of ``doc.uri``
        (default 0: text only). For passages of source files a little (0.5) helps: a
        query for 'gzip' prefers passages of ``gzip.py``. Queries have no uri, so their
        words meet both the text and the name of the stored documents.

    Example
    -------
    >>> from runtime import Document, DocumentArray, Flow
    >>> with Flow().add(uses=HashingTextEncoder, uses_with={'dim': 128}, replicas=2) as f:  # doctest: +SKIP
    ...     f.post('/index', DocumentArray([Document(text='hello world')]),
    ...            on_done=lambda r: print(r.docs.embeddings.shape))
    (1, 128)
    """

    DEFAULT_WEIGHTS = {'words': 1.0, 'identifiers': 0.5, 'pairs': 1.0, 'chars': 0.8}

    def __init__(self, dim: int = 768, char_ngrams: Sequence[int] = (4, 5),
                 family_weights: dict[str, float] | None = None, sublinear_tf: bool = True,
                 max_chars: int | None = None, uri_weight: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f'dim must be a positive int, got {dim!r}')
        lo, hi = (int(v) for v in char_ngrams)
        if lo < 0 or (lo > 0 and hi < lo):
            raise ValueError(f'char_ngrams must be (lo, hi) with 1 <= lo <= hi, or (0, 0); got {char_ngrams!r}')
        weights = dict(self.DEFAULT_WEIGHTS)
        if family_weights:
            unknown = set(family_weights) - set(FAMILIES)
            if unknown:
                raise ValueError(f'family_weights keys must be among {FAMILIES}, got {sorted(unknown)}')
            weights.update(family_weights)
        self.dim = dim
        self.char_ngrams = (lo, hi)
        self.family_weights = weights
        self.sublinear_tf = bool(sublinear_tf)
        self.max_chars = max_chars
        self.uri_weight = float(uri_weight)

    @property
    def settings(self) -> dict:
        """Everything that changes the vectors (to tell whether an index is still valid).

        >>> HashingTextEncoder(dim=8).settings['dim']
        8
        """
        return {'encoder': type(self).__name__, 'dim': self.dim, 'char_ngrams': list(self.char_ngrams),
                'family_weights': dict(sorted(self.family_weights.items())), 'sublinear_tf': self.sublinear_tf,
                'max_chars': self.max_chars, 'uri_weight': self.uri_weight, 'version': 1}

    def embed(self, texts: Sequence[str | None], uris: Sequence[str | None] | None = None) -> np.ndarray:
        """The (len(texts), dim) float32 matrix of L2-normalised embeddings.

        Parameters
        ----------
        texts : sequence of str or None
        uris : sequence of str or None, optional
            With ``uri_weight`` > 0: the words of each uri's file name and folder name
            (``concurrent/futures/thread.py`` -> futures, thread) are added as one more
            feature family, matching the same words in queries.

        Returns
        -------
        np.ndarray

        Example
        -------
        >>> HashingTextEncoder(dim=16).embed(['a b', None]).shape
        (2, 16)
        """
        n_docs, dim = len(texts), self.dim
        out = np.zeros((n_docs, dim), np.float32)
        if not n_docs:
            return out
        families = [(self.family_weights.get(name, 0.0), doc, h)
                    for name, (doc, h) in hash_features(texts, self.char_ngrams, self.max_chars).items()]
        if uris is not None and self.uri_weight > 0:
            names = [' '.join(_uri_words(u)) if u else '' for u in uris]
            doc, h = hash_features(names, (0, 0))['words']
            families.append((self.uri_weight, doc, h))
        for weight, doc, h in families:
            if not len(h) or weight == 0:
                continue
            # Count each distinct (text, feature) once: the key is the text in the top 24
            # bits and 40 bits of the feature hash (collisions of 40-bit hashes within one
            # text are negligible), so one sort gives every term frequency.
            key = (doc.astype(_U64) << _U64(40)) | (h & _U64(_MASK40))
            uniq, tf = np.unique(key, return_counts=True)
            udoc = (uniq >> _U64(40)).astype(np.int64)
            feat = uniq & _U64(_MASK40)
            w = (1.0 + np.log(tf)) if self.sublinear_tf else tf.astype(np.float64)
            # Sign hashing: colliding features cancel on average instead of piling up.
            sign = np.where((feat >> _U64(39)) & _U64(1), -1.0, 1.0)
            bucket = (feat % _U64(dim)).astype(np.int64)
            part = np.bincount(udoc * dim + bucket, weights=w * sign, minlength=n_docs * dim).reshape(n_docs, dim)
            norms = np.linalg.norm(part, axis=1, keepdims=True)
            out += (weight * part / np.maximum(norms, 1e-12)).astype(np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out

    @requests
    def encode(self, docs: DocumentArray, parameters: dict, **kwargs: Any) -> None:
        """Set ``docs.embeddings`` (one (N, dim) matrix for the request) from ``docs.texts``.

        Example
        -------
        >>> from runtime import Document, DocumentArray
        >>> docs = DocumentArray([Document(text='hello')])
        >>> HashingTextEncoder(dim=8).encode(docs, {}); docs.embeddings.shape
        (1, 8)
        """
        if len(docs):
            uris = [d.uri for d in docs] if self.uri_weight > 0 else None
            docs.embeddings = self.embed(docs.texts, uris)
