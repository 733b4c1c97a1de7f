"""The sync proxy: the caller's request to the least busy ready worker, its answer streamed back.

A caller's body comes whole (in memory, or spooled to a file by the ingress), or streamed as it
arrives when the flow sets ``request_buffering: false``; answers stream back, so a 1 GB upload
or download never sits in memory. Each worker has at most ``concurrency`` requests in flight,
and when all are busy a request waits in line (first come first served) up to
``queue_timeout`` before ``503``. The line is bounded by time, not by a multiple of the slots:
only ``max_waiting`` callers across the gateway (a memory bound, ``HOOKGATE_MAX_SYNC_WAITERS``)
turn the next one away at once. Failures map to design §3: no answer in ``timeout`` → 504, a
worker that fails → 502, a refused connection → one other replica. With ``fallback: async`` a
timeout before the answer's head raises ``WorkerTimeout`` and sends nothing: the ingress then
stores the request for an async delivery.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection

from hookgate import logs
from hookgate.asgi import (
    CLOSE,
    RETRY_SOON,
    Body,
    BodyTooLarge,
    CallerGone,
    Receive,
    Scope,
    Send,
    SpooledBody,
    error,
)
from hookgate.domain.concurrency import Ledger
from hookgate.domain.deliveries import new_id
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import Flow
from hookgate.domain.forwarding import HOP_BY_HOP, forward_headers
from hookgate.errors import WorkerError, WorkerTimeout, WorkerUnreachable
from hookgate.proxy.line import WaitLine
from hookgate.runtime.base import Runtime
from hookgate.tracing import Tracing
from hookgate.transport.base import Upstream, WorkerTransport

log = logs.get("hookgate.proxy")

RECHECK = 0.25
SMALL_ANSWER = 256 * 1024


class SyncProxy:
    def __init__(
        self,
        *,
        runtime: Runtime,
        transport: WorkerTransport,
        max_waiting: int,
        ledger: Ledger[Endpoint] | None = None,
    ) -> None:
        self.runtime = runtime
        self.transport = transport
        self.max_waiting = max_waiting
        self.ledger = ledger or Ledger()
        self.waiting = 0
        self._lanes: dict[str, WaitLine] = {}

    def limit(self, flow_id: str) -> int | None:
        """The flow's concurrency limit now, None before its first request."""
        lane = self._lanes.get(flow_id)
        return None if lane is None else lane.slots.total(self.runtime.endpoints(flow_id))

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
        request_id = request_id or new_id()
        lane = self._lane(flow)
        endpoint = await self._slot(flow, lane)
        if endpoint is None:
            return await _fail(
                send, 503, "no worker available, retry later", request_id, retry_after=True
            )
        # Whether the limit, not the demand, decided: every slot taken or callers waiting.
        busy = bool(lane.waiters) or lane.slots.inflight[endpoint] >= lane.slots.limit(endpoint)
        tried: set[Endpoint] = set()
        sent = False
        payload = body if body is not None else _CallerBody(receive, flow.spec.max_body)
        try:
            upstream: Upstream | None = None
            while upstream is None:
                tried.add(endpoint)
                try:
                    upstream = await self._open(
                        flow, scope, endpoint, request_id, sub_path, payload
                    )
                except WorkerUnreachable:
                    other = self._pick(flow, lane, exclude=tried)
                    if other is None or len(tried) > 1:
                        raise
                    lane.slots.take(other)
                    self._release(flow, lane, endpoint)
                    endpoint = other
            sent = True
            read = payload.read if isinstance(payload, _CallerBody) else None
            status = await self._relay(upstream, receive, send, request_id, read)
            full = status in (429, 503)
            lane.measure(endpoint, busy, overloaded=full, everyone=full and _retry_after(upstream))
            return status
        except CallerGone:
            return 499
        except BodyTooLarge:
            if sent:
                return 413
            return await error(
                send, 413, f"body larger than {flow.spec.max_body} bytes", request_id, CLOSE
            )
        except WorkerError as exc:
            if isinstance(exc, WorkerTimeout):
                lane.measure(endpoint, busy, overloaded=True)
                if not sent and body is not None and flow.spec.fallback == "async":
                    raise  # nothing sent yet: the ingress stores the request instead
            if not sent:
                return await self._failed(flow, send, request_id, exc)
            log.warning(
                "worker broke off its answer", flow=flow.name, request=request_id, error=str(exc)
            )
            return 502
        finally:
            self._release(flow, lane, endpoint)

    @staticmethod
    async def _failed(flow: Flow, send: Send, request_id: str, exc: WorkerError) -> int:
        log.warning("worker failed", flow=flow.name, request=request_id, error=str(exc))
        if isinstance(exc, WorkerTimeout):
            return await _fail(
                send, 504, f"the flow did not answer within {flow.spec.timeout:g}s", request_id
            )
        if isinstance(exc, WorkerUnreachable):
            return await _fail(
                send, 503, "no worker available, retry later", request_id, retry_after=True
            )
        return await _fail(send, 502, f"the flow's worker failed: {exc}", request_id)

    # choosing a worker -------------------------------------------------------------------
    def _lane(self, flow: Flow) -> WaitLine:
        lane = self._lanes.get(flow.id)
        if lane is None:
            lane = self._lanes[flow.id] = WaitLine(flow, self.ledger)
        elif lane.concurrency != flow.spec.concurrency:
            lane.concurrency = flow.spec.concurrency
            lane.slots.reset(pinned=flow.spec.pinned() is not None)
        return lane

    def _pick(
        self, flow: Flow, lane: WaitLine, *, exclude: Collection[Endpoint] = ()
    ) -> Endpoint | None:
        """The ready endpoint with the fewest requests per slot that has a free one (ties go
        round-robin, so equally idle replicas share even sequential callers)."""
        endpoints = self.runtime.endpoints(flow.id)
        lane.slots.forget(endpoints)
        return lane.slots.pick(endpoints, exclude=exclude)

    async def _slot(self, flow: Flow, lane: WaitLine) -> Endpoint | None:
        """A slot at once, or one handed over in line within ``queue_timeout``; None when the
        wait ran out or the gateway already holds ``max_waiting`` waiting callers."""
        # Newcomers queue behind callers already waiting, so the wait is first come first served.
        endpoint = None if lane.waiters else self._pick(flow, lane)
        if endpoint is not None:
            lane.slots.take(endpoint)
            return endpoint
        if self.waiting >= self.max_waiting or flow.spec.queue_timeout <= 0:
            return None
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[Endpoint | None] = loop.create_future()
        lane.join(turn, loop.time() + flow.spec.queue_timeout, loop)
        self.waiting += 1
        if lane.recheck is None:
            lane.recheck = loop.call_later(RECHECK, self._recheck, flow, lane)
        try:
            return await turn
        except BaseException:
            if turn.done() and not turn.cancelled() and (handed := turn.result()) is not None:
                self._release(flow, lane, handed)  # handed a slot as the caller went away
            raise
        finally:
            self.waiting -= 1
            lane.waiters.pop(turn, None)

    def _recheck(self, flow: Flow, lane: WaitLine) -> None:
        """While callers wait, look again now and then: a replica may have become ready.

        One timer per line, not per caller: 10,000 waiters must not mean 40,000 looks a second.
        """
        self._admit(flow, lane)
        lane.recheck = None
        if lane.waiters:
            lane.recheck = asyncio.get_running_loop().call_later(RECHECK, self._recheck, flow, lane)

    def _admit(self, flow: Flow, lane: WaitLine) -> None:
        """Hand free slots to the longest-waiting callers, one each (FIFO, no herd)."""
        while lane.waiters:
            turn = next(iter(lane.waiters))
            if turn.done():  # gave up or hung up, and not yet out of the line
                del lane.waiters[turn]
                continue
            endpoint = self._pick(flow, lane)
            if endpoint is None:
                return
            lane.slots.take(endpoint)
            del lane.waiters[turn]
            turn.set_result(endpoint)

    def _release(self, flow: Flow, lane: WaitLine, endpoint: Endpoint) -> None:
        lane.slots.release(endpoint)
        self._admit(flow, lane)

    # the exchange ------------------------------------------------------------------------
    async def _open(
        self,
        flow: Flow,
        scope: Scope,
        endpoint: Endpoint,
        request_id: str,
        sub_path: str,
        body: bytes | SpooledBody | _CallerBody,
    ) -> Upstream:
        raw = scope["headers"]
        client = scope.get("client")
        headers = forward_headers(
            raw,
            request_id=request_id,
            flow_id=flow.id,
            client=client[0] if client else "",
            proto=scope.get("scheme", "http"),
        )
        length = next((v for k, v in raw if k == b"content-length"), None)
        if isinstance(body, SpooledBody):
            headers.append((b"content-length", str(body.size).encode()))
        elif isinstance(body, _CallerBody) and length is not None:
            headers.append((b"content-length", length))
        query = scope.get("query_string", b"")
        target = sub_path + ("?" + query.decode("latin-1") if query else "")
        return await self.transport.stream(
            endpoint,
            method=scope["method"],
            target=target,
            headers=headers,
            body=body,
            timeout=flow.spec.timeout,
        )

    @staticmethod
    async def _relay(
        upstream: Upstream,
        receive: Receive,
        send: Send,
        request_id: str,
        body_read: asyncio.Event | None,
    ) -> int:
        """Stream the answer while watching for the caller hanging up (then drop the worker)."""
        headers = [(k, v) for k, v in upstream.headers if k not in HOP_BY_HOP]
        if not any(k == b"x-request-id" for k, _ in headers):
            headers.append((b"x-request-id", request_id.encode()))
        if upstream.length is not None and upstream.length <= SMALL_ANSWER:
            try:
                body = await upstream.read()
            finally:
                upstream.close()
            await send(
                {"type": "http.response.start", "status": upstream.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
            return upstream.status
        watcher = asyncio.create_task(_hangup(receive, body_read))
        try:
            await send(
                {"type": "http.response.start", "status": upstream.status, "headers": headers}
            )
            async for chunk in upstream.chunks():
                if watcher.done():
                    raise CallerGone
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return upstream.status
        finally:
            watcher.cancel()
            upstream.close()


class TracedProxy:
    """The proxy inside a ``hookgate.proxy`` span, whose context the worker gets as
    ``traceparent``; used in place of :class:`SyncProxy` only when tracing is on."""

    def __init__(self, proxy: SyncProxy, tracing: Tracing) -> None:
        self.proxy = proxy
        self.tracing = tracing

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
        with self.tracing.span(
            "hookgate.proxy", kind="client", attributes={"hookgate.flow": flow.name}
        ) as span:
            scope = {**scope, "headers": self.tracing.propagate(scope["headers"])}
            status = await self.proxy.forward(
                flow, scope, receive, send, request_id=request_id, sub_path=sub_path, body=body
            )
            span.set("http.response.status_code", status)
            if status >= 500:
                span.fail(f"answered {status}")
            return status


class _CallerBody:
    """The caller's body for the worker, as it arrives; ``read`` is set once all of it has.

    Until then nobody else may call ``receive()``: a worker can answer before it has read the
    whole upload, and a hang-up watcher started then would take chunks meant for the worker.
    """

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.read = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise CallerGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise BodyTooLarge
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                self.read.set()
                return


async def _hangup(receive: Receive, body_read: asyncio.Event | None) -> None:
    """Returns when the caller disconnects; an upload still coming in is watched by its reader."""
    if body_read is not None:
        await body_read.wait()
    while (await receive())["type"] != "http.disconnect":
        pass


def _retry_after(upstream: Upstream) -> bool:
    """Whether an overloaded worker's answer says when to come back: the flow's backend as a
    whole is full (looked for only in a ``429``/``503``, so a 2xx costs nothing)."""
    return any(name == b"retry-after" for name, _ in upstream.headers)


async def _fail(
    send: Send, status: int, message: str, request_id: str, *, retry_after: bool = False
) -> int:
    return await error(send, status, message, request_id, RETRY_SOON if retry_after else None)
