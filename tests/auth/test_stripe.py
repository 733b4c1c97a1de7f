"""Stripe ``Stripe-Signature``.

Algorithm: https://docs.stripe.com/webhooks#verify-manually (Stripe publishes no fixed
vector); signatures are made with Stripe's own SDK (``stripe.WebhookSignature``), and the
SDK's verifier is asked to agree with ours.
"""

from __future__ import annotations

import time

import pytest
from stripe import SignatureVerificationError, WebhookSignature

from .support import check, raw_headers

SECRET = "whsec_test_6Nn8d0RaZ2cPjK3yYb1Qm0tV"
BODY = b'{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"charge.succeeded"}'


def stripe_header(body: bytes = BODY, secret: str = SECRET, at: int | None = None) -> str:
    return WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=at)


@pytest.fixture
def guard(make_guard):
    return make_guard({"type": "stripe", "secret": SECRET})


def test_a_header_made_by_the_stripe_sdk_is_admitted(guard):
    header = stripe_header()
    assert WebhookSignature.verify_header(BODY, header, SECRET, tolerance=300)
    assert check(guard, [("Stripe-Signature", header)], BODY) is None


def test_several_v1_signatures_any_one_matches(guard):
    now = int(time.time())
    right = stripe_header(at=now).split(",")[1]
    wrong = stripe_header(secret="whsec_other", at=now).split(",")[1]
    legacy = "v0=" + "6f" * 32
    header = f"t={now},{wrong},{right},{legacy}"
    assert check(guard, [("Stripe-Signature", header)], BODY) is None


def test_rotation_either_secret_verifies(make_guard):
    guard = make_guard({"type": "stripe", "secret": ["whsec_new", SECRET]})
    assert check(guard, [("Stripe-Signature", stripe_header())], BODY) is None
    assert check(guard, [("Stripe-Signature", stripe_header(secret="whsec_new"))], BODY) is None


@pytest.mark.parametrize("age", [-301, 301, 86400])
def test_timestamps_outside_the_tolerance_are_refused(guard, age):
    now = int(time.time())
    header = stripe_header(at=now - age)
    rejection = check(guard, [("Stripe-Signature", header)], BODY, now=now)
    assert rejection is not None and rejection.reason == "stale-timestamp"


def test_tampering_is_refused_by_us_and_by_the_sdk(guard):
    now = int(time.time())
    header = stripe_header(at=now)
    tampered_body = BODY.replace(b"succeeded", b"refunded")
    tampered_time = header.replace(f"t={now}", f"t={now + 1}")
    other_secret = stripe_header(secret="whsec_wrong", at=now)
    for body, value in ((tampered_body, header), (BODY, tampered_time), (BODY, other_secret)):
        with pytest.raises(SignatureVerificationError):
            WebhookSignature.verify_header(body, value, SECRET, tolerance=300)
        rejection = check(guard, [("Stripe-Signature", value)], body, now=now)
        assert rejection is not None and rejection.reason == "bad-signature"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "t=",
        "v1=abc",
        "t=123",
        "garbage",
        "t=1,t=2,v1=00",
        "t=abc,v1=00",
        "t=1700000000;v1=00",
        ",,,",
        "t=1700000000,v1",
    ],
)
def test_garbled_headers_are_refused(guard, value):
    rejection = check(guard, [("Stripe-Signature", value)], BODY, now=1700000000)
    assert rejection is not None and rejection.reason == "malformed-header"


def test_a_duplicated_header_is_refused(guard):
    header = stripe_header()
    forged = stripe_header(secret="whsec_attacker")
    rejection = check(guard, [("Stripe-Signature", forged), ("Stripe-Signature", header)], BODY)
    assert rejection is not None and rejection.reason == "duplicate-header"


def test_dedupe_key_is_the_event_id_from_the_body(guard):
    assert guard.dedupe_key([], BODY) == "evt_1NG8Du2eZvKYlo2CUI79vXWy"
    assert guard.dedupe_key([], b"not json") is None
    assert guard.dedupe_key([], b'{"id": 5}') is None
    assert guard.dedupe_key(raw_headers([("Idempotency-Key", "k1")]), b"[]") == "k1"
