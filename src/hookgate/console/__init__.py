"""The web console: flows, live requests, deliveries and dead letters, in the browser."""

from hookgate.console.app import Console

__all__ = ["Console"]
