"""Fixtures of the end-to-end tests."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest

SERVER = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database for this test, dropped afterwards (connections and all)."""
    try:
        server = psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}".strip()
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason} (CI is set, so PostgreSQL must be tested)")
        pytest.skip(f"{reason} (set CI=true to make this a failure)")
    name = f"hookgate_e2e_{secrets.token_hex(6)}"
    server.execute(f"CREATE DATABASE {name}")
    server.close()
    try:
        yield f"{SERVER}/{name}"
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
