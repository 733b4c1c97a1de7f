"""What a flow's ``filter`` and ``order_key`` read from a request.

``RequestView`` parses what an expression may look at once per request, and only when asked:
a flow without filters pays nothing for it.
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from typing import Any, Protocol

import msgspec

from hookgate.domain.deliveries import Request

_KEY = re.compile(r"^(header|query):(.+)$")
_PATH_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*|\d+")


class RequestView:
    """A request as filters and keys see it: ``method``, ``path``, ``query`` (name → list of
    values), ``headers`` (lower-cased name → value, repeated ones joined by ``, ``) and
    ``body`` (the decoded JSON, None when the body is not JSON)."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.method = request.method
        self.path = request.path

    @functools.cached_property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(self.request.query, keep_blank_values=True)

    @functools.cached_property
    def headers(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.request.headers:
            key = name.lower()
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out

    @functools.cached_property
    def body(self) -> Any:
        if not self.request.body:
            return None
        try:
            return msgspec.json.decode(self.request.body)
        except msgspec.DecodeError:
            return None


class Filter(Protocol):
    source: str

    def matches(self, view: RequestView) -> bool: ...


def compile_filter(source: str, *, where: str = "filter") -> Filter:
    """The compiled expression; ``ValueError`` names ``where`` and the error's position."""
    raise ValueError(f"{where}: filters are not available yet")


class KeyPath:
    """Where an ``order_key`` is read: ``header:Name``, ``query:name`` or a dotted JSON path
    into the body (``data.object.id``, ``items.0.sku``)."""

    def __init__(self, source: str) -> None:
        self.source = source
        match = _KEY.match(source)
        self.kind, name = (match.group(1), match.group(2)) if match else ("body", source)
        self.name = name.lower() if self.kind == "header" else name
        self.parts = name.removeprefix("body.").split(".") if self.kind == "body" else []
        if self.kind == "body" and not all(_PATH_PART.fullmatch(p) for p in self.parts):
            raise ValueError(
                f"order_key {source!r}: expected `header:Name`, `query:name` or a dotted JSON"
                " path such as `data.object.id`"
            )

    def value(self, view: RequestView) -> str | None:
        """The key of a request, None when it has none (such deliveries are not ordered)."""
        if self.kind == "header":
            return view.headers.get(self.name)
        if self.kind == "query":
            values = view.query.get(self.name)
            return values[0] if values else None
        node = view.body
        for part in self.parts:
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        if node is None or isinstance(node, (dict, list)):
            return None
        return node if isinstance(node, str) else msgspec.json.encode(node).decode()


def compile_key(source: str) -> KeyPath:
    return KeyPath(source)
