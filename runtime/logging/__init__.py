"""Jina 2's ``jina.logging``: ``JinaLogger`` (``runtime.logging.logger``) and
``default_logger`` (``runtime.logging.predefined``), over the standard ``logging`` module
(logger ``runtime.<context>``)."""
from ..types._lazy import reexport

__getattr__, __dir__, __all__ = reexport(__name__, {'JinaLogger': 'runtime.logging.logger',
                                                    'default_logger': 'runtime.logging.predefined'})
