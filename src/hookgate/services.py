"""The parts of one gateway that its operator surfaces (admin API, console) are built from,
named once instead of in two long keyword lists."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from hookgate.events import EventHub
from hookgate.metrics import Metrics
from hookgate.registry import FlowRegistry
from hookgate.runtime.base import WorkerStatus
from hookgate.store.base import Store


@dataclass(frozen=True, kw_only=True)
class Services:
    registry: FlowRegistry
    store: Store
    metrics: Metrics
    events: EventHub
    workers: Callable[[str], WorkerStatus]
    """A flow's workers now (``Runtime.status``)."""
    concurrency_limit: Callable[[str], int | None]
    """A flow's concurrency limit now, over its ready workers (and, async, its destinations);
    None before it has one (no ready worker or no traffic yet)."""
    public_url: str
    stopping: asyncio.Event
    """Set when the gateway stops: live streams end so the listener can close."""
