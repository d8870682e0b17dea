"""Jina 2's ``Document.convert_*`` helpers: moving content between buffer, blob, text and uri.

Mixed into ``Document``. The image helpers of Jina 2 (``convert_image_*``) need Pillow,
which this project does not depend on; they raise an error that says so.

Example
-------
>>> from runtime import Document
>>> d = Document(text='hello', mime_type='text/plain'); d.convert_text_to_uri()
>>> d.uri
'data:text/plain;charset=utf-8,hello'
>>> d.convert_uri_to_text(); d.text
'hello'
"""
from __future__ import annotations

import base64 as _b64
import os
import urllib.parse
from typing import Any

import numpy as np

__all__ = ['ConvertMixin', 'to_datauri']


def _is_datauri(uri: str) -> bool:
    return uri.startswith('data:')


def to_datauri(mime_type: str, data: bytes | str, charset: str = 'utf-8', base64: bool = False,
               binary: bool = True) -> str:
    """A ``data:`` URI of ``data`` (RFC 2397).

    ``binary``: ``data`` is bytes (else a str, encoded with ``charset``); ``base64``: encode
    the bytes as base64 (else percent-encode them).

    >>> to_datauri('text/plain', 'a b', binary=False)
    'data:text/plain;charset=utf-8,a%20b'
    >>> to_datauri('application/octet-stream', b'\\x00', base64=True)
    'data:application/octet-stream;charset=utf-8;base64,AA=='
    """
    raw = data if binary else data.encode(charset)
    parts = [f'data:{mime_type}', f'charset={charset}']
    if base64:
        parts.append('base64')
        body = _b64.b64encode(raw).decode('ascii')
    else:
        body = urllib.parse.quote_from_bytes(raw)
    return ';'.join(parts) + ',' + body


def _read_uri(uri: str) -> bytes:
    """The bytes a ``data:`` URI holds, a local file's bytes, or an http(s) download."""
    if not uri:
        raise ValueError('Document.uri is empty: set uri to a file path, a data: URI or an http(s) URL first')
    if _is_datauri(uri):
        head, sep, body = uri.partition(',')
        if not sep:
            raise ValueError(f'malformed data URI (no comma): {uri[:60]!r}')
        if head.endswith(';base64'):
            return _b64.b64decode(body)
        return urllib.parse.unquote_to_bytes(body)
    scheme = urllib.parse.urlparse(uri).scheme
    if scheme in ('http', 'https'):
        from urllib.request import Request, urlopen  # (here: ~15 ms of imports every process would pay)
        req = Request(uri, headers={'User-Agent': 'Mozilla/5.0'})
        with urlopen(req) as fp:  # noqa: S310 - the user's own URI
            return fp.read()
    path = uri[len('file://'):] if scheme == 'file' else uri
    if os.path.exists(path):
        with open(path, 'rb') as fp:
            return fp.read()
    raise FileNotFoundError(f'{uri!r} is neither a data: URI, an http(s) URL nor an existing local path')


def _no_pillow(name: str) -> None:
    raise NotImplementedError(f'Document.{name} needs an image library (Pillow), which shmflow does not '
                              f'depend on; decode the image yourself and set doc.blob = np.asarray(image)')


class ConvertMixin:
    """The ``convert_*`` methods of ``Document`` (Jina 2.0 names and defaults)."""

    __slots__ = ()

    def convert_buffer_to_blob(self, dtype: Any = None, count: int = -1, offset: int = 0) -> None:
        """``blob = np.frombuffer(buffer, dtype, count, offset)`` (a 1-d array: a buffer
        holds no shape); dtype defaults to float64 as in numpy."""
        if self.buffer is None:
            raise ValueError('Document.buffer is not set: nothing to convert to a blob')
        self.blob = np.frombuffer(self.buffer, dtype=float if dtype is None else dtype, count=count, offset=offset)

    def convert_blob_to_buffer(self) -> None:
        """``buffer = blob.tobytes()`` (dtype and shape are not kept)."""
        if self.blob is None:
            raise ValueError('Document.blob is not set: nothing to convert to a buffer')
        self.buffer = self.blob.tobytes()

    def convert_uri_to_buffer(self) -> None:
        """Read what ``uri`` points to (a local file, a data URI, an http(s) URL) into
        ``buffer``."""
        self.buffer = _read_uri(self.uri)

    def convert_uri_to_datauri(self, charset: str = 'utf-8', base64: bool = False) -> None:
        """Replace ``uri`` by a data URI of what it points to (unless it is one already)."""
        if not _is_datauri(self.uri):
            data = _read_uri(self.uri)
            self.uri = to_datauri(self.mime_type or 'application/octet-stream', data, charset, base64, binary=True)

    def convert_buffer_to_uri(self, charset: str = 'utf-8', base64: bool = False) -> None:
        """Set ``uri`` to a data URI of ``buffer``; needs ``mime_type``."""
        if not self.mime_type:
            raise ValueError('Document.mime_type is not set: set it (e.g. "image/png") before convert_buffer_to_uri')
        if self.buffer is None:
            raise ValueError('Document.buffer is not set: nothing to convert to a URI')
        self.uri = to_datauri(self.mime_type, self.buffer, charset, base64, binary=True)

    def convert_text_to_uri(self, charset: str = 'utf-8', base64: bool = False) -> None:
        """Set ``uri`` to a data URI of ``text``."""
        if self.text is None:
            raise ValueError('Document.text is not set: nothing to convert to a URI')
        self.uri = to_datauri(self.mime_type or 'text/plain', self.text, charset, base64, binary=False)

    def convert_uri_to_text(self, charset: str = 'utf-8') -> None:
        """Read what ``uri`` points to as text (decoded with ``charset``) into ``text``."""
        self.text = _read_uri(self.uri).decode(charset)

    def convert_content_to_uri(self) -> None:
        """``convert_text_to_uri`` or ``convert_buffer_to_uri``, whichever content is set."""
        if self.text:
            self.convert_text_to_uri()
        elif self.buffer:
            self.convert_buffer_to_uri()
        elif self.content_type:
            raise NotImplementedError(f'cannot convert a {self.content_type} to a URI; use convert_blob_to_buffer '
                                      f'first')

    def convert_image_buffer_to_blob(self, *args: Any, **kwargs: Any) -> None:
        """Not available (needs Pillow); raises NotImplementedError."""
        _no_pillow('convert_image_buffer_to_blob')

    def convert_image_blob_to_uri(self, *args: Any, **kwargs: Any) -> None:
        """Not available (needs Pillow); raises NotImplementedError."""
        _no_pillow('convert_image_blob_to_uri')

    def convert_image_uri_to_blob(self, *args: Any, **kwargs: Any) -> None:
        """Not available (needs Pillow); raises NotImplementedError."""
        _no_pillow('convert_image_uri_to_blob')

    def convert_image_datauri_to_blob(self, *args: Any, **kwargs: Any) -> None:
        """Not available (needs Pillow); raises NotImplementedError."""
        _no_pillow('convert_image_datauri_to_blob')
