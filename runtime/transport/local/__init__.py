"""The local transport: one OS process per executor replica/shard, a ZeroMQ ROUTER socket
in the parent, payloads in per-process shared-memory arenas (``shm``; ``codec`` encodes them,
``received`` holds what a receiver sees)."""
