"""Cost of one verification per scheme, in µs, on a 1 KB body (issue 7: HMAC ≤ 20 µs).

Run: ``.venv/bin/python bench/auth_cost.py``. Each row is a full ``Guard.check`` call, as
the ingress makes it (raw ASGI headers, a typical dozen of them), on a request that passes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import timeit
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hookgate.auth import build_guard
from hookgate.domain.auth import AuthMethod
from hookgate.domain.units import dec_hook

SECRET = b"bench-secret-0123456789abcdef"
SWH_KEY = b"k" * 24
NOW = int(time.time())
TS = str(NOW).encode()
BODY = msgspec.json.encode({"id": "evt_bench", "data": "x" * 990})[:1024]
COMMON = [
    (b"host", b"hooks.example.com"),
    (b"user-agent", b"Provider-Hookshot/1.0"),
    (b"content-type", b"application/json"),
    (b"content-length", b"1024"),
    (b"accept", b"*/*"),
    (b"x-request-id", b"8c1f0a9e"),
    (b"accept-encoding", b"gzip"),
    (b"x-forwarded-proto", b"https"),
]


def _mac(message: bytes, key: bytes = SECRET) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def cases() -> list[tuple[str, dict[str, Any], list[tuple[bytes, bytes]], str | None]]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    swh_content = b"msg_1." + TS + b"." + BODY
    secret_env = "env:BENCH_SECRET"
    return [
        (
            "github",
            {"type": "github", "secret": secret_env},
            [(b"x-hub-signature-256", b"sha256=" + _mac(BODY).hex().encode())],
            None,
        ),
        (
            "shopify",
            {"type": "shopify", "secret": secret_env},
            [(b"x-shopify-hmac-sha256", base64.b64encode(_mac(BODY)))],
            None,
        ),
        (
            "oih",
            {"type": "oih", "secret": secret_env},
            [(b"x-hmac", base64.b64encode(_mac(BODY)))],
            None,
        ),
        (
            "slack",
            {"type": "slack", "secret": secret_env},
            [
                (b"x-slack-request-timestamp", TS),
                (b"x-slack-signature", b"v0=" + _mac(b"v0:" + TS + b":" + BODY).hex().encode()),
            ],
            None,
        ),
        (
            "stripe",
            {"type": "stripe", "secret": secret_env},
            [(b"stripe-signature", b"t=" + TS + b",v1=" + _mac(TS + b"." + BODY).hex().encode())],
            None,
        ),
        (
            "hmac (template, sha512)",
            {
                "type": "hmac",
                "secret": secret_env,
                "header": "x-sig",
                "algorithm": "sha512",
                "signed": "{timestamp}.{id}.{body}",
                "timestamp_header": "x-ts",
                "id_header": "x-id",
            },
            [
                (b"x-ts", TS),
                (b"x-id", b"d-1"),
                (b"x-sig", hmac.new(SECRET, TS + b".d-1." + BODY, "sha512").hexdigest().encode()),
            ],
            None,
        ),
        (
            "standard-webhooks v1",
            {"type": "standard-webhooks", "secret": "env:BENCH_SWH"},
            [
                (b"webhook-id", b"msg_1"),
                (b"webhook-timestamp", TS),
                (b"webhook-signature", b"v1," + base64.b64encode(_mac(swh_content, SWH_KEY))),
            ],
            None,
        ),
        (
            "standard-webhooks v1a",
            {"type": "standard-webhooks", "secret": "env:BENCH_PK"},
            [
                (b"webhook-id", b"msg_1"),
                (b"webhook-timestamp", TS),
                (b"webhook-signature", b"v1a," + base64.b64encode(private.sign(swh_content))),
            ],
            base64.b64encode(public).decode(),
        ),
        (
            "bearer",
            {"type": "bearer", "token": secret_env},
            [(b"authorization", b"Bearer " + SECRET)],
            None,
        ),
        (
            "basic",
            {"type": "basic", "username": "u", "password": secret_env},
            [(b"authorization", b"Basic " + base64.b64encode(b"u:" + SECRET))],
            None,
        ),
        (
            "ip (via trusted proxy)",
            {"type": "ip", "allow": ["192.0.2.0/24"], "trusted_proxies": ["10.0.0.0/8"]},
            [(b"x-forwarded-for", b"192.0.2.9, 10.0.0.3")],
            None,
        ),
    ]


def main() -> None:
    os.environ["BENCH_SECRET"] = SECRET.decode()
    os.environ["BENCH_SWH"] = "whsec_" + base64.b64encode(SWH_KEY).decode()
    rows = []
    for name, entry, headers, public in cases():
        if public:
            os.environ["BENCH_PK"] = "whpk_" + public
        guard = build_guard(msgspec.convert([entry], list[AuthMethod], dec_hook=dec_hook))
        request = {
            "method": "POST",
            "path": "/hook/bench",
            "query": "",
            "body": BODY,
            "headers": COMMON + headers,
            "client": "10.0.0.2",
            "now": float(NOW),
        }
        if guard.check(**request) is not None:
            raise SystemExit(f"{name}: the benchmark request was refused")
        timer = timeit.Timer(lambda g=guard, r=request: g.check(**r))
        number, _ = timer.autorange()
        best = min(timer.repeat(repeat=5, number=number)) / number
        rows.append((name, best * 1e6))
    print(f"{'scheme':<28}{'µs / check (1 KB body)':>24}")
    for name, micros in rows:
        print(f"{name:<28}{micros:>24.2f}")


if __name__ == "__main__":
    main()
