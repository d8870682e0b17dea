"""The layers under :class:`runtime.memmap.DocumentArrayMemmap`, bottom up:

- :mod:`.format`: file names, record framing, checksums, meta.json, validated layouts;
- :mod:`.log`: the record log, the source of truth (append, read, scan, torn tails);
- :mod:`.index`: the in-memory index and its snapshot file;
- :mod:`.embeddings`: the embedding matrix file, its map and per-row checksums;
- :mod:`.directory`: creating the directory, refusing foreign ones, removing stale generations;
- :mod:`.store`: one open directory (writer lock, reads, writes, flush, close);
- :mod:`.maintenance`: prune / clear (a new generation), ``verify`` and ``repair``.
"""
