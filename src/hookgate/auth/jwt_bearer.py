"""``Authorization: Bearer <JWT>``, checked with PyJWT: signature, ``iss``, ``aud``, ``exp``.

Keys come from the flow (PEM public keys, JWKs or JWK sets; shared secrets for ``HS*``) or
from a JWKS URL. Each key is prepared once for every configured algorithm it fits, so a
request costs one signature check per candidate key (one, when the token names its ``kid``).
A JWKS is fetched in a background thread when the guard is built, again when it is older
than five minutes, and when a token names a key id it does not hold (a rotated key) — each
at most every 30 s, so a request never waits on the network and a stream of made-up key ids
cannot hammer the issuer. Until the first fetch succeeds, tokens are refused with
``keys-unavailable``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import jwt
from jwt.exceptions import InvalidKeyError, PyJWKError

from hookgate import logs
from hookgate.auth.base import (
    BAD_CREDENTIALS,
    BAD_SIGNATURE,
    KEYS_UNAVAILABLE,
    MALFORMED_HEADER,
    STALE_TIMESTAMP,
    Headers,
    Reject,
    Request,
)
from hookgate.auth.bearer import credentials

REFRESH = 300.0
RETRY = 30.0
FETCH_TIMEOUT = 5.0
_REQUIRED = ["exp", "iss", "aud"]
log = logs.get("hookgate.auth")


class KeyMaterialError(ValueError):
    """A configured key is not a public key, JWK or JWK set usable with the algorithms."""


class _Key:
    __slots__ = ("algorithm", "kid", "value")

    def __init__(self, kid: str | None, algorithm: str, value: Any) -> None:
        self.kid = kid
        self.algorithm = algorithm
        self.value = value


class JwtVerifier:
    scheme = "jwt"
    signs_body = False

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | list[str],
        algorithms: Sequence[str],
        leeway: float,
        keys: list[bytes] | None = None,
        jwks_url: str | None = None,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway = leeway
        self._static = None if keys is None else prepare(keys, algorithms)
        self._jwks = None if jwks_url is None else _Jwks(jwks_url, algorithms)

    def verify(self, request: Request) -> None:
        token = credentials(request.headers, b"bearer")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Reject(MALFORMED_HEADER) from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise Reject(BAD_SIGNATURE)
        kid = kid if isinstance(kid, str) else None
        keys = self._static if self._jwks is None else self._jwks.keys(kid)
        if keys is None:
            raise Reject(KEYS_UNAVAILABLE)
        for key in keys:
            if key.algorithm != algorithm or (kid and key.kid and key.kid != kid):
                continue
            try:
                jwt.decode(
                    token,
                    key.value,
                    algorithms=[algorithm],
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway,
                    options={"require": _REQUIRED},
                )
            except jwt.InvalidSignatureError:
                continue
            except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
                raise Reject(STALE_TIMESTAMP) from None
            except jwt.InvalidTokenError:
                raise Reject(BAD_CREDENTIALS) from None  # signed, but not for us
            return
        raise Reject(BAD_SIGNATURE)

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        return None


def prepare(materials: list[bytes], algorithms: Sequence[str]) -> list[_Key]:
    """Every (key, algorithm) pair that fits: raises :class:`KeyMaterialError` for a key
    that fits none, or a private key where the public one belongs."""
    keys: list[_Key] = []
    for material in materials:
        found = _prepare_one(material, algorithms)
        if not found:
            raise KeyMaterialError(f"not a public key, JWK or JWK set for {', '.join(algorithms)}")
        keys += found
    return keys


def _prepare_one(material: bytes, algorithms: Sequence[str]) -> list[_Key]:
    if all(name.startswith("HS") for name in algorithms):
        return [_Key(None, name, material) for name in algorithms]
    if b"PRIVATE KEY" in material:
        raise KeyMaterialError("a private key: give the sender's public key")
    text = material.strip()
    if text.startswith(b"{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise KeyMaterialError("not valid JSON") from None
        return _from_jwks(document, algorithms)
    return _fitting(None, None, material, algorithms)


def _from_jwks(document: Any, algorithms: Sequence[str]) -> list[_Key]:
    if not isinstance(document, dict):
        raise KeyMaterialError("a JWK or JWK set is a JSON object")
    entries = document.get("keys", [document])
    if not isinstance(entries, list):
        raise KeyMaterialError("keys must be a list of JWKs")
    keys: list[_Key] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig" or "d" in entry:
            continue  # encryption keys and private keys are never used to verify
        try:
            jwk = jwt.PyJWK.from_dict(entry)
        except (PyJWKError, InvalidKeyError, ValueError):
            continue  # a key type this PyJWT cannot use; the others still count
        kid = entry.get("kid") if isinstance(entry.get("kid"), str) else None
        keys += _fitting(kid, entry.get("alg"), jwk.key, algorithms)
    return keys


def _fitting(kid: str | None, declared: Any, value: Any, algorithms: Sequence[str]) -> list[_Key]:
    keys = []
    for name in algorithms:
        if declared is not None and declared != name:
            continue
        try:
            prepared = jwt.get_algorithm_by_name(name).prepare_key(value)
        except (InvalidKeyError, ValueError, TypeError):
            continue
        keys.append(_Key(kid, name, prepared))
    return keys


class _Jwks:
    """The keys at a JWKS URL, refreshed in the background."""

    def __init__(self, url: str, algorithms: Sequence[str]) -> None:
        self._url = url
        self._algorithms = list(algorithms)
        self._keys: list[_Key] | None = None
        self._fetched = 0.0
        self._attempted = -RETRY
        self._busy = False
        self._lock = threading.Lock()
        self._refresh(time.monotonic())

    def keys(self, kid: str | None) -> list[_Key] | None:
        """The keys as last fetched (None before the first success)."""
        keys, now = self._keys, time.monotonic()
        if (
            keys is None
            or now - self._fetched > REFRESH
            or (kid is not None and not any(key.kid == kid for key in keys))
        ):
            self._refresh(now)
        return keys

    def _refresh(self, now: float) -> None:
        with self._lock:
            if self._busy or now - self._attempted < RETRY:
                return
            self._busy, self._attempted = True, now
        threading.Thread(target=self._fetch, name="hookgate-jwks", daemon=True).start()

    def _fetch(self) -> None:
        try:
            response = httpx.get(self._url, timeout=FETCH_TIMEOUT)
            response.raise_for_status()
            keys = _from_jwks(response.json(), self._algorithms)
            if not keys:
                raise KeyMaterialError("no signing key there fits the algorithms")
            self._keys, self._fetched = keys, time.monotonic()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot fetch the JWKS", url=self._url, error=str(exc))
        finally:
            self._busy = False
