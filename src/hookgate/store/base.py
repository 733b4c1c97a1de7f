"""The ``Store`` protocol: flows, the durable queue, attempts, dead letters, dedupe keys.

Implemented by SQLite (one machine), PostgreSQL (several gateways) and memory (tests and
throwaway demos); all pass ``tests/store/test_contract.py``. Every queue transition is guarded
by the state it leaves, and ``attempts`` doubles as the lease token, so a stale holder can never
overwrite the result of a newer lease.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Literal, Protocol, TypeVar

import msgspec

from hookgate import logs
from hookgate.domain.deliveries import Attempt, Delivery, Progress, Request, State
from hookgate.domain.destinations import WORKERS, DeliveryRate
from hookgate.domain.flows import Flow
from hookgate.errors import ConfigError, DeliveryNotFound, StoreFull
from hookgate.store import rows

T = TypeVar("T")
FLOW_SHARE = 4
"""A flow without ``max_queued`` may hold a quarter of the global bound: one flow whose
worker is down cannot fill the queue (or the disk) for all the others."""
log = logs.get("hookgate.store")
MIN_PREFIX = 8
"""The shortest prefix that finds a delivery: shorter ones name too many to be of use."""
MAX_REF = 256
"""The longest id a lookup takes: request ids (200) and providers' ids (256) fit."""
MAX_CANDIDATES = 20
"""How many deliveries an ambiguous lookup lists."""
REF = rf"[^\x00-\x1f\x7f/]{{1,{MAX_REF}}}"
"""What a lookup takes: bounded, no control character (a NUL cannot even be stored), no
``/`` (it would end the id in a URL path)."""


class Accepted(msgspec.Struct, frozen=True):
    """The answer to an enqueue: which request id the caller gets, and whether it was a replay."""

    request_id: str
    delivery_id: str
    duplicate: bool = False
    status_token: str | None = None
    """The delivery's status URL token, when one was asked for."""


Claim = Literal["claimed", "busy", "taken"]


class QueueStats(msgspec.Struct, frozen=True):
    depth: int
    leased: int
    oldest_received_at: float | None
    next_due_at: float | None


class DeliveryFilter(msgspec.Struct, kw_only=True, frozen=True):
    flow_id: str | None = None
    state: State | None = None
    since: float | None = None
    until: float | None = None


class Page(msgspec.Struct, frozen=True):
    items: list[Delivery]
    cursor: str | None


