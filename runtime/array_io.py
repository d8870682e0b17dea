"""Saving and loading document sequences: JSON lines and a pickle-based binary format.

Mixed into ``DocumentSequence`` (``save``, ``save_json``, ``save_binary``: any sequence of
documents can be saved) and ``DocumentArray`` (``load``, ``load_json``, ``load_binary``:
classmethods that build the class they are called on), both in ``runtime.array``.

Example
-------
>>> import io
>>> from runtime import Document, DocumentArray
>>> f = io.StringIO(); DocumentArray([Document(text='a')]).save(f); _ = f.seek(0)
>>> DocumentArray.load(f).texts
['a']
"""
from __future__ import annotations

import io
import json
import os
import pickle
from typing import IO, Any, Union

import numpy as np

from .columns import _stack
from .document import Document, _rebuild_document
from .fields import INDEX
from .values import _to_jsonable

__all__ = ['SaveMixin', 'LoadMixin']

PathOrFile = Union[str, os.PathLike, IO]
_BINARY_MAGIC = b'SHMFLOW-DA1\n'
_BINARY_VERSION = 1
_EMBEDDING = INDEX['embedding']  # position of the embedding in Document._state()


def _is_text_file(file: Any) -> bool:
    if isinstance(file, io.TextIOBase):
        return True
    if isinstance(file, (io.RawIOBase, io.BufferedIOBase)):
        return False
    mode = getattr(file, 'mode', None)  # wrappers such as tempfile.NamedTemporaryFile
    return isinstance(mode, str) and 'b' not in mode


def _set_embeddings(da: Any, matrix: Any) -> None:
    """Give the documents of ``da`` the rows of the stacked ``matrix`` that save wrote."""
    try:
        da.embeddings = matrix  # columnar: .embeddings is then the matrix itself
    except (TypeError, ValueError):
        # Whatever stacked but is no embedding matrix to DocumentArray (an (N,) vector of
        # scalar embeddings, str or structured dtypes): each document gets its row view,
        # which has the shape and dtype it was saved with.
        if not isinstance(matrix, np.ndarray) or matrix.ndim == 0 or len(matrix) != len(da):
            raise ValueError(f'damaged DocumentArray binary file: {len(da)} documents but an embedding '
                             f'matrix of shape {getattr(matrix, "shape", None)}') from None
        for i, d in enumerate(da):
            d.embedding = matrix[i, ...]


def _join_parts(cls: Any, parts: list[tuple[list, Any]]) -> Any:
    """One ``cls`` of the documents of every (states, embedding matrix or None) save read
    from a binary file, in order. One save, or saves whose matrices stack (same dtype and
    row shape), load columnar; otherwise each save's documents get their rows."""
    docs = [_rebuild_document(s) for states, _ in parts for s in states]
    da = cls._from_list(docs)
    filled = [(states, m) for states, m in parts if states]  # (an empty save adds nothing)
    matrices = [m for _, m in filled]
    if len(filled) <= 1:
        matrix = filled[0][1] if filled else parts[0][1]  # (zero-copy: the matrix as loaded)
    elif all(isinstance(m, np.ndarray) and m.ndim and m.dtype == matrices[0].dtype
             and m.shape[1:] == matrices[0].shape[1:] for m in matrices):
        matrix = np.concatenate(matrices)
    else:
        start = 0
        for states, m in parts:
            if m is not None and states:
                _set_embeddings(cls._from_list(docs[start:start + len(states)]), m)
            start += len(states)
        return da
    if matrix is not None:
        _set_embeddings(da, matrix)
    return da


class SaveMixin:
    """``save`` / ``save_json`` / ``save_binary`` of any sequence of Documents."""

    __slots__ = ()

    def save(self, file: PathOrFile, file_format: str = 'json') -> None:
        """Write every document to ``file`` (a path or an open file).

        ``file_format='json'``: one JSON document per line (arrays as lists with dtype and
        shape, bytes as base64); ``'binary'``: pickle-based and fast (embeddings of equal
        shape and dtype go as one matrix). Both round-trip every field. A binary file is a
        pickle: load only files you trust. Saves made one after the other to one open file
        (``on_always=lambda r: r.docs.save(fp, 'binary')``) load back as one array, in order.

        >>> import numpy as np
        >>> from runtime import DocumentArray
        >>> da = DocumentArray([Document(text='a', embedding=np.zeros(2, np.float16))])
        >>> f = io.BytesIO(); da.save(f, 'binary'); _ = f.seek(0)
        >>> DocumentArray.load(f, 'binary') == da
        True
        """
        if file_format not in ('json', 'binary'):
            raise ValueError(f"file_format must be 'json' or 'binary', got {file_format!r}")
        if isinstance(file, (str, os.PathLike)):
            if file_format == 'json':
                with open(file, 'w', encoding='utf-8') as fp:
                    return self.save(fp, file_format)
            with open(file, 'wb') as fp:
                return self.save(fp, file_format)
        text_mode = _is_text_file(file)
        if file_format == 'json':
            for d in self:
                line = json.dumps(_to_jsonable(d.to_dict())) + '\n'
                file.write(line if text_mode else line.encode())
            return None
        if text_mode:
            raise TypeError("file_format='binary' needs a file opened in binary mode ('wb'), "
                            "got a text-mode file")
        states = [d._state() for d in self]
        try:
            matrix = self.embeddings if hasattr(type(self), 'embeddings') else _stack(self, 'embedding')
        except ValueError:  # mixed shapes or missing ones: each document keeps its own
            matrix = None
        if matrix is not None:
            states = [s[:_EMBEDDING] + (None,) + s[_EMBEDDING + 1:] for s in states]
        file.write(_BINARY_MAGIC)
        pickle.dump((_BINARY_VERSION, states, matrix), file, protocol=5)
        return None

    def save_json(self, file: PathOrFile) -> None:
        """Same as ``save(file, 'json')`` (Jina 2 name)."""
        self.save(file, 'json')

    def save_binary(self, file: PathOrFile) -> None:
        """Same as ``save(file, 'binary')`` (Jina 2 name)."""
        self.save(file, 'binary')


