"""Hookgate: permanent webhook URLs for integration flows, async (durable queue) or sync (proxy)."""

from hookgate.domain.flows import Flow, FlowSpec, Mode
from hookgate.errors import HookgateError

__version__ = "0.1.0"

__all__ = ["Flow", "FlowSpec", "HookgateError", "Mode", "__version__"]
