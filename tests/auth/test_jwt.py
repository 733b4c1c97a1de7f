"""``jwt``: bearer JWTs checked with PyJWT against configured keys or a JWKS URL.

Tokens are made with PyJWT (``jwt.encode``) from keys made with ``cryptography``, as an
issuer would; the JWKS is served over real HTTP on loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hookgate.auth import jwt_bearer
from hookgate.auth.base import Reject, Request
from hookgate.domain.auth import AuthMethod
from hookgate.domain.units import dec_hook
from hookgate.errors import ConfigError

from .support import check

ISSUER = "https://issuer.example"
AUDIENCE = "hookgate"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(key: Any) -> str:
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public.decode()


def jwk(key: Any, kid: str) -> dict[str, Any]:
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    family = jwt.algorithms.RSAAlgorithm if rsa_key else jwt.algorithms.ECAlgorithm
    return {**json.loads(family.to_jwk(key.public_key())), "kid": kid, "use": "sig"}


def token(key: Any = RSA_KEY, algorithm: str = "RS256", kid: str | None = None, **claims: Any):
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300, "sub": "svc-1"}
    body.update(claims)
    body = {name: value for name, value in body.items() if value is not None}
    headers = {"kid": kid} if kid else None
    return jwt.encode(body, key, algorithm=algorithm, headers=headers)


def bearer(value: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {value}")]


def entry(**fields: Any) -> dict[str, Any]:
    return {"type": "jwt", "issuer": ISSUER, "audience": AUDIENCE, **fields}


@pytest.fixture
def guard(make_guard):
    return make_guard(entry(keys=[pem(RSA_KEY), pem(EC_KEY)]))


def test_tokens_signed_by_a_configured_key_are_admitted(guard):
    assert check(guard, bearer(token())) is None
    assert check(guard, bearer(token(EC_KEY, "ES256"))) is None
    assert check(guard, bearer(token(aud=["other", AUDIENCE]))) is None
    assert not guard.needs_body


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (token(OTHER_KEY), "bad-signature"),
        (token(aud="someone-else"), "bad-credentials"),
        (token(iss="https://evil.example"), "bad-credentials"),
        (token(exp=None), "bad-credentials"),
        (token(exp=int(time.time()) - 3600), "stale-timestamp"),
        (token(nbf=int(time.time()) + 3600), "stale-timestamp"),
        (token(RSA_KEY, "RS512"), "bad-signature"),
        (jwt.encode({"iss": ISSUER, "aud": AUDIENCE}, None, algorithm="none"), "bad-signature"),
        ("not.a.jwt", "malformed-header"),
    ],
)
def test_refusals(guard, value, reason):
    rejection = check(guard, bearer(value))
    assert rejection is not None and rejection.reason == reason


def test_a_public_key_used_as_an_hmac_secret_is_refused(guard):
    """The classic forgery: HS256 keyed with the (public) RSA key the verifier holds."""
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60}
    signing = header + b"." + jwt.utils.base64url_encode(json.dumps(claims).encode())
    mac = hmac.new(pem(RSA_KEY).encode(), signing, hashlib.sha256).digest()
    forged = (signing + b"." + jwt.utils.base64url_encode(mac)).decode()
    rejection = check(guard, bearer(forged))
    assert rejection is not None and rejection.reason == "bad-signature"


def test_shared_secrets_for_hs_algorithms(make_guard):
    secret = "a-shared-secret-that-is-at-least-32-bytes-long"
    guard = make_guard(entry(keys=secret, algorithms=["HS256"]))
    assert check(guard, bearer(token(secret, "HS256"))) is None
    rejection = check(guard, bearer(token(secret + "x", "HS256")))
    assert rejection is not None and rejection.reason == "bad-signature"


def test_a_jwk_set_picks_the_key_named_by_kid(make_guard):
    keys = json.dumps({"keys": [jwk(OTHER_KEY, "old"), jwk(RSA_KEY, "new")]})
    guard = make_guard(entry(keys=keys))
    assert check(guard, bearer(token(kid="new"))) is None
    rejection = check(guard, bearer(token(kid="old")))
    assert rejection is not None and rejection.reason == "bad-signature"


def test_a_private_key_or_junk_is_refused_when_the_guard_is_built(make_guard):
    private = RSA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ConfigError, match="private key"):
        make_guard(entry(keys=private))
    with pytest.raises(ConfigError, match="not a public key"):
        make_guard(entry(keys="hello"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one of keys or jwks_url"),
        ({"keys": "env:K", "jwks_url": "https://i.example/jwks"}, "exactly one"),
        ({"jwks_url": "http://issuer.example/jwks"}, "https"),
        ({"keys": "env:K", "algorithms": ["HS256", "RS256"]}, "do not mix"),
        ({"jwks_url": "https://i.example/jwks", "algorithms": ["HS256"]}, "need keys"),
        ({"keys": "inline-pem"}, "referenced"),
    ],
)
def test_bad_entries_are_refused_when_the_flow_is_applied(fields, message):
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert([entry(**fields)], list[AuthMethod], dec_hook=dec_hook)


# JWKS URL -------------------------------------------------------------------------------


class Issuer:
    """A JWKS endpoint on loopback whose key set can be changed, counting fetches."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {"keys": [jwk(RSA_KEY, "k1")]}
        self.fetches = 0
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                body = json.dumps(issuer.document).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    served = Issuer()
    yield served
    served.server.shutdown()
    served.server.server_close()


def admitted_soon(guard, value: str) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if check(guard, bearer(value)) is None:
            return True
        time.sleep(0.02)
    return False


def test_keys_from_a_jwks_url_are_fetched_in_the_background(make_guard, issuer, monkeypatch):
    monkeypatch.setattr(jwt_bearer, "RETRY", 0.0)
    guard = make_guard(entry(jwks_url=issuer.url))
    assert admitted_soon(guard, token(kid="k1"))
    issuer.document = {"keys": [jwk(RSA_KEY, "k1"), jwk(OTHER_KEY, "k2")]}
    # A token naming a key id not yet known triggers a refetch: the rotated key is found.
    assert admitted_soon(guard, token(OTHER_KEY, kid="k2"))
    fetched = issuer.fetches
    rejection = check(guard, bearer(token(OTHER_KEY, kid="k1")))
    assert rejection is not None and rejection.reason == "bad-signature"
    assert issuer.fetches == fetched  # a known kid never causes a fetch


def test_before_the_first_fetch_tokens_are_refused_as_keys_unavailable(monkeypatch):
    monkeypatch.setattr(jwt_bearer.threading, "Thread", lambda **_kwargs: _Idle())
    verifier = jwt_bearer.JwtVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256"],
        leeway=0,
        jwks_url="https://issuer.example/jwks",
    )
    headers = [(b"authorization", f"Bearer {token()}".encode())]
    request = Request(
        method="POST", path="/", query="", headers=headers, body=b"", client=None, now=0
    )
    with pytest.raises(Reject) as caught:
        verifier.verify(request)
    assert caught.value.reason == "keys-unavailable"


class _Idle:
    def start(self) -> None:
        pass
