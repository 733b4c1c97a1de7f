"""Per-flow admission: handshakes, credentials, rate limit, CORS preflight, and the slowdown
of misses.

Guards are built once per flow spec (secrets are resolved then) and rebuilt when the flow
changes, so the hot path never reads a file or the environment.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from hookgate import logs
from hookgate.auth import Answer, Guard, Request, build_guard
from hookgate.auth.base import ANSWERED
from hookgate.auth.limits import MissThrottle, TokenBucket
from hookgate.domain.flows import Flow, FlowSpec
from hookgate.domain.routing import Router
from hookgate.events import EventHub
from hookgate.metrics import Metrics

log = logs.get("hookgate.ingress")

Headers = list[tuple[bytes, bytes]]


class Refused(msgspec.Struct, frozen=True):
    """Credentials refused (401); ``reason`` is ``scheme:reason``, safe to log and count."""

    reason: str


class Limited(msgspec.Struct, frozen=True):
    """Over the flow's rate limit (429), with the ``Retry-After`` value to send."""

    retry_after: bytes


Decision = Answer | Refused | Limited | None


class FlowGuard:
    def __init__(self, spec: FlowSpec) -> None:
        self.spec = spec
        self.auth: Guard = build_guard(spec.auth)
        self.enabled = bool(spec.auth)
        self.needs_body = self.auth.needs_body
        self.router = Router(spec)
        limit = spec.rate_limit
        self.bucket = TokenBucket(limit.rate, limit.burst) if limit else None
        cors = spec.cors
        self.cors_origins = {o.encode() for o in cors.allow_origins} if cors else set()
        self.cors_methods = {m.upper().encode() for m in cors.allow_methods} if cors else set()
        self.cors_headers: Headers = [(b"vary", b"Origin")]
        if cors:
            self.cors_headers += [
                (b"access-control-allow-methods", ", ".join(cors.allow_methods).encode()),
                (b"access-control-max-age", str(int(cors.max_age)).encode()),
            ]
            if cors.allow_headers:
                allowed = ", ".join(cors.allow_headers).encode()
                self.cors_headers.append((b"access-control-allow-headers", allowed))

    def allowed_origin(self, headers: Headers) -> bytes | None:
        """The caller's ``Origin`` when the flow's CORS settings allow it."""
        if not self.cors_origins:
            return None
        origin = next((v for k, v in headers if k == b"origin"), None)
        if origin is None or not (origin in self.cors_origins or b"*" in self.cors_origins):
            return None
        return origin

    def preflight(self, method: str, headers: Headers) -> Headers | None:
        """For a CORS preflight on a flow with CORS settings: the answer's headers when the
        origin and the requested method are allowed, an empty list when they are not (403).
        None when this is not a preflight (an OPTIONS request is then like any other)."""
        if method != "OPTIONS" or not self.cors_origins:
            return None
        wanted = next((v for k, v in headers if k == b"access-control-request-method"), None)
        if wanted is None:
            return None
        origin = self.allowed_origin(headers)
        if origin is None or wanted.upper() not in self.cors_methods:
            return []
        return [(b"access-control-allow-origin", origin), *self.cors_headers]

    def admit(
        self,
        scope: dict[str, Any],
        body: bytes,
        address: str,
        request_id: str,
        *,
        handshake: bool = True,
    ) -> Decision:
        """One decision per request, in order: a provider's URL handshake answered here, a
        refusal of its credentials, a refusal of its rate, or ``None``: admitted. The rate is
        charged to admitted requests only, so strangers cannot drain a flow's bucket."""
        if self.enabled:
            if handshake and (answer := self._handshake(scope, body, request_id)) is not None:
                return answer
            rejection = self.auth.check(_request(scope, body, address or None))
            if rejection is not None:
                return Refused(f"{rejection.scheme}:{rejection.reason}")
        if self.bucket is not None and (wait := self.bucket.take(time.monotonic())) is not None:
            return Limited(str(max(1, round(wait + 0.5))).encode())
        return None

    def dedupe_key(self, headers: Headers, body: bytes) -> str | None:
        return self.auth.dedupe_key(headers, body)

    def _handshake(self, scope: dict[str, Any], body: bytes, request_id: str) -> Answer | None:
        """A refused handshake carries the usual error body, so it reads like any other
        refused request."""
        answer = self.auth.handshake(_request(scope, body, None))
        if answer is None or answer.outcome == ANSWERED:
            return answer
        return msgspec.structs.replace(
            answer,
            body=msgspec.json.encode({"error": "handshake refused", "requestId": request_id}),
            headers=((b"x-request-id", request_id.encode()),),
        )


def _request(scope: dict[str, Any], body: bytes, client: str | None) -> Request:
    return Request(
        method=scope["method"],
        path=scope["path"],
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=scope["headers"],
        body=body,
        client=client,
        now=time.time(),
    )


def handshaken(
    answer: Answer, flow: Flow, request_id: str, *, metrics: Metrics, events: EventHub
) -> None:
    """Count, log and publish a handshake (``hookgate tail`` shows it)."""
    metrics.handshakes.labels(flow.name, answer.scheme, answer.outcome).inc()
    if answer.outcome != ANSWERED:
        log.warning(
            "handshake refused",
            flow=flow.name,
            request=request_id,
            reason=f"{answer.scheme}:{answer.outcome}",
        )
    events.publish(
        "handshake",
        flowId=flow.id,
        flow=flow.name,
        requestId=request_id,
        provider=answer.scheme,
        outcome=answer.outcome,
        status=answer.status,
    )


class Guards:
    def __init__(self) -> None:
        self._by_flow: dict[str, FlowGuard] = {}
        self._misses = MissThrottle()

    def for_flow(self, flow: Flow) -> FlowGuard:
        guard = self._by_flow.get(flow.id)
        if guard is None or guard.spec is not flow.spec:
            guard = self._by_flow[flow.id] = FlowGuard(flow.spec)
        return guard

    def forget(self, flow_id: str) -> None:
        self._by_flow.pop(flow_id, None)

    async def miss(self, address: str) -> None:
        """Slow down repeated misses from one address so flow ids cannot be probed cheaply."""
        delay = self._misses.miss(address, time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)
