"""On PostgreSQL, input the database cannot hold is refused before it gets there, and an
answer never names the database's host, port or name."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from tests.admin.conftest import spec


def test_a_nul_byte_is_a_4xx_that_names_no_database(gateway_factory: Any, pg_url: str) -> None:
    gateway = gateway_factory(args=["--database", pg_url])
    where = urlsplit(pg_url)
    database = where.path.lstrip("/")
    answers: list[httpx.Response] = [
        gateway.admin("GET", "/api/v1/deliveries/01a2480ede43a68447f99780c8b3f1%00"),
        gateway.admin("GET", "/api/v1/deliveries/a%00b"),
        gateway.admin("DELETE", "/api/v1/deliveries/a%00b"),
        gateway.admin("POST", "/api/v1/deliveries/replay", json={"ids": ["a\u0000b"]}),
        gateway.admin("POST", "/api/v1/flows", json=spec("nul", worker={"command": ["a\u0000"]})),
        gateway.admin("GET", "/api/v1/deliveries", params={"cursor": "9" * 20}),
    ]
    for answer in answers:
        assert answer.status_code < 500, answer.text
        assert answer.status_code != 200 or answer.json() == {"replayed": 0}, answer.text
        for secret in (database, str(where.port), str(where.hostname)):
            assert secret not in answer.text, answer.text
