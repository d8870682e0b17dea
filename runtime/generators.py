"""Document generators: turn CSV, NDJSON, numpy arrays, files on disk and lines of text
into a lazy stream of :class:`~runtime.document.Document`, ready for ``Flow.post`` /
``Flow.index``.

Every function here is a plain (non-generator) function that checks its arguments at
call time -- so ``from_files('*.txt', read_mode='x')`` fails on the line that wrote it --
and then returns a generator that opens and reads nothing until the first ``next()``.

Shared keywords:

``size``
    Yield at most this many documents (a positive int, or None for all). Jina 2 yielded
    ``size + 1``; these yield exactly ``size``.
``sampling_rate``
    Keep each record with this probability, in (0, 1]. Sampling happens before ``size``
    counts, so ``size`` is the number of documents actually yielded.
``seed``
    Makes sampling (and ``from_ndarray(shuffle=True)``) reproducible. Without it,
    sampling draws from the global :func:`random.random`.

>>> import io
>>> [d.text for d in from_csv(io.StringIO('id,text\\n1,hello\\n2,world\\n'))]
['hello', 'world']
"""
from __future__ import annotations

# The generators live in modules by source; this module is their public import path
# (``runtime.generators.from_csv``, ``runtime.types.document.generators``).
from .gen_files import from_files
from .gen_lines import from_csv, from_lines, from_ndjson
from .gen_ndarray import from_ndarray

__all__ = ['from_csv', 'from_ndjson', 'from_ndarray', 'from_files', 'from_lines']
