"""One gateway for all admin API tests; each test uses its own flow names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.conftest import GatewayProcess


@pytest.fixture(scope="package")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(tmp_path_factory.mktemp("admin") / "data").start()
    yield gw
    gw.stop()


@pytest.fixture
def name() -> str:
    """A flow name no other test uses."""
    return f"flow-{uuid.uuid4().hex[:10]}"


def spec(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "mode": "async", "worker": {"command": ["false"]}, **fields}
