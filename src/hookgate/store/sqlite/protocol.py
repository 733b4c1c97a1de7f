"""The messages between ``SQLiteStore`` and its writer process, typed both ways.

Frames are a 4-byte big-endian length and a msgpack document. The gateway sends lists of
:class:`Op`: an id and one :data:`AnyWrite`, a tagged struct per kind of write. The writer
answers each group with a :class:`Reply`: how many ops it committed, how long that took, and per
op id its result, or a :class:`Failure`. Each write names its result type (``Write[R]``), and
the gateway decodes a result with that type (:data:`RESULTS`), so nothing crosses the socket
untyped and no write is looked up by name.
"""

from __future__ import annotations

import struct
import typing
from typing import Any, Generic, TypeVar

import msgspec

from hookgate.errors import FlowConflict, FlowNotFound, StoreFull, StoreUnavailable

R = TypeVar("R")
HEADER = struct.Struct(">I")

InsertedRow = tuple[
    str, str, str, float, float, float, str, str, str, bytes, bytes, str, str, str | None, int
]
"""The ``columns.INSERTED`` of one delivery."""
FullRow = tuple[
    str,
    str,
    str,
    int,
    int,
    float,
    float,
    float | None,
    str | None,
    float,
    str,
    str,
    str,
    str,
    str,
    str | None,
    bytes,
    bytes,
    str | None,
]
"""The ``columns.FULL`` of one delivery."""
AttemptRow = tuple[str, int, float, float, int | None, str | None, str]
"""A row of the ``attempts`` table."""
Move = tuple[int, float | None, str | None, float, str, int]
"""A finished delivery's new state, next_at, last_error, updated_at; its id and attempts."""
Sizes = list[tuple[str, int]]
"""``(flow id, queued size)`` of deliveries that joined or left the queue."""
Seen = tuple[str, str]
"""The request id and delivery id a duplicate was first accepted as."""
Param = str | int | float


class Write(msgspec.Struct, Generic[R], tag=True, array_like=True):
    """One write; ``R`` is what the writer answers it with."""


class Insert(Write[None]):
    rows: list[InsertedRow]


class Finish(Write[bool]):
    """LEASED to ``move``'s state if the lease is still current; then ``attempt`` is kept."""

    move: Move
    attempt: AttemptRow


class CreateFlow(Write[None]):
    row: tuple[str, str, bytes, str, float, float]
    """id, name, spec, status, created_at, updated_at."""


class UpdateFlow(Write[None]):
    row: tuple[str, bytes, str, float, str]
    """name, spec, status, updated_at, id."""


class DeleteFlow(Write[None]):
    flow_id: str


class DedupeInsert(Write[Seen | None]):
    rows: list[InsertedRow]
    key: str
    until: float


class TrackedInsert(Write[tuple[Seen | None, str | None]]):
    rows: list[InsertedRow]
    key: str | None
    until: float
    token: str


class KeepAnswer(Write[bool]):
    delivery_id: str
    attempts: int
    answer: bytes


class Lease(Write[list[FullRow]]):
    flow_id: str
    destination: str
    limit: int
    lease_for: float
    now: float


class Replay(Write[tuple[int, Sizes]]):
    clause: str
    """Built by the store from a filter, never from caller text."""
    params: list[Param]
    now: float


class DeleteDeliveries(Write[tuple[int, Sizes]]):
    ids: list[str]


class Purge(Write[int]):
    flow_id: str
    done_before: float
    limit: int


class ImportDeliveries(Write[tuple[int, Sizes]]):
    records: list[tuple[FullRow, list[AttemptRow]]]


class ClaimTick(Write[typing.Literal["claimed", "busy", "taken"]]):
    flow_id: str
    tick: float
    rows: list[InsertedRow]
    exclusive: bool


class SetSnapshot(Write[None]):
    flow_id: str
    snapshot: bytes | None


AnyWrite = (
    Insert
    | Finish
    | CreateFlow
    | UpdateFlow
    | DeleteFlow
    | DedupeInsert
    | TrackedInsert
    | KeepAnswer
    | Lease
    | Replay
    | DeleteDeliveries
    | Purge
    | ImportDeliveries
    | ClaimTick
    | SetSnapshot
)


class Op(msgspec.Struct, array_like=True, frozen=True):
    id: int
    write: AnyWrite


class Failure(msgspec.Struct, frozen=True):
    """A write that failed: the error's class (one of :data:`ERRORS`) and its message."""

    kind: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        return cls(type(exc).__name__, str(exc))

    def error(self) -> Exception:
        known = ERRORS.get(self.kind)
        return known(self.message) if known else RuntimeError(f"{self.kind}: {self.message}")


ERRORS: dict[str, type[Exception]] = {
    error.__name__: error for error in (FlowConflict, FlowNotFound, StoreFull, StoreUnavailable)
}
"""The errors a write fails with on purpose; anything else is a bug, raised as RuntimeError."""


class Reply(msgspec.Struct, array_like=True, frozen=True):
    """The gateway's view of the writer's answer to a group; each result is decoded with its
    op's type. The writer encodes ``(ops, seconds, [(op id, result or Failure), ...])``."""

    ops: int
    seconds: float
    results: list[tuple[int, msgspec.Raw]]


def _result_decoder(kind: type[Write[Any]]) -> msgspec.msgpack.Decoder[Any]:
    """The decoder of a kind of write's answer: its ``R``, or a ``Failure``."""
    (base,) = kind.__orig_bases__  # type: ignore[attr-defined]
    (result,) = typing.get_args(base)
    return msgspec.msgpack.Decoder(result | Failure)


RESULTS: dict[type[Write[Any]], msgspec.msgpack.Decoder[Any]] = {
    kind: _result_decoder(kind) for kind in typing.get_args(AnyWrite)
}
"""Each kind of write's result decoder, made once at import (a lookup per write)."""
ops_decoder = msgspec.msgpack.Decoder(list[Op])
reply_decoder = msgspec.msgpack.Decoder(Reply)
_encoder = msgspec.msgpack.Encoder()


def frame(payload: object) -> bytearray:
    """``payload`` encoded after its length, in one buffer (no copy to prepend the length)."""
    buffer = bytearray(HEADER.size)
    _encoder.encode_into(payload, buffer, HEADER.size)
    HEADER.pack_into(buffer, 0, len(buffer) - HEADER.size)
    return buffer


def take_frame(buffer: bytearray) -> bytes | None:
    """The first complete frame's payload, cut from ``buffer``; None until one is complete."""
    if len(buffer) < HEADER.size:
        return None
    (size,) = HEADER.unpack_from(buffer)
    end = HEADER.size + size
    if len(buffer) < end:
        return None
    payload = bytes(buffer[HEADER.size : end])
    del buffer[:end]
    return payload
