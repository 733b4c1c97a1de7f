"""Twilio ``X-Twilio-Signature``.

Vector: the worked example of https://www.twilio.com/docs/usage/webhooks/webhooks-security
(auth token ``12345``); other signatures are made with Twilio's own SDK
(``twilio.request_validator.RequestValidator``).
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import msgspec
import pytest
from twilio.request_validator import RequestValidator

from hookgate.domain.auth import AuthMethod
from hookgate.domain.units import dec_hook

from .support import check

DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
TOKEN = "auth-token-0123456789abcdef"
PUBLIC = "https://hooks.example.com"
PATH = "/hook/R9LePduhXwy6VTRa-6aAeA/sms"


def test_the_documented_example_is_admitted(make_guard):
    guard = make_guard({"type": "twilio", "secret": "12345", "public_url": "https://mycompany.com"})
    headers = [("X-Twilio-Signature", "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")]
    body = urlencode(DOC_PARAMS).encode()
    assert check(guard, headers, body, path="/myapp.php", query="foo=1&bar=2") is None
    rejection = check(guard, headers, body, path="/myapp.php", query="foo=1&bar=3")
    assert rejection is not None and rejection.reason == "bad-signature"


@pytest.fixture
def guard(make_guard):
    return make_guard({"type": "twilio", "secret": TOKEN, "public_url": PUBLIC})


@pytest.mark.parametrize("signed_as", [PUBLIC, "https://hooks.example.com:443"])
def test_form_posts_signed_by_the_sdk_are_admitted_with_or_without_the_port(guard, signed_as):
    fields = [("Body", "héllo & bye"), ("From", "+14158675310"), ("MediaUrl0", ""), ("To", "+1")]
    url = f"{signed_as}{PATH}?tenant=acme"
    signature = RequestValidator(TOKEN).compute_signature(url, dict(fields))
    body = urlencode(fields).encode()
    headers = [("X-Twilio-Signature", signature)]
    assert check(guard, headers, body, path=PATH, query="tenant=acme") is None
    altered = urlencode([*fields[:3], ("To", "+2")]).encode()
    rejection = check(guard, headers, altered, path=PATH, query="tenant=acme")
    assert rejection is not None and rejection.reason == "bad-signature"


def test_json_bodies_are_checked_by_their_hash_in_the_url(guard):
    body = b'{"event":"com.twilio.messaging.message.delivered","data":{"sid":"SM1"}}'
    query = "bodySHA256=" + hashlib.sha256(body).hexdigest()
    url = f"{PUBLIC}{PATH}?{query}"
    validator = RequestValidator(TOKEN)
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, body.decode(), signature)
    headers = [("X-Twilio-Signature", signature)]
    assert check(guard, headers, body, path=PATH, query=query) is None
    rejection = check(guard, headers, body + b" ", path=PATH, query=query)
    assert rejection is not None and rejection.reason == "bad-signature"


def test_a_proxy_prefix_in_the_public_url_is_part_of_what_is_signed(make_guard):
    public = "https://api.example.com/webhooks"
    guard = make_guard({"type": "twilio", "secret": TOKEN, "public_url": public + "/"})
    fields = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    signature = RequestValidator(TOKEN).compute_signature(public + PATH, fields)
    body = urlencode(fields).encode()
    assert check(guard, [("X-Twilio-Signature", signature)], body, path=PATH) is None
    rejection = check(make_guard(), [], body)
    assert rejection is None  # no auth configured admits, so the above was the guard's doing


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        ([], b"a=1", "missing-signature"),
        ([("X-Twilio-Signature", "short")], b"a=1", "malformed-header"),
        ([("X-Twilio-Signature", "A" * 27 + "=")], b"a=1", "bad-signature"),
        ([("X-Twilio-Signature", "A" * 27 + "=")], b"\xff=1", "malformed-request"),
    ],
)
def test_refusals(guard, headers, body, reason):
    rejection = check(guard, headers, body, path=PATH)
    assert rejection is not None and rejection.reason == reason


def test_the_idempotency_token_names_the_delivery(guard):
    key = guard.dedupe_key([(b"i-twilio-idempotency-token", b"abc-123")], b"")
    assert key == "abc-123"


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "twilio", "secret": "env:T"},
        {"type": "twilio", "secret": "env:T", "public_url": "ftp://hooks.example.com"},
        {"type": "twilio", "secret": "env:T", "public_url": "https://"},
        {"type": "twilio", "secret": "env:T", "public_url": "https://h:port"},
        {"type": "twilio", "secret": "env:T", "public_url": "https://h.example?x=1"},
    ],
)
def test_a_missing_or_bad_public_url_is_refused_when_the_flow_is_applied(entry):
    with pytest.raises(msgspec.ValidationError, match="public_url"):
        msgspec.convert([entry], list[AuthMethod], dec_hook=dec_hook)
