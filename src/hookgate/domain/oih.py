"""How the Open Integration Hub webhooks service reads a request, for ``delivery: envelope``.

OIH's service is Express 4.16 with body-parser, express-xml-bodyparser (xml2js) and multiparty;
an OIH component expects the values those produce, quirks included. Each parser here mirrors one
of them, as far as a message can show: Node's ``IncomingMessage.headers`` (how repeated headers
fold), xml2js with OIH's options, and multiparty's reading of ``Content-Disposition``; ``qs``
(query strings and form bodies, with nested ``a[b][c]`` keys and ``a[]`` arrays) has a module of
its own, ``domain.qs``. The field table in docs/workers.md names the source each was checked
against.

Pure functions of bytes and text: no I/O, so the dispatcher can call them per delivery.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from xml.sax import SAXException
from xml.sax.handler import ContentHandler, LexicalHandler, property_lexical_handler
from xml.sax.xmlreader import AttributesImpl

import msgspec
from defusedxml.sax import make_parser
from python_multipart.multipart import MultipartParser

DEPTH_LIMIT = 256
"""Deeper data is refused (``ValueError``): Python's recursion, and msgspec's, end near 1,000."""

_JS_BLANK = re.compile(
    "[\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]*"
)
"""JavaScript's ``/^\\s*$/``, which xml2js uses to drop whitespace-only text."""


_NODE_FIRST_WINS = frozenset(
    {
        "age",
        "authorization",
        "content-length",
        "content-type",
        "etag",
        "expires",
        "from",
        "host",
        "if-modified-since",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "proxy-authorization",
        "referer",
        "retry-after",
        "server",
        "user-agent",
    }
)


def node_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Node's ``IncomingMessage.headers``: lower-case names; a repeated ``set-cookie`` is a list,
    ``cookie`` joins with ``; ``, the fields above keep their first value, all others join with
    ``, ``."""
    headers: dict[str, str | list[str]] = {}
    for name, value in pairs:
        key = name.lower()
        before = headers.get(key)
        if key == "set-cookie":
            headers[key] = [*before, value] if isinstance(before, list) else [value]
        elif before is None:
            headers[key] = value
        elif key not in _NODE_FIRST_WINS:
            headers[key] = f"{before}{'; ' if key == 'cookie' else ', '}{value}"
    return headers


def parse_json(body: bytes) -> Any:
    """body-parser's ``json()`` (strict): an object or array, else ``ValueError``."""
    text = body.decode("utf-8", "replace").removeprefix("\ufeff")
    first = text.lstrip(" \t\n\r")[:1]
    if first not in ("{", "["):
        raise ValueError("not a JSON object or array")
    try:
        value = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError) as e:
        raise ValueError(f"not JSON: {e}") from e
    if text.count("[") + text.count("{") > DEPTH_LIMIT and _deeper(value, DEPTH_LIMIT):
        raise ValueError(f"JSON nested deeper than {DEPTH_LIMIT} levels")
    return value


def _deeper(value: Any, limit: int) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_xml(body: bytes) -> dict[str, Any]:
    """xml2js as OIH configures it (``explicitArray: false``, attributes under ``_attr``, text
    beside them under ``_``, whitespace kept, the first ``:`` of a tag name → ``-``), over a
    parser that refuses entity declarations and external references. ``ValueError`` if not XML.
    """
    builder = _Xml2js()
    parser = make_parser()
    parser.setContentHandler(builder)
    parser.setProperty(property_lexical_handler, builder)
    try:
        parser.feed(body)
        parser.close()
    except (SAXException, ValueError) as e:
        if builder.result is None:
            raise ValueError(f"not well-formed XML: {e}") from e
    if builder.result is None:
        raise ValueError("no XML element")
    return builder.result  # xml2js answers at the root's end tag, whatever follows it


@dataclass(slots=True)
class _Element:
    name: str
    value: dict[str, Any]
    text: list[str]


