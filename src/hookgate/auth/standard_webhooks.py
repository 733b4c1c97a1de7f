"""Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``.

https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
The signed content is ``{id}.{timestamp}.{body}``. The signature header is a space-separated
list of ``v1,<base64 HMAC-SHA256>`` (``whsec_`` secrets) and ``v1a,<base64 ed25519>``
(``whpk_`` public keys) entries; one match admits, unknown versions are skipped.

The ``standardwebhooks`` package verifies the same thing, but reads the clock itself, decodes
the body as UTF-8 (so refuses binary bodies) and has no ``v1a``; it is used by the tests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hookgate.auth.base import (
    BAD_SIGNATURE,
    MALFORMED_HEADER,
    MISSING_SIGNATURE,
    Headers,
    Reject,
    Request,
    fresh_timestamp,
    optional,
    single,
)

# ed25519 checks cost ~100 µs each: bound what one request can make us do.
_MAX_SIGNATURES = 8
_ED25519_SIGNATURE = 64
_ED25519_PUBLIC_KEY = 32


class KeyFormatError(ValueError):
    """A configured secret is not a ``whsec_`` secret or a ``whpk_`` public key."""


Key = hmac.HMAC | Ed25519PublicKey


def parse_key(secret: bytes) -> Key:
    """A configured secret: ``whsec_…`` (or bare base64, as the SDKs accept) or ``whpk_…``."""
    secret = secret.strip()
    if secret.startswith(b"whsk_"):
        raise KeyFormatError(
            "a whsk_ key is the sender's private key; configure its whpk_ public key"
        )
    if secret.startswith(b"whpk_"):
        raw = _b64(secret[5:])
        if len(raw) != _ED25519_PUBLIC_KEY:
            raise KeyFormatError("a whpk_ key must hold a 32-byte ed25519 public key")
        return Ed25519PublicKey.from_public_bytes(raw)
    raw = _b64(secret.removeprefix(b"whsec_"))
    if not raw:
        raise KeyFormatError("a whsec_ secret cannot be empty")
    return hmac.new(raw, digestmod=hashlib.sha256)


class StandardWebhooksVerifier:
    scheme = "standard-webhooks"
    signs_body = True

    def __init__(self, *, keys: list[Key], tolerance: float) -> None:
        self._macs = [key for key in keys if isinstance(key, hmac.HMAC)]
        self._public_keys = [key for key in keys if isinstance(key, Ed25519PublicKey)]
        self._tolerance = tolerance

    def verify(self, request: Request) -> None:
        headers = request.headers
        msg_id = single(headers, b"webhook-id")
        timestamp = fresh_timestamp(
            single(headers, b"webhook-timestamp"), now=request.now, tolerance=self._tolerance
        )
        entries = single(headers, b"webhook-signature", missing=MISSING_SIGNATURE).split()
        if not entries or len(entries) > _MAX_SIGNATURES:
            raise Reject(MALFORMED_HEADER)
        symmetric: list[bytes] = []
        asymmetric: list[bytes] = []
        for entry in entries:
            version, sep, signature = entry.partition(b",")
            if not sep:
                raise Reject(MALFORMED_HEADER)
            if version == b"v1":
                symmetric.append(signature)
            elif version == b"v1a":
                asymmetric.append(signature)
        if not (
            self._hmac_matches(request, msg_id, timestamp, symmetric)
            or self._ed25519_matches(request, msg_id, timestamp, asymmetric)
        ):
            raise Reject(BAD_SIGNATURE)

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        return optional(headers, b"webhook-id")

    def _hmac_matches(
        self, request: Request, msg_id: bytes, timestamp: bytes, given: list[bytes]
    ) -> bool:
        matched = False
        if not given:
            return matched
        for base in self._macs:
            mac = base.copy()
            for part in (msg_id, b".", timestamp, b".", request.body):
                mac.update(part)
            expected = base64.b64encode(mac.digest())
            for signature in given:
                matched |= hmac.compare_digest(expected, signature)
        return matched

    def _ed25519_matches(
        self, request: Request, msg_id: bytes, timestamp: bytes, given: list[bytes]
    ) -> bool:
        if not given or not self._public_keys:
            return False
        content = b".".join((msg_id, timestamp, request.body))
        for encoded in given:
            try:
                signature = base64.b64decode(encoded, validate=True)
            except binascii.Error:
                continue
            if len(signature) != _ED25519_SIGNATURE:
                continue
            for key in self._public_keys:
                try:
                    key.verify(signature, content)
                except InvalidSignature:
                    continue
                return True
        return False


def _b64(text: bytes) -> bytes:
    """Strict base64, padding optional (secrets are often shown unpadded)."""
    try:
        return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise KeyFormatError("expected a whsec_ secret or a whpk_ public key (base64)") from None
