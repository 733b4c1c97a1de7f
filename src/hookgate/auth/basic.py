"""HTTP Basic: ``Authorization: Basic base64(username:password)`` (RFC 7617).

Username and password are both checked, always, in constant time; the answer does not say
which one was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from hookgate.auth.base import BAD_CREDENTIALS, MALFORMED_HEADER, Headers, Reject, Request
from hookgate.auth.bearer import credentials, matches_any


class BasicVerifier:
    scheme = "basic"
    signs_body = False

    def __init__(self, *, username: str, passwords: list[bytes]) -> None:
        self._usernames = [hashlib.sha256(username.encode()).digest()]
        self._passwords = [hashlib.sha256(password).digest() for password in passwords]

    def verify(self, request: Request) -> None:
        try:
            decoded = base64.b64decode(credentials(request.headers, b"basic"), validate=True)
        except binascii.Error:
            raise Reject(MALFORMED_HEADER) from None
        username, sep, password = decoded.partition(b":")
        if not sep:
            raise Reject(MALFORMED_HEADER)
        user_ok = matches_any(username, self._usernames)
        password_ok = matches_any(password, self._passwords)
        if not (user_ok and password_ok):
            raise Reject(BAD_CREDENTIALS)

    def delivery_id(self, headers: Headers, body: bytes) -> bytes | None:
        return None
