"""What the store implementations share: the queue's byte bounds, the outcome rules, the
accepting flag, the lookup query and the settling of a caller's future."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

from hookgate import logs
from hookgate.domain.deliveries import Attempt, Delivery, State
from hookgate.errors import StoreFull
from hookgate.store import rows
from hookgate.store.base import MIN_PREFIX, Page

T = TypeVar("T")
FLOW_SHARE = 4
"""A flow without ``max_queued`` may hold a quarter of the global bound: one flow whose
worker is down cannot fill the queue (or the disk) for all the others."""
log = logs.get("hookgate.store")


class QueuedBytes:
    """What the queue holds (queued and leased deliveries, sized by ``rows.queued_size``), in
    total and per flow, against the global bound and each flow's own: one rule for both stores.

    Each gateway counts its own enqueues and outcomes between recounts from the database.
    """

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.total = 0
        self.by_flow: dict[str, int] = {}

    def check(self, flow_id: str, size: int, max_queued: int | None) -> None:
        """``StoreFull`` unless ``size`` more bytes fit under both bounds."""
        if self.total + size > self.bound:
            raise StoreFull(f"the queue holds {self.total} bytes, its bound is {self.bound}")
        held = self.by_flow.get(flow_id, 0)
        limit = self.bound // FLOW_SHARE if max_queued is None else max_queued
        if held + size > limit:
            raise StoreFull(f"the flow's queue holds {held} bytes, its bound is {limit}")

    def add(self, flow_id: str, size: int) -> None:
        """Count ``size`` bytes more (or fewer, if negative) for a flow."""
        self.total += size
        held = self.by_flow.get(flow_id, 0) + size
        if held > 0:
            self.by_flow[flow_id] = held
        else:
            self.by_flow.pop(flow_id, None)

    def add_all(self, sizes: Sequence[tuple[str, int]], *, sign: int = 1) -> None:
        for flow_id, size in sizes:
            self.add(flow_id, sign * size)

    def forget(self, flow_id: str) -> None:
        """A deleted flow holds nothing."""
        self.total -= self.by_flow.pop(flow_id, 0)

    def reset(self, by_flow: dict[str, int]) -> None:
        """Take the database's count."""
        self.by_flow = {flow_id: size for flow_id, size in by_flow.items() if size > 0}
        self.total = sum(self.by_flow.values())


class Outcomes:
    """A delivery's outcomes on top of a store's one guarded move (``_finish``: LEASED to a
    state, if the lease is still current, with its attempt): one rule for both SQL stores on
    what leaves the queue and stops counting against its bounds."""

    queued: QueuedBytes

    async def _finish(
        self, delivery: Delivery, attempt: Attempt, *, to: State, next_at: float | None = None
    ) -> bool:
        raise NotImplementedError

    async def complete(self, delivery: Delivery, attempt: Attempt) -> bool:
        return await self._end(delivery, attempt, State.DONE)

    async def filter_out(self, delivery: Delivery, attempt: Attempt) -> bool:
        return await self._end(delivery, attempt, State.FILTERED)

    async def bury(self, delivery: Delivery, attempt: Attempt) -> bool:
        return await self._end(delivery, attempt, State.DEAD)

    async def retry(self, delivery: Delivery, attempt: Attempt, *, next_at: float) -> bool:
        return await self._finish(delivery, attempt, to=State.QUEUED, next_at=next_at)

    async def _end(self, delivery: Delivery, attempt: Attempt, state: State) -> bool:
        ended = await self._finish(delivery, attempt, to=state)
        if ended:
            self.queued.add(delivery.flow_id, -rows.queued_size(delivery))
        return ended


class Acceptance:
    """Whether a store accepts requests, and why not: one log line when it stops and one when
    it resumes, however many requests are refused in between."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.reason: str | None = None

    @property
    def accepting(self) -> bool:
        return self.reason is None

    def stop(self, reason: str) -> None:
        if self.reason is None:
            log.error("store stopped accepting requests", store=self.store, reason=reason)
        self.reason = reason

    def resume(self) -> None:
        if self.reason is not None:
            log.info("store accepting requests again", store=self.store)
        self.reason = None


def summary_page(found: Sequence[Sequence[Any]], limit: int) -> Page:
    """A page of ``(seq, *summary)`` rows, read with one row more than ``limit`` to tell
    whether another page follows (its cursor: the last seq of this one)."""
    page = found[:limit]
    last_seq = page[-1][0] if page else None
    return Page(
        [rows.summary(summary) for _seq, *summary in page],
        str(last_seq) if len(found) > limit and last_seq is not None else None,
    )


def prefix_bounds(ref: str) -> tuple[str, str] | None:
    """``[low, high)`` holding exactly the strings that start with ``ref``, in byte order (the
    order of UTF-8 text in both stores' indexes), so a prefix is an index range; None if
    ``ref`` is too short to be a prefix, or not ASCII (every id Hookgate makes is)."""
    if len(ref) < MIN_PREFIX or not ref.isascii():
        return None
    return ref, ref[:-1] + chr(ord(ref[-1]) + 1)


def find_sql(summary: str, match: str, limit: str) -> str:
    """The one query both stores answer ``find_deliveries`` with, in their own placeholders:
    ``match`` compares ``{col}`` with the ref (or its prefix range); each of the three ids is
    looked up in its own index, each bounded, so a short prefix never reads a whole table."""
    branches = [
        f"SELECT seq FROM deliveries WHERE {match.format(col='id')}",
        f"SELECT seq FROM deliveries WHERE {match.format(col='request_id')}",
        "SELECT d.seq FROM dedupe k JOIN deliveries d ON d.id = k.delivery_id"
        f" WHERE {match.format(col='k.key')}",
    ]
    union = " UNION ".join(
        f"SELECT seq FROM ({b} LIMIT {limit}) AS m{i}" for i, b in enumerate(branches)
    )
    return (
        f"SELECT {summary} FROM deliveries WHERE seq IN ({union}) ORDER BY seq DESC LIMIT {limit}"
    )


def settle(future: asyncio.Future[T], outcome: T | BaseException) -> None:
    """Resolve a store caller with its result, or the exception it failed with; a caller
    that gave up (cancelled) is skipped."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
