"""Pictures of a Flow's topology: Mermaid text and a self-contained SVG.

Example
-------
>>> print(to_mermaid(flow._specs))  # doctest: +SKIP
graph LR
  gateway((gateway)) --> n0["enc<br/>Encoder<br/>2 replicas"]
  ...
"""
from __future__ import annotations

from html import escape

__all__ = ['to_mermaid', 'to_svg']

_BOX_W, _BOX_H, _GAP_X, _GAP_Y, _PAD = 210, 58, 60, 26, 20


def _label(spec: dict) -> list[str]:
    lines = [spec['resolved_name']]
    cls = spec['cls'].__name__
    if cls != spec['resolved_name'] and cls != '_PassThrough':
        lines.append(cls)
    parts = []
    if spec.get('replicas', 1) > 1:
        parts.append(f"{spec['replicas']} replicas")
    if spec.get('shards', 1) > 1:
        polling = spec.get('polling') or {}
        kinds = sorted(set(polling.values()) - {None})
        parts.append(f"{spec['shards']} shards ({'/'.join(kinds) or 'any'})")
    if parts:
        lines.append(' × '.join(parts))
    return lines


_SOURCE, _SINK = 'source', 'sink'  # node keys of the input and the output; executors are ints


def _edges(specs: list[dict]) -> list[tuple]:
    """(from, to) node keys: executors by index, the input and output by _SOURCE / _SINK
    (so no executor name can collide with them)."""
    index = {s['resolved_name']: i for i, s in enumerate(specs)}
    edges = [(_SOURCE if need == 'gateway' else index[need], i) for i, s in enumerate(specs) for need in s['needs']]
    has_succ = {a for a, _ in edges}
    edges += [(i, _SINK) for i in range(len(specs)) if i not in has_succ]
    return edges or [(_SOURCE, _SINK)]


def to_mermaid(specs: list[dict]) -> str:
    """A Mermaid ``graph LR`` of the topology (GitHub and many editors render it)."""
    # 'end' is a Mermaid keyword: nodes get ids of their own, the names go in labels.
    ids = {i: f'n{i}' for i in range(len(specs))}
    ids.update({_SOURCE: 'source', _SINK: 'sink'})
    lines = ['graph LR', '  source((gateway))', '  sink((end))']
    for i, s in enumerate(specs):
        label = '<br/>'.join(escape(x) for x in _label(s))
        lines.append(f'  {ids[i]}["{label}"]')
    lines += [f'  {ids[a]} --> {ids[b]}' for a, b in _edges(specs)]
    return '\n'.join(lines) + '\n'


def to_svg(specs: list[dict]) -> str:
    """An SVG drawing: one column per depth, stacked boxes for replicas and shards."""
    edges = _edges(specs)
    depth = {_SOURCE: 0}
    for i in range(len(specs)):  # needs name earlier executors only: one pass in order
        depth[i] = 1 + max(depth[a] for a, b in edges if b == i)
    depth[_SINK] = 1 + max(depth.values())
    columns: dict[int, list] = {}
    for key in [_SOURCE, *range(len(specs)), _SINK]:
        columns.setdefault(depth[key], []).append(key)
    rows = max(len(c) for c in columns.values())
    width = _PAD * 2 + len(columns) * _BOX_W + (len(columns) - 1) * _GAP_X
    height = _PAD * 2 + rows * _BOX_H + (rows - 1) * _GAP_Y + 8
    pos = {}
    for d, keys in columns.items():
        top = _PAD + (rows - len(keys)) * (_BOX_H + _GAP_Y) / 2
        for i, key in enumerate(keys):
            pos[key] = (_PAD + d * (_BOX_W + _GAP_X), top + i * (_BOX_H + _GAP_Y))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
           f'viewBox="0 0 {width} {height:.0f}" font-family="sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           f'<rect width="{width}" height="{height:.0f}" fill="white"/>']
    for a, b in edges:
        (ax, ay), (bx, by) = pos[a], pos[b]
        out.append(f'<line x1="{ax + _BOX_W}" y1="{ay + _BOX_H / 2:.0f}" x2="{bx}" y2="{by + _BOX_H / 2:.0f}" '
                   f'stroke="#555" stroke-width="1.5" marker-end="url(#arrow)"/>')
    for key, (x, y) in pos.items():
        if key in (_SOURCE, _SINK):
            out.append(f'<ellipse cx="{x + _BOX_W / 2}" cy="{y + _BOX_H / 2:.0f}" rx="{_BOX_W / 2 - 20}" '
                       f'ry="{_BOX_H / 2 - 6}" fill="#eef" stroke="#335"/>')
            out.append(f'<text x="{x + _BOX_W / 2}" y="{y + _BOX_H / 2 + 4:.0f}" text-anchor="middle">'
                       f'{"gateway" if key == _SOURCE else "end"}</text>')
            continue
        spec = specs[key]
        copies = min(3, spec.get('replicas', 1) * spec.get('shards', 1))
        for k in range(copies - 1, -1, -1):  # the stack behind shows how many processes
            out.append(f'<rect x="{x + 4 * k}" y="{y + 4 * k:.0f}" width="{_BOX_W}" height="{_BOX_H}" rx="6" '
                       f'fill="{"#dfe8f7" if k == 0 else "#c9d6ee"}" stroke="#335"/>')
        lines = _label(spec)
        for i, text in enumerate(lines):
            weight = ' font-weight="bold"' if i == 0 else ''
            ty = y + _BOX_H / 2 + (i - (len(lines) - 1) / 2) * 15 + 4
            out.append(f'<text x="{x + _BOX_W / 2}" y="{ty:.0f}" text-anchor="middle"{weight}>{escape(text)}</text>')
    out.append('</svg>')
    return '\n'.join(out) + '\n'
