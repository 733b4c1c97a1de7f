"""Microsoft Graph change notifications: ``clientState`` in each notification.

https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks
Graph signs nothing: each item of the JSON ``value`` array carries the ``clientState`` given
when the subscription was created, and every one must be the configured secret. Creating a
subscription sends ``POST ?validationToken=…`` (SharePoint writes ``validationtoken``),
answered 200 with the URL-decoded token as plain text; the echo proves nothing secret, so it
is not checked.
"""

from __future__ import annotations

import hashlib

import msgspec

from hookgate.auth.base import (
    BAD_CREDENTIALS,
    MALFORMED_REQUEST,
    MISSING_CREDENTIALS,
    Answer,
    Headers,
    Reject,
    Request,
    echo,
    query_field,
)
from hookgate.auth.bearer import matches_any


class _Notification(msgspec.Struct):
    client_state: str | None = msgspec.field(name="clientState", default=None)


class _Collection(msgspec.Struct):
    value: list[_Notification]


_COLLECTION = msgspec.json.Decoder(_Collection)


class MsgraphVerifier:
    scheme = "msgraph"
    signs_body = True
    refused = 400

    def __init__(self, *, client_states: list[bytes]) -> None:
        self._digests = [hashlib.sha256(state).digest() for state in client_states]

    def verify(self, request: Request) -> None:
        try:
            notifications = _COLLECTION.decode(request.body).value
        except msgspec.DecodeError:
            raise Reject(MALFORMED_REQUEST) from None
        if not notifications:
            raise Reject(MALFORMED_REQUEST)
        states = [item.client_state for item in notifications]
        if any(state is None for state in states):
            raise Reject(MISSING_CREDENTIALS)
        if not all([matches_any(str(state).encode(), self._digests) for state in states]):
            raise Reject(BAD_CREDENTIALS)

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        return None

    def handshake(self, request: Request) -> Answer | None:
        if request.method != "POST":
            return None
        token = query_field(request.query, "validationToken", any_case=True)
        if token is None:
            return None
        if not token:
            raise Reject(MALFORMED_REQUEST)
        return echo(self.scheme, token)
