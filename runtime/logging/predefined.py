"""Jina 2's ``jina.logging.predefined``: ``default_logger``.

>>> default_logger.info('hello')
"""
from .logger import JinaLogger

__all__ = ['default_logger']

default_logger = JinaLogger('default')
