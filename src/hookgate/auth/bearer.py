"""``Authorization: Bearer <token>``.

Tokens are compared as SHA-256 digests so the comparison takes the same time whatever the
length of what was sent, and the stored token is never compared byte by byte.
"""

from __future__ import annotations

import hashlib
import hmac

from hookgate.auth.base import (
    BAD_CREDENTIALS,
    MALFORMED_HEADER,
    MISSING_CREDENTIALS,
    Headers,
    Reject,
    Request,
    single,
)


def credentials(headers: Headers, scheme: bytes) -> bytes:
    """What follows ``scheme`` in the one Authorization header (scheme case-insensitive)."""
    value = single(headers, b"authorization", missing=MISSING_CREDENTIALS)
    name, _, rest = value.strip().partition(b" ")
    if name.lower() != scheme:
        raise Reject(MISSING_CREDENTIALS)
    rest = rest.strip(b" ")
    if not rest:
        raise Reject(MALFORMED_HEADER)
    return rest


def matches_any(value: bytes, digests: list[bytes]) -> bool:
    """Whether ``value`` is one of the secrets behind ``digests``, in constant time."""
    given = hashlib.sha256(value).digest()
    return any([hmac.compare_digest(given, digest) for digest in digests])


class BearerVerifier:
    scheme = "bearer"
    signs_body = False

    def __init__(self, *, tokens: list[bytes]) -> None:
        self._digests = [hashlib.sha256(token).digest() for token in tokens]

    def verify(self, request: Request) -> None:
        if not matches_any(credentials(request.headers, b"bearer"), self._digests):
            raise Reject(BAD_CREDENTIALS)

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        return None
