"""What every scheme shares: the request view, the rejection, and header helpers.

A verifier raises :class:`Reject` with a short reason; :class:`~hookgate.auth.guard.Guard`
turns that into a :class:`Rejection`. Reasons are a small fixed vocabulary (they label a
metric and a log line) and never carry a secret or a signature.

A scheme whose provider proves the URL before sending anything (Slack's url_verification,
Meta's hub.challenge…) is also a :class:`Handshaker`: it recognises that request and gives
the :class:`Answer` the gateway sends itself.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl

import msgspec

Headers = list[tuple[bytes, bytes]]

MISSING_SIGNATURE = "missing-signature"
MISSING_HEADER = "missing-header"
MISSING_CREDENTIALS = "missing-credentials"
MALFORMED_HEADER = "malformed-header"
DUPLICATE_HEADER = "duplicate-header"
BAD_SIGNATURE = "bad-signature"
STALE_TIMESTAMP = "stale-timestamp"
BAD_CREDENTIALS = "bad-credentials"
IP_DENIED = "ip-denied"
MALFORMED_REQUEST = "malformed-request"
KEYS_UNAVAILABLE = "keys-unavailable"

REASONS = frozenset(
    {
        MISSING_SIGNATURE,
        MISSING_HEADER,
        MISSING_CREDENTIALS,
        MALFORMED_HEADER,
        DUPLICATE_HEADER,
        BAD_SIGNATURE,
        STALE_TIMESTAMP,
        BAD_CREDENTIALS,
        IP_DENIED,
        MALFORMED_REQUEST,
        KEYS_UNAVAILABLE,
    }
)

_MAX_TIMESTAMP_DIGITS = 12
_MAX_QUERY_FIELDS = 32
TEXT = b"text/plain; charset=utf-8"
JSON = b"application/json"
ANSWERED = "answered"


class Rejection(msgspec.Struct, frozen=True):
    """Why a request was refused: safe to log and to count (no secret, no signature)."""

    reason: str
    scheme: str


class Reject(Exception):
    """Raised by a verifier; carries only a reason from :data:`REASONS`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Request:
    """The parts of a request that a scheme may look at, gathered once per check."""

    __slots__ = ("body", "client", "headers", "method", "now", "path", "query")

    def __init__(
        self,
        *,
        method: str,
        path: str,
        query: str,
        headers: Headers,
        body: bytes,
        client: str | None,
        now: float,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.client = client
        self.now = now


class Answer(msgspec.Struct, frozen=True):
    """What the gateway answers a provider's handshake, and how it went.

    ``outcome`` is ``answered`` or, for a refused handshake, a reason from :data:`REASONS`;
    it labels a metric, so it never carries what was sent.
    """

    scheme: str
    status: int
    body: bytes = b""
    content_type: bytes = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()
    outcome: str = ANSWERED


class Verifier(Protocol):
    """One configured ``auth:`` entry with its secrets resolved."""

    scheme: str
    signs_body: bool

    def verify(self, request: Request) -> None:
        """Return if the request is admitted; raise :class:`Reject` otherwise."""

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        """The provider's id for this delivery, if the scheme has one."""


@runtime_checkable
class Handshaker(Protocol):
    """A scheme that answers its provider's URL handshake itself."""

    scheme: str
    refused: int
    """The status a refused handshake gets, as the provider's documentation shows it."""

    def handshake(self, request: Request) -> Answer | None:
        """The answer if ``request`` is this provider's handshake, else None.

        Raises :class:`Reject` when it is one but fails the check (wrong verify token, bad
        signature); it must be cheap for every other request, which goes on to ``verify``.
        """


def echo(scheme: str, value: str) -> Answer:
    """A challenge sent back as plain text; ``nosniff`` so no browser renders it as HTML."""
    return Answer(
        scheme=scheme,
        status=200,
        body=value.encode(),
        content_type=TEXT,
        headers=((b"x-content-type-options", b"nosniff"),),
    )


def reply(scheme: str, fields: dict[str, str]) -> Answer:
    """A challenge answered as a JSON object."""
    return Answer(scheme=scheme, status=200, body=msgspec.json.encode(fields))


def query_field(query: str, name: str, *, any_case: bool = False) -> str | None:
    """The percent-decoded value of query parameter ``name``; None when it is absent.

    A repeated parameter is refused: two values leave open which one was checked.
    """
    wanted = name.lower() if any_case else name
    if wanted not in (query.lower() if any_case else query):
        return None
    try:
        fields = parse_qsl(
            query,
            keep_blank_values=True,
            errors="strict",
            max_num_fields=_MAX_QUERY_FIELDS,
        )
    except (ValueError, UnicodeError):
        raise Reject(MALFORMED_REQUEST) from None
    values = [value for key, value in fields if (key.lower() if any_case else key) == wanted]
    if len(values) > 1:
        raise Reject(MALFORMED_REQUEST)
    return values[0] if values else None


def single(headers: Headers, name: bytes, *, missing: str = MISSING_HEADER) -> bytes:
    """The one value of header ``name``.

    A repeated header is refused outright: two values leave open which one was verified
    and which one is acted on, which is how duplicated headers smuggle a forgery.
    """
    found: bytes | None = None
    for key, value in headers:
        if key == name:
            if found is not None:
                raise Reject(DUPLICATE_HEADER)
            found = value
    if found is None:
        raise Reject(missing)
    return found


def optional(headers: Headers, name: bytes) -> bytes | None:
    """The value of header ``name`` if it occurs exactly once, else None (for ids only)."""
    found: bytes | None = None
    for key, value in headers:
        if key == name:
            if found is not None:
                return None
            found = value
    return found


def fresh_timestamp(value: bytes, *, now: float, tolerance: float) -> bytes:
    """Check a Unix-seconds timestamp header against the clock; return it as sent.

    Only plain decimal digits are accepted, so the bytes that are signed are exactly the
    number that is checked (no sign, spaces, exponent or fraction to tell apart).
    """
    value = value.strip(b" \t")
    if not value.isdigit() or len(value) > _MAX_TIMESTAMP_DIGITS:
        raise Reject(MALFORMED_HEADER)
    if not abs(now - int(value)) <= tolerance:  # written so that a NaN clock refuses
        raise Reject(STALE_TIMESTAMP)
    return value
