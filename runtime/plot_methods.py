"""``Document.plot`` and ``DocumentArray.visualize``: the methods, whose drawing
(``docplot``) is imported only when one is called, so that no process pays for it at
start-up (each executor process imports the data model).
"""
from __future__ import annotations

import os
from typing import Sequence

__all__ = ['DocumentPlotMixin', 'ArrayPlotMixin']


class DocumentPlotMixin:
    """``Document.plot``: the document's tree of chunks and matches as an SVG file."""

    __slots__ = ()

    def plot(self, output: str | os.PathLike | None = None, inline_display: bool = False) -> None:
        """Draw this document with its chunks and matches, at any depth, into an SVG file
        (Jina 2's ``plot``): one box per document with the fields it has set, chunks
        joined by solid arrows, matches by dashed ones.

        Parameters
        ----------
        output : str or os.PathLike
            The file to write; it must end in ``.svg``.
        inline_display : bool
            Jina 2 showed the picture in a notebook; that is not done here (pass only
            ``output`` and show the file, e.g. ``IPython.display.SVG(filename=...)``).

        Examples
        --------
        >>> from runtime import Document
        >>> d = Document(id='root', chunks=[Document(text='a')], matches=[Document(text='b')])
        >>> d.plot('doc.svg')  # doctest: +SKIP
        """
        from .docplot import plot_document
        plot_document(self, output, inline_display)


class ArrayPlotMixin:
    """``visualize``: a sequence of documents' embeddings as a 2-D scatter in an SVG file."""

    __slots__ = ()

    def visualize(self, output: str | os.PathLike | None = None, title: str | None = None,
                  colored_tag: str | None = None, colormap: str | Sequence[str] = 'rainbow',
                  method: str = 'pca', show_axis: bool = False) -> None:
        """Draw the embeddings in 2-D (PCA) into an SVG file, one point per document, as
        Jina 2's ``visualize`` did with matplotlib.

        Parameters
        ----------
        output : str or os.PathLike
            The file to write; it must end in ``.svg``.
        title : str, optional
            Default: ``'<N> Documents with PCA'``.
        colored_tag : str, optional
            A tag (or ``tags__``-style path such as ``'a__b'``) whose values colour the points,
            one colour per value (in order of first appearance), with a legend; documents
            without it form the group ``None``.
        colormap : str or list of str
            ``'rainbow'`` (Jina 2's default), or colours to use in turn (``['red', '#00f']``).
        method : str
            ``'pca'`` only (Jina 2's ``'tsne'`` needed scikit-learn, which is not used here).
        show_axis : bool
            Draw the frame and the range of each component.

        Examples
        --------
        >>> import numpy as np
        >>> from runtime import Document, DocumentArray
        >>> da = DocumentArray([Document(embedding=np.random.rand(8), tags={'c': i % 2}) for i in range(10)])
        >>> da.visualize('emb.svg', colored_tag='c', title='two groups')  # doctest: +SKIP
        """
        from .docplot import visualize
        visualize(self, output, title, colored_tag, colormap, method, show_axis)
