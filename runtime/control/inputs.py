"""What ``post`` accepts as inputs, and turning it into requests of documents."""
from __future__ import annotations

import itertools
import operator
import sys
from collections.abc import Sequence
from itertools import repeat
from operator import is_
from typing import Any, AsyncIterator, Iterable, Iterator

import numpy as np

from ..array import DocumentArray, DocumentSequence
from ..document import Document
from ..errors import BadInputError

__all__ = ['batches', 'batched', 'abatches', 'atake', 'describe', 'bad_input', 'is_async_input', 'runs_no_user_code']


def describe(obj: Any) -> str:
    text = repr(obj)
    return f'{type(obj).__name__} {text[:60] + "..." if len(text) > 60 else text}'


def bad_input(obj: Any, where: str = 'inputs') -> BadInputError:
    hint = ''
    if isinstance(obj, np.ndarray):
        hint = ' (an array of one value is no input: give its rows, or runtime.generators.from_ndarray(array))'
    elif isinstance(obj, (str, bytes)):
        hint = (' (one text is no sequence of inputs: pass [text], or Document(text=...); for files use '
                'runtime.generators.from_files)')
    elif isinstance(obj, dict):
        hint = ' (for a dict of fields use [the_dict] or Document(the_dict), which names what it cannot take)'
    return BadInputError(f'{where} got {describe(obj)}; pass a Document, a DocumentArray, a '
                         f'DocumentArrayMemmap, an iterable or generator of Documents (or of text, bytes, '
                         f'arrays or dicts of fields, each made a Document), a generator function, or None{hint}')


def is_async_input(inputs: Any) -> bool:
    """Whether ``inputs`` is read with ``async for`` (an async generator or iterable): only
    the asyncio API (``AsyncFlow``, ``AsyncClient``) can read it, on its event loop.

    >>> async def gen():
    ...     yield Document()
    >>> is_async_input(gen()), is_async_input(iter([Document()]))
    (True, False)
    """
    return hasattr(type(inputs), '__aiter__')


def async_input_error(inputs: Any) -> BadInputError:
    """The error of a synchronous post (``Flow.post``, ``Client.post``) given an async input."""
    return BadInputError(f'inputs got {describe(inputs)}, an async generator or iterable, which a synchronous '
                         f'post cannot read (it has no event loop to run it on); post it from a coroutine with '
                         f'AsyncFlow (`async for resp in AsyncFlow().add(...).post(on, inputs)`) or AsyncClient, '
                         f'or pass a synchronous generator')


def _is_pair(item: Any) -> bool:
    return (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Document)
            and isinstance(item[1], Document))


def _wrapped(item: Any, i: int) -> Any:
    """Input item #``i`` as Jina 2's client read it (``data_type=AUTO``): a Document as it
    is; a dict as a Document's fields; text, bytes and arrays as a Document's content
    (``text``, ``buffer``, ``blob``); a pair of those as a (Document, groundtruth) pair.
    Anything else is returned as it is (and refused). Unlike Jina 2, text is always text: a
    line that happens to hold a JSON object is not read as fields (Jina 2 did, depending on
    the request's first item), which would lose the text without a word."""
    if isinstance(item, Document):
        return item
    if isinstance(item, tuple) and len(item) == 2:
        pair = (_wrapped(item[0], i), _wrapped(item[1], i))
        return pair if all(isinstance(d, Document) for d in pair) else item
    if isinstance(item, dict):
        try:
            return Document(item)
        except Exception as exc:  # noqa: BLE001 - any field it cannot take: refused, saying why
            raise BadInputError(f'inputs item #{i}: a dict of Document fields that a Document cannot take: '
                                f'{type(exc).__name__}: {exc}') from None
    if isinstance(item, str):
        return Document(content=str(item))  # (a numpy str_ too: as a str)
    if isinstance(item, (bytes, np.ndarray)):
        return Document(content=item)
    return item


def _check_items(items: list | tuple, start: int, pairs: bool | None) -> tuple[bool | None, list | tuple]:
    """Raise BadInputError at the first item (numbered from ``start``) that is not a
    Document, or, in inputs of (Document, groundtruth Document) pairs, not a pair. Whether
    the inputs are pairs is decided by their first item: ``pairs`` is what earlier items
    decided (None before the first); returns it for the items after these, and the items:
    those given, or (where some were raw content, as Jina 2's client took it: text, a dict
    of fields, bytes, an array) a copy with those wrapped in Documents (``_wrapped``)."""
    if pairs is not True and all(map(is_, map(type, items), repeat(Document))):
        return (False if items else pairs), items  # the common case, checked at C speed
    items = [_wrapped(d, i) for i, d in enumerate(items, start)]
    for i, d in enumerate(items, start):
        if pairs is False and type(d) is Document:
            continue
        pair = _is_pair(d)
        if pairs is None:
            pairs = pair
        if not (pair if pairs else isinstance(d, Document)):
            if pairs or pair:
                raise BadInputError(f'inputs item #{i} is {describe(d)}; give either Documents or '
                                    f'(Document, groundtruth Document) pairs, not both')
            raise bad_input(d, f'inputs item #{i}')
    return pairs, items