class DeliveryRecord(msgspec.Struct, frozen=True):
    """A delivery with its body and every attempt at it: what ``hookgate db copy`` moves."""

    delivery: Delivery
    attempts: list[Attempt]


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def accepting(self) -> bool:
        """Whether an enqueue can be stored now (SQLite: the disk has room above the reserve;
        PostgreSQL: the database answers). ``/readyz`` is false while it cannot."""

    async def schema_version(self) -> int:
        """The schema version the database is at, for ``hookgate db status``: works before
        ``open()`` and changes nothing (``open()`` is what migrates)."""

    # flows -------------------------------------------------------------------------------
    async def create_flow(self, flow: Flow) -> None:
        """Insert; ``FlowConflict`` if the name is taken."""

    async def update_flow(self, flow: Flow) -> None:
        """Replace spec/status by id; ``FlowNotFound`` if it is gone."""

    async def delete_flow(self, flow_id: str) -> None:
        """Remove the flow and everything queued for it."""

    async def list_flows(self) -> list[Flow]: ...

    async def get_flow(self, flow_id: str) -> Flow | None:
        """One flow by id, None if there is none: what another gateway changed."""

    # ingest ------------------------------------------------------------------------------
    async def enqueue(
        self,
        request: Request,
        *,
        dedupe_key: str | None = None,
        dedupe_until: float = 0.0,
        max_queued: int | None = None,
        status_token: str | None = None,
    ) -> Accepted:
        """Commit durably, then return. A live ``dedupe_key`` returns the first request's ids.

        The request becomes one delivery per route (``Request.deliveries``), all or none.

        ``max_queued`` is the flow's own bound (None: ``1/FLOW_SHARE`` of the global one).
        ``status_token`` gives the delivery a status URL in the same transaction; a duplicate
        keeps the token the first request got, if it got one (``Accepted.status_token``).
        Raises ``StoreFull`` over either bound or while the store is not ``accepting``
        (SQLite), ``StoreUnavailable`` if not stored.
        """

    # the queue ---------------------------------------------------------------------------
    async def lease(
        self,
        flow_id: str,
        *,
        destination: str = WORKERS,
        limit: int,
        lease_for: float,
        now: float,
    ) -> list[Delivery]:
        """Take up to ``limit`` due deliveries of one destination (queued, or leased with an
        expired lease), oldest first; of those with an ``order_key``, only the oldest queued or
        leased one per key (the next follows once it is done or dead)."""

    async def complete(self, delivery: Delivery, attempt: Attempt) -> bool:
        """LEASED -> DONE, if this is still the current lease; records the attempt."""

    async def filter_out(self, delivery: Delivery, attempt: Attempt) -> bool:
        """LEASED -> FILTERED (its destination's filter did not hold), if this is still the
        current lease; records the attempt (the verdict). It leaves the queue as a done one."""

    async def retry(self, delivery: Delivery, attempt: Attempt, *, next_at: float) -> bool:
        """LEASED -> QUEUED due at ``next_at``; records the attempt."""

    async def bury(self, delivery: Delivery, attempt: Attempt) -> bool:
        """LEASED -> DEAD; records the attempt."""

    async def keep_answer(self, delivery: Delivery, answer: bytes) -> bool:
        """Keep the worker's answer (an encoded ``Answer``) for the status URL, if this is
        still the current lease; done before ``complete``, so a status reader never sees a
        done delivery without it."""

    async def replay(self, ids: Sequence[str], *, now: float) -> int:
        """DEAD/DONE -> QUEUED with a fresh series of attempts; history is kept."""

    async def replay_matching(self, where: DeliveryFilter, *, now: float) -> int: ...

    async def delete_deliveries(self, ids: Sequence[str]) -> int: ...

    async def take_tokens(self, bucket: str, wanted: int, *, rate: DeliveryRate, now: float) -> int:
        """Up to ``wanted`` deliveries a rate-limited destination may start now, from one token
        bucket per destination shared by every gateway on this store (PostgreSQL: a row, timed
        by the database's clock; SQLite: one gateway, in memory). A negative ``wanted`` gives
        unused tokens back."""

    # reading -----------------------------------------------------------------------------
    async def get_delivery(self, delivery_id: str) -> Delivery:
        """With body and headers; ``DeliveryNotFound`` if unknown or purged."""

    async def attempts(self, delivery_id: str) -> list[Attempt]: ...

    async def progress(self, status_token: str) -> Progress | None:
        """The delivery a status URL token belongs to (exactly that token), None if none."""

    async def find_deliveries(self, ref: str, *, limit: int) -> list[Delivery]:
        """The deliveries ``ref`` names, newest first, without bodies, up to ``limit``.

        Those whose delivery id, request id (``X-Request-Id``) or provider's id (the dedupe
        key, kept for the flow's ``dedupe_window``) is ``ref``; if there are none and ``ref``
        can be a prefix (see ``prefix_bounds``), those with an id of the three starting with it.
        """

    async def list_deliveries(
        self, where: DeliveryFilter, *, limit: int, cursor: str | None
    ) -> Page:
        """Newest first, without bodies; ``cursor`` continues a previous page."""

    async def queue_stats(self) -> dict[str, QueueStats]:
        """Per flow with queued or leased deliveries."""

    # hygiene -----------------------------------------------------------------------------
    async def purge(self, *, flow_id: str, done_before: float, limit: int = 1000) -> int:
        """Delete up to ``limit`` DONE (and FILTERED) deliveries of a flow finished before
        ``done_before``."""

    # moving between stores ---------------------------------------------------------------
    async def count_deliveries(self) -> dict[str, dict[State, int]]:
        """Per flow id, how many deliveries are in each state (states with none are left out)."""

    async def export_deliveries(
        self, *, limit: int, cursor: str | None
    ) -> tuple[list[DeliveryRecord], str | None]:
        """Oldest first, whole (body, headers, state, attempts); the cursor continues, or None."""

    async def import_deliveries(self, records: Sequence[DeliveryRecord]) -> int:
        """Insert as they are, in one transaction; ids already present are skipped.

        Returns how many were inserted. Queued ones wake the dispatchers like an enqueue.
        """

    # polling triggers --------------------------------------------------------------------
    async def last_tick(self, flow_id: str) -> float | None:
        """The newest schedule tick handled for the flow; None before its first."""

    async def claim_tick(
        self, flow_id: str, *, tick: float, request: Request | None, exclusive: bool
    ) -> Claim:
        """Handle ``tick`` once, whichever gateway asks first: ``taken`` if it (or a later one)
        was handled already; ``busy`` if ``exclusive`` and an earlier poll run is still queued
        or running; else the tick is recorded and ``request`` (if any) enqueued: ``claimed``.
        """

    async def snapshot(self, flow_id: str) -> bytes | None:
        """The JSON a flow's last successful poll run returned, for the next run."""

    async def set_snapshot(self, flow_id: str, snapshot: bytes | None) -> None: ...


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


