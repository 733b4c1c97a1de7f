"""Helpers: build a guard from ``auth:`` entries as a flow file has them, and call it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import pytest

from hookgate.auth import Guard, Rejection, build_guard
from hookgate.domain.auth import AuthMethod
from hookgate.domain.units import dec_hook

HeaderItems = Iterable[tuple[str, str | bytes]]


def methods(entries: list[dict[str, Any]]) -> list[AuthMethod]:
    return msgspec.convert(entries, list[AuthMethod], dec_hook=dec_hook)


def raw_headers(items: HeaderItems) -> list[tuple[bytes, bytes]]:
    """ASGI raw headers: lower-case byte names, byte values, in order, duplicates kept."""
    return [
        (name.lower().encode(), value if isinstance(value, bytes) else value.encode("latin-1"))
        for name, value in items
    ]


def check(
    guard: Guard, headers: HeaderItems = (), body: bytes = b"", *, now: float | None = None,
    client: str | None = "203.0.113.7", method: str = "POST", path: str = "/hook/abc",
    query: str = "",
) -> Rejection | None:
    return guard.check(
        method=method, path=path, query=query, headers=raw_headers(headers), body=body,
        client=client, now=time.time() if now is None else now,
    )


@pytest.fixture
def make_guard(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Guard]:
    """``make_guard({"type": "github", "secret": "s3cret"})``: the secret goes through env."""

    def make(*entries: dict[str, Any]) -> Guard:
        prepared = []
        for index, entry in enumerate(entries):
            entry = dict(entry)
            for field in ("secret", "token", "password"):
                if field in entry:
                    values = entry[field] if isinstance(entry[field], list) else [entry[field]]
                    refs = []
                    for n, value in enumerate(values):
                        name = f"HOOKGATE_TEST_{index}_{field.upper()}_{n}"
                        monkeypatch.setenv(name, value)
                        refs.append(f"env:{name}")
                    entry[field] = refs
            prepared.append(entry)
        return build_guard(methods(prepared))

    return make
