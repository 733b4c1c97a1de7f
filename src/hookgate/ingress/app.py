"""The hot path. A raw ASGI callable, because framework routing halves throughput (design §7).

``/hook/{flow_id}[/{sub/path}]`` in order: route (uniform 404) → CORS preflight → size (413,
before reading when Content-Length says so, else while reading) → credentials (401) → rate
limit (429, charged to admitted requests only) → HEAD readiness → async: commit to the store,
then the flow's accept answer (``202`` by default) / sync: hand to the proxy. ``Prefer`` (RFC
7240) and ``fallback: async`` store a request with a status URL (``/hook/-/status/{token}``):
``respond-async`` answers ``202`` + ``Location`` at once, ``wait=N`` waits that long for the
worker's answer (``dispatch.waiters``), a sync worker too slow for ``timeout`` hands over.
The whole body is read before a sync request takes a worker slot (a slow sender never holds a
worker) unless the flow sets ``request_buffering: false``; the listener's protocol
(``protocol.py``) bounds how long that read may take, and ``asgi.BodyReader`` how much of it
stays in memory.
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
from hookgate.dispatch.waiters import Waiters
from hookgate.domain.answers import (
    STATUS_PATH,
    AcceptAnswer,
    Preference,
    accept_answer,
    preference,
    status_document,
)
from hookgate.domain.deliveries import Answer, Request, new_id, new_status_token
from hookgate.domain.flows import Accept, Flow, Mode
from hookgate.errors import StoreError, StoreFull, WorkerTimeout
from hookgate.events import EventHub
from hookgate.ingress.guards import FlowGuard, Guards, handshaken
from hookgate.metrics import Metrics
from hookgate.registry import FlowRegistry
from hookgate.store.base import Store
from hookgate.tracing import Tracing

RETRY_AFTER_STORE = b"1"
_RETRY = [(b"retry-after", RETRY_AFTER_STORE)]
_NO_STORE = [(b"cache-control", b"no-store")]
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
        on_accepted: Callable[[str, float | None], None] = lambda _flow_id, _at: None,
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
        self.on_accepted = on_accepted
        self.ready = ready
        self.events = events or EventHub()
        self.tracing = tracing or Tracing()
        self.bodies = bodies or BodyReader(budget=BodyBudget(64 * 1024 * 1024))
        self.waiters = waiters or Waiters()
        # Metric children by flow, mode and status: ``labels()`` takes a lock per call.
        self._measures: dict[tuple[str, Mode, int], tuple[Any, Any]] = {}
        # Each flow's ``accept:`` answer, built once per spec.
        self._accepts: dict[str, tuple[Accept, AcceptAnswer]] = {}

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
        if flow is None and flow_id == "-" and sub_path.startswith("status/"):
            await self._status(scope, send, sub_path[7:], request_id, address)
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
            and not _respond_async(headers)
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
        prefer = _preference(scope["headers"])
        if spec.mode is Mode.ASYNC:
            return await self._accept(
                flow, scope, send, request_id, sub_path, data, address, guard, prefer=prefer
            )
        if prefer is not None and prefer.respond_async:
            whole = body.read() if isinstance(body, SpooledBody) else body
            return await self._accept(
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
            return await self._accept(
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
        *,
        prefer: Preference | None = None,
        delivery_id: str | None = None,
    ) -> int:
        """Store, then answer: the flow's accept answer, or with a status URL when the caller
        asked (``Prefer``) or a sync worker handed over (``delivery_id`` given)."""
        now = time.time()
        tracked = prefer is not None or delivery_id is not None
        delivery_id = delivery_id or new_id()
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
        request.routes = guard.router.routes(request)
        key = guard.dedupe_key(scope["headers"], body)
        wait = _wait(flow, prefer)
        answered = self.waiters.expect(delivery_id) if wait else None
        try:
            with self.tracing.span("hookgate.store.enqueue") as span:
                accepted = await self.store.enqueue(
                    request,
                    dedupe_key=key,
                    dedupe_until=now + flow.spec.dedupe_window,
                    max_queued=flow.spec.max_queued,
                    status_token=new_status_token() if tracked else None,
                )
                span.set("hookgate.delivery_id", accepted.delivery_id)
        except StoreFull:
            self.waiters.forget(delivery_id)
            await _error(
                send, 503, "queue full, retry later", request.request_id, [(b"retry-after", b"5")]
            )
            return 503
        except StoreError:
            self.waiters.forget(delivery_id)
            await _error(
                send,
                503,
                "cannot store the request now, retry later",
                request.request_id,
                [(b"retry-after", RETRY_AFTER_STORE)],
            )
            return 503
        except asyncio.CancelledError:
            self.waiters.forget(delivery_id)
            raise
        if not accepted.duplicate:
            # A delayed delivery wakes its lane when it is due (a timer per due time).
            for at in {None} if request.routes is None else {r.due_at for r in request.routes}:
                self.on_accepted(flow.id, at)
        origin = guard.allowed_origin(scope["headers"])
        if answered is not None:
            answer = await self._waited(answered, delivery_id, wait, duplicate=accepted.duplicate)
            if answer is not None:
                await _respond_with(send, answer, accepted.request_id, origin)
                return answer.status
        headers = _accept_headers(accepted.request_id, origin)
        if tracked and accepted.status_token is not None:
            headers.append((b"location", (STATUS_PATH + accepted.status_token).encode()))
            if prefer is not None and prefer.respond_async:
                headers.append((b"preference-applied", b"respond-async"))
        elif not tracked and flow.spec.accept is not None:
            custom = self._accept_answer(flow, flow.spec.accept)
            await _respond(
                send,
                custom.status,
                custom.body(accepted.request_id),
                [*headers, *custom.headers],
                content_type=custom.content_type,
            )
            return custom.status
        await _respond(
            send,
            202,
            b'{"requestId":' + _encode(accepted.request_id) + b',"status":"accepted"}',
            headers,
        )
        return 202

    def _accept_answer(self, flow: Flow, accept: Accept) -> AcceptAnswer:
        cached = self._accepts.get(flow.id)
        if cached is None or cached[0] is not accept:
            cached = self._accepts[flow.id] = (accept, accept_answer(accept))
        return cached[1]

    async def _waited(
        self,
        answered: asyncio.Future[Answer | None],
        delivery_id: str,
        wait: float,
        *,
        duplicate: bool,
    ) -> Answer | None:
        """``Prefer: wait``: the worker's answer if it comes within ``wait`` seconds. A
        duplicate is not delivered again: its caller is answered at once."""
        try:
            if duplicate:
                return None
            async with asyncio.timeout(wait):
                return await answered
        except TimeoutError:
            return None
        finally:
            self.waiters.forget(delivery_id)

    async def _status(
        self, scope: Scope, send: Send, token: str, request_id: str, address: str
    ) -> None:
        """``GET /hook/-/status/{token}``: the uniform 404 for anything but a live token of a
        running flow, so tokens and flows cannot be probed."""
        progress = None
        if scope["method"] in ("GET", "HEAD") and 0 < len(token) <= 64:
            try:
                progress = await self.store.progress(token)
            except StoreError:
                await _error(
                    send, 503, "cannot read the status now, retry later", request_id, _RETRY
                )
                return
        flow = None if progress is None else self.registry.get(progress.flow_id)
        if progress is None or flow is None or not flow.running:
            await self.guards.miss(address)
            await _error(send, 404, "not found", request_id)
            return
        await _respond(
            send,
            200,
            status_document(progress),
            [(b"x-request-id", progress.request_id.encode()), *_NO_STORE],
            head=scope["method"] == "HEAD",
        )

    async def _unauthorized(self, flow: Flow, send: Send, request_id: str, reason: str) -> int:
        self.metrics.auth_failures.labels(flow.name, reason).inc()
        log.warning("request refused", flow=flow.name, request=request_id, reason=reason)
        await _error(send, 401, "unauthorized", request_id)
        return 401


def _preference(headers: list[tuple[bytes, bytes]]) -> Preference | None:
    values = [value for name, value in headers if name == b"prefer"]
    return preference(values) if values else None


def _respond_async(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the caller prefers a stored request: its body must be buffered, not streamed."""
    prefer = _preference(headers)
    return prefer is not None and prefer.respond_async


def _wait(flow: Flow, prefer: Preference | None) -> float:
    """Seconds an async flow's caller waits for the worker's answer (``Prefer: wait``), 0: none."""
    if prefer is None or prefer.wait is None or flow.mode is not Mode.ASYNC:
        return 0.0
    return min(prefer.wait, flow.spec.max_wait)


async def _respond_with(send: Send, answer: Answer, request_id: str, origin: bytes | None) -> None:
    """The worker's answer, as it gave it (``Prefer: wait``), with the request id."""
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    if not any(k == b"x-request-id" for k, _ in headers):
        headers.append((b"x-request-id", request_id.encode()))
    if origin is not None:
        headers += [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


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
