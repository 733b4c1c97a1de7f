"""Slack: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:{timestamp}:{body}">``.

https://api.slack.com/authentication/verifying-requests-from-slack
The timestamp comes from ``X-Slack-Request-Timestamp`` and is held to the tolerance.
The Events API's ``url_verification`` (https://api.slack.com/events/url_verification) is
signed like any event; once the signature holds, its ``challenge`` is sent back as text.
"""

from __future__ import annotations

import msgspec

from hookgate.auth.base import MALFORMED_REQUEST, Answer, Reject, Request, echo
from hookgate.auth.generic import HmacVerifier

_KIND = b'"url_verification"'


class _Verification(msgspec.Struct):
    type: str
    challenge: str = ""


_VERIFICATION = msgspec.json.Decoder(_Verification)


class SlackVerifier(HmacVerifier):
    refused = 401

    def __init__(self, *, keys: list[bytes], tolerance: float) -> None:
        super().__init__(
            scheme="slack",
            keys=keys,
            header="x-slack-signature",
            prefix="v0=",
            signed="v0:{timestamp}:{body}",
            timestamp_header="x-slack-request-timestamp",
            tolerance=tolerance,
        )

    def handshake(self, request: Request) -> Answer | None:
        event = self.signed_event(request, _KIND, _VERIFICATION)
        if event is None or event.type != "url_verification":
            return None
        if not event.challenge:
            raise Reject(MALFORMED_REQUEST)
        return echo(self.scheme, event.challenge)
