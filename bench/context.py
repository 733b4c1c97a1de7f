"""What every scenario is handed: how long to run, where to put files, the ceiling to compare to."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec
from rich.console import Console

REPO = Path(__file__).resolve().parent.parent
BODY_BYTES = 1024


class Timing(msgspec.Struct, frozen=True, kw_only=True):
    warmup_s: float
    measure_s: float
    latency_requests: int
    cold_starts: int
    enqueue_s: float
    backlog: int
    many_flows: tuple[int, ...]
    upload_bytes: int


QUICK = Timing(
    warmup_s=1,
    measure_s=3,
    latency_requests=500,
    cold_starts=5,
    enqueue_s=3,
    backlog=5_000,
    many_flows=(10_000,),
    upload_bytes=256 * 1024**2,
)
FULL = Timing(
    warmup_s=3,
    measure_s=10,
    latency_requests=3000,
    cold_starts=10,
    enqueue_s=5,
    backlog=20_000,
    many_flows=(10_000, 100_000),
    upload_bytes=1024**3,
)


class Context:
    def __init__(self, *, timing: Timing, root: Path, console: Console) -> None:
        self.timing = timing
        self.root = root
        self.console = console
        self.ceiling_rps: float | None = None

    def workdir(self, name: str) -> Path:
        """A fresh directory for one server or run, removed with the whole run's root."""
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))

    def body_file(self) -> Path:
        """A 1 KB JSON body (exactly :data:`BODY_BYTES` bytes), written once per run."""
        path = self.root / "body.json"
        if not path.exists():
            path.write_bytes(json_body(BODY_BYTES))
        return path

    def ratio(self, rate: float) -> float | None:
        return round(rate / self.ceiling_rps, 3) if self.ceiling_rps else None


def json_body(size: int) -> bytes:
    """A JSON object of exactly ``size`` bytes that looks like a webhook event."""
    head = b'{"event":"order.created","id":"ord_1234567890","padding":"'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail
