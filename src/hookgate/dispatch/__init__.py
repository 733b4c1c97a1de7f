"""Async delivery: the dispatcher leases queued requests and sends them to on-demand workers."""

from hookgate.dispatch.dispatcher import Dispatcher

__all__ = ["Dispatcher"]
