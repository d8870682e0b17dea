"""Pictures of documents, as SVG files drawn here: a Document's chunk / match tree
(``Document.plot``) and a 2-D map of a DocumentArray's embeddings (``visualize``).

Jina 2 drew the tree through the mermaid.ink web service and the embeddings with
matplotlib; neither is a dependency here, so both are small SVG writers (as
``runtime.control.plot`` draws a Flow). What they cannot do as Jina 2 did (t-SNE, a
matplotlib colormap by name, showing the picture inline in a notebook) is refused with the
argument to pass instead.

Example
-------
>>> from runtime import Document, DocumentArray
>>> import numpy as np
>>> da = DocumentArray([Document(embedding=np.random.rand(8), tags={'c': i % 2}) for i in range(10)])
>>> da.visualize(output='emb.svg', colored_tag='c')  # doctest: +SKIP
>>> Document(chunks=[Document(text='a')]).plot('doc.svg')  # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import re
from html import escape
from typing import Any, Sequence

import numpy as np

from .columns import _stack
from .document_io import _get_state, _is_default, _resolve_path
from .fields import TABLE

__all__ = ['plot_document', 'visualize', 'pca_2d']

#: Characters XML 1.0 does not allow in a document (a tag value or a text may hold them).
_NOT_XML = re.compile('[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_SVG_NS = 'http://www.w3.org/2000/svg'
#: What Jina 2's colormap='rainbow' (matplotlib's default there) looks like; others are
#: matplotlib names this module cannot resolve.
_COLORMAPS = ('rainbow',)
#: matplotlib's first colour, what Jina 2 used without ``colored_tag``.
_DEFAULT_COLOUR = '#1f77b4'


def _xml(value: Any, limit: int = 60) -> str:
    """``value`` as text for an SVG element or attribute: shortened, escaped, and with
    the characters XML refuses replaced."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit - 1] + '…'
    return escape(_NOT_XML.sub('\ufffd', text), quote=True)


def _svg_path(output: Any, where: str, hint: str) -> str:
    """The file name to write, which must end in .svg: what this module draws."""
    if output is None:
        raise ValueError(f'{where} needs output=, a file name ending in .svg (Jina 2 could also show the picture '
                         f'in a window or a notebook, which this version does not do){hint}')
    if not isinstance(output, (str, os.PathLike)):
        raise TypeError(f'{where}: output must be a file name ending in .svg, got {type(output).__name__}')
    if os.path.splitext(os.fspath(output))[1].lower() != '.svg':
        raise ValueError(f'{where} writes SVG drawings: pass output ending in .svg, got {os.fspath(output)!r} '
                         f'(Jina 2 wrote other image formats through matplotlib or mermaid.ink; convert the SVG '
                         f'if you need one, e.g. with cairosvg)')
    return os.fspath(output)


def _write(path: str, parts: list[str]) -> None:
    with open(path, 'w', encoding='utf-8') as fp:
        fp.write('\n'.join(parts) + '\n')


