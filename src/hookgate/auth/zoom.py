"""Zoom: ``x-zm-signature: v0=<hex HMAC-SHA256 of "v0:{x-zm-request-timestamp}:{body}">``.

https://developers.zoom.us/docs/api/webhooks/#verify-webhook-events
The key is the app's secret token. ``endpoint.url_validation`` events (sent when the URL is
saved, then every 72 hours) are signed like any event; once the signature holds, the answer
is ``{"plainToken": …, "encryptedToken": <hex HMAC-SHA256 of plainToken>}``. Checking the
signature first matters: answering unsigned validations would let anyone have the secret
sign a message of their choosing.
"""

from __future__ import annotations

import msgspec

from hookgate.auth.base import MALFORMED_REQUEST, Answer, Reject, Request, reply
from hookgate.auth.generic import HmacVerifier

_KIND = b"endpoint.url_validation"


class _Payload(msgspec.Struct):
    plain_token: str = msgspec.field(name="plainToken", default="")


class _Event(msgspec.Struct):
    event: str
    payload: _Payload = msgspec.field(default_factory=_Payload)


_EVENT = msgspec.json.Decoder(_Event)


class ZoomVerifier(HmacVerifier):
    refused = 401

    def __init__(self, *, keys: list[bytes], tolerance: float) -> None:
        super().__init__(
            scheme="zoom",
            keys=keys,
            header="x-zm-signature",
            prefix="v0=",
            signed="v0:{timestamp}:{body}",
            timestamp_header="x-zm-request-timestamp",
            tolerance=tolerance,
        )

    def handshake(self, request: Request) -> Answer | None:
        event = self.signed_event(request, _KIND, _EVENT)
        if event is None or event.event != _KIND.decode():
            return None
        token = event.payload.plain_token
        if not token:
            raise Reject(MALFORMED_REQUEST)
        encrypted = self.sign(token.encode()).hex()
        return reply(self.scheme, {"plainToken": token, "encryptedToken": encrypted})
