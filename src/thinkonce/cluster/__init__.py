"""Stream pools beyond one machine: :class:`RayStreamPool` (shards of streams on Ray actors, durable and
exactly-once) and an HTTP ingestion endpoint (:func:`build_app`, :func:`serve_pool`).

Needs the optional extra: ``pip install 'thinkonce[ray]'``. Concepts, one module each:
:mod:`.hashing` (stream -> slot -> shard), :mod:`.journal` (what a slot accepted since its checkpoint),
:mod:`.slot` (a durable, idempotent StreamPool), :mod:`.shard` (the actor), :mod:`.pool` (the client),
:mod:`.http` (the ingress).
"""

from .errors import ClusterError, SequenceGapError, SlotMovedError, UnknownStreamError
from .hashing import HashRing, slot_of
from .pool import RayStreamPool

__all__ = ["RayStreamPool", "HashRing", "slot_of", "SequenceGapError", "SlotMovedError", "ClusterError",
           "UnknownStreamError", "build_app", "serve_pool"]


def __getattr__(name: str):  # the HTTP layer imports fastapi/ray.serve only when asked for
    if name in ("build_app", "serve_pool"):
        from . import http

        return getattr(http, name)
    raise AttributeError(name)
