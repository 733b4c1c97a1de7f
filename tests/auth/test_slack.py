"""Slack ``X-Slack-Signature`` v0.

Vector: the worked example of
https://api.slack.com/authentication/verifying-requests-from-slack; other signatures are
made with Slack's own SDK (``slack_sdk.signature.SignatureVerifier``).
"""

from __future__ import annotations

import time

import pytest
from slack_sdk.signature import SignatureVerifier

from .support import check

DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TIMESTAMP = "1531420618"
DOC_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
    b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
DOC_NOW = int(DOC_TIMESTAMP) + 30


def headers(signature: str = DOC_SIGNATURE, timestamp: str = DOC_TIMESTAMP):
    return [("X-Slack-Request-Timestamp", timestamp), ("X-Slack-Signature", signature)]


@pytest.fixture
def guard(make_guard):
    return make_guard({"type": "slack", "secret": DOC_SECRET})


def test_the_documented_example_is_admitted(guard):
    assert check(guard, headers(), DOC_BODY, now=DOC_NOW) is None


def test_signatures_made_by_the_slack_sdk_are_admitted(guard):
    sdk = SignatureVerifier(DOC_SECRET)
    body = b'{"type":"event_callback","event_id":"Ev08MFMKH6"}'
    timestamp = str(int(time.time()))
    signature = sdk.generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    assert check(guard, headers(signature, timestamp), body) is None
    assert sdk.is_valid(body=body, timestamp=timestamp, signature=signature)


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (DOC_NOW + 301, "stale-timestamp"),
        (int(DOC_TIMESTAMP) - 301, "stale-timestamp"),
        (float("nan"), "stale-timestamp"),
        (float("inf"), "stale-timestamp"),
    ],
    ids=["too-old", "from-the-future", "nan-clock", "infinite-clock"],
)
def test_timestamps_outside_the_tolerance_are_refused(guard, now, reason):
    rejection = check(guard, headers(), DOC_BODY, now=now)
    assert rejection is not None and rejection.reason == reason


def test_tolerance_is_configurable(make_guard):
    guard = make_guard({"type": "slack", "secret": DOC_SECRET, "tolerance": "1h"})
    assert check(guard, headers(), DOC_BODY, now=int(DOC_TIMESTAMP) + 3000) is None
    assert check(guard, headers(), DOC_BODY, now=int(DOC_TIMESTAMP) + 3700) is not None


@pytest.mark.parametrize(
    ("items", "body", "reason"),
    [
        (headers(), DOC_BODY + b"&x=1", "bad-signature"),
        (headers(timestamp="1531420619"), DOC_BODY, "bad-signature"),
        (headers(timestamp="1531420618.0"), DOC_BODY, "malformed-header"),
        (headers(timestamp="-1531420618"), DOC_BODY, "malformed-header"),
        (headers(timestamp="1e9"), DOC_BODY, "malformed-header"),
        (headers(timestamp=""), DOC_BODY, "malformed-header"),
        ([("X-Slack-Signature", DOC_SIGNATURE)], DOC_BODY, "missing-header"),
        ([("X-Slack-Request-Timestamp", DOC_TIMESTAMP)], DOC_BODY, "missing-signature"),
        (headers(signature=DOC_SIGNATURE.replace("v0=", "v1=")), DOC_BODY, "malformed-header"),
        ([*headers(), ("X-Slack-Request-Timestamp", str(DOC_NOW))], DOC_BODY, "duplicate-header"),
    ],
    ids=[
        "tampered-body",
        "tampered-timestamp",
        "fractional",
        "negative",
        "exponent",
        "empty-timestamp",
        "no-timestamp",
        "no-signature",
        "other-version",
        "duplicate-timestamp",
    ],
)
def test_refused(guard, items, body, reason):
    rejection = check(guard, items, body, now=DOC_NOW)
    assert rejection is not None
    assert (rejection.scheme, rejection.reason) == ("slack", reason)


def test_wrong_secret_is_refused(make_guard):
    guard = make_guard({"type": "slack", "secret": "8f742231b10e8888abcd99yyyzzz85a6"})
    rejection = check(guard, headers(), DOC_BODY, now=DOC_NOW)
    assert rejection is not None and rejection.reason == "bad-signature"
