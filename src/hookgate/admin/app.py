"""The admin REST API under ``/api/v1`` and ``/metrics``, on its own listener, bearer-protected.

The console shares the listener under ``/console`` and guards itself with sessions, so the
bearer check leaves that prefix alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from hookgate.admin import inputs
from hookgate.admin.http import Bearer, http_error, json_errors, resource
from hookgate.admin.openapi import openapi_document
from hookgate.admin.schedule import Handler, ScheduleAPI
from hookgate.admin.views import delivery_view, flow_view
from hookgate.domain import redaction
from hookgate.domain.deliveries import State
from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import Flow, FlowSpec, Status, to_builtins
from hookgate.errors import ConfigError, DeliveryNotFound, FlowNotFound
from hookgate.services import Services
from hookgate.store.base import MAX_CANDIDATES, DeliveryFilter, ambiguity, look_up

HEARTBEAT = 15.0


class AdminAPI:
    def __init__(
        self,
        services: Services,
        *,
        validate: Callable[[FlowSpec], list[str]],
        next_ticks: Callable[[Flow], list[float]] = lambda _flow: [],
        runtime: str = "local",
    ) -> None:
        self.runtime = runtime
        self.next_ticks = next_ticks
        self.validate = validate
        self.schedules = ScheduleAPI(services)
        self.hub = services.events
        self.stopping = services.stopping
        self.registry = services.registry
        self.store = services.store
        self.metrics = services.metrics
        self.public_url = services.public_url
        self.workers = services.workers
        self.concurrency_limit = services.concurrency_limit

    def routes(self) -> list[Route]:
        operations = [
            ("/api/v1/flows", "GET", self.list_flows),
            ("/api/v1/flows", "POST", self.create_flow),
            ("/api/v1/apply", "POST", self.apply),
            ("/api/v1/flows/{ref}", "GET", self.get_flow),
            ("/api/v1/flows/{ref}", "PUT", self.replace_flow),
            ("/api/v1/flows/{ref}", "DELETE", self.delete_flow),
            ("/api/v1/flows/{ref}/start", "POST", self.start_flow),
            ("/api/v1/flows/{ref}/stop", "POST", self.stop_flow),
            ("/api/v1/flows/{ref}/pause", "POST", self.pause_flow),
            ("/api/v1/flows/{ref}/resume", "POST", self.start_flow),
            *self.schedules.operations(),
            ("/api/v1/deliveries", "GET", self.list_deliveries),
            ("/api/v1/deliveries/replay", "POST", self.replay),
            ("/api/v1/deliveries/{id:ref}", "GET", self.get_delivery),
            ("/api/v1/deliveries/{id:ref}", "DELETE", self.delete_delivery),
            ("/api/v1/events", "GET", self.events),
        ]
        by_path: dict[str, dict[str, Handler]] = defaultdict(dict)
        for path, method, handler in operations:
            by_path[path][method] = json_errors(self._loaded(handler))
        return [
            Route("/api/v1/openapi.json", self.openapi),
            *(resource(path, handlers) for path, handlers in by_path.items()),
            Route("/metrics", self.prometheus),
        ]

    def _loaded(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Until the flows are loaded (the store may still be opening) every answer would be
        wrong (no flows, "no flow named …"): say 503 and when to retry instead."""

        async def wrapped(request: Request) -> Response:
            if not self.registry.loaded:
                return JSONResponse(
                    {"error": "the gateway is starting: its flows are not loaded yet; retry"},
                    status_code=503,
                    headers={"retry-after": "1"},
                )
            return await handler(request)

        return wrapped

    def _view(self, flow_id: str) -> dict[str, Any]:
        flow = self.registry.find(flow_id)
        view = flow_view(
            flow,
            public_url=self.public_url,
            workers=self.workers(flow.id),
            concurrency_limit=self.concurrency_limit(flow.id),
        )
        if flow.spec.schedule is not None:
            view["schedule"] = {"next": self.next_ticks(flow)}
        return view

    async def _spec(self, request: Request, *, stored: Flow | None = None) -> FlowSpec:
        data = inputs.decode(await request.body())
        spec = self._unmasked(data, stored=stored)
        self.validate(spec)
        return spec

    def _unmasked(self, data: Any, *, stored: Flow | None = None, where: str = "flow") -> FlowSpec:
        """A spec as sent back after a GET: masked env values and secrets mean "unchanged"."""
        if stored is None and isinstance(data, dict) and isinstance(data.get("name"), str):
            with contextlib.suppress(FlowNotFound):
                stored = self.registry.find(data["name"])
            if stored is not None and stored.name != data["name"]:
                stored = None  # the name was another flow's id
        if stored is not None:
            data = redaction.unmask(data, to_builtins(stored.spec))
        return spec_from_object(data, where=where)

    # flows -------------------------------------------------------------------------------
    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(self.runtime))

    async def list_flows(self, request: Request) -> Response:
        return JSONResponse({"items": [self._view(f.id) for f in self.registry.flows()]})

    async def create_flow(self, request: Request) -> Response:
        flow = await self.registry.create(await self._spec(request))
        return JSONResponse(self._view(flow.id), status_code=201)

    async def apply(self, request: Request) -> Response:
        """Validate every flow first, then apply: nothing is half-applied by a bad entry."""
        data = inputs.decode(await request.body())
        items = data.get("flows") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(data) != 1:
            raise ConfigError("expected a JSON object with a `flows` list and nothing else")
        specs = [self._unmasked(item, where=f"flows[{i}]") for i, item in enumerate(items)]
        duplicated = sorted(n for n, c in Counter(s.name for s in specs).items() if c > 1)
        if duplicated:
            raise ConfigError(f"flow {duplicated[0]!r} is declared twice")
        warnings = {spec.name: self.validate(spec) for spec in specs}
        applied = await self.registry.apply_all(specs)
        return JSONResponse(
            {
                "items": [
                    {
                        "name": flow.name,
                        "id": flow.id,
                        "outcome": outcome,
                        "url": f"{self.public_url}/hook/{flow.id}",
                        "warnings": warnings[flow.name],
                    }
                    for flow, outcome in applied
                ]
            }
        )

    async def get_flow(self, request: Request) -> Response:
        return JSONResponse(self._view(request.path_params["ref"]))

    async def replace_flow(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        stored = self.registry.find(ref)
        flow, outcome = await self.registry.replace(ref, await self._spec(request, stored=stored))
        return JSONResponse({**self._view(flow.id), "outcome": outcome})

    async def delete_flow(self, request: Request) -> Response:
        flow = await self.registry.delete(request.path_params["ref"])
        return JSONResponse({"id": flow.id, "name": flow.name, "deleted": True})

    async def start_flow(self, request: Request) -> Response:
        """Start a stopped flow, or resume a paused one: what it holds is delivered."""
        return await self._set_status(request, Status.RUNNING)

    async def stop_flow(self, request: Request) -> Response:
        return await self._set_status(request, Status.STOPPED)

    async def pause_flow(self, request: Request) -> Response:
        return await self._set_status(request, Status.PAUSED)

    async def _set_status(self, request: Request, status: Status) -> Response:
        flow = await self.registry.set_status(request.path_params["ref"], status)
        return JSONResponse(self._view(flow.id))

    # deliveries --------------------------------------------------------------------------
    def _flow_id(self, ref: str | None) -> str | None:
        return self.registry.find(ref).id if ref else None

    def _names(self) -> dict[str, str]:
        return {flow.id: flow.name for flow in self.registry.flows()}

    async def list_deliveries(self, request: Request) -> Response:
        query = request.query_params
        status, since, until = query.get("status"), query.get("since"), query.get("until")
        where = DeliveryFilter(
            flow_id=self._flow_id(query.get("flow")),
            state=inputs.status(status) if status is not None else None,
            since=inputs.seconds(since, field="since") if since is not None else None,
            until=inputs.seconds(until, field="until") if until is not None else None,
        )
        cursor = query.get("cursor")
        page = await self.store.list_deliveries(
            where,
            limit=inputs.limit(query.get("limit", "50")),
            cursor=inputs.cursor(cursor) if cursor is not None else None,
        )
        names = self._names()
        return JSONResponse(
            {
                "items": [delivery_view(d, flow_name=names.get(d.flow_id)) for d in page.items],
                "cursor": page.cursor,
            }
        )

    async def get_delivery(self, request: Request) -> Response:
        """By any of its ids or a prefix of one: a ref that names several answers 409 with
        them, so a caller can pick one by its delivery id."""
        ref = request.path_params["id"]
        try:
            found = await look_up(self.store, ref)
        except ValueError as exc:
            raise ValueError(f"field id: {exc}") from None
        names = self._names()
        if isinstance(found, list):
            return JSONResponse(
                {
                    "error": ambiguity(ref, found),
                    "candidates": [
                        delivery_view(d, flow_name=names.get(d.flow_id))
                        for d in found[:MAX_CANDIDATES]
                    ],
                },
                status_code=409,
            )
        attempts = await self.store.attempts(found.id)
        return JSONResponse(
            delivery_view(found, flow_name=names.get(found.flow_id), full=True, attempts=attempts)
        )

    async def delete_delivery(self, request: Request) -> Response:
        """By its delivery id only: a request id or a prefix could name another one."""
        delivery_id = request.path_params["id"]
        deleted = inputs.is_delivery_id(delivery_id) and await self.store.delete_deliveries(
            [delivery_id]
        )
        if not deleted:
            raise DeliveryNotFound(f"no delivery {delivery_id!r}")
        return JSONResponse({"deleted": deleted})

    async def replay(self, request: Request) -> Response:
        """Replay by ids, or everything matching flow/status/time range."""
        body: inputs.Replay = inputs.decode(await request.body(), inputs.Replay, empty=b"{}")
        where = DeliveryFilter(
            flow_id=self._flow_id(body.flow),
            state=inputs.status(body.status) if body.status is not None else State.DEAD,
            since=inputs.finite(body.since, field="since"),
            until=inputs.finite(body.until, field="until"),
        )
        now = time.time()
        if body.ids is not None:
            count = await self.store.replay(inputs.replay_ids(body.ids), now=now)
        else:
            count = await self.store.replay_matching(where, now=now)
        return JSONResponse({"replayed": count})

    # live events ------------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        """Server-sent events: every request and delivery attempt, of one flow or all."""
        ref = request.query_params.get("flow")
        flow_id = self.registry.find(ref).id if ref else None
        return StreamingResponse(
            self._stream(flow_id),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _stream(self, flow_id: str | None) -> AsyncIterator[bytes]:
        """Subscribed before the first byte goes out, so a client that has seen the opening
        ``subscribed`` event misses nothing; ends when the gateway shuts down, so no open
        stream holds the shutdown up."""
        events = self.hub.subscribe(flow_id=flow_id)
        stop = asyncio.ensure_future(self.stopping.wait())
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        try:
            yield b"event: subscribed\ndata: {}\n\n"
            while True:
                done, _ = await asyncio.wait(
                    {pending, stop}, timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED
                )
                if stop in done:
                    return
                if pending in done:
                    yield b"data: " + msgspec.json.encode(pending.result()) + b"\n\n"
                    pending = asyncio.ensure_future(anext(events))
                else:
                    yield b": keep-alive\n\n"
        finally:
            stop.cancel()
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
            await events.aclose()

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_admin_app(
    api: AdminAPI, *, token: str, extra_routes: list[BaseRoute] | None = None
) -> ASGIApp:
    app = Starlette(
        routes=[*api.routes(), *(extra_routes or [])],
        exception_handlers={HTTPException: http_error},
    )
    return Bearer(app, token=token, open_paths=frozenset(), open_prefixes=("/console",))
