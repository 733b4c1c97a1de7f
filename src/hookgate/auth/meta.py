"""Meta (Facebook, Instagram, WhatsApp, Messenger) webhooks.

https://developers.facebook.com/docs/graph-api/webhooks/getting-started
Notifications carry ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` keyed
with the app secret. Subscribing sends ``GET ?hub.mode=subscribe&hub.verify_token=…&
hub.challenge=…``: when the verify token is the configured one the challenge is sent back,
else the answer is 403. Meta signs no timestamp and sends no delivery id.
"""

from __future__ import annotations

import hashlib

from hookgate.auth.base import (
    BAD_CREDENTIALS,
    MALFORMED_REQUEST,
    MISSING_CREDENTIALS,
    Answer,
    Reject,
    Request,
    echo,
    query_field,
)
from hookgate.auth.bearer import matches_any
from hookgate.auth.generic import HmacVerifier


class MetaVerifier(HmacVerifier):
    refused = 403

    def __init__(self, *, keys: list[bytes], verify_tokens: list[bytes]) -> None:
        super().__init__(scheme="meta", keys=keys, header="x-hub-signature-256", prefix="sha256=")
        self._tokens = [hashlib.sha256(token).digest() for token in verify_tokens]

    def handshake(self, request: Request) -> Answer | None:
        if request.method != "GET" or "hub.mode" not in request.query:
            return None
        mode = query_field(request.query, "hub.mode")
        if mode is None:
            return None
        token = query_field(request.query, "hub.verify_token")
        challenge = query_field(request.query, "hub.challenge")
        if token is None:
            raise Reject(MISSING_CREDENTIALS)
        if not matches_any(token.encode(), self._tokens):
            raise Reject(BAD_CREDENTIALS)
        if mode != "subscribe" or not challenge:
            raise Reject(MALFORMED_REQUEST)
        return echo(self.scheme, challenge)
