"""Jina 2's names on DocumentArrayMemmap that differ from DocumentArray's.

Jina 2.0.24's DocumentArrayMemmap had ``save()`` with no argument (persist to disk; Jina 2
indexers call ``self._docs.save()`` in ``close()``), ``get_doc_by_key(id)`` and
``physical_size``. Its ``key_length`` / ``buffer_pool_size`` options are refused here,
saying why nothing replaces them.
"""
from __future__ import annotations

import os
from typing import Any

from .array_io import PathOrFile, SaveMixin
from .document import Document
from .store.format import META

__all__ = ['Jina2MemmapMixin', 'refuse_options']


class Jina2MemmapMixin:
    """``save`` (with or without a file), ``get_doc_by_key`` and ``physical_size``, put
    before ``DocumentSequence`` in ``DocumentArrayMemmap``'s bases."""

    __slots__ = ()

    def save(self, file: PathOrFile | None = None, file_format: str = 'json') -> None:
        """``dam.save()``: persist (Jina 2's ``save()``), the same as ``flush()``: every
        append is already on disk, this saves the index too. ``dam.save(file)``: write
        every document to ``file`` as ``DocumentArray.save`` does (``'json'`` or
        ``'binary'``), for ``DocumentArray.load``.

        Examples
        --------
        >>> dam.save()                       # persist, as Jina 2 indexers do in close()
        >>> dam.save('docs.json'); len(DocumentArray.load('docs.json'))
        3
        """
        if file is None:
            if file_format != 'json':
                raise TypeError(f"dam.save(file_format={file_format!r}) writes a file: pass it, "
                                f"dam.save('docs.bin', {file_format!r}); dam.save() alone persists the store")
            self.flush()
            return None
        return SaveMixin.save(self, file, file_format)

    def get_doc_by_key(self, key: str) -> Document:
        """The document with id ``key`` read from disk (Jina 2's name; ``dam[key]`` is the
        same). Raises KeyError when no document has that id.

        Examples
        --------
        >>> dam.get_doc_by_key(dam[0].id).id == dam[0].id
        True
        """
        if not isinstance(key, str):
            raise TypeError(f'get_doc_by_key takes a document id (str), got {type(key).__name__}; '
                            f'use dam[i] for a position')
        return self[key]

    @property
    def physical_size(self) -> int:
        """Bytes the store takes on disk now: its records, embedding matrix, index and
        ``meta.json`` (the files of the current generation; ``prune()`` shrinks it).

        Examples
        --------
        >>> dam.physical_size > 0
        True
        """
        s = self._s()
        paths = [s.file(kind) for kind in ('records', 'embeddings', 'index')]
        paths.append(os.path.join(s.path, META))
        return sum(os.stat(p).st_size for p in paths if os.path.exists(p))


#: Jina 2's DocumentArrayMemmap options, none needed here -> why, and what to do instead.
_JINA2_OPTIONS = {
    'key_length': 'is not needed: ids of any length are stored as they are; remove it',
    'buffer_pool_size': 'is not needed: there is no buffer pool, every append is on disk when it returns '
                        'and a fetched document is a copy (store a change with dam[doc.id] = doc); remove it',
}


def refuse_options(options: dict[str, Any]) -> None:
    """Raise for the first of ``options`` (keywords ``__init__`` does not take), naming it.

    >>> refuse_options({'key_length': 36})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: DocumentArrayMemmap(key_length=...) is not needed: ids of any length ...
    """
    for name in options:
        why = _JINA2_OPTIONS.get(name)
        if why is not None:
            raise TypeError(f'DocumentArrayMemmap({name}=...) {why}')
        raise TypeError(f'DocumentArrayMemmap() got an unexpected keyword {name!r}; it takes a path and '
                        f'verify=True/False')
