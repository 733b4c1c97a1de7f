"""X (Twitter) Account Activity: ``x-twitter-webhooks-signature: sha256=<base64 HMAC-SHA256
of the body>`` keyed with the app's consumer secret.

https://docs.x.com/x-api/webhooks/quickstart
The challenge-response check is ``GET ?crc_token=…``, answered with
``{"response_token": "sha256=<base64 HMAC-SHA256 of crc_token>"}``. That is the very
signature a notification whose body is the token would carry, and the check is not signed:
so only tokens of base64 characters are answered (X sends base64), which no JSON event can
be, and the check cannot be used to have the secret sign a forged notification.
"""

from __future__ import annotations

import base64
import re

from hookgate.auth.base import MALFORMED_REQUEST, Answer, Reject, Request, query_field, reply
from hookgate.auth.generic import HmacVerifier

_TOKEN = re.compile(r"[A-Za-z0-9+/=_.~-]{1,256}")


class XVerifier(HmacVerifier):
    refused = 400

    def __init__(self, *, keys: list[bytes]) -> None:
        super().__init__(
            scheme="x",
            keys=keys,
            header="x-twitter-webhooks-signature",
            encoding="base64",
            prefix="sha256=",
        )

    def handshake(self, request: Request) -> Answer | None:
        if request.method != "GET" or "crc_token" not in request.query:
            return None
        token = query_field(request.query, "crc_token")
        if token is None:
            return None
        if not _TOKEN.fullmatch(token):
            raise Reject(MALFORMED_REQUEST)
        signed = base64.b64encode(self.sign(token.encode())).decode()
        return reply(self.scheme, {"response_token": "sha256=" + signed})
