"""Property tests: no header, body or address makes a guard raise."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hookgate.auth import REASONS, Guard, Request, build_guard

from .support import methods

NAMES = [
    b"authorization",
    b"webhook-id",
    b"webhook-timestamp",
    b"webhook-signature",
    b"x-hub-signature-256",
    b"stripe-signature",
    b"x-shopify-hmac-sha256",
    b"x-slack-signature",
    b"x-slack-request-timestamp",
    b"x-hmac",
    b"x-sig",
    b"x-ts",
    b"x-id",
    b"x-forwarded-for",
    b"x-github-delivery",
    b"idempotency-key",
]

header_values = st.one_of(
    st.binary(max_size=120),
    st.sampled_from(
        [
            b"sha256=",
            b"v0=",
            b"v1,",
            b"v1a,",
            b"t=1,v1=",
            b"Bearer ",
            b"Basic ",
            b"1700000000",
            b"10.0.0.1",
            b"::1",
        ]
    ).flatmap(lambda p: st.binary(max_size=90).map(lambda b: p + b)),
)
headers = st.lists(
    st.tuples(st.one_of(st.sampled_from(NAMES), st.binary(max_size=20)), header_values), max_size=12
)
clients = st.one_of(st.none(), st.text(max_size=45), st.ip_addresses().map(str))


@pytest.fixture(scope="module")
def every_scheme() -> Guard:
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    env = {
        "HOOKGATE_PROP_HMAC": "secret",
        "HOOKGATE_PROP_SWH": "whsec_" + base64.b64encode(b"k" * 24).decode(),
        "HOOKGATE_PROP_PK": "whpk_" + base64.b64encode(public).decode(),
    }
    mp = pytest.MonkeyPatch()
    for name, value in env.items():
        mp.setenv(name, value)
    try:
        return build_guard(
            methods(
                [
                    {
                        "type": "standard-webhooks",
                        "secret": ["env:HOOKGATE_PROP_SWH", "env:HOOKGATE_PROP_PK"],
                    },
                    {"type": "github", "secret": "env:HOOKGATE_PROP_HMAC"},
                    {"type": "stripe", "secret": "env:HOOKGATE_PROP_HMAC"},
                    {"type": "shopify", "secret": "env:HOOKGATE_PROP_HMAC"},
                    {"type": "slack", "secret": "env:HOOKGATE_PROP_HMAC"},
                    {"type": "oih", "secret": "env:HOOKGATE_PROP_HMAC"},
                    {
                        "type": "hmac",
                        "secret": "env:HOOKGATE_PROP_HMAC",
                        "header": "x-sig",
                        "signed": "{method}{path}{id}{timestamp}{body}",
                        "timestamp_header": "x-ts",
                        "id_header": "x-id",
                        "encoding": "base64",
                    },
                    {"type": "bearer", "token": "env:HOOKGATE_PROP_HMAC"},
                    {"type": "basic", "username": "u", "password": "env:HOOKGATE_PROP_HMAC"},
                    {"type": "ip", "allow": ["192.0.2.0/24"], "trusted_proxies": ["10.0.0.0/8"]},
                ]
            )
        )
    finally:
        mp.undo()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=headers,
    body=st.binary(max_size=300),
    client=clients,
    method=st.text(max_size=8),
    path=st.text(max_size=40),
    now=st.floats(allow_nan=True, allow_infinity=True),
)
def test_random_requests_never_raise_and_are_refused(
    every_scheme, headers, body, client, method, path, now
):
    rejection = every_scheme.check(
        Request(
            method=method, path=path, query="", headers=headers, body=body, client=client, now=now
        )
    )
    if rejection is None:
        # Random bytes forge no signature: only the IP allowlist can have admitted this.
        assert client is not None
    else:
        assert rejection.reason in REASONS
    key = every_scheme.dedupe_key(headers, body)
    assert key is None or 0 < len(key) <= 256
