"""How stored things are shown: bodies that never freeze a page, secrets masked (see
:mod:`hookgate.domain.redaction`).

A body is shown as pretty JSON, text or a hex dump, and only its first part: a 50 MB upload
or binary garbage costs the browser at most ``SHOWN`` bytes, with a link to the raw bytes.
"""

from __future__ import annotations

import codecs
import datetime
import json
import urllib.parse
from typing import Any

import msgspec
import yaml

from hookgate.domain import redaction
from hookgate.domain.deliveries import Attempt, rounds
from hookgate.domain.destinations import Destination
from hookgate.domain.flows import Flow, FlowSpec, to_builtins

SHOWN = 256 * 1024
HEX_SHOWN = 16 * 1024


class Body(msgspec.Struct, frozen=True):
    kind: str  # "json" | "text" | "hex" | "empty"
    text: str
    size: int
    shown: int
    content_type: str

    @property
    def truncated(self) -> bool:
        return self.shown < self.size


def body(raw: bytes, *, content_type: str = "") -> Body:
    if not raw:
        return Body(kind="empty", text="", size=0, shown=0, content_type=content_type)
    head = raw[:SHOWN]
    text = _text(head, final=len(raw) <= SHOWN)
    if text is None:
        shown = raw[:HEX_SHOWN]
        return Body(
            kind="hex",
            text=hexdump(shown),
            size=len(raw),
            shown=len(shown),
            content_type=content_type,
        )
    kind = "text"
    if len(raw) <= SHOWN and ("json" in content_type or text.lstrip()[:1] in ("{", "[")):
        try:
            text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
            kind = "json"
        except ValueError:
            pass
    return Body(kind=kind, text=text, size=len(raw), shown=len(head), content_type=content_type)


def _text(data: bytes, *, final: bool) -> str | None:
    """UTF-8 without NULs, else None; a character cut at the end of a prefix is dropped."""
    if b"\x00" in data:
        return None
    try:
        text: str = codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError:
        return None
    return text


def hexdump(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        hexes = " ".join(f"{b:02x}" for b in chunk)
        printable = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {hexes:<47}  {printable}")
    return "\n".join(lines)


def header(pairs: list[tuple[str, str]], name: str) -> str:
    return next((v for k, v in pairs if k.lower() == name), "")


def config_text(spec: dict[str, Any]) -> str:
    """The spec as YAML, as a flow file would say it: unset (null) fields left out."""
    return yaml.safe_dump(_set(redaction.spec(spec)), sort_keys=False, allow_unicode=True)


class Shown(msgspec.Struct, frozen=True):
    """One destination as the flow page lists it."""

    name: str
    kind: str
    where: str
    rate: str
    delay: str


def destinations(spec: FlowSpec) -> list[Shown]:
    """A flow's destinations: what each is and where it sends, never a credential (only a
    URL's scheme, host and port: user and password, and the path and query that may carry
    a token, are left out), and its rate limit."""
    return [
        Shown(
            name=d.name,
            kind=d.kind,
            where=_where(d),
            rate=f"{d.rate_limit.per_second:g}/s, burst {d.rate_limit.burst}"
            if d.rate_limit
            else "",
            delay=_seconds(spec.delay if d.delay is None else d.delay),
        )
        for d in spec.routes
    ]


def _where(destination: Destination) -> str:
    if destination.url is not None:
        return _origin(destination.url.url)
    if destination.rabbitmq is not None:
        target = destination.rabbitmq
        exchange = f"exchange '{target.exchange}'" if target.exchange else "the default exchange"
        if target.preset == "oih" and not (target.exchange or target.routing_key):
            exchange, key = "exchange 'event-bus'", "flow.execute"
        else:
            key = target.routing_key
        return f"{_origin(target.url)} · {exchange}, routing key '{key}' · {target.preset}"
    if destination.nats is not None:
        target_nats = destination.nats
        return f"{_origin(target_nats.url)} · subject {target_nats.subject} · {target_nats.preset}"
    return "the flow's workers"


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host or ''}{port}"


def _seconds(value: float) -> str:
    return f"{value:g} s" if value else ""


def _set(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _set(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_set(v) for v in value]
    return value


def when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


def size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB"):
        if value < 1000 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"


def verification(flow: Flow | None) -> str:
    """The delivery page's word on how its request was checked."""
    if flow is None:
        return "unknown (the flow is gone)"
    if not flow.spec.auth:
        return "none configured: the flow accepts requests without checking them"
    kinds = ", ".join(to_builtins(method)["type"] for method in flow.spec.auth)
    return f"passed ({kinds}); requests that fail it are answered 401 and never stored"


def dedupe(flow: Flow | None, headers: list[tuple[str, str]]) -> str:
    """The delivery page's word on what becomes of copies of its request."""
    key = header(headers, "idempotency-key")
    window = "" if flow is None else f" within {_duration(flow.spec.dedupe_window)}"
    given = f"Idempotency-Key {key!r}; " if key else ""
    return (
        f"{given}first copy, stored; later copies with the same delivery id{window} get this "
        "request's id and are not stored again"
    )


def _duration(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length and seconds % length == 0:
            return f"{seconds / length:.0f}{unit}"
    return f"{seconds:g}s"


def in_rounds(attempts: list[Attempt]) -> list[tuple[int, Attempt]]:
    """Each attempt with its round: a replay starts a new one (numbered from 1 again)."""
    return list(zip(rounds([a.number for a in attempts]), attempts, strict=True))
