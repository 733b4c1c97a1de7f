"""The hot path. A raw ASGI callable, because framework routing halves throughput (design §7).

``/hook/{flow_id}[/{sub/path}]`` in order: route (uniform 404) → CORS preflight → size (413,
before reading when Content-Length says so, else while reading) → the flow's guard, one
decision (a provider's URL handshake answered here, 401, 429) → HEAD readiness → async: the
accept step (``accept.py``: commit to the store, then answer) / sync: hand to the proxy.
``Prefer: respond-async`` and ``fallback: async`` store a sync flow's request too.
The whole body is read before a sync request takes a worker slot (a slow sender never holds a
worker) unless the flow sets ``request_buffering: false``; the listener's protocol
(``protocol.py``) bounds how long that read may take, and ``asgi.BodyReader`` how much of it
stays in memory. Tracing wraps the whole request when it is on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from hookgate import logs
from hookgate.asgi import (
    CLOSE,
    RETRY_SOON,
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
from hookgate.auth import Answer
from hookgate.dispatch.waiters import Waiters
from hookgate.domain.answers import Preference, preference
from hookgate.domain.deliveries import new_id
from hookgate.domain.flows import Flow, Mode
from hookgate.errors import WorkerTimeout
from hookgate.events import EventHub
from hookgate.ingress.accept import Acceptor
from hookgate.ingress.guards import FlowGuard, Guards, Limited, Refused, handshaken
from hookgate.metrics import Metrics
from hookgate.registry import FlowRegistry
from hookgate.store.base import Store
from hookgate.tracing import Tracing

MAX_REQUEST_ID = 200
SMALL_BODY = 64 * 1024
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
        ready: Callable[[], bool] = lambda: True,
        events: EventHub | None = None,
        tracing: Tracing | None = None,
        bodies: BodyReader | None = None,
        waiters: Waiters | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.metrics = metrics
        self.guards = guards
        self.forwarder = forwarder
        self.ready = ready
        self.events = events or EventHub()
        self.tracing = tracing or Tracing()
        self.bodies = bodies or BodyReader(budget=BodyBudget(64 * 1024 * 1024))
        self.acceptor = Acceptor(
            registry=registry,
            store=store,
            guards=guards,
            tracing=self.tracing,
            waiters=waiters or Waiters(),
        )
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
                RETRY_SOON,
            )
            return
        flow = self.registry.get(flow_id)
        client = scope.get("client")
        address = client[0] if client else ""
        if flow is None and flow_id == "-" and sub_path.startswith("status/"):
            await self.acceptor.status(scope, send, sub_path[7:], request_id, address)
            return
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
            return await _error(
                send, 413, f"body larger than {spec.max_body} bytes", request_id, CLOSE
            )
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
            and not _respond_async(headers)
        ):
            # The flow opted out of buffering: the body goes to the worker as it arrives.
            decision = guard.admit(scope, b"", address, request_id, handshake=False)
            if decision is not None:
                return await self._refuse(flow, send, request_id, decision)
            return await self.forwarder.forward(
                flow, scope, receive, send, request_id=request_id, sub_path=sub_path, body=None
            )
        try:
            body = await self.bodies.read(receive, spec.max_body)
        except BodyTooLarge:
            return await _error(
                send, 413, f"body larger than {spec.max_body} bytes", request_id, CLOSE
            )
        except CallerGone:
            return 499
        except OSError as exc:
            log.error("cannot buffer a request body", flow=flow.name, error=str(exc))
            return await _error(
                send, 503, "cannot take the request now, retry later", request_id, RETRY_SOON
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
        if (decision := guard.admit(scope, data, address, request_id)) is not None:
            return await self._refuse(flow, send, request_id, decision)
        if scope["method"] == "HEAD":
            await _respond(send, 200, b"", [(b"x-request-id", request_id.encode())], head=True)
            return 200
        prefer = _preference(scope["headers"])
        if spec.mode is Mode.ASYNC:
            return await self.acceptor.accept(
                flow, scope, send, request_id, sub_path, data, address, guard, prefer=prefer
            )
        if prefer is not None and prefer.respond_async:
            whole = body.read() if isinstance(body, SpooledBody) else body
            return await self.acceptor.accept(
                flow, scope, send, request_id, sub_path, whole, address, guard, prefer=prefer
            )
        if self.forwarder is None:
            return await _error(send, 503, "no worker available", request_id)
        if spec.fallback is None:
            return await self.forwarder.forward(
                flow, scope, receive, send, request_id=request_id, sub_path=sub_path, body=body
            )
        # The worker gets the Idempotency-Key the async delivery would carry, should it come.
        delivery_id = new_id()
        headers = [(k, v) for k, v in scope["headers"] if k != b"idempotency-key"]
        scope = {**scope, "headers": [*headers, (b"idempotency-key", delivery_id.encode())]}
        try:
            return await self.forwarder.forward(
                flow, scope, receive, send, request_id=request_id, sub_path=sub_path, body=body
            )
        except WorkerTimeout:
            log.info(
                "worker too slow; the request continues async", flow=flow.name, request=request_id
            )
            whole = body.read() if isinstance(body, SpooledBody) else body
            return await self.acceptor.accept(
                flow,
                scope,
                send,
                request_id,
                sub_path,
                whole,
                address,
                guard,
                delivery_id=delivery_id,
            )

    async def _refuse(
        self, flow: Flow, send: Send, request_id: str, decision: Answer | Refused | Limited
    ) -> int:
        """Answer a request the flow's guard did not admit, counted and logged by kind."""
        if isinstance(decision, Limited):
            retry_after = [(b"retry-after", decision.retry_after)]
            return await _error(send, 429, "rate limit exceeded", request_id, retry_after)
        if isinstance(decision, Refused):
            self.metrics.auth_failures.labels(flow.name, decision.reason).inc()
            log.warning(
                "request refused", flow=flow.name, request=request_id, reason=decision.reason
            )
            return await _error(send, 401, "unauthorized", request_id)
        handshaken(decision, flow, request_id, metrics=self.metrics, events=self.events)
        await _respond(
            send,
            decision.status,
            decision.body,
            [*decision.headers],
            content_type=decision.content_type,
        )
        return decision.status


def _preference(headers: list[tuple[bytes, bytes]]) -> Preference | None:
    values = [value for name, value in headers if name == b"prefer"]
    return preference(values) if values else None


def _respond_async(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the caller prefers a stored request: its body must be buffered, not streamed."""
    prefer = _preference(headers)
    return prefer is not None and prefer.respond_async


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
