"""Bearer tokens and HTTP Basic (RFC 6750, RFC 7617)."""

from __future__ import annotations

import base64

import pytest

from .support import check


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def bearer(make_guard):
    return make_guard({"type": "bearer", "token": ["t0ken-new", "t0ken-old"]})


@pytest.mark.parametrize("value", ["Bearer t0ken-new", "bearer t0ken-old", "BEARER  t0ken-new"])
def test_bearer_admits_any_configured_token(bearer, value):
    assert check(bearer, [("Authorization", value)]) is None
    assert not bearer.needs_body


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ([], "missing-credentials"),
        ([("Authorization", "Bearer t0ken")], "bad-credentials"),
        ([("Authorization", "Bearer t0ken-new2")], "bad-credentials"),
        ([("Authorization", "Bearer ")], "malformed-header"),
        ([("Authorization", "Token t0ken-new")], "missing-credentials"),
        ([("Authorization", "t0ken-new")], "missing-credentials"),
        (
            [("Authorization", "Bearer t0ken-new"), ("Authorization", "Bearer x")],
            "duplicate-header",
        ),
        ([("Authorization", b"Bearer \xff\xfe")], "bad-credentials"),
    ],
)
def test_bearer_refusals(bearer, items, reason):
    rejection = check(bearer, items)
    assert rejection is not None and (rejection.scheme, rejection.reason) == ("bearer", reason)


@pytest.fixture
def basic_guard(make_guard):
    return make_guard({"type": "basic", "username": "shop", "password": ["pa:ss", "older"]})


def test_basic_admits_the_user_with_any_password(basic_guard):
    assert check(basic_guard, [("Authorization", basic("shop", "pa:ss"))]) is None
    assert check(basic_guard, [("Authorization", basic("shop", "older"))]) is None


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (basic("shop", "wrong"), "bad-credentials"),
        (basic("Shop", "pa:ss"), "bad-credentials"),
        (basic("other", "older"), "bad-credentials"),
        (basic("shop", ""), "bad-credentials"),
        ("Basic " + base64.b64encode(b"shop").decode(), "malformed-header"),
        ("Basic !!!notbase64", "malformed-header"),
        ("Basic", "malformed-header"),
        ("Bearer pa:ss", "missing-credentials"),
    ],
)
def test_basic_refusals(basic_guard, value, reason):
    rejection = check(basic_guard, [("Authorization", value)])
    assert rejection is not None and rejection.reason == reason


def test_bearer_or_basic_whichever_is_sent(make_guard):
    guard = make_guard(
        {"type": "bearer", "token": "tok"}, {"type": "basic", "username": "u", "password": "p"}
    )
    assert check(guard, [("Authorization", "Bearer tok")]) is None
    assert check(guard, [("Authorization", basic("u", "p"))]) is None
    # The refusal names the method that had something to judge, not the one left unasked.
    rejection = check(guard, [("Authorization", basic("u", "x"))])
    assert rejection is not None and (rejection.scheme, rejection.reason) == (
        "basic",
        "bad-credentials",
    )