_NO_PAIRS = '(Document, groundtruth) pairs are taken by Flow.post only; send the Documents'


def batches(inputs: Any, size: int) -> Iterator[DocumentArray]:
    """``batched`` for senders that take no groundtruths (the HTTP Client)."""
    for docs, truths in batched(inputs, size):
        if truths is not None:
            raise BadInputError(_NO_PAIRS)
        yield docs


async def abatches(inputs: Any, size: int) -> AsyncIterator[DocumentArray]:
    """``batches`` for senders on an event loop (``AsyncClient``): an async generator or
    iterable, or a function that returns one, is read with ``await``, one request's worth
    each time the next request is asked for, and closed (``aclose``) when this generator is;
    any other input is read as ``batches`` reads it.

    Example
    -------
    >>> async def rows():
    ...     for i in range(5):
    ...         yield Document(text=str(i))
    >>> [len(docs) async for docs in abatches(rows, 2)]  # doctest: +SKIP
    [2, 2, 1]
    """
    size = operator.index(size)
    if callable(inputs) and not isinstance(inputs, DocumentSequence):
        inputs = inputs()  # (as _batches does; called here to see whether it gave an async generator)
    if not is_async_input(inputs):
        for docs in batches(inputs, size):
            yield docs
        return
    it = inputs.__aiter__()
    try:
        pairs, done = None, 0
        while True:
            chunk, pairs, more = await _atake_checked(it, min(size, sys.maxsize), done, pairs)
            if pairs:
                raise BadInputError(_NO_PAIRS)
            if chunk:  # (one that yields nothing sends nothing, as _batches does a generator)
                done += len(chunk)
                yield DocumentArray._from_list(chunk)
            if not more:
                return
    finally:
        aclose = getattr(it, 'aclose', None)
        if aclose is not None:
            await aclose()


async def atake(it: AsyncIterator, n: int) -> tuple[list, bool]:
    """Up to ``n`` items of ``it``, and whether it may hold more (False once it ended).

    >>> await atake(rows(), 2)  # doctest: +SKIP
    ([Document(...), Document(...)], True)
    """
    items: list = []
    next_item = it.__anext__
    while len(items) < n:
        try:
            items.append(await next_item())
        except StopAsyncIteration:
            return items, False
    return items, True


async def _atake_checked(it: AsyncIterator, size: int, start: int,
                         pairs: bool | None) -> tuple[list, bool | None, bool]:
    """``_take_checked`` of an async iterator: (items, the new ``pairs``, whether it may hold more)."""
    chunk: list = []
    more = True
    while more and len(chunk) < size:
        piece, more = await atake(it, min(size - len(chunk), _CHECK_EVERY))
        pairs, checked = _check_items(piece, start + len(chunk), pairs)
        chunk += checked
    return chunk, pairs, more


def runs_no_user_code(inputs: Any) -> bool:
    """Whether reading ``inputs`` runs none of the caller's code: documents in memory or
    in a store, not a generator or a function. A post reads only such inputs ahead of the
    window; a generator may wait for a result (a producer that paces itself by on_done)
    and must not be asked for more before the window has room.

    >>> runs_no_user_code([Document()]), runs_no_user_code(iter([Document()]))
    (True, False)
    """
    return inputs is None or isinstance(inputs, (Document, DocumentSequence, list, tuple))


def batched(inputs: Any, size: int) -> Iterator[tuple[DocumentArray, DocumentArray | None]]:
    """(documents, their groundtruths or None) in requests of ``size``: inputs of
    (Document, groundtruth Document) pairs, as Jina 2 took them for evaluation, give
    handlers a ``groundtruths`` argument.

    Example
    -------
    >>> next(batched([(Document(text='q'), Document(text='truth'))], 10))[1][0].text
    'truth'
    """
    if isinstance(inputs, Document):  # one query: what the general path does, minus its cost
        return iter(((DocumentArray._from_list([inputs]), None),))
    return _batched(inputs, operator.index(size))  # (a numpy integer size: a plain int from here on)


