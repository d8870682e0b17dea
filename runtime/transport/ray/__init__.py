"""The Ray transport: each executor instance (shard, replica) is a Ray actor, documents
travel through Ray's object store, and the router in the parent only sees small receipts.

Nothing here imports Ray until a Flow with ``backend='ray'`` opens its transport, so the
package works without Ray installed (``pip install shmflow[ray]`` adds it).

Example
-------
>>> from runtime.transport.ray import RayTransport
>>> t = RayTransport(address=None)   # a private local Ray, stopped when the last Flow using it closes
"""
from .options import check_ray_options, import_ray
from .transport import RayTransport
from .workers import RayWorker, RayWorkerDiedError

__all__ = ['RayTransport', 'RayWorker', 'RayWorkerDiedError', 'check_ray_options', 'import_ray']
