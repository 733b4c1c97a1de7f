"""Signature and credential checks for the public ingress, one module per scheme.

``build_guard(flow.spec.auth)`` resolves the flow's secrets once; ``Guard.handshake``
answers a provider's URL handshake, ``Guard.check`` then admits or refuses each other
request without ever raising, and ``Guard.dedupe_key`` names the provider's delivery id.
Rate limits and the slowdown of misses are in :mod:`.limits`.
"""

from __future__ import annotations

from hookgate.auth.base import REASONS, Answer, Rejection, Request
from hookgate.auth.guard import Guard, build_guard

__all__ = ["REASONS", "Answer", "Guard", "Rejection", "Request", "build_guard"]
