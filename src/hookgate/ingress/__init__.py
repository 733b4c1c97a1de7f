"""The public listener: ``/hook/*``, ``/healthz`` and ``/readyz`` as one raw ASGI callable."""

from hookgate.ingress.app import Ingress

__all__ = ["Ingress"]
