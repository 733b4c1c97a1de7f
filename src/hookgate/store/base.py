"""The ``Store`` protocol: flows, the durable queue, attempts, dead letters, dedupe keys.

Implemented by SQLite (one machine), PostgreSQL (several gateways) and memory (tests and
throwaway demos); all pass ``tests/store/test_contract.py``. Every queue transition is guarded
by the state it leaves, and ``attempts`` doubles as the lease token, so a stale holder can never
overwrite the result of a newer lease.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, Protocol

import msgspec

from hookgate.domain.deliveries import Attempt, Delivery, Progress, Request, State
from hookgate.domain.destinations import WORKERS, DeliveryRate
from hookgate.domain.flows import Flow
from hookgate.errors import DeliveryNotFound
from hookgate.store.changes import Changes

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
    changes: Changes
    """What this store commits (and, on PostgreSQL, what other gateways do) is announced here."""

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
