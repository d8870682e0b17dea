"""Module-level lazy re-exports for the Jina 2 import paths under ``runtime.types``.

Importing ``runtime.types.document.generators`` loads nothing but this helper until a
name is read; an executor process that never reads one pays nothing for the path.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ['reexport']


def reexport(module_name: str, table: dict[str, str | tuple[str, str]]) -> tuple[Callable, Callable, list]:
    """``(__getattr__, __dir__, __all__)`` for a module whose names live elsewhere.

    ``table`` maps each public name to the module defining it, or to ``(module, name
    there)`` when the name differs.

    Example
    -------
    >>> __getattr__, __dir__, __all__ = reexport(__name__, {'Document': 'runtime.document'})
    """
    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f'module {module_name!r} has no attribute {name!r}; it provides '
                                 f'{", ".join(sorted(table))}')
        module, attr = target if isinstance(target, tuple) else (target, name)
        try:
            value = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ImportError(f'{module_name}.{name} (Jina 2 name) is not available in this version of '
                              f'runtime: {exc}') from None
        import sys
        setattr(sys.modules[module_name], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__, sorted(table)
