"""Deliveries to publish, and the brokers' reachability: a down broker skips these tests on a
laptop and fails them in CI (``.ci/run`` starts both brokers)."""

from __future__ import annotations

import os
import socket
import time

import pytest

from hookgate.domain.deliveries import Delivery, State, new_id

FLOW_ID = "jMR59FC-eNBzFTxxfBGYMA"


def require(service: str, port: int) -> None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=3).close()
    except OSError as exc:
        reason = f"{service} at 127.0.0.1:{port} is unreachable: {exc}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason} (CI is set, so {service} must be tested)")
        pytest.skip(f"{reason} (set CI=true to make this a failure)")


def delivery(
    body: bytes = b'{"id": 42}',
    *,
    headers: list[tuple[str, str]] | None = None,
    path: str = "/orders/new",
    query: str = "src=shop&a=1&a=2&b[c]=3",
    attempts: int = 1,
) -> Delivery:
    return Delivery(
        id=new_id(),
        request_id=new_id(),
        flow_id=FLOW_ID,
        state=State.LEASED,
        attempts=attempts,
        next_at=0.0,
        received_at=time.time(),
        method="POST",
        path=path,
        query=query,
        headers=headers
        if headers is not None
        else [("host", "gw:8080"), ("content-type", "application/json"), ("x-tag", "one")],
        body=body,
        source="10.0.0.7",
    )
