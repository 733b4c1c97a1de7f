"""Reading what :mod:`bench.workers.recorder` wrote: who got which delivery, and when."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import msgspec


class Delivery(msgspec.Struct, frozen=True):
    at: float
    delivery_id: str
    attempt: int | None


def read(path: Path) -> list[Delivery]:
    """Every complete line of the record (a line still being written is skipped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    deliveries = []
    for line in text.splitlines(keepends=True):
        parts = line.split()
        if not line.endswith("\n") or len(parts) != 3:
            continue
        at, delivery_id, attempt = parts
        deliveries.append(
            Delivery(float(at), delivery_id, int(attempt) if attempt.isdigit() else None)
        )
    return deliveries


def duplicates(deliveries: list[Delivery]) -> int:
    """Deliveries received more than once (each extra receipt counts once)."""
    counts = Counter(d.delivery_id for d in deliveries)
    return sum(n - 1 for n in counts.values())
