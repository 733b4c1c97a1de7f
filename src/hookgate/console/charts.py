"""The last hour of each flow, minute by minute, drawn as server-rendered SVG.

Like ``rates``, it reads the gateway's own Prometheus metrics (never the store, so a flow page
costs the same with a million deliveries stored): one snapshot per minute is kept for an hour,
and a minute's point is the difference between two snapshots — requests, failed requests and
delivery attempts, the p50 and p99 of the accept/proxy latency from the histogram's buckets —
or, for the queue depth and its oldest item's age, the gauge's value at the minute's end. The
minute in progress is the last point, so a chart moves as requests arrive.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence

import msgspec
from prometheus_client import CollectorRegistry

from hookgate.console.rates import Totals, count

MINUTE = 60.0
MINUTES = 60


class Snapshot(msgspec.Struct):
    totals: Totals
    buckets: dict[float, float]
    """Cumulative count of answers at most ``le`` seconds (all modes added up)."""
    depth: float = 0.0
    oldest: float = 0.0


class Series(msgspec.Struct, frozen=True):
    """Per minute, oldest first; None where the minute had nothing to measure."""

    minutes: list[float]
    requests: list[float]
    errors: list[float]
    p50_ms: list[float | None]
    p99_ms: list[float | None]
    depth: list[float]
    oldest_s: list[float]


def snapshots(registry: CollectorRegistry) -> dict[str, Snapshot]:
    """Per flow name, what the charts difference: one walk over the registry."""
    counted: dict[str, Totals] = {}
    out: dict[str, Snapshot] = {}
    for metric in registry.collect():
        for sample in metric.samples:
            flow = sample.labels.get("flow")
            if flow is None:
                continue
            count(counted, flow, sample)
            if sample.name not in _GAUGED:
                continue
            entry = out.get(flow) or out.setdefault(flow, Snapshot(totals=Totals(), buckets={}))
            if sample.name == "hookgate_request_seconds_bucket":
                le = float(sample.labels["le"])
                entry.buckets[le] = entry.buckets.get(le, 0.0) + sample.value
            elif sample.name == "hookgate_queue_depth":
                entry.depth = sample.value
            else:
                entry.oldest = sample.value
    for flow, total in counted.items():
        out.setdefault(flow, Snapshot(totals=total, buckets={})).totals = total
    return out


_GAUGED = frozenset(
    {"hookgate_request_seconds_bucket", "hookgate_queue_depth", "hookgate_queue_oldest_seconds"}
)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative buckets (linear within a bucket)."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


class History:
    def __init__(self) -> None:
        self._minutes: deque[tuple[float, dict[str, Snapshot]]] = deque(maxlen=MINUTES + 1)
        self._latest: tuple[float, dict[str, Snapshot]] | None = None

    def sample(self, registry: CollectorRegistry, *, now: float) -> None:
        """Called every few seconds; the first sample of each minute closes the last one."""
        current = (now, snapshots(registry))
        minute = math.floor(now / MINUTE) * MINUTE
        if not self._minutes or self._minutes[-1][0] < minute:
            self._minutes.append((minute, current[1]))
        self._latest = current

    def series(self, flow: str) -> Series:
        points = list(self._minutes)
        if self._latest is not None:
            points.append(self._latest)
        empty = Snapshot(totals=Totals(), buckets={})
        out = Series(
            minutes=[], requests=[], errors=[], p50_ms=[], p99_ms=[], depth=[], oldest_s=[]
        )
        for (_, before), (at, after) in itertools.pairwise(points):
            old, new = before.get(flow, empty), after.get(flow, empty)
            out.minutes.append(at)
            out.requests.append(new.totals.requests - old.totals.requests)
            out.errors.append(new.totals.errors - old.totals.errors)
            delta = {le: n - old.buckets.get(le, 0.0) for le, n in new.buckets.items()}
            for target, q in ((out.p50_ms, 0.5), (out.p99_ms, 0.99)):
                value = quantile(q, delta)
                target.append(None if value is None else round(value * 1000, 3))
            out.depth.append(new.depth)
            out.oldest_s.append(round(new.oldest, 1))
        return out


class Chart(msgspec.Struct, frozen=True):
    """One line chart, ready for ``templates/charts.html`` (which draws the SVG)."""

    title: str
    width: int
    height: int
    points: str
    """The polyline's points, in the SVG's coordinates."""
    values: str
    """The numbers drawn, comma-separated (empty where a minute had none): for tests and tools."""
    last: str
    top: str


def chart(title: str, values: Sequence[float | None], *, unit: str = "", width: int = 320) -> Chart:
    height, pad = 80, 4
    known = [v for v in values if v is not None]
    top = max(known, default=0.0) or 1.0
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    points = " ".join(
        f"{pad + i * step:.1f},{height - pad - (v / top) * (height - 2 * pad):.1f}"
        for i, v in enumerate(values)
        if v is not None
    )
    return Chart(
        title=title,
        width=width,
        height=height,
        points=points,
        values=",".join("" if v is None else f"{v:g}" for v in values),
        last=f"{known[-1]:g}{unit}" if known else "no data",
        top=f"{top:g}{unit}",
    )


def sparkline(values: Sequence[float]) -> Chart:
    """A small requests-per-minute line for the flows table."""
    width, height = 90, 20
    top = max(values, default=0.0) or 1.0
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in enumerate(values)
    )
    return Chart(
        title="Requests/min",
        width=width,
        height=height,
        points=points,
        values=",".join(f"{v:g}" for v in values),
        last=f"{values[-1]:g}" if values else "no data",
        top=f"{top:g}",
    )
