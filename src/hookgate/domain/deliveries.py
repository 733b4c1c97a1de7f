"""Stored requests and their delivery states.

Every async request becomes one *delivery*. Its life::

    QUEUED --lease--> LEASED --2xx--> DONE
      ^                 |  \\--retryable, attempts left--> QUEUED (next_at = now + backoff)
      |                 \\----permanent, or out of attempts--> DEAD
      +----replay------ DEAD / DONE
    LEASED with lease_until in the past is leasable again (the holder died): at-least-once.
    LEASED --filter does not hold--> FILTERED: kept for the record, never sent (the filters of
    a flow and of its destination are judged when a delivery is due, off the accept path).

A request becomes one delivery per destination it is routed to (``Route``); each moves alone.

Each transition is one guarded statement in the store (``WHERE state = :from``).
"""

from __future__ import annotations

import enum
import random
import secrets
import time

import msgspec

from hookgate.domain.destinations import WORKERS

POLL_SOURCE = "schedule"
"""The ``source`` of a delivery enqueued by a polling trigger rather than a caller."""


class State(enum.IntEnum):
    QUEUED = 0
    LEASED = 1
    DONE = 2
    DEAD = 3
    FILTERED = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> State:
        try:
            return cls[label.upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown status {label!r}; one of: {choices}") from None


def new_id() -> str:
    """A 128-bit id that sorts by creation time: 48 bits of milliseconds, 80 random bits.

    Request and delivery ids are not secrets (flow ids are: see ``flows.new_flow_id``), so the
    fast non-cryptographic generator is used on the hot path.
    """
    value = (int(time.time() * 1000) << 80) | random.getrandbits(80)
    return f"{value:032x}"


class Route(msgspec.Struct, array_like=True, frozen=True):
    """One delivery a request becomes: its id, destination, first due time and order key
    (deliveries of a destination with the same key go one at a time, in accept order)."""

    id: str
    destination: str
    due_at: float
    order_key: str | None = None


class Request(msgspec.Struct, kw_only=True, array_like=True):
    """A request exactly as it arrived: the raw body bytes are kept for signature checks.

    ``routes`` None: one delivery (``id``) to the flow's workers, due at once; else one
    delivery per route (at least one), the first with the id ``id``.
    """

    id: str
    request_id: str
    flow_id: str
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes
    source: str
    received_at: float
    routes: list[Route] | None = None

    def deliveries(self) -> list[Route]:
        """The deliveries to store: the routes, or the one a request without routes gets."""
        if self.routes is None:
            return [Route(self.id, WORKERS, self.received_at)]
        return self.routes


# The part of a worker's refusal that a delivery's last error quotes.
PROBLEM_ANSWER = 120


class Attempt(msgspec.Struct, kw_only=True):
    """One try at delivering: what the worker said (or the error), and how long it took."""

    number: int
    started_at: float
    duration_ms: float
    status_code: int | None = None
    error: str | None = None
    response: str = ""

    @property
    def problem(self) -> str | None:
        """What went wrong, as a delivery's ``last_error`` shows it; None for a 2xx.

        A refusal carries the first bytes of the worker's answer: that is usually its reason.
        """
        if self.error:
            return self.error
        if self.status_code is not None and not 200 <= self.status_code < 300:
            said = " ".join(self.response.split())[:PROBLEM_ANSWER]
            return f"HTTP {self.status_code}: {said}" if said else f"HTTP {self.status_code}"
        return None


def rounds(numbers: list[int]) -> list[int]:
    """The round of each attempt (in the order made): a replay starts a new series of
    attempts numbered from 1 again, and that is a new round."""
    out: list[int] = []
    for i, number in enumerate(numbers):
        out.append(1 if i == 0 else out[-1] + (number <= numbers[i - 1]))
    return out


class Delivery(msgspec.Struct, kw_only=True):
    """A stored request and where it stands in its delivery."""

    id: str
    request_id: str
    flow_id: str
    state: State
    attempts: int
    next_at: float
    received_at: float
    method: str = ""
    path: str = ""
    query: str = ""
    headers: list[tuple[str, str]] = []
    body: bytes = b""
    source: str = ""
    lease_until: float | None = None
    last_error: str | None = None
    updated_at: float = 0.0
    destination: str = WORKERS
    order_key: str | None = None
    status_token: str | None = None
    """The token of the delivery's status URL, if a caller was given one: then the worker's
    answer is kept once it is done."""

    @property
    def idempotency_key(self) -> str:
        """Stays the same on every attempt and every replay, so workers can dedupe."""
        return self.id


def new_status_token() -> str:
    """The secret part of a status URL: 192 random bits from the system's CSPRNG, unrelated to
    any id (request and delivery ids are not secrets)."""
    return secrets.token_urlsafe(24)


class Answer(msgspec.Struct, kw_only=True, array_like=True):
    """A worker's answer to a delivery, kept for its status URL (design §3, ``Prefer``)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def encode(self) -> bytes:
        return _answer_encoder.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> Answer:
        return _answer_decoder.decode(data)


_answer_encoder = msgspec.msgpack.Encoder()
_answer_decoder = msgspec.msgpack.Decoder(Answer)


class Progress(msgspec.Struct, kw_only=True, frozen=True):
    """Where a delivery with a status URL stands, and its kept answer once done."""

    request_id: str
    flow_id: str
    state: State
    attempts: int
    last_error: str | None = None
    answer: bytes | None = None

    @property
    def label(self) -> str:
        """``queued`` (not tried yet), ``running``, ``failed`` (an attempt failed, another
        follows), ``done`` or ``dead``."""
        if self.state is State.QUEUED:
            return "failed" if self.attempts else "queued"
        return "running" if self.state is State.LEASED else self.state.label
