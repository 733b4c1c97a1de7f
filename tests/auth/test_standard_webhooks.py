"""Standard Webhooks v1 (HMAC, ``whsec_``) and v1a (ed25519, ``whpk_``).

Vector: the reference library's sign test,
https://github.com/standard-webhooks/standard-webhooks/blob/main/libraries/python/tests/test_webhooks.py
(``test_sign_function``); the header layout follows
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md.
Other v1 signatures are made with the ``standardwebhooks`` SDK; v1a ones with
``cryptography`` (the SDK has no v1a).
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from standardwebhooks import Webhook

from hookgate.errors import ConfigError

from .support import check, raw_headers

DOC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DOC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
DOC_TIMESTAMP = 1614265330
DOC_BODY = b'{"test": 2432232314}'
DOC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def swh_headers(signature: str, msg_id: str = DOC_ID, timestamp: int | str = DOC_TIMESTAMP):
    return [
        ("webhook-id", msg_id),
        ("webhook-timestamp", str(timestamp)),
        ("webhook-signature", signature),
    ]


def sdk_sign(secret: str, msg_id: str, at: int, body: bytes) -> str:
    when = datetime.fromtimestamp(at, tz=UTC)
    return Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=body.decode())


def ed25519_pair() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, "whpk_" + base64.b64encode(raw).decode()


def v1a(private: Ed25519PrivateKey, msg_id: str, at: int, body: bytes) -> str:
    signature = private.sign(f"{msg_id}.{at}.".encode() + body)
    return "v1a," + base64.b64encode(signature).decode()


@pytest.fixture
def guard(make_guard):
    return make_guard({"type": "standard-webhooks", "secret": DOC_SECRET})


def test_the_reference_vector_is_admitted(guard):
    rejection = check(guard, swh_headers(DOC_SIGNATURE), DOC_BODY, now=DOC_TIMESTAMP + 10)
    assert rejection is None


def test_bare_base64_secrets_work_like_in_the_sdk(make_guard):
    guard = make_guard({"type": "standard-webhooks", "secret": DOC_SECRET.removeprefix("whsec_")})
    assert check(guard, swh_headers(DOC_SIGNATURE), DOC_BODY, now=DOC_TIMESTAMP) is None


def test_signatures_made_by_the_sdk_are_admitted_and_agree(guard):
    now = int(time.time())
    body = '{"type":"contact.created","data":{"id":"ü"}}'.encode()
    signature = sdk_sign(DOC_SECRET, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now, body)
    items = swh_headers(signature, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", now)
    assert check(guard, items, body) is None
    Webhook(DOC_SECRET).verify(body, dict(items))


def test_several_signatures_in_one_header(guard):
    now = int(time.time())
    good = sdk_sign(DOC_SECRET, DOC_ID, now, DOC_BODY)
    others = [
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
    ]
    assert check(guard, swh_headers(" ".join([*others, good]), DOC_ID, now), DOC_BODY) is None
    rejection = check(guard, swh_headers(" ".join(others), DOC_ID, now), DOC_BODY)
    assert rejection is not None and rejection.reason == "bad-signature"


def test_v1a_ed25519_with_a_public_key(make_guard):
    private, public = ed25519_pair()
    guard = make_guard({"type": "standard-webhooks", "secret": public})
    now = int(time.time())
    body = bytes(range(256))
    assert check(guard, swh_headers(v1a(private, DOC_ID, now, body), DOC_ID, now), body) is None
    assert guard.needs_body
    intruder, _ = ed25519_pair()
    forged = check(guard, swh_headers(v1a(intruder, DOC_ID, now, body), DOC_ID, now), body)
    assert forged is not None and forged.reason == "bad-signature"
    tampered = check(guard, swh_headers(v1a(private, DOC_ID, now, body), DOC_ID, now), body[1:])
    assert tampered is not None and tampered.reason == "bad-signature"
    # A v1 entry is no use against a guard that holds only a public key.
    hmac_only = swh_headers(sdk_sign(DOC_SECRET, DOC_ID, now, DOC_BODY), DOC_ID, now)
    assert check(guard, hmac_only, DOC_BODY) is not None


def test_mixed_keys_and_rotation(make_guard):
    private, public = ed25519_pair()
    old = "whsec_" + base64.b64encode(b"o" * 32).decode()
    guard = make_guard({"type": "standard-webhooks", "secret": [old, DOC_SECRET, public]})
    now = int(time.time())
    signatures = [
        sdk_sign(old, DOC_ID, now, DOC_BODY),
        sdk_sign(DOC_SECRET, DOC_ID, now, DOC_BODY),
        v1a(private, DOC_ID, now, DOC_BODY),
    ]
    for signature in signatures:
        assert check(guard, swh_headers(signature, DOC_ID, now), DOC_BODY) is None


@pytest.mark.parametrize(
    ("items", "now", "reason"),
    [
        (swh_headers(DOC_SIGNATURE), DOC_TIMESTAMP + 301, "stale-timestamp"),
        (swh_headers(DOC_SIGNATURE), DOC_TIMESTAMP - 301, "stale-timestamp"),
        (swh_headers(DOC_SIGNATURE, msg_id="msg_other"), DOC_TIMESTAMP, "bad-signature"),
        (swh_headers(DOC_SIGNATURE, timestamp=DOC_TIMESTAMP + 1), DOC_TIMESTAMP, "bad-signature"),
        (swh_headers(DOC_SIGNATURE, timestamp="1614265330.5"), DOC_TIMESTAMP, "malformed-header"),
        (
            swh_headers("g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
            DOC_TIMESTAMP,
            "malformed-header",
        ),
        (swh_headers("v1,"), DOC_TIMESTAMP, "bad-signature"),
        (swh_headers("v1,%%%%"), DOC_TIMESTAMP, "bad-signature"),
        (swh_headers("v1a,%%%%"), DOC_TIMESTAMP, "bad-signature"),
        (swh_headers("v1a," + "A" * 88), DOC_TIMESTAMP, "bad-signature"),
        (swh_headers(" ".join([DOC_SIGNATURE] * 9)), DOC_TIMESTAMP, "malformed-header"),
        (swh_headers("   "), DOC_TIMESTAMP, "malformed-header"),
        (swh_headers(DOC_SIGNATURE)[1:], DOC_TIMESTAMP, "missing-header"),
        (swh_headers(DOC_SIGNATURE)[:2], DOC_TIMESTAMP, "missing-signature"),
        (
            [*swh_headers(DOC_SIGNATURE), ("webhook-id", "msg_again")],
            DOC_TIMESTAMP,
            "duplicate-header",
        ),
    ],
    ids=[
        "old",
        "future",
        "tampered-id",
        "tampered-timestamp",
        "fractional-timestamp",
        "no-version",
        "empty-signature",
        "not-base64",
        "v1a-not-base64",
        "v1a-wrong-key",
        "too-many",
        "blank",
        "no-id",
        "no-signature",
        "duplicate-id",
    ],
)
def test_refused(guard, items, now, reason):
    rejection = check(guard, items, DOC_BODY, now=now)
    assert rejection is not None
    assert (rejection.scheme, rejection.reason) == ("standard-webhooks", reason)


def test_tampered_body_and_wrong_secret(make_guard, guard):
    assert check(guard, swh_headers(DOC_SIGNATURE), DOC_BODY + b" ", now=DOC_TIMESTAMP)
    other = make_guard(
        {"type": "standard-webhooks", "secret": "whsec_" + base64.b64encode(b"x" * 24).decode()}
    )
    assert check(other, swh_headers(DOC_SIGNATURE), DOC_BODY, now=DOC_TIMESTAMP)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("whsk_" + base64.b64encode(b"k" * 64).decode(), "private key"),
        ("whpk_" + base64.b64encode(b"k" * 31).decode(), "32-byte"),
        ("whsec_not*base64", "base64"),
        ("whsec_", "empty"),
    ],
)
def test_unusable_keys_are_refused_when_the_guard_is_built(make_guard, secret, message):
    with pytest.raises(ConfigError, match=message) as caught:
        make_guard({"type": "standard-webhooks", "secret": secret})
    assert secret.split("_", 1)[1] not in str(caught.value) or not secret.split("_", 1)[1]
    assert "HOOKGATE_TEST_0_SECRET_0" in str(caught.value)


def test_dedupe_key_is_the_webhook_id(guard):
    assert guard.dedupe_key(raw_headers(swh_headers(DOC_SIGNATURE)), DOC_BODY) == DOC_ID
