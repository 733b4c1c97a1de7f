"""What every scheme shares: the request view, the rejection, and header helpers.

A verifier raises :class:`Reject` with a short reason; :class:`~hookgate.auth.guard.Guard`
turns that into a :class:`Rejection`. Reasons are a small fixed vocabulary (they label a
metric and a log line) and never carry a secret or a signature.
"""

from __future__ import annotations

from typing import Protocol

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
    }
)

_MAX_TIMESTAMP_DIGITS = 12


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


class Verifier(Protocol):
    """One configured ``auth:`` entry with its secrets resolved."""

    scheme: str
    signs_body: bool

    def verify(self, request: Request) -> None:
        """Return if the request is admitted; raise :class:`Reject` otherwise."""

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        """The provider's id for this delivery, if the scheme has one."""


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
