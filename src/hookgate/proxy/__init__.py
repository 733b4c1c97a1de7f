"""Sync flows: the request goes to a running worker and its answer is streamed back."""

from hookgate.proxy.forward import SyncProxy, TracedProxy

__all__ = ["SyncProxy", "TracedProxy"]
