"""Okta event hooks: a shared secret sent as the value of a header (``Authorization`` unless
the hook says otherwise).

https://developer.okta.com/docs/concepts/event-hooks/
Verification is a ``GET`` carrying ``X-Okta-Verification-Challenge`` and the same secret
header; once the secret holds, the answer is ``{"verification": <the challenge>}``.
"""

from __future__ import annotations

import hashlib

from hookgate.auth.base import (
    BAD_CREDENTIALS,
    MISSING_CREDENTIALS,
    Answer,
    Headers,
    Reject,
    Request,
    reply,
    single,
)
from hookgate.auth.bearer import matches_any

_CHALLENGE = b"x-okta-verification-challenge"


class OktaVerifier:
    scheme = "okta"
    signs_body = False
    refused = 401

    def __init__(self, *, secrets: list[bytes], header: str) -> None:
        self._digests = [hashlib.sha256(secret).digest() for secret in secrets]
        self._header = header.strip().lower().encode("latin-1")

    def verify(self, request: Request) -> None:
        given = single(request.headers, self._header, missing=MISSING_CREDENTIALS)
        if not matches_any(given, self._digests):
            raise Reject(BAD_CREDENTIALS)

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        return None

    def handshake(self, request: Request) -> Answer | None:
        if request.method != "GET" or not any(name == _CHALLENGE for name, _ in request.headers):
            return None
        self.verify(request)
        challenge = single(request.headers, _CHALLENGE).decode("latin-1")
        return reply(self.scheme, {"verification": challenge})
