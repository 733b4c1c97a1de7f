"""Dropbox: ``X-Dropbox-Signature: <hex HMAC-SHA256 of the body>`` keyed with the app secret.

https://www.dropbox.com/developers/reference/webhooks
Verification is ``GET ?challenge=…``, answered with the challenge as plain text and
``X-Content-Type-Options: nosniff``; it is not signed, and the echo proves nothing secret.
"""

from __future__ import annotations

from hookgate.auth.base import MALFORMED_REQUEST, Answer, Reject, Request, echo, query_field
from hookgate.auth.generic import HmacVerifier


class DropboxVerifier(HmacVerifier):
    refused = 400

    def __init__(self, *, keys: list[bytes]) -> None:
        super().__init__(scheme="dropbox", keys=keys, header="x-dropbox-signature")

    def handshake(self, request: Request) -> Answer | None:
        if request.method != "GET" or "challenge" not in request.query:
            return None
        challenge = query_field(request.query, "challenge")
        if challenge is None:
            return None
        if not challenge:
            raise Reject(MALFORMED_REQUEST)
        return echo(self.scheme, challenge)
