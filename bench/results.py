"""What a run produces: rows of figures per scenario, saved as JSON under ``bench/results/``."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import msgspec

RESULTS_DIR = Path(__file__).parent / "results"


class Latency(msgspec.Struct, frozen=True, kw_only=True):
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


def percentiles(samples_ms: list[float]) -> Latency:
    """p50/p90/p99/max of latency samples (nearest rank, so every figure is a real sample)."""
    if not samples_ms:
        raise ValueError("no samples")
    ordered = sorted(samples_ms)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)], 3)

    return Latency(p50_ms=rank(50), p90_ms=rank(90), p99_ms=rank(99), max_ms=round(ordered[-1], 3))


class Errors(msgspec.Struct, frozen=True, kw_only=True):
    """wrk's error kinds: socket errors by phase, timeouts, and HTTP answers >= 400."""

    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0
    http: int = 0

    @property
    def total(self) -> int:
        return self.connect + self.read + self.write + self.timeout + self.http

    def describe(self) -> str:
        kinds = {
            "connect": self.connect,
            "read": self.read,
            "write": self.write,
            "timeout": self.timeout,
            "HTTP >= 400": self.http,
        }
        return ", ".join(f"{kind} {count}" for kind, count in kinds.items() if count) or "none"


class Load(msgspec.Struct, frozen=True, kw_only=True):
    """One measured load run (wrk or a Python driver)."""

    requests: int
    seconds: float
    latency: Latency
    errors: Errors = Errors()

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """What the gateway process spent during the measured window."""

    cpu_s: float
    peak_rss_mb: float


class Row(msgspec.Struct, kw_only=True):
    """One line of a scenario's table; ``rate`` is None for latency-only rows (cold start)."""

    case: str
    unit: str = "req/s"
    rate: float | None = None
    ratio: float | None = None
    latency: Latency | None = None
    errors: Errors = Errors()
    usage: Usage | None = None
    note: str = ""
    extra: dict[str, float] = {}


class Run(msgspec.Struct, kw_only=True):
    scenario: str
    started: str
    command: str
    quick: bool
    machine: dict[str, Any]
    ceiling_rps: float | None
    rows: list[Row]
    settings: dict[str, Any] = {}


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def save(run: Run, directory: Path = RESULTS_DIR) -> Path:
    """Write ``<scenario>-<date>.json``; the time is part of the name so runs never overwrite."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = run.started.replace(":", "").replace("+0000", "Z")
    path = directory / f"{run.scenario}-{stamp}.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(run)) + b"\n")
    return path


def latest(directory: Path = RESULTS_DIR) -> dict[str, Run]:
    """The newest saved run of every scenario (by start time, not file time)."""
    newest: dict[str, Run] = {}
    for path in sorted(directory.glob("*.json")):
        run = msgspec.json.decode(path.read_bytes(), type=Run)
        current = newest.get(run.scenario)
        if current is None or run.started > current.started:
            newest[run.scenario] = run
    return newest
