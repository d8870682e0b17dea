"""``JinaLogger``: Jina 2's per-component logger, here a thin front of ``logging``.

Example
-------
>>> log = JinaLogger('MyIndexer')
>>> log.info('indexed %d documents', 10)
"""
from __future__ import annotations

import logging
from typing import Any

__all__ = ['JinaLogger']


class JinaLogger:
    """Logs to the standard logger ``runtime.<context>``; configure it (handlers, level)
    with ``logging`` as usual. ``success`` logs at INFO. The Jina 2 keyword arguments
    (``log_config``, ``name``, ``quiet``...) are accepted and have no effect: output goes
    wherever ``logging`` sends it.

    Example
    -------
    >>> with JinaLogger('enc') as log:
    ...     log.warning('slow batch: %.1f s', 2.5)
    """

    def __init__(self, context: str, **kwargs: Any) -> None:
        self.context = context
        self.logger = logging.getLogger(f'runtime.{context}')

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.debug(msg, *args, **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.info(msg, *args, **kwargs)

    def success(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.info(msg, *args, **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.warning(msg, *args, **kwargs)

    warn = warning

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.error(msg, *args, **kwargs)

    def critical(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.logger.critical(msg, *args, **kwargs)

    def close(self) -> None:
        """Nothing to release (kept for Jina 2 code that calls it)."""

    def __enter__(self) -> 'JinaLogger':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
