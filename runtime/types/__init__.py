"""Jina 2's ``jina.types`` paths: change ``jina`` to ``runtime`` in an import line and it
works, e.g. ``from runtime.types.document.generators import from_csv``.

>>> from runtime.types.arrays.memmap import DocumentArrayMemmap  # doctest: +SKIP
"""
from ._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {
    'Document': 'runtime.document', 'DocumentArray': 'runtime.array',
    'DocumentArrayMemmap': 'runtime.memmap',
})
