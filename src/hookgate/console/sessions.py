"""Console sign-in: the admin token buys a random, server-side session with its own CSRF token.

Sessions live in the gateway's memory only: a restart signs everyone out, which is the safe
side for an operator tool, and nothing about a session can be forged from the cookie alone.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict

import msgspec

TTL = 8 * 3600.0
LIMIT = 1000


class Session(msgspec.Struct, frozen=True):
    id: str
    csrf: str
    expires_at: float


class Sessions:
    def __init__(self, *, token: str, ttl: float = TTL, limit: int = LIMIT) -> None:
        self._digest = hashlib.sha256(token.encode()).digest()
        self._ttl = ttl
        self._limit = limit
        self._open: OrderedDict[str, Session] = OrderedDict()

    def admits(self, presented: str) -> bool:
        """Constant-time, and hashed first so the length of the token leaks nothing either."""
        candidate = hashlib.sha256(presented.strip().encode()).digest()
        return hmac.compare_digest(candidate, self._digest)

    def open(self, *, now: float) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            expires_at=now + self._ttl,
        )
        self._open[session.id] = session
        while len(self._open) > self._limit:
            self._open.popitem(last=False)
        return session

    def get(self, session_id: str, *, now: float) -> Session | None:
        """The live session of that id; an expired one is forgotten on the way."""
        session = self._open.get(session_id)
        if session is not None and session.expires_at <= now:
            del self._open[session_id]
            return None
        return session

    def close(self, session_id: str) -> None:
        self._open.pop(session_id, None)


def same(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
