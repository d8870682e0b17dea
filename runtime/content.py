"""A Document's content: one of ``text``, ``blob`` or ``buffer``, and its hash.

Mixed into ``Document`` (``runtime.document``). The three content fields exclude each
other (as in Jina 2): setting one clears the other two, and ``content`` reads or writes
whichever is set, dispatching by type. Conversions between them are in
``runtime.convert``.

Example
-------
>>> from runtime import Document
>>> d = Document(text='hi'); d.blob = [1, 2]; (d.text, d.content_type, d.blob.tolist())
(None, 'blob', [1, 2])
"""
from __future__ import annotations

import hashlib
import os
import urllib.parse
from typing import Any

import numpy as np

from .values import _as_array

__all__ = ['ContentMixin']


class ContentMixin:
    """The ``text`` / ``blob`` / ``buffer`` / ``content`` fields of ``Document``."""

    __slots__ = ()

    @property
    def text(self) -> str | None:
        """Text content (a str), or None. Setting it clears ``blob`` and ``buffer`` and, when
        ``mime_type`` is empty, sets it to 'text/plain' (as Jina 2 did)."""
        return self._text

    @text.setter
    def text(self, value: str | None) -> None:
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f'Document.text must be a str, got {type(value).__name__}; '
                                f'use blob= for arrays and buffer= for bytes')
            self._blob = self._buffer = None
            if not self._mime_type:
                self._mime_type = 'text/plain'
            self._plain = False
        self._text = value

    @property
    def buffer(self) -> bytes | None:
        """Raw bytes content, or None. Setting it clears ``text`` and ``blob``."""
        return self._buffer

    @buffer.setter
    def buffer(self, value: bytes | None) -> None:
        if value is None:
            self._buffer = None
            return
        if type(value) is not bytes:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f'Document.buffer must be bytes, got {type(value).__name__}; '
                                f'use text= for str and blob= for arrays')
            value = bytes(value)
        self._text = self._blob = None
        self._buffer = value
        self._plain = False

    @property
    def blob(self) -> np.ndarray | None:
        """Content as a numpy array (any dtype but object, any shape). Setting it clears
        ``text`` and ``buffer``."""
        return self._blob

    @blob.setter
    def blob(self, value: Any) -> None:
        value = _as_array(value, 'blob')
        if value is not None:
            self._text = self._buffer = None
            self._plain = False
        self._blob = value

    @property
    def content(self) -> str | np.ndarray | bytes | None:
        """Whichever of ``text``, ``blob``, ``buffer`` is set, else None.

        Writing dispatches by type: str -> text, ndarray -> blob, bytes -> buffer; the
        other two are cleared (they exclude each other, as in Jina 2). A str that Jina 2
        took for a URI (an http(s) URL, a data URI, an existing path or a path in a
        writable directory) sets ``uri`` instead, as Jina 2 did.

        >>> from runtime import Document
        >>> d = Document(content=b'\\x00'); (d.buffer, d.text)
        (b'\\x00', None)
        """
        if self._text is not None:
            return self._text
        if self._blob is not None:
            return self._blob
        return self._buffer

    @content.setter
    def content(self, value: str | np.ndarray | bytes | None) -> None:
        if value is None:
            self._text = self._blob = self._buffer = None
        elif isinstance(value, str):
            if _is_uri(value):
                self.uri = value
            else:
                self.text = value
        elif isinstance(value, np.ndarray):
            self.blob = value
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.buffer = value
        else:
            raise TypeError(f'Document.content takes a str (text), a numpy array (blob) or bytes '
                            f'(buffer), got {type(value).__name__}')

    @property
    def content_type(self) -> str | None:
        """'text', 'blob' or 'buffer': which field ``content`` reads, or None."""
        if self._text is not None:
            return 'text'
        if self._blob is not None:
            return 'blob'
        if self._buffer is not None:
            return 'buffer'
        return None

    @property
    def content_hash(self) -> str:
        """A 16-hex-digit hash of the content (its kind, and for blobs dtype and shape
        too), equal for equal content and stable across runs and processes.

        >>> from runtime import Document
        >>> Document(text='a').content_hash == Document(text='a').content_hash
        True
        """
        h = hashlib.blake2b(digest_size=8)
        kind = self.content_type
        h.update((kind or 'none').encode())
        if kind == 'text':
            h.update(self._text.encode('utf-8', 'surrogatepass'))
        elif kind == 'blob':
            blob = self._blob
            h.update(f'{blob.dtype.str}{blob.shape}'.encode())
            if blob.size:
                h.update(np.ascontiguousarray(blob).view(np.uint8).data)
        elif kind == 'buffer':
            h.update(self._buffer)
        return h.hexdigest()


def _is_uri(value: str) -> bool:
    """Whether Jina 2's ``content`` setter took ``value`` for a URI rather than a text."""
    try:
        parsed = urllib.parse.urlparse(value)
        if parsed.scheme in ('http', 'https'):
            return bool(parsed.netloc)
        return parsed.scheme == 'data' or os.path.exists(value) or os.access(os.path.dirname(value), os.W_OK)
    except ValueError:  # (a NUL in it: no path; a malformed URL)
        return False
