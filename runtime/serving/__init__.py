"""Serving a running Flow to other processes (the HTTP gateway, ``Client``) and the asyncio
API (``AsyncFlow``)."""
