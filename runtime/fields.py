"""The Document field table: every field once, with its default and how it is packed.

The data model's single source of truth for a Document's layout. ``Document`` builds its
slots, its pickling (``_state`` / ``_rebuild_document``), its copies and its equality from
this table; the transport's codec decides per column what to send from ``pack``; the
branch join (``control.merge``) merges by ``kind``. Adding a field means adding one line
here (at the end, so that state tuples stored by an older version still line up: a shorter
tuple is padded with the defaults of the missing fields).

Example
-------
>>> [f.name for f in TABLE][:4]
['id', 'text', 'blob', 'buffer']
>>> FIELD['embedding'].slot, FIELD['weight'].default
('_embedding', 0.0)
"""
from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ['Field', 'TABLE', 'FIELD', 'FIELDS', 'SLOTS', 'DEFAULTS', 'INDEX', 'JSON_NAMES']


class Field(NamedTuple):
    """One Document field.

    Attributes
    ----------
    name : str
        The public attribute (``doc.<name>``).
    slot : str
        The ``__slots__`` member that holds the value (the property reads it).
    default : Any
        The value of a new Document (None for content, arrays and lazily created
        containers).
    kind : str
        'id', 'content' (text, buffer: str / bytes), 'array' (blob, embedding: ndarray),
        'scalar' (plain str / int / float metadata), 'mapping' (tags, scores,
        evaluations: dicts), 'docs' (chunks, matches: DocumentArrays).
    pack : str
        How a column of this field (the field of every document of a batch) is tested for
        "all default", so that the codec can leave it out: 'always' (always sent), 'none'
        (all None; arrays cannot be compared with ==), 'empty' (all None or empty), or
        'value' (all equal to ``default``).
    """

    name: str
    slot: str
    default: Any
    kind: str
    pack: str


#: In ``Document._state()`` order. New fields go at the end (see the module docstring).
TABLE: tuple[Field, ...] = (
    Field('id', '_id', None, 'id', 'always'),
    Field('text', '_text', None, 'content', 'none'),
    Field('blob', '_blob', None, 'array', 'none'),
    Field('buffer', '_buffer', None, 'content', 'none'),
    Field('uri', '_uri', '', 'scalar', 'value'),
    Field('mime_type', '_mime_type', '', 'scalar', 'value'),
    Field('tags', '_tags', None, 'mapping', 'empty'),
    Field('embedding', '_embedding', None, 'array', 'none'),
    Field('chunks', '_chunks', None, 'docs', 'empty'),
    Field('matches', '_matches', None, 'docs', 'empty'),
    Field('scores', '_scores', None, 'mapping', 'empty'),
    Field('parent_id', '_parent_id', '', 'scalar', 'value'),
    Field('granularity', '_granularity', 0, 'scalar', 'value'),
    Field('adjacency', '_adjacency', 0, 'scalar', 'value'),
    Field('weight', '_weight', 0.0, 'scalar', 'value'),
    Field('modality', '_modality', '', 'scalar', 'value'),
    Field('evaluations', '_evaluations', None, 'mapping', 'empty'),
)
FIELD: dict[str, Field] = {f.name: f for f in TABLE}
FIELDS: tuple[str, ...] = tuple(f.name for f in TABLE)
SLOTS: tuple[str, ...] = tuple(f.slot for f in TABLE)
DEFAULTS: tuple = tuple(f.default for f in TABLE)
#: field name -> its position in a state tuple
INDEX: dict[str, int] = {f.name: i for i, f in enumerate(TABLE)}
#: Jina 2's JSON (protobuf) names of the fields spelt with an underscore here, e.g.
#: ``mimeType`` -> ``mime_type``: what its ``Document(dict)`` and REST gateway took.
JSON_NAMES: dict[str, str] = {f.name.split('_')[0] + ''.join(w.title() for w in f.name.split('_')[1:]): f.name
                              for f in TABLE if '_' in f.name}
