"""The console's pages and actions; each takes the request and the signed-in session."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlencode

import msgspec
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from hookgate.console import charts, render
from hookgate.console.charts import History
from hookgate.console.rates import Rate, Rates
from hookgate.console.sessions import Session
from hookgate.domain import concurrency, redaction
from hookgate.domain.deliveries import Delivery, State
from hookgate.domain.flows import Flow, Mode, Status, settings_for, to_builtins
from hookgate.errors import DeliveryNotFound
from hookgate.runtime.base import flow_state
from hookgate.services import Services
from hookgate.store.base import (
    MAX_CANDIDATES,
    DeliveryFilter,
    QueueStats,
    ambiguity,
    look_up,
)

PAGE = 50
RECENT = 20
UNKNOWN = Rate(per_minute=None, error_rate=None)
QUIET = Rate(per_minute=0.0, error_rate=None)
NOTICES = {
    "started": "Flow {name} started.",
    "stopped": "Flow {name} stopped: its URL answers 404 until it is started again.",
    "paused": "Flow {name} paused: its URL still accepts and stores; nothing is delivered"
    " until it is resumed.",
    "resumed": "Flow {name} resumed: what it held is being delivered.",
    "flow-deleted": "Flow {name} deleted: its URL answers 404 for good.",
    "replayed": "{n} deliveries queued for replay.",
    "deleted": "{n} deliveries deleted.",
}


STOP_WARNING = (
    "Stop flow {name}? Senders will get 404 from its URL until it is started again; what is"
    " queued waits."
)
DELETE_WARNING = (
    "Delete flow {name}? Senders will get 404 from its URL for good (re-creating the flow"
    " gives a new URL), and everything queued for it is deleted."
)


class Render(Protocol):
    def __call__(
        self,
        request: Request,
        name: str,
        *,
        session: Session | None = ...,
        status_code: int = ...,
        **context: Any,
    ) -> Response: ...


class Pages:
    def __init__(
        self,
        services: Services,
        *,
        render: Render,
        rates: Rates,
        history: History,
    ) -> None:
        self.render = render
        self.registry = services.registry
        self.store = services.store
        self.rates = rates
        self.history = history
        self.public_url = services.public_url
        self.workers = services.workers
        self.concurrency_limit = services.concurrency_limit

    # flows -------------------------------------------------------------------------------
    def _row(
        self, flow: Flow, stats: dict[str, QueueStats], rates: dict[str, Rate] | None
    ) -> dict[str, Any]:
        workers = self.workers(flow.id)
        queued = stats.get(flow.id)
        rate = UNKNOWN if rates is None else rates.get(flow.name, QUIET)
        return {
            "id": flow.id,
            "name": flow.name,
            "mode": flow.mode.value,
            "status": flow_state(flow, workers),
            "url": f"{self.public_url}/hook/{flow.id}",
            "ready": workers.ready,
            "desired": workers.desired,
            "depth": queued.depth + queued.leased if queued else 0,
            "concurrency": concurrency.shown(
                flow.spec.concurrency, self.concurrency_limit(flow.id)
            ),
            "perMinute": "-" if rate.per_minute is None else f"{rate.per_minute:.1f}",
            "errorRate": "-" if rate.error_rate is None else f"{rate.error_rate:.0%}",
            "stopWarning": STOP_WARNING.format(name=flow.name),
            "sparkline": msgspec.structs.asdict(
                charts.sparkline(self.history.series(flow.name).requests)
            ),
        }

    async def _rows(self) -> list[dict[str, Any]]:
        stats = await self.store.queue_stats()
        rates = self.rates.rates(now=time.time())
        return [self._row(flow, stats, rates) for flow in self.registry.flows()]

    async def flows(self, request: Request, session: Session) -> Response:
        return self.render(
            request,
            "flows.html",
            session=session,
            flows=await self._rows(),
            notice=_notice(request),
        )

    async def flow_stats(self, request: Request, session: Session) -> Response:
        return JSONResponse({"items": await self._rows()})

    async def flow(self, request: Request, session: Session) -> Response:
        flow = self.registry.find(request.path_params["ref"])
        recent: list[Any] = []
        if flow.mode is Mode.ASYNC:
            page = await self.store.list_deliveries(
                DeliveryFilter(flow_id=flow.id), limit=RECENT, cursor=None
            )
            recent = page.items
        stats = await self.store.queue_stats()
        return self.render(
            request,
            "flow.html",
            session=session,
            flow=self._row(flow, stats, self.rates.rates(now=time.time())),
            workers=self.workers(flow.id),
            config=render.config_text(settings_for(flow.mode, to_builtins(flow.spec))),
            charts=self._charts(flow),
            recent=recent,
            destinations=render.destinations(flow.spec) if flow.mode is Mode.ASYNC else [],
            notice=_notice(request),
            stop_warning=STOP_WARNING.format(name=flow.name),
            delete_warning=DELETE_WARNING.format(name=flow.name),
        )

    def _charts(self, flow: Flow) -> list[charts.Chart]:
        """The flow's last hour, minute by minute (drawn as SVG by templates/charts.html)."""
        series = self.history.series(flow.name)
        drawn = [
            charts.chart("Requests/min", series.requests),
            charts.chart("Failed requests and attempts/min", series.errors),
            charts.chart("Answer time p50", series.p50_ms, unit=" ms"),
            charts.chart("Answer time p99", series.p99_ms, unit=" ms"),
        ]
        if flow.mode is Mode.ASYNC:
            drawn.append(charts.chart("Queue depth", series.depth))
            drawn.append(charts.chart("Oldest queued", series.oldest_s, unit=" s"))
        return drawn

    async def flow_charts(self, request: Request, session: Session) -> Response:
        """The charts alone, for the flow page to refresh them in place."""
        flow = self.registry.find(request.path_params["ref"])
        return self.render(request, "charts.html", session=session, charts=self._charts(flow))

    async def start(self, request: Request, session: Session) -> Response:
        return await self._set_status(request, Status.RUNNING, "started")

    async def stop(self, request: Request, session: Session) -> Response:
        return await self._set_status(request, Status.STOPPED, "stopped")

    async def pause(self, request: Request, session: Session) -> Response:
        return await self._set_status(request, Status.PAUSED, "paused")

    async def resume(self, request: Request, session: Session) -> Response:
        return await self._set_status(request, Status.RUNNING, "resumed")

    async def delete_flow(self, request: Request, session: Session) -> Response:
        flow = await self.registry.delete(request.path_params["ref"])
        return _done(request, {"done": "flow-deleted", "name": flow.name}, "/console/flows")

    async def _set_status(self, request: Request, status: Status, done: str) -> Response:
        flow = await self.registry.set_status(request.path_params["ref"], status)
        return _done(request, {"done": done, "name": flow.name}, "/console/flows")

    # one delivery ------------------------------------------------------------------------
    async def delivery(self, request: Request, session: Session) -> Response:
        delivery = await self.store.get_delivery(request.path_params["id"])
        attempts = await self.store.attempts(delivery.id)
        flow = self.registry.get(delivery.flow_id)
        content_type = render.header(delivery.headers, "content-type")
        return self.render(
            request,
            "delivery.html",
            session=session,
            delivery=delivery,
            state=delivery.state.label,
            flow=flow,
            headers=redaction.headers(delivery.headers),
            body=render.body(delivery.body, content_type=content_type),
            attempts=render.in_rounds(sorted(attempts, key=lambda a: a.started_at)),
            verification=render.verification(flow),
            dedupe=render.dedupe(flow, delivery.headers),
            notice=_notice(request),
        )

    async def search(self, request: Request, session: Session) -> Response:
        """Find a request by any of its ids: one match opens it, several are listed."""
        query = request.query_params.get("q", "").strip()
        if not query:
            return self._search(request, session, query, "Type an id in the box above.", [], 200)
        try:
            found = await look_up(self.store, query)
        except (DeliveryNotFound, ValueError) as exc:
            status = 404 if isinstance(exc, DeliveryNotFound) else 400
            return self._search(request, session, query, _sentence(str(exc)), [], status)
        if isinstance(found, list):
            text = _sentence(ambiguity(query, found))
            return self._search(request, session, query, text, found[:MAX_CANDIDATES], 200)
        return RedirectResponse(f"/console/deliveries/{found.id}", status_code=303)

    def _search(
        self,
        request: Request,
        session: Session,
        query: str,
        text: str,
        candidates: list[Delivery],
        status_code: int,
    ) -> Response:
        return self.render(
            request,
            "search.html",
            session=session,
            status_code=status_code,
            query=query,
            text=text,
            candidates=candidates,
            names={flow.id: flow.name for flow in self.registry.flows()},
        )

    async def raw_body(self, request: Request, session: Session) -> Response:
        """Always a download: a stored body must never run as a page on the admin origin."""
        delivery = await self.store.get_delivery(request.path_params["id"])
        return Response(
            delivery.body,
            media_type="application/octet-stream",
            headers={
                "content-disposition": f'attachment; filename="delivery-{delivery.id}.bin"',
                "cache-control": "no-store",
            },
        )

    async def replay_one(self, request: Request, session: Session) -> Response:
        delivery_id = request.path_params["id"]
        if not await self.store.replay([delivery_id], now=time.time()):
            delivery = await self.store.get_delivery(delivery_id)
            raise ValueError(
                f"delivery {delivery_id} is {delivery.state.label}: only dead or done "
                "deliveries can be replayed"
            )
        return _done(request, {"done": "replayed", "n": "1"}, f"/console/deliveries/{delivery_id}")

    async def delete_one(self, request: Request, session: Session) -> Response:
        delivery_id = request.path_params["id"]
        if not await self.store.delete_deliveries([delivery_id]):
            raise DeliveryNotFound(f"no delivery {delivery_id}")
        return _done(request, {"done": "deleted", "n": "1"}, "/console/dead")

    # dead letters ------------------------------------------------------------------------
    async def dead(self, request: Request, session: Session) -> Response:
        params = request.query_params
        where = self._filter(params.get)
        page = await self.store.list_deliveries(
            where, limit=PAGE, cursor=params.get("cursor") or None
        )
        names = {flow.id: flow.name for flow in self.registry.flows()}
        chosen = {k: params.get(k, "") for k in ("flow", "since", "until")}
        chosen["status"] = params.get("status", "dead")
        more = {**chosen, "cursor": page.cursor} if page.cursor else None
        return self.render(
            request,
            "dead.html",
            session=session,
            items=page.items,
            names=names,
            flows=self.registry.flows(),
            states=[s.label for s in State],
            chosen=chosen,
            more=urlencode(more) if more else "",
            notice=_notice(request),
        )

    async def replay_many(self, request: Request, session: Session) -> Response:
        form = await request.form()
        now = time.time()
        if form.get("all") == "1":
            count = await self.store.replay_matching(self._filter(form.get), now=now)
        else:
            count = await self.store.replay(_ids(form), now=now)
        return _done(request, {"done": "replayed", "n": str(count)}, _back(form))

    async def delete_many(self, request: Request, session: Session) -> Response:
        form = await request.form()
        count = await self.store.delete_deliveries(_ids(form))
        return _done(request, {"done": "deleted", "n": str(count)}, _back(form))

    def _filter(self, get: Callable[[str], Any]) -> DeliveryFilter:
        flow, status = get("flow") or "", get("status") or "dead"
        return DeliveryFilter(
            flow_id=self.registry.find(flow).id if flow else None,
            state=None if status == "any" else State.from_label(status),
            since=_moment(get("since"), "since"),
            until=_moment(get("until"), "until"),
        )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _ids(form: FormData) -> list[str]:
    ids = [v for v in form.getlist("id") if isinstance(v, str) and v]
    if not ids:
        raise ValueError("select at least one delivery first")
    return ids


def _back(form: FormData) -> str:
    fields = ("flow", "status", "since", "until")
    query = {k: v for k in fields if isinstance(v := form.get(k), str)}
    return "/console/dead?" + urlencode(query)


def _moment(value: Any, what: str) -> float | None:
    """A ``datetime-local`` value, read as UTC (the console shows every time in UTC)."""
    if not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{what}: expected a date and time like 2026-01-31T14:00") from None
    return moment.replace(tzinfo=moment.tzinfo or datetime.UTC).timestamp()


def _done(request: Request, notice: dict[str, str], target: str) -> Response:
    if "x-csrf-token" in request.headers:
        return JSONResponse({"ok": True, "message": NOTICES[notice["done"]].format(**notice)})
    separator = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{separator}{urlencode(notice)}", status_code=303)


def _notice(request: Request) -> str:
    params = request.query_params
    template = NOTICES.get(params.get("done", ""))
    if template is None:
        return ""
    count = params.get("n", "")
    return template.format(name=params.get("name", ""), n=count if count.isdigit() else "")
