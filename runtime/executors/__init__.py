"""Jina 2's ``jina.executors``: ``BaseExecutor``, ``Executor``, ``requests``.

This is not the top-level ``executors`` package of ready-made executors."""
from ..types._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {
    name: 'runtime.executor' for name in ('BaseExecutor', 'Executor', 'requests')})
