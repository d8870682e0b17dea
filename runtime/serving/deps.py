"""The optional dependency of the serving side: aiohttp, imported only where it is used."""
from __future__ import annotations

from types import ModuleType

__all__ = ['import_aiohttp']


def import_aiohttp(what: str) -> ModuleType:
    """``aiohttp``, or an ImportError that says which extra installs it.

    >>> aiohttp = import_aiohttp('the HTTP gateway')  # doctest: +SKIP
    """
    try:
        import aiohttp
        import aiohttp.web  # noqa: F401  (the server side, for the gateway)
    except ImportError as exc:
        raise ImportError(f'{what} needs aiohttp: pip install "shmflow[http]" (or pip install aiohttp); '
                          f'the synchronous Client needs nothing extra') from exc
    return aiohttp
