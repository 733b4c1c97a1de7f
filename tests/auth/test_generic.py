"""The generic ``hmac`` entry and the Open Integration Hub preset.

No provider publishes vectors for these, so expected signatures are computed here with
``hmac``/``hashlib`` straight from the documented construction, and once with the
``openssl`` program as an independent implementation.
OIH convention: https://github.com/openintegrationhub/openintegrationhub (webhooks service).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess

import msgspec
import pytest

from .support import check, methods

BODY = b'{"event":"order.created","id":42}'


def mac(secret: str, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), message, algorithm).digest()


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_algorithms_and_encodings(make_guard, algorithm, encoding):
    guard = make_guard(
        {
            "type": "hmac",
            "secret": "k",
            "header": "X-Signature",
            "algorithm": algorithm,
            "encoding": encoding,
        }
    )
    digest = mac("k", BODY, algorithm)
    value = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    assert check(guard, [("X-Signature", value)], BODY) is None
    assert check(guard, [("X-Signature", value)], BODY + b"\n") is not None


def test_openssl_agrees(make_guard):
    guard = make_guard(
        {
            "type": "hmac",
            "secret": "k3y",
            "header": "X-Sig",
            "algorithm": "sha512",
            "prefix": "sha512=",
        }
    )
    out = (
        subprocess.run(
            ["openssl", "dgst", "-sha512", "-hmac", "k3y", "-r"],
            input=BODY,
            capture_output=True,
            check=True,
        )
        .stdout.split()[0]
        .decode()
    )
    assert check(guard, [("X-Sig", "sha512=" + out)], BODY) is None


def test_template_with_every_field(make_guard):
    guard = make_guard(
        {
            "type": "hmac",
            "secret": "k",
            "header": "X-Sig",
            "prefix": "v1=",
            "signed": "{method} {path}|{id}|{timestamp}|{{literal}}|{body}",
            "timestamp_header": "X-Timestamp",
            "id_header": "X-Id",
            "tolerance": "1m",
        }
    )
    message = b"PUT /hook/abc/orders|evt-9|1700000000|{literal}|" + BODY
    items = [
        ("X-Timestamp", "1700000000"),
        ("X-Id", "evt-9"),
        ("X-Sig", "v1=" + mac("k", message).hex()),
    ]
    ok = {"method": "PUT", "path": "/hook/abc/orders", "now": 1700000030}
    assert check(guard, items, BODY, **ok) is None
    assert guard.dedupe_key([(n.lower().encode(), v.encode()) for n, v in items], BODY) == "evt-9"
    assert check(guard, items, BODY, **{**ok, "method": "POST"}) is not None
    assert check(guard, items, BODY, **{**ok, "path": "/hook/abc/other"}) is not None
    stale = check(guard, items, BODY, **{**ok, "now": 1700000061})
    assert stale is not None and stale.reason == "stale-timestamp"
    no_id = check(guard, [items[0], items[2]], BODY, **ok)
    assert no_id is not None and no_id.reason == "missing-header"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"signed": "{timestamp}.{body}"}, "timestamp_header go together"),
        ({"timestamp_header": "X-T"}, "timestamp_header go together"),
        ({"signed": "{id}{body}"}, "needs id_header"),
        ({"signed": "{timestamp}", "timestamp_header": "X-T"}, "must contain {body}"),
        ({"signed": "{host}{body}"}, "unknown placeholder"),
        ({"signed": "{body!r}"}, "unknown placeholder"),
        ({"signed": "{body"}, "signed"),
        ({"header": "X Sig"}, "header name"),
        ({"algorithm": "md5"}, "md5"),
        ({"encoding": "base32"}, "base32"),
        ({"secret": "literal-secret"}, "never inlined"),
    ],
)
def test_invalid_entries_are_refused_when_the_flow_is_parsed(entry, message):
    base = {"type": "hmac", "secret": "env:X", "header": "X-Sig"}
    with pytest.raises(msgspec.ValidationError, match=message):
        methods([{**base, **entry}])


def test_oih_preset(make_guard):
    guard = make_guard({"type": "oih", "secret": "oih-secret"})
    signature = base64.b64encode(mac("oih-secret", BODY)).decode()
    assert check(guard, [("x-hmac", signature)], BODY) is None
    assert check(guard, [("X-HMAC", signature)], BODY) is None
    assert check(guard, [("x-hmac", mac("oih-secret", BODY).hex())], BODY) is not None
    rejection = check(guard, [], BODY)
    assert rejection is not None and (rejection.scheme, rejection.reason) == (
        "oih",
        "missing-signature",
    )


def test_an_unsigned_id_header_serves_deduplication_only(make_guard):
    guard = make_guard(
        {
            "type": "hmac",
            "secret": "k",
            "header": "X-Sig",
            "id_header": "X-Id",
            "signed": "{timestamp}:{body}",
            "timestamp_header": "X-Ts",
        }
    )
    items = [
        ("X-Id", "evt-1"),
        ("X-Ts", "1700000000"),
        ("X-Sig", mac("k", b"1700000000:" + BODY).hex()),
    ]
    assert check(guard, items, BODY, now=1700000000) is None
    assert check(guard, items[1:], BODY, now=1700000000) is None
    assert guard.dedupe_key([(b"x-id", b"evt-1")], BODY) == "evt-1"


def test_header_names_are_matched_case_insensitively(make_guard):
    guard = make_guard({"type": "hmac", "secret": "k", "header": "X-Custom-SIGNATURE"})
    assert check(guard, [("x-custom-signature", mac("k", BODY).hex())], BODY) is None


def test_unknown_hash_length_is_checked_before_comparing(make_guard):
    guard = make_guard({"type": "hmac", "secret": "k", "header": "X-Sig"})
    short = check(guard, [("X-Sig", hashlib.sha1(BODY).hexdigest())], BODY)
    assert short is not None and short.reason == "malformed-header"