class _Xml2js(ContentHandler, LexicalHandler):
    """xml2js's ``onopentag``/``ontext``/``onclosetag``, fed by expat instead of sax-js."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[_Element] = []
        self.result: dict[str, Any] | None = None
        self.in_cdata = False

    def startElement(self, name: str, attrs: AttributesImpl) -> None:
        if len(self.stack) >= DEPTH_LIMIT:
            raise SAXException(f"elements nested deeper than {DEPTH_LIMIT} levels")
        value: dict[str, Any] = {"_": ""}
        if attrs.getLength():
            value["_attr"] = {key: attrs.getValue(key) for key in attrs.getNames()}
        self.stack.append(_Element(name.replace(":", "-", 1), value, []))

    def characters(self, content: str) -> None:
        if self.stack:
            self.stack[-1].text.append(content)
            if self.in_cdata:
                self.stack[-1].value["cdata"] = True  # xml2js marks it so, over a child "cdata"

    def startCDATA(self) -> None:
        self.in_cdata = True

    def endCDATA(self) -> None:
        self.in_cdata = False

    def endElement(self, name: str) -> None:
        element = self.stack.pop()
        value: Any = element.value
        text = "".join(element.text)
        blank = ""
        cdata = value.get("cdata") is True
        if cdata:
            del value["cdata"]
        if _JS_BLANK.fullmatch(text) and not cdata:
            blank = text
            del value["_"]
        else:
            value["_"] = text
            if len(value) == 1:
                value = text
        if value == {}:
            value = blank
        if not self.stack:
            self.result = {element.name: value}
            return
        parent = self.stack[-1].value
        if element.name == "_":
            raise SAXException("an element named '_' collides with the text key")
        if element.name not in parent:
            parent[element.name] = value
        elif isinstance(parent[element.name], list):
            parent[element.name].append(value)
        else:
            parent[element.name] = [parent[element.name], value]


@dataclass(frozen=True, slots=True)
class Part:
    """One part of a ``multipart/form-data`` body, as multiparty reads it."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes


_PART_NAME = re.compile(r'\bname="([^"]+)"', re.IGNORECASE)
_PART_FILENAME = re.compile(r'\bfilename="(.*?)"($|; )', re.IGNORECASE)
_PART_FILENAME_UTF8 = re.compile(r"\bfilename\*=utf-8''(.*?)($|; )", re.IGNORECASE)
_HTML_CODE = re.compile(r"&#(\d{4});")


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """The parts of a ``multipart/form-data`` body; ``ValueError`` if it is not one."""
    boundary = _boundary(content_type)
    if not boundary:
        raise ValueError("multipart/form-data without a boundary")
    parts: list[Part] = []
    headers: dict[str, str] = {}
    field: list[bytes] = []
    value: list[bytes] = []
    data: list[bytes] = []

    def on_header_field(chunk: bytes, start: int, end: int) -> None:
        field.append(chunk[start:end])

    def on_header_value(chunk: bytes, start: int, end: int) -> None:
        value.append(chunk[start:end])

    def on_header_end() -> None:
        name = b"".join(field).decode("latin-1").lower()
        headers[name] = b"".join(value).decode("utf-8", "replace")
        field.clear()
        value.clear()

    def on_part_data(chunk: bytes, start: int, end: int) -> None:
        data.append(chunk[start:end])

    def on_part_end() -> None:
        disposition = headers.get("content-disposition", "")
        named = _PART_NAME.search(disposition)
        parts.append(
            Part(
                name=named.group(1) if named else "null",
                filename=_filename(disposition),
                content_type=headers.get("content-type"),
                data=b"".join(data),
            )
        )
        headers.clear()
        data.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:  # python-multipart raises its own and plain errors alike
        raise ValueError(f"not a multipart/form-data body: {e}") from e
    return parts


def multipart_fields(parts: Iterable[Part]) -> dict[str, Any]:
    """multiparty's ``field`` events as OIH collects them: a repeated name becomes a list
    (a first value that is empty is replaced, as JavaScript's ``else if (data[name])`` does)."""
    fields: dict[str, Any] = {}
    for part in parts:
        if part.filename is not None or part.name == "__proto__":
            continue
        text = part.data.decode("utf-8", "replace")
        before = fields.get(part.name)
        if isinstance(before, list):
            before.append(text)
        elif before:
            fields[part.name] = [before, text]
        else:
            fields[part.name] = text
    return fields


def multipart_files(parts: Iterable[Part]) -> Iterator[Part]:
    """The file parts, only the last of each field name (multiparty's ``files[name] = file``)."""
    files: dict[str, Part] = {}
    for part in parts:
        if part.filename is not None:
            files[part.name] = part
    return iter(files.values())


def _boundary(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            return value.strip().strip('"')
    return ""


def _filename(disposition: str) -> str | None:
    found = _PART_FILENAME.search(disposition)
    if found:
        name = found.group(1)
    elif utf8 := _PART_FILENAME_UTF8.search(disposition):
        name = urllib.parse.unquote(utf8.group(1))
    else:
        return None
    name = name.replace("%22", '"').replace('\\"', '"')
    name = _HTML_CODE.sub(lambda m: chr(int(m.group(1))), name)
    return name[name.rfind("\\") + 1 :]
