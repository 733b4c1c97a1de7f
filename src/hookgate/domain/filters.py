"""What a flow's ``filter`` and ``order_key`` read from a request.

``RequestView`` parses what an expression may look at once per request, and only when asked:
a flow without filters pays nothing for it.

Filters are CEL (the Common Expression Language of Kubernetes admission policies), run by
``cel-expr-python``, the CEL team's wrapper of the C++ implementation: it type-checks at
compile time (an unknown variable or ``method == 1`` is refused at apply, with its position)
and costs 7-18 µs per request on a 1 KB JSON body, decoding included (``bench/filters.py``).
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from typing import Any, Protocol

import msgspec
from cel_expr_python import cel
from cel_expr_python.ext.ext_optional import ExtOptional
from cel_expr_python.ext.ext_strings import ExtStrings

from hookgate.domain.deliveries import Delivery, Request

_KEY = re.compile(r"^(header|query):(.+)$")
_PATH_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*|\d+")
_STRING = cel.Type.STRING
VARIABLES = {
    "method": _STRING,
    "path": _STRING,
    "query": cel.Type.Map(_STRING, cel.Type.List(_STRING)),
    "headers": cel.Type.Map(_STRING, _STRING),
    "body": cel.Type.DYN,
}
"""What a filter sees, as ``RequestView`` gives it; the body is ``dyn``: any JSON value."""
# ``body`` as a word, and the field selected from it unless that is a member call.
_BODY_USE = re.compile(r"\bbody\b(?:\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_]|\s*\())?")
# One of CEL's problems: ``ERROR: <input>:LINE:COLUMN: message`` then the line and a caret.
_PROBLEM = re.compile(r"ERROR: <input>:(\d+):(\d+): ([^\n]*?)(?: \[[A-Z_]+\])?(?:\n|$)")


class RequestView:
    """A request as filters and keys see it: ``method``, ``path``, ``query`` (name → list of
    values), ``headers`` (lower-cased name → value, repeated ones joined by ``, ``) and
    ``body`` (the decoded JSON, None when the body is not JSON)."""

    def __init__(self, request: Request | Delivery) -> None:
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
    """The compiled expression; ``ValueError`` names ``where`` and the error's position.

    Compiled once per distinct source (a flow file is checked at load, then routed with the
    same filters)."""
    try:
        return _compile(source)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


class CelFilter:
    """A compiled CEL filter. It matches a request when it evaluates to ``true``; ``false``,
    any other value (``body.flag`` holding a string) and an error on that request (a missing
    key such as ``headers["x-github-event"]``, a body that is not JSON, a number beyond 64
    bits in a body field it reads) do not match: a filter that cannot be evaluated on a
    request does not route it there, and never fails the request. CEL's ``&&`` and ``||``
    absorb an error when the other side decides (``false && error`` is ``false``);
    ``has(body.a.b)``, ``"name" in headers`` and ``headers[?"name"].orValue("")`` test for
    presence."""

    def __init__(
        self,
        source: str,
        expression: cel.Expression,
        *,
        reads: tuple[str, ...],
        fields: frozenset[str] | None,
    ) -> None:
        self.source = source
        self.expression = expression
        self.reads = reads
        """The variables it uses: only these are computed (a header-only filter decodes no
        JSON) and converted to CEL values per request."""
        self.fields = fields
        """The top-level body fields it reads (None: it may read the whole body): only these
        are converted, so its cost does not grow with the rest of the body."""

    def matches(self, view: RequestView) -> bool:
        data = {name: getattr(view, name) for name in self.reads}
        body = data.get("body")
        if self.fields is not None and isinstance(body, dict):
            data["body"] = {name: body[name] for name in self.fields if name in body}
        try:
            result = self.expression.eval(data=data)
        except RuntimeError:
            # What CEL cannot hold: a string with a lone surrogate, which no ingress produces.
            return False
        return result.value() is True

    def __repr__(self) -> str:
        return f"CelFilter({self.source!r})"


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> CelFilter:
    expression = _parsed(_env(), source)
    given = expression.return_type()
    if given not in (cel.Type.BOOL, cel.Type.DYN):
        raise ValueError(f"a filter must be true or false; this one gives {given.name().lower()}")
    reads = tuple(name for name in VARIABLES if not _compiles_without(name, source))
    return CelFilter(source, expression, reads=reads, fields=_body_fields(source))


@functools.cache
def _env(without: str | None = None) -> cel.Env:
    """The filters' CEL environment, or the same without one variable."""
    variables = {name: kind for name, kind in VARIABLES.items() if name != without}
    return cel.NewEnv(variables=variables, extensions=[ExtStrings(), ExtOptional()])


def _compiles_without(variable: str, source: str) -> bool:
    """Whether an expression compiles without a variable: then it never reads it."""
    try:
        _parsed(_env(variable), source)
    except ValueError:
        return False
    return True


def _body_fields(source: str) -> frozenset[str] | None:
    """The top-level fields of ``body`` an expression reads, when every ``body`` in its text
    is followed by ``.field`` (not a call such as ``body.exists(…)``); None otherwise.

    Read from the text, so a ``body`` inside a string literal or a comment only adds a field
    or gives None: either way no field the expression reads is left out."""
    fields = set()
    for use in _BODY_USE.finditer(source):
        if use.group(1) is None:
            return None
        fields.add(use.group(1))
    return frozenset(fields)


def _parsed(env: cel.Env, source: str) -> cel.Expression:
    """The parsed and type-checked expression; ``ValueError`` has CEL's first problem and its
    position."""
    try:
        return env.compile(source)
    except RuntimeError as exc:
        found = _PROBLEM.search(str(exc))
        if found is None:
            raise ValueError(str(exc)) from None
        line, column, problem = found.groups()
        problem = problem.replace(" (in container '')", "")
        raise ValueError(f"{problem} at line {line}, column {column}") from None


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
