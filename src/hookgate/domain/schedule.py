"""Polling triggers: when a scheduled flow is due, and what to do about ticks that were missed.

Ticks are instants (Unix seconds). ``every`` ticks are spaced from the previous tick; ``cron``
ticks are computed in the schedule's time zone. A tick later than ``ON_TIME`` seconds is
*missed* (the gateway was down or busy), and ``schedule.missed`` says what becomes of it.
"""

from __future__ import annotations

import datetime
import time
import zoneinfo

import msgspec
from croniter import croniter

from hookgate.domain.deliveries import POLL_SOURCE, Request, new_id
from hookgate.domain.flows import Flow, Schedule

ON_TIME = 5.0
MAX_CATCH_UP = 100
MAX_SNAPSHOT = 1024 * 1024
CRON_HORIZON = 7 * 86400


def next_tick(schedule: Schedule, after: float) -> float:
    """The first tick strictly after ``after``."""
    if schedule.every is not None:
        return after + float(schedule.every)
    start = datetime.datetime.fromtimestamp(after, zoneinfo.ZoneInfo(schedule.timezone))
    following: float = croniter(schedule.cron, start).get_next(float)
    return following


def tolerance(schedule: Schedule) -> float:
    """How late a tick may run and still count as on time: ``ON_TIME``, or half the interval."""
    if schedule.every is not None:
        return min(ON_TIME, float(schedule.every) / 2)
    return ON_TIME


def upcoming(schedule: Schedule, after: float, count: int = 3) -> list[float]:
    ticks: list[float] = []
    for _ in range(count):
        after = next_tick(schedule, after)
        ticks.append(after)
    return ticks


def due(schedule: Schedule, *, last: float, now: float) -> tuple[list[float], float]:
    """The ticks to run now, and the tick to remember as the last one handled.

    Every tick after ``last`` up to ``now`` is due. The newest is on time if it is at most
    ``tolerance`` old; the others are missed, and ``missed`` decides: ``skip`` runs only the
    on-time tick, ``once`` runs one tick (the on-time one, else the newest missed), ``all``
    runs each (at most ``MAX_CATCH_UP`` missed ones).
    """
    if schedule.every is not None and now - last > float(schedule.every) * (MAX_CATCH_UP + 1):
        # Long down: only the newest ticks can run, so start just before them.
        every = float(schedule.every)
        last += every * (int((now - last) / every) - MAX_CATCH_UP - 1)
    elif schedule.cron is not None:
        last = max(last, now - CRON_HORIZON)
    ticks: list[float] = []
    tick = next_tick(schedule, last)
    while tick <= now:
        ticks.append(tick)
        tick = next_tick(schedule, tick)
    if not ticks:
        return [], last
    on_time = ticks[-1:] if now - ticks[-1] <= tolerance(schedule) else []
    missed = ticks[: len(ticks) - len(on_time)]
    if schedule.missed == "all":
        run = missed[-MAX_CATCH_UP:] + on_time
    elif schedule.missed == "once":
        run = on_time or missed[-1:]
    else:
        run = on_time
    return run, ticks[-1]


def poll_request(flow: Flow, *, scheduled_at: float, snapshot: bytes | None = None) -> Request:
    """A stored poll run: ``POST /`` whose body gets the current snapshot when it is sent.

    It is stored with the snapshot current when it is queued, so that the stored run shows
    what its worker gets (the same, unless a run of the flow finishes in between).
    """
    delivery_id = new_id()
    when = datetime.datetime.fromtimestamp(scheduled_at, datetime.UTC)
    body = {
        "scheduledAt": when.isoformat().replace("+00:00", "Z"),
        "snapshot": msgspec.Raw(snapshot) if snapshot else None,
    }
    return Request(
        id=delivery_id,
        request_id=delivery_id,
        flow_id=flow.id,
        method="POST",
        path="/",
        query="",
        headers=[("content-type", "application/json"), ("x-hookgate-trigger", "schedule")],
        body=msgspec.json.encode(body),
        source=POLL_SOURCE,
        received_at=time.time(),
    )


def with_snapshot(body: bytes, snapshot: bytes | None) -> bytes:
    """A stored poll body with the flow's current snapshot (JSON) put in."""
    fields = msgspec.json.decode(body)
    fields["snapshot"] = msgspec.Raw(snapshot) if snapshot else None
    return msgspec.json.encode(fields)


def snapshot_of(answer: bytes) -> bytes | None:
    """The ``snapshot`` a worker's 2xx answer carries, as JSON; None when it carries none
    (not JSON, no such key, or larger than ``MAX_SNAPSHOT``): the previous one is kept then."""
    if not answer or len(answer) > MAX_SNAPSHOT:
        return None
    try:
        fields = msgspec.json.decode(answer, type=dict[str, msgspec.Raw])
    except msgspec.DecodeError:
        return None
    raw = fields.get("snapshot")
    return bytes(raw) if raw is not None and len(raw) <= MAX_SNAPSHOT else None
