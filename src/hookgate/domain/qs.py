"""``qs.parse`` as OIH's Express and body-parser run it (query strings, forms, multipart)."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hookgate.domain.oih import DEPTH_LIMIT

_HOLE: Any = object()
"""A missing element of a sparse JavaScript array; qs makes them, ``compact`` removes them."""

_PROTOTYPE = frozenset(
    {
        "__proto__",
        "__defineGetter__",
        "__defineSetter__",
        "__lookupGetter__",
        "__lookupSetter__",
        "constructor",
        "hasOwnProperty",
        "isPrototypeOf",
        "propertyIsEnumerable",
        "toLocaleString",
        "toString",
        "valueOf",
    }
)
"""Names on ``Object.prototype``: qs drops keys named so unless ``allowPrototypes`` is set."""

_BRACKET = re.compile(r"\[[^[\]]*\]")
_LEGACY_END = re.compile(r"[\[\]]")
_BRACKETS_IN = _LEGACY_END.search
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True, slots=True)
class QsOptions:
    """The ``qs.parse`` options a caller passes, and what differs between the qs versions OIH
    runs: Express 4.16's qs 6.5.1, body-parser 1.15.2's qs 6.2.0, OIH's own qs 6.3.0."""

    depth: float = 5
    array_limit: int = 20
    parameter_limit: int = 1000
    allow_prototypes: bool = False
    legacy_keys: bool = True
    """Before 6.4: the parent key ends at the first ``[`` or ``]``, a child named like a
    prototype property is skipped (later: the parent ends at the first ``[…]``, and such a child
    drops the whole key)."""
    merge_arrays: bool = True
    """From 6.3: two arrays merge element by element (6.2: by index, as objects)."""
    repeat_bare: bool = True
    """From 6.3: a repeated ``a`` without ``=`` joins the list (6.2: it replaces the value)."""


QUERY = QsOptions(allow_prototypes=True, legacy_keys=False)
"""Express 4.16's ``query parser: extended``: qs 6.5.1, ``{allowPrototypes: true}``."""
MULTIPART = QsOptions()
"""OIH's multipart middleware: its own qs 6.3.0, ``qs.parse(fields)`` with the defaults."""


def form_options(body: str) -> QsOptions:
    """body-parser 1.15.2's ``urlencoded({extended: true})``: qs 6.2.0, unlimited depth, an
    array limit of the number of fields (at least 100)."""
    count = body.count("&") + 1
    return QsOptions(
        depth=float("inf"),
        array_limit=max(100, count),
        allow_prototypes=True,
        merge_arrays=False,
        repeat_bare=False,
    )


def decode_component(text: str) -> str:
    """qs's decoder: ``+`` is a space, then ``decodeURIComponent``; text it cannot decode stays."""
    spaced = text.replace("+", " ")
    if "%" not in spaced:
        return spaced
    if _BAD_ESCAPE.search(spaced):
        return text
    try:
        return urllib.parse.unquote_to_bytes(spaced).decode("utf-8")
    except UnicodeDecodeError:
        return text


def parse_qs(text: str, options: QsOptions = QUERY) -> dict[str, Any]:
    """``qs.parse`` of a query string or form body: ``a=1&a=2`` → a list, ``b[c]=1`` → nested."""
    flat: dict[str, Any] = {}
    for part in text.split("&")[: options.parameter_limit]:
        bracket = part.find("]=")
        at = part.find("=") if bracket == -1 else bracket + 1
        if at == -1:
            key, value = decode_component(part), ""
        else:
            key, value = decode_component(part[:at]), decode_component(part[at + 1 :])
        if key == "__proto__":
            continue
        if key in flat and (at != -1 or options.repeat_bare):
            before = flat[key]
            flat[key] = [*(before if isinstance(before, list) else [before]), value]
        else:
            flat[key] = value
    return parse_qs_fields(flat, options)


def parse_qs_fields(fields: Mapping[str, Any], options: QsOptions = MULTIPART) -> dict[str, Any]:
    """``qs.parse`` of an object whose keys may be ``a[b][]`` (multiparty's fields)."""
    result: Any = {}
    for key, value in _js_items(fields):
        if key and key not in result and key not in _PROTOTYPE and not _BRACKETS_IN(key):
            result[key] = value
        else:
            result = _merge(result, _nest(key, value, options), options)
    compacted: dict[str, Any] = _compact(result)
    return compacted


