"""The transport layer: how requests reach executors and come back.

``base`` is the interface the router drives; ``local`` runs executors as OS processes on
this machine (ZeroMQ + shared-memory arenas); ``ray`` runs them as Ray actors.
"""
