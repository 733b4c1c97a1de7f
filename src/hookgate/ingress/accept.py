"""The accept step of an async request: store it, then answer, and the status URL of a
stored request.

Stored first, answered after: a ``2xx`` means the request is committed. The answer is the
flow's ``accept:`` answer (``202`` by default), or a status URL (``/hook/-/status/{token}``)
when the caller asked with ``Prefer`` (RFC 7240) or a sync worker handed over; ``Prefer: wait``
waits that long for the worker's answer (``dispatch.waiters``).
"""

from __future__ import annotations

import asyncio
import time

import msgspec

from hookgate.asgi import RETRY_SOON, Scope, Send
from hookgate.asgi import error as _error
from hookgate.asgi import respond as _respond
from hookgate.dispatch.waiters import Waiters
from hookgate.domain.answers import (
    STATUS_PATH,
    AcceptAnswer,
    Preference,
    accept_answer,
    status_document,
)
from hookgate.domain.deliveries import Answer, Request, new_id, new_status_token
from hookgate.domain.flows import Accept, Flow, Mode
from hookgate.errors import StoreError, StoreFull
from hookgate.ingress.guards import FlowGuard, Guards
from hookgate.registry import FlowRegistry
from hookgate.store.base import Store
from hookgate.tracing import Tracing

_NO_STORE = [(b"cache-control", b"no-store")]
_encode = msgspec.json.encode


class Acceptor:
    """Stores async requests and answers their callers (and their status URLs)."""

    def __init__(
        self,
        *,
        registry: FlowRegistry,
        store: Store,
        guards: Guards,
        tracing: Tracing,
        waiters: Waiters,
    ) -> None:
        self.registry = registry
        self.store = store
        self.guards = guards
        self.tracing = tracing
        self.waiters = waiters
        # Each flow's ``accept:`` answer, built once per spec.
        self._accepts: dict[str, tuple[Accept, AcceptAnswer]] = {}

    async def accept(
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
                RETRY_SOON,
            )
            return 503
        except asyncio.CancelledError:
            self.waiters.forget(delivery_id)
            raise
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

    async def status(
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
                    send, 503, "cannot read the status now, retry later", request_id, RETRY_SOON
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
