"""Admin API of polling triggers: a flow's snapshot, and a run enqueued by hand."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hookgate.domain.flows import Mode
from hookgate.domain.schedule import MAX_SNAPSHOT, poll_request
from hookgate.errors import ConfigError
from hookgate.services import Services

Handler = Callable[[Request], Awaitable[Response]]


class ScheduleAPI:
    def __init__(self, services: Services) -> None:
        self.registry = services.registry
        self.store = services.store

    def operations(self) -> list[tuple[str, str, Handler]]:
        path = "/api/v1/flows/{ref}"
        return [
            (f"{path}/snapshot", "GET", self.get_snapshot),
            (f"{path}/snapshot", "PUT", self.set_snapshot),
            (f"{path}/snapshot", "DELETE", self.clear_snapshot),
            (f"{path}/run", "POST", self.run),
        ]

    async def get_snapshot(self, request: Request) -> Response:
        flow = self.registry.find(request.path_params["ref"])
        snapshot = await self.store.snapshot(flow.id)
        body = b'{"snapshot":' + (snapshot or b"null") + b"}"
        return Response(body, media_type="application/json")

    async def set_snapshot(self, request: Request) -> Response:
        """Body ``{"snapshot": <any JSON>}``, at most 1 MB of JSON."""
        flow = self.registry.find(request.path_params["ref"])
        raw = await request.body()
        try:
            fields = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
        except msgspec.DecodeError as exc:
            raise ConfigError(f'the body must be JSON {{"snapshot": ...}}: {exc}') from None
        if "snapshot" not in fields:
            raise ConfigError('the body must be JSON {"snapshot": ...}')
        snapshot = bytes(fields["snapshot"])
        if len(snapshot) > MAX_SNAPSHOT:
            raise ConfigError(f"a snapshot is at most {MAX_SNAPSHOT} bytes of JSON")
        await self.store.set_snapshot(flow.id, snapshot)
        return await self.get_snapshot(request)

    async def clear_snapshot(self, request: Request) -> Response:
        flow = self.registry.find(request.path_params["ref"])
        await self.store.set_snapshot(flow.id, None)
        return JSONResponse({"snapshot": None})

    async def run(self, request: Request) -> Response:
        """Enqueue a poll run now, outside the schedule (it does not move the next tick).

        A flow without a schedule is refused unless ``?force=true``: its worker most likely
        does not expect a poll run, and would process it as a webhook.
        """
        flow = self.registry.find(request.path_params["ref"])
        if flow.mode is not Mode.ASYNC:
            raise ConfigError(f"flow {flow.name!r} is sync: poll runs need an async flow")
        if flow.spec.schedule is None and request.query_params.get("force") != "true":
            raise ConfigError(
                f"flow {flow.name!r} has no schedule, so its worker may not expect a poll run; "
                "run it anyway with --force (API: ?force=true)"
            )
        snapshot = await self.store.snapshot(flow.id)
        accepted = await self.store.enqueue(
            poll_request(flow, scheduled_at=time.time(), snapshot=snapshot),
            max_queued=flow.spec.max_queued,
        )
        return JSONResponse({"deliveryId": accepted.delivery_id}, status_code=202)
