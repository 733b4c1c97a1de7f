"""The hot path. A raw ASGI callable, because framework routing halves throughput (design §7).

``/hook/{flow_id}[/{sub/path}]`` in order: route (uniform 404) → CORS preflight → size (413,
before reading when Content-Length says so, else while reading) → credentials (401) → rate
limit (429, charged to admitted requests only) → HEAD readiness → async: commit to the store,
then 202 / sync: hand to the proxy. The whole body is read before a sync request takes a
worker slot (a slow sender never holds a worker) unless the flow sets
``request_buffering: false``; the listener's protocol (``protocol.py``) bounds how long that
read may take, and ``asgi.BodyReader`` how much of it stays in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from hookgate import logs
from hookgate.asgi import (
    Body,
    BodyBudget,
    BodyReader,
    BodyTooLarge,
    CallerGone,
    Receive,
    Scope,
    Send,
    SpooledBody,
    content_length,
)
from hookgate.asgi import error as _error
from hookgate.asgi import respond as _respond
from hookgate.domain.deliveries import Request, new_id
from hookgate.domain.flows import Flow, Mode
from hookgate.errors import StoreError, StoreFull
from hookgate.events import EventHub
from hookgate.ingress.guards import FlowGuard, Guards, handshaken
from hookgate.metrics import Metrics
from hookgate.registry import FlowRegistry
from hookgate.store.base import Store
from hookgate.tracing import Tracing

RETRY_AFTER_STORE = b"1"
_RETRY = [(b"retry-after", RETRY_AFTER_STORE)]
MAX_REQUEST_ID = 200
SMALL_BODY = 64 * 1024
_encode = msgspec.json.encode
log = logs.get("hookgate.ingress")


class Forwarder(Protocol):
    """The sync proxy, as the ingress sees it: answer the caller with the flow's answer."""

    async def forward(
        self,
        flow: Flow,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        request_id: str,
        sub_path: str,
        body: Body | None,
    ) -> int:
        """Send the worker's answer to ``send``; return the status code sent."""


