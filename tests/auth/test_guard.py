"""The guard as the ingress uses it: building, any-one admission, secrets, dedupe keys."""

from __future__ import annotations

import hashlib
import hmac

import pytest

import hookgate.auth
from hookgate.auth import REASONS, Guard, Rejection, build_guard
from hookgate.errors import ConfigError

from .support import check, methods, raw_headers

BODY = b"payload"


def github_signature(secret: bytes, body: bytes = BODY) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def test_public_names_are_pinned():
    assert set(hookgate.auth.__all__) == {
        "REASONS",
        "Answer",
        "Guard",
        "Rejection",
        "Request",
        "build_guard",
    }


def test_no_methods_admits_everything():
    guard = build_guard([])
    assert check(guard, [], b"anything", client=None) is None
    assert not guard.needs_body
    assert guard.dedupe_key([], b"") is None
    assert guard.dedupe_key(raw_headers([("Idempotency-Key", "order-7")]), b"") == "order-7"


def test_any_one_method_admits(make_guard):
    guard = make_guard({"type": "ip", "allow": ["10.0.0.0/8"]}, {"type": "github", "secret": "s"})
    assert check(guard, client="10.1.2.3") is None
    assert (
        check(guard, [("X-Hub-Signature-256", github_signature(b"s"))], BODY, client="203.0.113.1")
        is None
    )
    rejection = check(
        guard, [("X-Hub-Signature-256", github_signature(b"x"))], BODY, client="203.0.113.1"
    )
    assert rejection == Rejection(reason="bad-signature", scheme="github")
    assert guard.needs_body


def test_refusal_reasons_are_from_the_fixed_vocabulary(make_guard):
    guard = make_guard({"type": "bearer", "token": "t"}, {"type": "slack", "secret": "s"})
    rejection = check(guard)
    assert rejection is not None and rejection.reason in REASONS
    assert rejection.reason == "missing-credentials"


def test_secrets_from_files_lose_only_the_trailing_line_break(tmp_path):
    path = tmp_path / "secret"
    path.write_bytes(b" spaced secret \n")
    guard = build_guard(methods([{"type": "github", "secret": f"file:{path}"}]))
    signature = github_signature(b" spaced secret ")
    assert check(guard, [("X-Hub-Signature-256", signature)], BODY) is None


def test_secrets_are_read_once_at_build_time(tmp_path, monkeypatch):
    monkeypatch.setenv("HOOKGATE_TEST_ROTATING", "first")
    guard = build_guard(methods([{"type": "github", "secret": "env:HOOKGATE_TEST_ROTATING"}]))
    monkeypatch.setenv("HOOKGATE_TEST_ROTATING", "second")
    assert check(guard, [("X-Hub-Signature-256", github_signature(b"first"))], BODY) is None


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "env:HOOKGATE_TEST_UNSET",
            r"auth\[0\] \(github\): environment variable "
            r"HOOKGATE_TEST_UNSET is not set",
        ),
        ("env:HOOKGATE_TEST_EMPTY", "environment variable HOOKGATE_TEST_EMPTY is empty"),
        (
            "file:/nonexistent/hookgate/secret",
            "cannot read secret file /nonexistent/hookgate/secret",
        ),
    ],
)
def test_missing_secrets_are_named(monkeypatch, ref, message):
    monkeypatch.delenv("HOOKGATE_TEST_UNSET", raising=False)
    monkeypatch.setenv("HOOKGATE_TEST_EMPTY", "")
    with pytest.raises(ConfigError, match=message):
        build_guard(methods([{"type": "github", "secret": ref}]))


def test_errors_and_reprs_never_show_a_secret(tmp_path, monkeypatch, make_guard):
    monkeypatch.setenv("HOOKGATE_TEST_GOOD", "TOPSECRETVALUE")
    path = tmp_path / "bad-key"
    path.write_text("whsk_TOPSECRETVALUE")
    with pytest.raises(ConfigError) as caught:
        build_guard(
            methods(
                [
                    {
                        "type": "standard-webhooks",
                        "secret": ["env:HOOKGATE_TEST_GOOD", f"file:{path}"],
                    }
                ]
            )
        )
    assert "TOPSECRETVALUE" not in str(caught.value)
    assert str(path) in str(caught.value)
    guard = make_guard({"type": "bearer", "token": "TOPSECRETVALUE"})
    rejection = check(guard, [("Authorization", "Bearer TOPSECRETVALUX")])
    assert "TOPSECRET" not in repr(guard) + repr(rejection)


def test_a_verifier_that_breaks_fails_closed():
    class Broken:
        scheme = "broken"
        signs_body = False

        def verify(self, request):
            raise RuntimeError("bug")

        def delivery_id(self, headers, body):
            raise RuntimeError("bug")

    guard = Guard([Broken()])
    assert check(guard) == Rejection(reason="malformed-request", scheme="broken")
    assert guard.dedupe_key([], b"") is None


def test_dedupe_key_prefers_the_provider_id_and_bounds_its_length(make_guard):
    guard = make_guard({"type": "github", "secret": "s"})
    both = raw_headers([("Idempotency-Key", "k"), ("X-GitHub-Delivery", "d")])
    assert guard.dedupe_key(both, BODY) == "d"
    assert guard.dedupe_key(raw_headers([("X-GitHub-Delivery", "x" * 257)]), BODY) is None
    assert guard.dedupe_key(raw_headers([("X-GitHub-Delivery", "  ")]), BODY) is None
