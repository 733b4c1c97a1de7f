"""What the admin API accepts, checked before anything reaches the store.

Every malformed input is a ``ValueError`` that names the field (the API answers 400), never a
driver error: a NUL character, an out-of-range cursor or a wrongly typed filter is refused
here, so the store only ever sees values it can hold. The OpenAPI document states the same
rules (:mod:`hookgate.admin.openapi` takes its patterns from here).
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec
from starlette.convertors import Convertor, register_url_convertor

from hookgate.domain.deliveries import State
from hookgate.store.base import REF

MAX_PAGE = 1000
DELIVERY_ID = r"^[0-9a-f]{32}$"
DELIVERY_REF = f"^{REF}$"
SIBLING = "replay"
CURSOR = r"^[0-9]{1,18}$"
INTEGER = r"^-?[0-9]+$"
NUMBER = r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
STATUSES = [state.label for state in State]


class Replay(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/deliveries/replay``: ids, or a filter (flow, status, time range)."""

    ids: list[str] | None = None
    flow: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None


def is_delivery_id(text: str) -> bool:
    return re.match(DELIVERY_ID, text) is not None


class DeliveryRefConvertor(Convertor[str]):
    """``{id:ref}``: anything but ``/`` and the sibling path ``replay`` (whose other methods
    answer 405, not a lookup); what the id may hold is checked by the lookup (400)."""

    regex = f"(?!{SIBLING}$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("ref", DeliveryRefConvertor())


def decode(raw: bytes, type_: Any = Any, *, empty: bytes = b"") -> Any:
    """JSON of ``type_``; the error names the field (msgspec's ``- at `$.field```)."""
    try:
        data = msgspec.json.decode(raw or empty, type=type_)
    except msgspec.DecodeError as exc:
        raise ValueError(f"the body must be JSON: {exc}") from None
    refuse_nul(data)
    return data


def refuse_nul(value: Any, where: str = "$") -> None:
    """No NUL character anywhere: PostgreSQL cannot store one in text or JSON."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"field {where}: a NUL character is not allowed")
    if isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key, where)
            refuse_nul(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            refuse_nul(item, f"{where}[{index}]")
    elif isinstance(value, msgspec.Struct):
        refuse_nul(msgspec.structs.asdict(value), where)


def replay_ids(ids: list[str]) -> list[str]:
    """The ids that can be delivery ids: any other cannot be found, so it is not looked up."""
    return [text for text in ids if is_delivery_id(text)]


def status(text: str, *, field: str = "status") -> State:
    try:
        return State.from_label(text)
    except ValueError as exc:
        raise ValueError(f"field {field}: {exc}") from None


def limit(text: str) -> int:
    value = int(text) if re.match(INTEGER, text) else 0
    if not 1 <= value <= MAX_PAGE:
        raise ValueError(f"field limit: expected an integer 1-{MAX_PAGE}, got {text!r}")
    return value


def cursor(text: str) -> str:
    if re.match(CURSOR, text) is None:
        raise ValueError(f"field cursor: {text!r} is not a cursor from a previous page")
    return text


def seconds(text: str, *, field: str) -> float:
    """A Unix time from a query string: a plain JSON number, finite."""
    if re.match(NUMBER, text) is None or not math.isfinite(float(text)):
        raise ValueError(f"field {field}: expected a Unix time in seconds, got {text!r}")
    return float(text)


def finite(value: float | None, *, field: str) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"field {field}: expected a finite number of seconds")
    return value
