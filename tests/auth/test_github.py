"""GitHub ``X-Hub-Signature-256``.

Vector: https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries
("Testing the webhook payload validation").
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from .support import check

DOC_SECRET = "It's a Secret to Everybody"
DOC_BODY = b"Hello, World!"
DOC_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def guard(make_guard):
    return make_guard({"type": "github", "secret": DOC_SECRET})


def test_the_documented_example_is_admitted(guard):
    assert check(guard, [("X-Hub-Signature-256", DOC_SIGNATURE)], DOC_BODY) is None


def test_upper_case_hex_is_the_same_signature(guard):
    upper = "sha256=" + DOC_SIGNATURE.removeprefix("sha256=").upper()
    assert check(guard, [("X-Hub-Signature-256", upper)], DOC_BODY) is None


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ([], DOC_BODY, "missing-signature"),
        ([("X-Hub-Signature-256", DOC_SIGNATURE)], b"Hello, World?", "bad-signature"),
        ([("X-Hub-Signature-256", DOC_SIGNATURE)], b"Hello, World! ", "bad-signature"),
        ([("X-Hub-Signature-256", sign("another secret", DOC_BODY))], DOC_BODY, "bad-signature"),
        ([("X-Hub-Signature-256", DOC_SIGNATURE[:-2])], DOC_BODY, "malformed-header"),
        ([("X-Hub-Signature-256", DOC_SIGNATURE + "00")], DOC_BODY, "malformed-header"),
        (
            [("X-Hub-Signature-256", DOC_SIGNATURE.removeprefix("sha256="))],
            DOC_BODY,
            "malformed-header",
        ),
        ([("X-Hub-Signature-256", "sha1=" + "0" * 64)], DOC_BODY, "malformed-header"),
        ([("X-Hub-Signature-256", "sha256=" + "z" * 64)], DOC_BODY, "bad-signature"),
        ([("X-Hub-Signature-256", "")], DOC_BODY, "malformed-header"),
        ([("X-Hub-Signature", "sha1=" + "0" * 40)], DOC_BODY, "missing-signature"),
    ],
    ids=[
        "missing",
        "tampered",
        "trailing-space",
        "other-secret",
        "short",
        "long",
        "no-prefix",
        "wrong-prefix",
        "non-hex",
        "empty",
        "only-legacy-sha1",
    ],
)
def test_refused(guard, headers, body, reason):
    rejection = check(guard, headers, body)
    assert rejection is not None
    assert (rejection.scheme, rejection.reason) == ("github", reason)


def test_a_duplicated_signature_header_is_refused_even_if_one_is_right(guard):
    forged = sign("attacker", b"evil")
    for order in ([DOC_SIGNATURE, forged], [forged, DOC_SIGNATURE]):
        headers = [("X-Hub-Signature-256", value) for value in order]
        rejection = check(guard, headers, DOC_BODY)
        assert rejection is not None and rejection.reason == "duplicate-header"


def test_rotation_either_secret_verifies(make_guard):
    guard = make_guard({"type": "github", "secret": ["new secret", DOC_SECRET]})
    assert check(guard, [("X-Hub-Signature-256", DOC_SIGNATURE)], DOC_BODY) is None
    body = b'{"zen": "Keep it logically awesome."}'
    assert check(guard, [("X-Hub-Signature-256", sign("new secret", body))], body) is None
    assert check(guard, [("X-Hub-Signature-256", sign("old secret", body))], body) is not None


def test_binary_and_non_utf8_bodies_are_verified_as_bytes(guard):
    body = bytes(range(256)) * 4
    assert check(guard, [("X-Hub-Signature-256", sign(DOC_SECRET, body))], body) is None


def test_dedupe_key_is_the_delivery_id(guard):
    from .support import raw_headers

    headers = raw_headers([("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")])
    assert guard.dedupe_key(headers, DOC_BODY) == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert guard.dedupe_key([], DOC_BODY) is None
    assert guard.needs_body