async def look_up(store: Store, ref: str) -> Delivery | list[Delivery]:
    """The one delivery ``ref`` names, whole (body and headers); or, when it names several, up
    to ``MAX_CANDIDATES + 1`` of them (without bodies) to choose from (see ``ambiguity``).

    ``DeliveryNotFound`` says what was looked for and why it may be missing; ``ValueError``
    refuses what cannot be an id.
    """
    if re.fullmatch(REF, ref) is None:
        raise ValueError(
            "expected a delivery id, request id, provider id or a prefix of one"
            f" (1-{MAX_REF} characters, no control character or /)"
        )
    found = await store.find_deliveries(ref, limit=MAX_CANDIDATES + 1)
    if len(found) > 1:
        return found
    if not found:
        short = f"; a prefix needs {MIN_PREFIX} characters or more" if len(ref) < MIN_PREFIX else ""
        raise DeliveryNotFound(
            f"no delivery with the id, request id or provider id {ref!r}{short} (a provider's"
            " id is kept for the flow's dedupe_window; a delivery is gone once purged)"
        )
    return await store.get_delivery(found[0].id)


def ambiguity(ref: str, candidates: Sequence[Delivery]) -> str:
    """What an ambiguous lookup tells the person who made it."""
    count = len(candidates)
    many = f"more than {MAX_CANDIDATES}" if count > MAX_CANDIDATES else str(count)
    return f"{ref!r} matches {many} deliveries: show one by its delivery id"


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


def open_store(
    url: str, *, max_queued_bytes: int, synchronous: str = "FULL", disk_reserve: int = 0
) -> Store:
    """A store for a URL: ``sqlite:///path/to.db``, ``postgresql://…`` or ``memory://`` (a
    throwaway demo or test: nothing survives a restart).

    ``disk_reserve``: the free bytes SQLite leaves on its volume (PostgreSQL minds its own).
    """
    if url.startswith(("postgresql://", "postgres://")):
        from hookgate.store.postgres import PostgresStore

        return PostgresStore(url, max_queued_bytes=max_queued_bytes)
    if url == "memory://":
        from hookgate.store.memory import MemoryStore

        return MemoryStore(max_queued_bytes=max_queued_bytes)
    if not url.startswith("sqlite://"):
        raise ConfigError(
            f"unsupported database URL {url.split('@')[-1]!r}: use sqlite:///path,"
            " postgresql://… or memory://"
        )
    from hookgate.store.sqlite import SQLiteStore

    return SQLiteStore(
        url.removeprefix("sqlite://"),
        max_queued_bytes=max_queued_bytes,
        synchronous=synchronous,
        disk_reserve=disk_reserve,
    )
