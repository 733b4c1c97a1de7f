"""Small helpers for end-to-end tests: polling for a condition, reading a worker's record."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.conftest import GatewayProcess

T = TypeVar("T")


def eventually(check: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.05) -> T:
    """Poll until ``check`` returns something truthy; fail with its last value otherwise."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        time.sleep(interval)
        value = check()
    return value


def recorded(path: Path) -> list[dict[str, Any]]:
    """The requests a flaky worker recorded (one JSON line each), bodies decoded."""
    if not path.exists():
        return []
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for item in items:
        item["body"] = base64.b64decode(item["body"])
        pairs = item["headers"].items() if isinstance(item["headers"], dict) else item["headers"]
        item["headers"] = {k.lower(): v for k, v in pairs}
    return items


def on_postgres(
    factory: Any, url: str, name: str, flows: str | None = None, **kwargs: Any
) -> GatewayProcess:
    gateway: GatewayProcess = factory(flows, name=name, args=["--database", url], **kwargs)
    return gateway
