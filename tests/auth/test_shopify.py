"""Shopify ``X-Shopify-Hmac-Sha256`` (base64 HMAC-SHA256 of the body).

Algorithm: https://shopify.dev/docs/apps/build/webhooks/verify-deliveries. Shopify
publishes no fixed vector and has no Python SDK for this, so the expected signature is
produced by a separate program: ``openssl dgst -sha256 -hmac … -binary | base64``.
"""

from __future__ import annotations

import base64
import subprocess

import pytest

from .support import check, raw_headers

SECRET = "hush"
BODY = b'{"id":820982911946154508,"email":"jon@example.com","total_price":"11.00"}'


def openssl_signature(secret: str, body: bytes) -> str:
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", secret, "-binary"],
        input=body,
        capture_output=True,
        check=True,
    ).stdout
    return base64.b64encode(digest).decode()


@pytest.fixture
def guard(make_guard):
    return make_guard({"type": "shopify", "secret": SECRET})


def test_a_signature_made_by_openssl_is_admitted(guard):
    signature = openssl_signature(SECRET, BODY)
    assert check(guard, [("X-Shopify-Hmac-Sha256", signature)], BODY) is None


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s: s, None),
        (lambda s: s.rstrip("="), "malformed-header"),
        (
            lambda s: base64.urlsafe_b64encode(base64.b64decode(s)).decode().replace("=", "!"),
            "bad-signature",
        ),
        (lambda s: base64.b64decode(s).hex(), "malformed-header"),
        (lambda s: "x" + s[1:], "bad-signature"),
        (lambda s: "%" * len(s), "bad-signature"),
    ],
    ids=["as-is", "unpadded", "not-base64", "hex-instead", "one-char-changed", "garbage"],
)
def test_encodings(guard, mutate, reason):
    rejection = check(
        guard, [("X-Shopify-Hmac-Sha256", mutate(openssl_signature(SECRET, BODY)))], BODY
    )
    assert (rejection.reason if rejection else None) == reason


def test_tampered_body_and_other_secret_are_refused(guard):
    signature = openssl_signature(SECRET, BODY)
    assert check(guard, [("X-Shopify-Hmac-Sha256", signature)], BODY[:-1]) is not None
    other = openssl_signature("not hush", BODY)
    assert check(guard, [("X-Shopify-Hmac-Sha256", other)], BODY) is not None


def test_dedupe_key_is_the_webhook_id(guard):
    headers = raw_headers([("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")])
    assert guard.dedupe_key(headers, BODY) == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"
    assert guard.dedupe_key(headers + headers, BODY) is None