def _batched(inputs: Any, size: int) -> Iterator[tuple[DocumentArray, DocumentArray | None]]:
    for docs in _batches(inputs, size):
        if len(docs._docs) and isinstance(docs._docs[0], tuple):
            yield (DocumentArray._from_list([p[0] for p in docs._docs]),
                   DocumentArray._from_list([p[1] for p in docs._docs]))
        else:
            yield docs, None


def _batches(inputs: Any, size: int) -> Iterator[DocumentArray]:
    """Split any accepted input form into DocumentArrays of ``size`` documents.

    None, or an empty list, tuple or DocumentArray (or a function that returns one), makes
    one request with no documents, as in Jina 2: a parameters-only post reaches the
    executors. A generator or other iterable that yields nothing makes no request at all:
    Jina 2's batching stopped at its first empty chunk, so a glob that matched no file (or
    a CSV with only its header) runs no handler and no callback.
    Lists are checked whole before anything is sent, so a bad item never leaves a post
    half-sent; generators are checked as they are consumed.
    """
    if callable(inputs) and not isinstance(inputs, (Document, DocumentSequence)):
        inputs = inputs()  # (here, lazily: the function runs when the post reads its input)
    empty = True
    for batch in _split(inputs, size):
        empty = False
        yield batch
    # (Sequence: what Jina 2's batch_iterator sent whole when it was short, even empty.)
    if empty and (inputs is None or isinstance(inputs, (Sequence, DocumentSequence, np.ndarray))):
        yield DocumentArray()


def _split(inputs: Any, size: int) -> Iterator[DocumentArray]:
    if inputs is None:
        return
    if isinstance(inputs, Document):
        inputs = [inputs]
    if isinstance(inputs, DocumentArray):
        docs = inputs._docs
        emb, rows = inputs._emb, inputs._emb_rows
        for i in range(0, len(docs), size):
            batch = DocumentArray._from_list(docs[i:i + size])
            if emb is not None and rows is not None:
                # Columnar: the batch's matrix is a slice, not a stack. Whether its rows are
                # still its documents' embeddings is asked of each batch when it is encoded
                # (a callback may replace some meanwhile); not of the whole array here,
                # which would stack it all when they are not (and refuse shapes that differ).
                batch._emb, batch._emb_rows = emb[i:i + size], rows[i:i + size]
            yield batch
        return
    if is_async_input(inputs):
        raise async_input_error(inputs)
    # (An array is its rows, each a Document's blob, as Jina 2's client read it; one str,
    # bytes or dict is no sequence of inputs: its characters or keys would be.)
    if isinstance(inputs, (str, bytes, dict, int, float, complex, bool)) \
            or (isinstance(inputs, np.ndarray) and inputs.ndim == 0) or not isinstance(inputs, Iterable):
        raise bad_input(inputs)
    # A tuple is a sequence of inputs like a list, whatever its length: a tuple of two
    # Documents is two documents (as Jina 2 read it), a pair is an item: [(doc, truth)].
    if isinstance(inputs, (list, tuple)):
        yield from _chunks(iter(_check_items(inputs, 0, None)[1]), size, check=False)
    else:
        yield from _chunks(iter(inputs), size, check=not isinstance(inputs, DocumentSequence))


#: A generator's items are checked at least every this many, whatever the request size:
#: a generator of wrong items must fail soon, not after it filled a huge request.
_CHECK_EVERY = 1024


def _chunks(it: Iterator, size: int, check: bool) -> Iterator[DocumentArray]:
    # A request's items are taken with one C-level islice and checked together (at C speed
    # when they are all Documents), not one by one through a checking generator: ~100 ns
    # a document less, which a generator of 768-d documents feels.
    size = min(size, sys.maxsize)  # islice takes no larger stop; no list is that long anyway
    pairs, done = None, 0
    while True:
        if check:
            chunk, pairs = _take_checked(it, size, done, pairs)
        else:
            chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        done += len(chunk)
        yield DocumentArray._from_list(chunk)


def _take_checked(it: Iterator, size: int, start: int, pairs: bool | None) -> tuple[list, bool | None]:
    """Up to ``size`` items, checked ``_CHECK_EVERY`` at a time; and the new ``pairs``."""
    chunk: list = []
    while len(chunk) < size:
        want = min(size - len(chunk), _CHECK_EVERY)
        piece = list(itertools.islice(it, want))
        pairs, checked = _check_items(piece, start + len(chunk), pairs)
        chunk += checked
        if len(piece) < want:  # the input is exhausted
            break
    return chunk, pairs