def _nest(key: str, value: Any, options: QsOptions) -> Any:
    """qs's ``parseKeys`` + ``parseObject``: ``a[b][]`` and a value → ``{"a": {"b": [value]}}``."""
    if not key:
        return None
    if options.legacy_keys:
        parent = _LEGACY_END.split(key, maxsplit=1)[0]
    else:
        first = _BRACKET.search(key)
        parent = key[: first.start()] if first else key
    chain: list[str] = []
    if parent:
        if parent in _PROTOTYPE and not options.allow_prototypes:
            return None
        chain.append(parent)
    segments = _BRACKET.finditer(key)
    segment = next(segments, None)
    depth = 0
    while segment is not None and depth < options.depth:
        depth += 1
        if segment.group()[1:-1] not in _PROTOTYPE or options.allow_prototypes:
            chain.append(segment.group())
        elif not options.legacy_keys:
            return None
        segment = next(segments, None)
    if segment is not None:
        chain.append("[" + key[segment.start() :] + "]")
    if len(chain) > DEPTH_LIMIT:
        raise ValueError(f"a key nested deeper than {DEPTH_LIMIT} levels")
    leaf = value
    for root in reversed(chain):
        leaf = _level(root, leaf, options)
    return leaf


def _level(root: str, leaf: Any, options: QsOptions) -> Any:
    if root == "[]":
        return list(leaf) if isinstance(leaf, list) else [leaf]
    clean = root[1:-1] if len(root) > 1 and root[0] == "[" and root[-1] == "]" else root
    if root != clean and _is_index(clean) and int(clean) <= options.array_limit:
        return [_HOLE] * int(clean) + [leaf]
    if clean == "__proto__":
        return {}
    return {clean: leaf}


def _is_index(text: str) -> bool:
    return text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")


def _js_items(value: Mapping[str, Any] | list[Any]) -> list[tuple[str, Any]]:
    """``Object.keys`` order: array-index keys first, ascending, then the rest as inserted."""
    if isinstance(value, list):
        return [(str(i), item) for i, item in enumerate(value) if item is not _HOLE]
    indexed: list[tuple[str, Any]] = []
    named: list[tuple[str, Any]] = []
    for item in value.items():
        (indexed if _is_index(item[0]) and int(item[0]) < 2**32 - 1 else named).append(item)
    indexed.sort(key=lambda item: int(item[0]))
    return indexed + named


def _merge(target: Any, source: Any, options: QsOptions) -> Any:
    """qs's ``utils.merge``, JavaScript truthiness and sparse arrays included."""
    if source is None or source == "":
        return target
    if not isinstance(source, dict | list):
        if isinstance(target, list):
            target.append(source)
        elif isinstance(target, dict):
            if source != "__proto__":
                target[source] = True
        else:
            return [target, source]
        return target
    if not isinstance(target, dict | list):
        return [target, *source] if isinstance(source, list) else [target, source]
    if isinstance(target, list) and isinstance(source, list) and options.merge_arrays:
        for i, item in enumerate(source):
            if item is _HOLE:
                continue
            if i < len(target) and target[i] is not _HOLE:
                if isinstance(target[i], dict | list):
                    target[i] = _merge(target[i], item, options)
                else:
                    target.append(item)
            else:
                _place(target, i, item)
        return target
    if isinstance(target, list) and isinstance(source, list):
        for key, value in _js_items(source):
            i = int(key)
            if i < len(target) and target[i] is not _HOLE:
                target[i] = _merge(target[i], value, options)
            else:
                _place(target, i, value)
        return target
    into: dict[str, Any] = (
        {str(i): v for i, v in enumerate(target) if v is not _HOLE}
        if isinstance(target, list)
        else target
    )
    for key, value in _js_items(source):
        into[key] = _merge(into[key], value, options) if key in into else value
    return into


def _place(target: list[Any], index: int, value: Any) -> None:
    """JavaScript's ``array[index] = value``: past the end leaves holes."""
    target.extend([_HOLE] * (index + 1 - len(target)))
    target[index] = value


def _compact(value: Any) -> Any:
    if isinstance(value, list):
        return [_compact(item) for item in value if item is not _HOLE]
    if isinstance(value, dict):
        return {key: _compact(item) for key, item in value.items()}
    return value