class Ingress:
    def __init__(
        self,
        *,
        registry: FlowRegistry,
        store: Store,
        metrics: Metrics,
        guards: Guards,
        forwarder: Forwarder | None = None,
        on_accepted: Callable[[str], None] = lambda _flow_id: None,
        ready: Callable[[], bool] = lambda: True,
        events: EventHub | None = None,
        tracing: Tracing | None = None,
        bodies: BodyReader | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.metrics = metrics
        self.guards = guards
        self.forwarder = forwarder
        self.on_accepted = on_accepted
        self.ready = ready
        self.events = events or EventHub()
        self.tracing = tracing or Tracing()
        self.bodies = bodies or BodyReader(budget=BodyBudget(64 * 1024 * 1024))
        # Metric children by flow, mode and status: ``labels()`` takes a lock per call.
        self._measures: dict[tuple[str, Mode, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        # Route on the path as sent: the sub-path keeps its percent-encoding (workers may sign
        # or route on it), and an encoded "/%68ook/" is no way round that.
        raw = scope.get("raw_path")
        path: str = raw.decode("latin-1") if isinstance(raw, bytes) else scope["path"]
        if path.startswith("/hook/"):
            await self._hook(scope, receive, send, path[6:])
        elif path == "/healthz":
            await _respond(send, 200, b'{"status":"ok"}')
        elif path == "/readyz":
            ok = self.ready() and self.store.accepting
            await _respond(
                send, 200 if ok else 503, b'{"ready":true}' if ok else b'{"ready":false}'
            )
        else:
            await _error(send, 404, "not found", new_id())

    async def _hook(self, scope: Scope, receive: Receive, send: Send, rest: str) -> None:
        started = time.perf_counter()
        flow_id, _, sub_path = rest.partition("/")
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id = _request_id(headers) or new_id()
        if not self.ready():
            await _error(
                send,
                503,
                "starting or stopping, retry later",
                request_id,
                [(b"retry-after", RETRY_AFTER_STORE)],
            )
            return
        flow = self.registry.get(flow_id)
        client = scope.get("client")
        address = client[0] if client else ""
        if flow is None or not flow.accepting:
            await self.guards.miss(address)
            await _error(send, 404, "not found", request_id)
            return
        sub_path = "/" + sub_path
        status = await (
            self._traced(flow, scope, receive, send, request_id, sub_path, address)
            if self.tracing.enabled
            else self._flow(flow, scope, receive, send, request_id, sub_path, address)
        )
        took = time.perf_counter() - started
        key = (flow.name, flow.mode, status)
        if (measures := self._measures.get(key)) is None:
            measures = self._measures[key] = (
                self.metrics.requests.labels(flow.name, str(status)),
                self.metrics.request_seconds.labels(flow.name, flow.mode.value),
            )
        measures[0].inc()
        measures[1].observe(took)
        if not self.events.listening:
            return
        self.events.publish(
            "request",
            flowId=flow.id,
            flow=flow.name,
            requestId=request_id,
            status=status,
            method=scope["method"],
            path=sub_path,
            ms=round(took * 1000, 3),
        )

    async def _traced(
        self,
        flow: Flow,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        sub_path: str,
        address: str,
    ) -> int:
        """``_flow`` inside the request's span, a child of the caller's ``traceparent``. The
        request goes on with the span's own ``traceparent``: stored with an async request, it
        makes the deliveries part of this trace."""
        attributes = {
            "http.request.method": scope["method"],
            "url.path": "/hook/" + flow.id + sub_path,
            "client.address": address,
            "hookgate.flow": flow.name,
            "hookgate.flow_id": flow.id,
            "hookgate.mode": flow.mode.value,
            "hookgate.request_id": request_id,
        }
        with self.tracing.span(
            "hookgate.request", kind="server", parent=scope["headers"], attributes=attributes
        ) as span:
            scope = {**scope, "headers": self.tracing.propagate(scope["headers"])}
            status = await self._flow(flow, scope, receive, send, request_id, sub_path, address)
            span.set("http.response.status_code", status)
            if status >= 500:
                span.fail(f"answered {status}")
            return status

    async def _flow(
        self,
        flow: Flow,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        sub_path: str,
        address: str,
    ) -> int:
        spec = flow.spec
        method: str = scope["method"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        guard = self.guards.for_flow(flow)
        cors = guard.preflight(method, headers)
        if cors == []:
            await _error(send, 403, "CORS preflight refused for this origin or method", request_id)
            return 403
        if cors is not None:
            await _respond(send, 204, b"", cors)
            return 204
        declared = content_length(headers)
        if declared is not None and declared > spec.max_body:
            return await _error(send, 413, f"body larger than {spec.max_body} bytes", request_id)
        if method == "HEAD" and not guard.enabled:
            await _respond(send, 200, b"", [(b"x-request-id", request_id.encode())], head=True)
            return 200
        streamed = declared is None or declared > SMALL_BODY
        if (
            spec.mode is Mode.SYNC
            and not spec.request_buffering
            and streamed
            and not guard.needs_body
            and self.forwarder
        ):
            # The flow opted out of buffering: the body goes to the worker as it arrives.
            rejected = guard.check(scope, b"", address)
            if rejected:
                return await self._unauthorized(flow, send, request_id, rejected)
            if (limited := await _rate_limited(guard, send, request_id)) is not None:
                return limited
            return await self.forwarder.forward(
                flow, scope, receive, send, request_id=request_id, sub_path=sub_path, body=None
            )
        try:
            body = await self.bodies.read(receive, spec.max_body)
        except BodyTooLarge:
            return await _error(send, 413, f"body larger than {spec.max_body} bytes", request_id)
        except CallerGone:
            return 499
        except OSError as exc:
            log.error("cannot buffer a request body", flow=flow.name, error=str(exc))
            return await _error(
                send, 503, "cannot take the request now, retry later", request_id, _RETRY
            )
        try:
            return await self._admitted(
                flow, guard, scope, receive, send, request_id, sub_path, address, body
            )
        finally:
            if isinstance(body, SpooledBody):
                body.close()

    async def _admitted(
        self,
        flow: Flow,
        guard: FlowGuard,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        sub_path: str,
        address: str,
        body: Body,
    ) -> int:
        """A request whose whole body is in: credentials, rate limit, then accept or proxy."""
        spec = flow.spec
        if isinstance(body, SpooledBody):
            # Read back only when needed: a signature over it, or the store (async).
            data = body.read() if guard.needs_body or spec.mode is Mode.ASYNC else b""
        else:
            data = body
        if (answer := guard.handshake(scope, data, request_id)) is not None:
            handshaken(answer, flow, request_id, metrics=self.metrics, events=self.events)
            await _respond(
                send,
                answer.status,
                answer.body,
                [*answer.headers],
                content_type=answer.content_type,
            )
            return answer.status
        rejected = guard.check(scope, data, address)
        if rejected:
            return await self._unauthorized(flow, send, request_id, rejected)
        if (limited := await _rate_limited(guard, send, request_id)) is not None:
            return limited
        if scope["method"] == "HEAD":
            await _respond(send, 200, b"", [(b"x-request-id", request_id.encode())], head=True)
            return 200
        if spec.mode is Mode.SYNC:
            if self.forwarder is None:
                return await _error(send, 503, "no worker available", request_id)
            return await self.forwarder.forward(
                flow, scope, receive, send, request_id=request_id, sub_path=sub_path, body=body
            )
        return await self._accept(flow, scope, send, request_id, sub_path, data, address, guard)

    async def _accept(
        self,
        flow: Flow,
        scope: Scope,
        send: Send,
        request_id: str,
        sub_path: str,
        body: bytes,
        address: str,
        guard: FlowGuard,
    ) -> int:
        now = time.time()
        delivery_id = new_id()
        request = Request(
            id=delivery_id,
            request_id=request_id,
            flow_id=flow.id,
            method=scope["method"],
            path=sub_path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            body=body,
            source=address,
            received_at=now,
        )
        key = guard.dedupe_key(scope["headers"], body)
        try:
            with self.tracing.span("hookgate.store.enqueue") as span:
                accepted = await self.store.enqueue(
                    request,
                    dedupe_key=key,
                    dedupe_until=now + flow.spec.dedupe_window,
                    max_queued=flow.spec.max_queued,
                )
                span.set("hookgate.delivery_id", accepted.delivery_id)
        except StoreFull:
            await _error(
                send, 503, "queue full, retry later", request.request_id, [(b"retry-after", b"5")]
            )
            return 503
        except StoreError:
            await _error(
                send,
                503,
                "cannot store the request now, retry later",
                request.request_id,
                [(b"retry-after", RETRY_AFTER_STORE)],
            )
            return 503
        except asyncio.CancelledError:
            raise
        if not accepted.duplicate:
            self.on_accepted(flow.id)
        await _respond(
            send,
            202,
            b'{"requestId":' + _encode(accepted.request_id) + b',"status":"accepted"}',
            _accept_headers(accepted.request_id, guard.allowed_origin(scope["headers"])),
        )
        return 202

    async def _unauthorized(self, flow: Flow, send: Send, request_id: str, reason: str) -> int:
        self.metrics.auth_failures.labels(flow.name, reason).inc()
        log.warning("request refused", flow=flow.name, request=request_id, reason=reason)
        await _error(send, 401, "unauthorized", request_id)
        return 401


def _accept_headers(request_id: str, origin: bytes | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-request-id", request_id.encode())]
    if origin is not None:
        headers += [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
    return headers


async def _rate_limited(guard: FlowGuard, send: Send, request_id: str) -> int | None:
    """Charged only for admitted requests, so strangers cannot drain a flow's bucket."""
    wait = guard.rate_limited()
    if wait is None:
        return None
    retry_after = str(max(1, round(wait + 0.5))).encode()
    await _error(send, 429, "rate limit exceeded", request_id, [(b"retry-after", retry_after)])
    return 429


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-Id`` if it is sane, else a new one."""
    for name, value in headers:
        if name == b"x-request-id":
            if 0 < len(value) <= MAX_REQUEST_ID and value.isascii() and value.strip() == value:
                text = value.decode()
                if text.isprintable():
                    return text
            break
    return ""
