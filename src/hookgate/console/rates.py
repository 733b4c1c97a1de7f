"""Requests per minute and error rate per flow, from the gateway's own Prometheus counters.

Counters are never lost under load (unlike live events, which a slow reader may miss), so the
console samples them every few seconds and reads rates from the difference over a window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable

import msgspec
from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample

EVERY = 5.0
WINDOW = 60.0
KEEP = 300.0


class Totals(msgspec.Struct):
    requests: float = 0.0
    attempts: float = 0.0
    errors: float = 0.0


class Rate(msgspec.Struct, frozen=True):
    per_minute: float | None
    error_rate: float | None


def totals(registry: CollectorRegistry) -> dict[str, Totals]:
    """Per flow name: requests, delivery attempts, and failures among both (answers >= 400,
    attempts that did not deliver)."""
    out: dict[str, Totals] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            flow = sample.labels.get("flow")
            if flow is not None:
                count(out, flow, sample)
    return out


def count(out: dict[str, Totals], flow: str, sample: Sample) -> None:
    """Add one sample of the request or delivery counters to ``out[flow]`` (others: nothing)."""
    if sample.name == "hookgate_requests_total":
        entry = out.setdefault(flow, Totals())
        entry.requests += sample.value
        if int(sample.labels.get("status", "0")) >= 400:
            entry.errors += sample.value
    elif sample.name == "hookgate_deliveries_total":
        entry = out.setdefault(flow, Totals())
        entry.attempts += sample.value
        if sample.labels.get("outcome") != "done":
            entry.errors += sample.value


class Rates:
    def __init__(
        self,
        registry: CollectorRegistry,
        on_sample: Callable[[CollectorRegistry, float], None] = lambda _registry, _now: None,
    ) -> None:
        self._registry = registry
        self._on_sample = on_sample
        self._samples: deque[tuple[float, dict[str, Totals]]] = deque()
        self._task: asyncio.Task[None] | None = None

    def start(self, stopping: asyncio.Event | None = None) -> None:
        """Begin sampling (idempotent); ends with ``stopping`` or the event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(stopping))

    async def _run(self, stopping: asyncio.Event | None) -> None:
        stop = stopping or asyncio.Event()
        while not stop.is_set():
            self.sample(now=time.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(EVERY):
                    await stop.wait()

    def sample(self, *, now: float) -> None:
        self._samples.append((now, totals(self._registry)))
        self._on_sample(self._registry, now)
        while self._samples and self._samples[0][0] < now - KEEP:
            self._samples.popleft()

    def rates(self, *, now: float) -> dict[str, Rate] | None:
        """Per flow name, over the last minute (or since sampling began); a flow missing from
        the answer had no traffic. None until there is a sample to compare with."""
        base = next((s for s in self._samples if s[0] >= now - WINDOW), None)
        if base is None or now - base[0] < 1.0:
            return None
        elapsed = now - base[0]
        out = {}
        for flow, current in totals(self._registry).items():
            before = base[1].get(flow, Totals())
            requests = current.requests - before.requests
            events = requests + current.attempts - before.attempts
            errors = current.errors - before.errors
            out[flow] = Rate(
                per_minute=requests * 60.0 / elapsed,
                error_rate=errors / events if events else None,
            )
        return out