class LoadMixin:
    """``load`` / ``load_json`` / ``load_binary``: classmethods of ``DocumentArray``."""

    __slots__ = ()

    @classmethod
    def load(cls, file: PathOrFile, file_format: str = 'json') -> 'DocumentArray':
        """Read what ``save`` wrote (same ``file_format``), from a path or an open file.
        A binary file written with one embedding matrix loads columnar (zero-copy
        ``.embeddings``). A file that several saves went to, one after the other, loads
        whole: every save's documents, in order (bytes after a save that are not another
        save raise ValueError).

        >>> from runtime import DocumentArray
        >>> f = io.StringIO(); DocumentArray([Document(text='a'), Document(text='b')]).save(f)
        >>> _ = f.seek(0); DocumentArray.load(f).texts
        ['a', 'b']
        """
        if file_format not in ('json', 'binary'):
            raise ValueError(f"file_format must be 'json' or 'binary', got {file_format!r}")
        if isinstance(file, (str, os.PathLike)):
            with open(file, 'rb') as fp:
                return cls.load(fp, file_format)
        if file_format == 'binary':
            return cls._from_binary(file)
        docs = []
        for lineno, line in enumerate(file, 1):
            if isinstance(line, bytes):
                if lineno == 1 and line.startswith(_BINARY_MAGIC):
                    raise ValueError("this is a DocumentArray binary file: pass file_format='binary'")
                line = line.decode('utf-8')
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as exc:
                raise ValueError(f'line {lineno}: not a JSON document ({exc})') from None
            if not isinstance(data, dict):
                raise ValueError(f'line {lineno}: expected a JSON object, got JSON {type(data).__name__}')
            try:
                docs.append(Document(data))
            except (ValueError, TypeError) as exc:
                raise ValueError(f'line {lineno}: not a valid document ({exc})') from None
        return cls._from_list(docs)

    @classmethod
    def _from_binary(cls, file: IO[bytes]) -> 'DocumentArray':
        """Every save in ``file``, in order: a file that ``save(fp, 'binary')`` was called on
        several times (``on_always=lambda r: r.docs.save(fp, 'binary')``, one save per
        request) holds one after the other, and Jina 2's protobuf format read such a file
        back whole (concatenated messages merge), so every one is read here too."""
        parts: list[tuple[list, Any]] = []
        while True:
            head = file.read(len(_BINARY_MAGIC))
            if isinstance(head, str):
                raise TypeError("file_format='binary' needs a file opened in binary mode ('rb')")
            if not parts:
                if head != _BINARY_MAGIC:
                    looks = ' (it looks like JSON lines: pass file_format="json")' if head[:1] == b'{' else ''
                    raise ValueError(f'not a DocumentArray binary file{looks}')
            elif not head:
                break  # the end of the file, right after a save
            elif head != _BINARY_MAGIC:
                # Ignoring them would hand back part of the file as if it were all of it.
                raise ValueError(f'the bytes after save #{len(parts)} of this DocumentArray binary file '
                                 f'({head[:16]!r}...) are not another save: the file holds something else '
                                 f'after what save(fp, "binary") wrote (another writer, or a save cut '
                                 f'short); write each file with save() only')
            try:
                payload = pickle.load(file)
            except (EOFError, pickle.UnpicklingError) as exc:
                raise ValueError(f'damaged DocumentArray binary file: save #{len(parts) + 1} is cut short '
                                 f'or corrupt ({exc})') from None
            if not (isinstance(payload, tuple) and len(payload) == 3 and payload[0] == _BINARY_VERSION):
                raise ValueError('unsupported DocumentArray binary file (written by another version?)')
            parts.append(payload[1:])
        return _join_parts(cls, parts)

    @classmethod
    def load_json(cls, file: PathOrFile) -> 'DocumentArray':
        """Same as ``load(file, 'json')`` (Jina 2 name)."""
        return cls.load(file, 'json')

    @classmethod
    def load_binary(cls, file: PathOrFile) -> 'DocumentArray':
        """Same as ``load(file, 'binary')`` (Jina 2 name)."""
        return cls.load(file, 'binary')
