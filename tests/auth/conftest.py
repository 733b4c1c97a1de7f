"""The ``make_guard`` fixture: secrets pass through the environment as in production."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hookgate.auth import Guard, build_guard

from .support import methods


@pytest.fixture
def make_guard(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Guard]:
    """``make_guard({"type": "github", "secret": "s3cret"})``: the secret goes through env."""

    def make(*entries: dict[str, Any]) -> Guard:
        prepared = []
        for index, entry in enumerate(entries):
            entry = dict(entry)
            for field in ("secret", "token", "password", "verify_token", "keys"):
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
