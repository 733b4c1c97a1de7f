"""Stripe: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "{t}.{body}">[,v1=…]``.

https://docs.stripe.com/webhooks#verify-manually
The ``whsec_…`` signing secret is the HMAC key as text (it is not base64-decoded). Stripe
sends one ``v1`` per active secret while one is being rolled; any may match. The event
``id`` in the (signed) body is the delivery id.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

from hookgate.auth.base import (
    BAD_SIGNATURE,
    MALFORMED_HEADER,
    MISSING_SIGNATURE,
    Headers,
    Reject,
    Request,
    fresh_timestamp,
    single,
)

_MAX_SIGNATURES = 8


class _Event(msgspec.Struct):
    id: str


_EVENT = msgspec.json.Decoder(_Event)


class StripeVerifier:
    scheme = "stripe"
    signs_body = True

    def __init__(self, *, keys: list[bytes], tolerance: float) -> None:
        self._macs = [hmac.new(key, digestmod=hashlib.sha256) for key in keys]
        self._tolerance = tolerance

    def verify(self, request: Request) -> None:
        header = single(request.headers, b"stripe-signature", missing=MISSING_SIGNATURE)
        timestamp: bytes | None = None
        signatures: list[bytes] = []
        for item in header.split(b","):
            name, sep, value = item.strip().partition(b"=")
            if not sep:
                raise Reject(MALFORMED_HEADER)
            if name == b"t":
                if timestamp is not None:
                    raise Reject(MALFORMED_HEADER)
                timestamp = value
            elif name == b"v1":
                signatures.append(value.lower())
        if timestamp is None or not signatures or len(signatures) > _MAX_SIGNATURES:
            raise Reject(MALFORMED_HEADER)
        timestamp = fresh_timestamp(timestamp, now=request.now, tolerance=self._tolerance)
        matched = False
        for base in self._macs:
            mac = base.copy()
            mac.update(timestamp)
            mac.update(b".")
            mac.update(request.body)
            expected = mac.hexdigest().encode()
            for given in signatures:
                matched |= hmac.compare_digest(expected, given)
        if not matched:
            raise Reject(BAD_SIGNATURE)

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        try:
            return _EVENT.decode(body).id.encode()
        except (msgspec.DecodeError, UnicodeError):
            return None
