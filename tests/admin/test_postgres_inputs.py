"""On PostgreSQL, input the database cannot hold is refused before it gets there, and an
answer never names the database's host, port or name."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from tests.admin.conftest import spec
from tests.console.conftest import sign_in

from hookgate.admin.http import STORE_DOWN


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


def test_a_database_error_is_a_generic_503_and_the_detail_is_logged(
    gateway_factory: Any, pg_url: str
) -> None:
    gateway = gateway_factory(args=["--database", pg_url])
    database = urlsplit(pg_url).path.lstrip("/")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE deliveries RENAME TO deliveries_elsewhere")
    answer = gateway.admin("GET", "/api/v1/deliveries")
    assert answer.status_code == 503, answer.text
    assert answer.json() == {"error": STORE_DOWN}
    with httpx.Client(base_url=gateway.admin_base) as console:
        assert sign_in(console).status_code == 303
        page = console.get("/console/deliveries/" + "0" * 32)
        assert page.status_code == 503
        assert database not in page.text
    # Where an operator looks: the log has the database's own words.
    (line,) = [x for x in gateway.logs().splitlines() if "admin request failed" in x]
    assert 'relation \\"deliveries\\" does not exist' in line
    assert database in line
