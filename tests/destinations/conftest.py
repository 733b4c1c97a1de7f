"""Deliveries to publish (the brokers themselves: ``tests.brokers``)."""

from __future__ import annotations

import time

from hookgate.domain.deliveries import Delivery, State, new_id

FLOW_ID = "jMR59FC-eNBzFTxxfBGYMA"


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