def _svg_open(width: float, height: float) -> list[str]:
    return [f'<svg xmlns="{_SVG_NS}" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} '
            f'{height:.0f}" font-family="sans-serif" font-size="12">',
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
            f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>']


# -- Document.plot: the chunk / match tree ------------------------------------------------------
_BOX_W, _LINE_H, _GAP_X, _GAP_Y, _PAD, _MAX_LINES = 240, 15, 70, 16, 20, 7


def _field_lines(doc: Any) -> list[str]:
    """One line per field that is not its default (as Jina 2's tree showed them), the id
    first; chunks and matches are drawn as edges instead."""
    lines = [f'id: {doc.id}']
    for f, value in zip(TABLE[1:], _get_state(doc)[1:]):
        if f.kind == 'docs' or _is_default(f, value):
            continue
        if f.kind == 'array':
            text = f'{value.dtype}{list(value.shape)}'
        elif f.kind == 'mapping':
            text = ', '.join(f'{k}={getattr(v, "value", v)}' for k, v in value.items())
        elif isinstance(value, bytes):
            text = f'{len(value)} bytes'
        else:
            text = str(value)
        lines.append(f'{f.name}: {text}')
    if len(lines) > _MAX_LINES:
        lines[_MAX_LINES - 1:] = [f'… {len(lines) - _MAX_LINES + 1} more fields']
    return lines


def _tree(root: Any) -> tuple[list[tuple[Any, int, float]], list[tuple[int, int, str]]]:
    """Nodes ``(doc, depth, row)`` and edges ``(parent, child, label)``: leaves take rows in
    order, a parent sits level with the middle of its children. A document met again (a
    match that is also a chunk, a document matched to itself) gets an edge, not a copy."""
    nodes: list[tuple[Any, int, float]] = []
    edges: list[tuple[int, int, str]] = []
    seen: dict[int, int] = {}
    next_row = [0.0]

    def place(doc: Any, depth: int) -> int:
        index = seen[id(doc)] = len(nodes)
        nodes.append((doc, depth, 0.0))
        children: list[tuple[int, str]] = []
        placed: list[float] = []  # rows of the children drawn under this document
        for name in ('chunks', 'matches'):
            docs = getattr(doc, f'_{name}') or ()
            for i, child in enumerate(docs, 1):
                label = f'{name[:-1] if name == "chunks" else "match"} {i}/{len(docs)}'
                if id(child) in seen:
                    children.append((seen[id(child)], label))
                else:
                    children.append((place(child, depth + 1), label))
                    placed.append(nodes[children[-1][0]][2])
        if placed:
            row = (min(placed) + max(placed)) / 2
        else:
            row, next_row[0] = next_row[0], next_row[0] + 1
        nodes[index] = (doc, depth, row)
        edges.extend((index, c, label) for c, label in children)
        return index

    place(root, 0)
    return nodes, edges


def document_svg(doc: Any) -> list[str]:
    """The lines of an SVG drawing of ``doc`` and its chunks and matches, at any depth:
    chunks joined by solid arrows, matches by dashed ones."""
    nodes, edges = _tree(doc)
    lines = {i: _field_lines(d) for i, (d, _, _) in enumerate(nodes)}
    box_h = 10 + _LINE_H * max(len(v) for v in lines.values())
    rows = max(row for _, _, row in nodes) + 1
    depth = max(dep for _, dep, _ in nodes) + 1
    width = 2 * _PAD + depth * _BOX_W + (depth - 1) * _GAP_X
    height = 2 * _PAD + rows * box_h + (rows - 1) * _GAP_Y
    pos = {i: (_PAD + dep * (_BOX_W + _GAP_X), _PAD + row * (box_h + _GAP_Y)) for i, (_, dep, row) in enumerate(nodes)}
    out = _svg_open(width, height)
    out.append('<g id="edges">')
    for a, b, label in edges:
        (ax, ay), (bx, by) = pos[a], pos[b]
        x1, y1, x2, y2 = ax + _BOX_W, ay + box_h / 2, bx, by + box_h / 2
        if bx <= ax:  # an edge back to a document drawn earlier: around, from the bottom
            x1, y1, x2, y2 = ax + _BOX_W / 2, ay + box_h, bx + _BOX_W / 2, by + box_h
        dash = ' stroke-dasharray="5,4"' if label.startswith('match') else ''
        out.append(f'<line class="{label.split()[0]}" x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" '
                   f'stroke="#555" stroke-width="1.3"{dash} marker-end="url(#arrow)"/>')
        out.append(f'<text x="{x2 - 6:.0f}" y="{y2 - 5:.0f}" text-anchor="end" font-size="10" fill="#555">'
                   f'{_xml(label)}</text>')
    out.append('</g>')
    out.append('<g id="documents">')
    for i, (x, y) in pos.items():
        out.append(f'<g class="document"><rect x="{x}" y="{y:.0f}" width="{_BOX_W}" height="{box_h}" rx="6" '
                   f'fill="{"#ffe3a3" if i == 0 else "#fff2d1"}" stroke="#8a6d1f"/>')
        for k, text in enumerate(lines[i]):
            weight = ' font-weight="bold"' if k == 0 else ''
            out.append(f'<text x="{x + 8}" y="{y + 17 + k * _LINE_H:.0f}"{weight}>{_xml(text, 36)}</text>')
        out.append('</g>')
    out += ['</g>', '</svg>']
    return out


def plot_document(self: Any, output: str | os.PathLike | None = None, inline_display: bool = False) -> None:
    """What ``Document.plot`` does (see its docstring in plot_methods.py)."""
    if inline_display:
        raise ValueError('Document.plot: inline_display is not supported (it needs a notebook display); pass '
                         'output="doc.svg" and show that file, e.g. IPython.display.SVG(filename="doc.svg")')
    path = _svg_path(output, 'Document.plot', '; pass e.g. output="doc.svg"')
    _write(path, document_svg(self))


# -- DocumentArray.visualize: the embeddings in 2-D --------------------------------------------------
def pca_2d(x: np.ndarray) -> np.ndarray:
    """The first two principal components of the rows of ``x`` (N, ...), as an (N, 2)
    float64 array (a second column of zeros when the rows have one number). Each
    component's sign is fixed by its largest loading, so the same data gives the same
    picture. Any magnitude a float holds works (1e-200 or 1e200): the data is scaled
    before the decomposition.

    >>> pca_2d(np.array([[0., 0.], [2., 0.], [4., 0.]]))[:, 0]
    array([-2.,  0.,  2.])
    """
    unit, scale = _pca_unit(x)
    return unit * scale


def _pca_unit(x: np.ndarray) -> tuple[np.ndarray, float]:
    """``pca_2d`` as ``(points, scale)``: the points are the projection divided by ``scale``,
    at most about 1 in size, so they can be drawn even where ``points * scale`` overflows."""
    x = np.asarray(x)
    x = x.reshape(len(x), math.prod(x.shape[1:]))  # (not -1: that cannot tell (0, D) apart)
    n, d = x.shape
    if not d:
        raise ValueError(f'pca_2d: the rows hold no numbers (shape {list(x.shape)}); pass rows of at least '
                         f'one number')
    if not n:
        return np.zeros((0, 2)), 1.0
    if x.dtype.kind in 'fc' and not np.isfinite(x).all():
        raise ValueError(f'pca_2d: {int((~np.isfinite(x)).any(axis=1).sum())} of the {n} rows hold NaN or '
                         f'infinity; pass finite numbers')
    if x.dtype.kind != 'f':  # (abs of the most negative int overflows; ints are exact enough as floats)
        x = x.astype(np.float64)
    # Divide by the largest magnitude before anything else: the mean and the scatter matrix
    # of values near 1e200 overflow (and of values near 1e-200 vanish), and the SVD then fails.
    # Scaling keeps the directions; done in x's own dtype so that a longdouble fits float64.
    first = np.abs(x).max(initial=0.0)
    x = (x / first if first > 0 else x).astype(np.float64)
    xc = x - x.mean(axis=0)
    second = np.abs(xc).max(initial=0.0)
    if second > 0:
        xc = xc / second
    # The components are the right singular vectors of the centred data; for more rows
    # than columns those of the (D, D) scatter matrix, which is far smaller than (N, D).
    vt = np.linalg.svd(xc.T @ xc if n > d else xc, full_matrices=False)[2][:2]
    largest = vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)]
    vt = vt * np.where(largest < 0, -1.0, 1.0)[:, None]
    out = xc @ vt.T
    out = np.hstack([out, np.zeros((n, 2 - out.shape[1]))]) if out.shape[1] < 2 else out
    return out, float(first or 1.0) * float(second or 1.0)


