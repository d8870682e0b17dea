"""Jina 2's ``jina.types.document.generators``: ``from_csv``, ``from_files``,
``from_lines``, ``from_ndarray``, ``from_ndjson`` (defined in ``runtime.generators``)."""
from .._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {
    name: 'runtime.generators' for name in ('from_csv', 'from_files', 'from_lines', 'from_ndarray', 'from_ndjson')})