def _rainbow(t: float) -> str:
    """matplotlib's 'rainbow' colormap at ``t`` in [0, 1], as #rrggbb."""
    rgb = (abs(2 * t - 0.5), math.sin(math.pi * t), math.cos(math.pi * t / 2))
    return '#' + ''.join(f'{round(min(max(c, 0.0), 1.0) * 255):02x}' for c in rgb)


def _colours(colormap: str | Sequence[str], n: int) -> list[str]:
    if isinstance(colormap, str):
        if colormap not in _COLORMAPS:
            raise ValueError(f'visualize: colormap {colormap!r} is a matplotlib name, which this version cannot '
                             f'draw; pass colormap="rainbow" (the default) or a list of colours such as '
                             f'["#1f77b4", "#ff7f0e"]')
        return [_rainbow(i / (n - 1) if n > 1 else 0.0) for i in range(n)]
    colours = list(colormap)
    if not colours or not all(isinstance(c, str) and c for c in colours):
        raise TypeError('visualize: colormap takes "rainbow" or a list of colour strings (e.g. "#1f77b4", "red")')
    return [colours[i % len(colours)] for i in range(n)]


def _group_key(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:  # a list or dict tag: grouped by how it prints
        return repr(value)


def _named(docs: Sequence[Any], rows: np.ndarray) -> str:
    """The first few documents at positions ``rows``, as an error message names them."""
    shown = ', '.join(f'#{i} (id {str(docs[i].id)[:40]!r})' for i in rows[:3].tolist())
    return shown + (f' and {len(rows) - 3} more' if len(rows) > 3 else '')


def _embedding_matrix(docs: Any, listed: Sequence[Any]) -> np.ndarray:
    """The embeddings of ``docs`` as an (N, D) matrix of real numbers, refused with the
    documents named where they cannot be projected; ``listed`` is ``list(docs)``."""
    try:
        x = docs.embeddings if hasattr(type(docs), 'embeddings') else _stack(docs, 'embedding')
    except ValueError as exc:
        raise ValueError(f'visualize needs an embedding of one shape and dtype on every document: {exc}') from None
    if x is None:
        raise ValueError('visualize: no document has an embedding' + (' (the array is empty)' if not len(docs) else
                         '; set them first, e.g. da.embeddings = X or with an encoder'))
    if x.dtype.kind not in 'biuf':
        raise TypeError(f'visualize: embeddings of dtype {x.dtype} cannot be projected; they must be real numbers')
    if not x[0].size:
        raise ValueError(f'visualize: the embeddings hold no numbers (each of shape {list(x.shape[1:])}), so there '
                         f'is nothing to project; set embeddings of at least one number')
    x = x.reshape(len(x), -1)
    if x.dtype.kind == 'f' and not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise ValueError(f'visualize: {len(bad)} embeddings hold NaN or infinity, of documents {_named(listed, bad)}; '
                         f'fix or leave out those documents')
    return x


def scatter_svg(points: np.ndarray, fills: list[str], tips: list[str], title: str,
                legend: list[tuple[str, str]], show_axis: bool, scale: float = 1.0) -> list[str]:
    """The lines of an SVG scatter plot: one ``circle`` of class ``point`` per row of
    ``points`` (N, 2), in group ``points``; a ``legend`` group when ``legend`` is given.
    ``scale``: what the points are multiplied by in the axis labels (``_pca_unit``'s)."""
    size, top, margin = 600, 44, 24
    legend_w = 190 if legend else 0
    width, height = margin * 2 + size + legend_w, top + size + margin
    lo, hi = points.min(axis=0), points.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    xy = (points - lo) / span * (size - 16) + 8  # 8 px inside the frame: points on it stay whole
    xy[:, 0] += margin
    xy[:, 1] = top + size - xy[:, 1]  # up is up
    out = _svg_open(width, height)
    out.append(f'<text id="title" x="{margin + size / 2:.0f}" y="26" text-anchor="middle" font-size="16">'
               f'{_xml(title, 100)}</text>')
    if show_axis:
        out.append(f'<g id="axes"><rect x="{margin}" y="{top}" width="{size}" height="{size}" fill="none" '
                   f'stroke="#333"/>')
        (lo1, lo2), (hi1, hi2) = (float(v) * scale for v in lo), (float(v) * scale for v in hi)
        out.append(f'<text x="{margin}" y="{top + size + 16}">PC1 {lo1:.3g} … {hi1:.3g}</text>')
        out.append(f'<text x="{margin + size}" y="{top + size + 16}" text-anchor="end">PC2 {lo2:.3g} … '
                   f'{hi2:.3g}</text></g>')
    out.append('<g id="points" fill-opacity="0.6">')
    for (x, y), fill, tip in zip(xy.tolist(), fills, tips):
        out.append(f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{_xml(fill)}">'
                   f'<title>{_xml(tip, 120)}</title></circle>')
    out.append('</g>')
    if legend:
        out.append('<g id="legend">')
        shown = legend if len(legend) <= 36 else legend[:35]
        for i, (label, fill) in enumerate(shown):
            y = top + 10 + i * 16
            out.append(f'<rect x="{margin * 2 + size}" y="{y}" width="10" height="10" fill="{_xml(fill)}"/>'
                       f'<text x="{margin * 2 + size + 16}" y="{y + 9}">{_xml(label, 26)}</text>')
        if len(shown) < len(legend):
            out.append(f'<text x="{margin * 2 + size}" y="{top + 10 + 35 * 16 + 9}">… {len(legend) - 35} more '
                       f'values</text>')
        out.append('</g>')
    out.append('</svg>')
    return out


def visualize(self: Any, output: str | os.PathLike | None = None, title: str | None = None,
              colored_tag: str | None = None, colormap: str | Sequence[str] = 'rainbow',
              method: str = 'pca', show_axis: bool = False) -> None:
    """What ``DocumentArray.visualize`` does (see its docstring in plot_methods.py)."""
    if method != 'pca':
        raise ValueError(f'visualize: method {method!r} is not available; pass method="pca" (t-SNE needs '
                         f'scikit-learn: project with sklearn.manifold.TSNE yourself if you need it)')
    path = _svg_path(output, 'visualize', '; pass e.g. output="embeddings.svg"')
    docs = list(self)
    points, scale = _pca_unit(_embedding_matrix(self, docs))
    tips = [str(d.id) for d in docs]
    legend: list[tuple[str, str]] = []
    if colored_tag is None:
        _colours(colormap, 1)  # (checked all the same)
        fills = [_DEFAULT_COLOUR] * len(docs)
    else:
        if not isinstance(colored_tag, str) or not colored_tag:
            raise TypeError(f'visualize: colored_tag must be a tag name (str), got {colored_tag!r}')
        values = [_resolve_path(d._tags or {}, colored_tag) for d in docs]
        groups: dict[Any, int] = {}
        for v in values:
            groups.setdefault(_group_key(v), len(groups))
        palette = _colours(colormap, len(groups))
        fills = [palette[groups[_group_key(v)]] for v in values]
        tips = [f'{t} ({colored_tag}={v})' for t, v in zip(tips, values)]
        legend = [(str(key), palette[i]) for key, i in groups.items()]
    title = title or f'{len(docs)} Documents with PCA'
    _write(path, scatter_svg(points, fills, tips, title, legend, show_axis, scale))
