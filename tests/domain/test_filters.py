"""Filters: CEL over a request, refused at compile with a position, non-matching on errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hookgate.domain.deliveries import Request
from hookgate.domain.filters import CelFilter, RequestView, compile_filter
from hookgate.domain.flowfile import parse_flow_file, spec_from_object
from hookgate.errors import ConfigError


def request(
    body: Any = None,
    *,
    raw: bytes | None = None,
    method: str = "POST",
    path: str = "/",
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
) -> Request:
    return Request(
        id="d-1",
        request_id="r-1",
        flow_id="f-1",
        method=method,
        path=path,
        query=query,
        headers=headers or [],
        body=raw if raw is not None else msgspec.json.encode(body) if body is not None else b"",
        source="192.0.2.1",
        received_at=0.0,
    )


def matches(source: str, req: Request) -> bool:
    return compile_filter(source).matches(RequestView(req))


@pytest.mark.parametrize(
    ("source", "problem", "line", "column"),
    [
        ('body.type == "a" &&', "Syntax error: mismatched input '<EOF>'", 1, 20),
        ('body.type == "a"\n  && && true', "Syntax error: extraneous input '&&'", 2, 6),
        ("method == 1", "found no matching overload for '_==_' applied to '(string, int)'", 1, 8),
        ('bodie.type == "a"', "undeclared reference to 'bodie.type'", 1, 6),
        ('size(path) > 1 && header["x"] == "a"', "undeclared reference to 'header'", 1, 19),
        ("", "Syntax error: mismatched input '<EOF>'", 1, 1),
    ],
)
def test_a_filter_that_does_not_compile_is_refused_with_its_position(
    source: str, problem: str, line: int, column: int
) -> None:
    with pytest.raises(ValueError, match=r"^destinations\[crm\]\.filter: ") as caught:
        compile_filter(source, where="destinations[crm].filter")
    message = str(caught.value)
    assert problem in message
    assert message.endswith(f" at line {line}, column {column}")
    assert "container" not in message and "INVALID_ARGUMENT" not in message


@pytest.mark.parametrize(
    ("source", "gives"),
    [("method", "string"), ("headers", "map<string, string>"), ("size(path)", "int")],
)
def test_a_filter_that_is_not_true_or_false_is_refused(source: str, gives: str) -> None:
    with pytest.raises(
        ValueError,
        match=f"^filter: a filter must be true or false; this one gives {re.escape(gives)}$",
    ):
        compile_filter(source)


GITHUB_PUSH = [("X-GitHub-Event", "push"), ("Content-Type", "application/json")]
ORDER = {"type": "order.created", "data": {"object": {"amount": 25000}}, "items": []}
# The examples of docs/configuration.md#filters, each on requests it takes and leaves.
DOCUMENTED = [
    ('body.type == "order.created"', request(ORDER), True),
    ('body.type == "order.created"', request({"type": "order.paid"}), False),
    ('body.type == "order.created"', request(raw=b"type=order.created"), False),
    (
        'headers["x-github-event"] == "push" && body.ref == "refs/heads/main"',
        request({"ref": "refs/heads/main"}, headers=GITHUB_PUSH),
        True,
    ),
    (
        'headers["x-github-event"] == "push" && body.ref == "refs/heads/main"',
        request({"ref": "refs/heads/main"}),
        False,
    ),
    (
        'path.startsWith("/stripe") && body.data.object.amount >= 10000',
        request(ORDER, path="/stripe/live"),
        True,
    ),
    (
        'path.startsWith("/stripe") && body.data.object.amount >= 10000',
        request({"data": {"object": {"amount": 900}}}, path="/stripe/live"),
        False,
    ),
    ('"eu" in query.region', request(query="region=us&region=eu"), True),
    ('"eu" in query.region', request(query="page=2"), False),
    (
        'body.items.exists(i, i.sku.startsWith("GIFT-"))',
        request({"items": [{"sku": "A-1"}, {"sku": "GIFT-25"}]}),
        True,
    ),
    ('body.items.exists(i, i.sku.startsWith("GIFT-"))', request(ORDER), False),
    (
        'has(body.customer.email) && !body.customer.email.endsWith("@example.com")',
        request({"customer": {"email": "ana@shop.test"}}),
        True,
    ),
    (
        'has(body.customer.email) && !body.customer.email.endsWith("@example.com")',
        request({"customer": {"name": "Ana"}}),
        False,
    ),
    (
        'headers[?"x-shopify-topic"].orValue("") in ["orders/create", "orders/paid"]',
        request(ORDER, headers=[("X-Shopify-Topic", "orders/paid")]),
        True,
    ),
    (
        'headers[?"x-shopify-topic"].orValue("") in ["orders/create", "orders/paid"]',
        request(ORDER),
        False,
    ),
]


@pytest.mark.parametrize(("source", "req", "expected"), DOCUMENTED)
def test_the_documented_examples(source: str, req: Request, expected: bool) -> None:
    assert matches(source, req) is expected


def test_the_strings_extension_is_on() -> None:
    assert matches('body.type.upperAscii().split(".") == ["ORDER", "CREATED"]', request(ORDER))


def test_a_filter_that_errors_or_gives_no_bool_on_a_request_does_not_match() -> None:
    assert not matches('headers["x-github-event"] == "push"', request(ORDER))
    assert not matches('headers["x-github-event"] != "push"', request(ORDER))
    assert not matches("body.flag", request({"flag": "yes"}))
    assert matches("body.flag", request({"flag": True}))
    assert not matches("body.n > 1", request({"n": "two"}))
    # An error on one side of || does not matter when the other side holds.
    assert matches('body.missing == 1 || method == "POST"', request(ORDER))


def test_a_value_cel_cannot_hold_does_not_match() -> None:
    assert not matches('headers["x-a"] == "b"', request(headers=[("X-A", "\ud800")]))
    big = {"type": "order.created", "n": 2**70}
    assert not matches("body.n > 0", request(big))
    # Only the fields a filter reads are converted: the rest of the body cannot spoil it.
    assert matches('body.type == "order.created"', request(big))


def test_only_what_a_filter_reads_is_computed() -> None:
    view = RequestView(request(ORDER, headers=GITHUB_PUSH))
    header_only = compile_filter('headers["x-github-event"] == "push"')
    assert header_only.matches(view)
    assert "body" not in view.__dict__ and "query" not in view.__dict__
    body = compile_filter('has(body.data) && body.type == "order.created"')
    assert isinstance(body, CelFilter)
    assert body.reads == ("body",) and body.fields == frozenset({"data", "type"})


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("size(body) == 3", True),
        ('body["type"] == "order.created"', True),
        ('body.exists(k, k == "items")', True),
        ('body.?type.orValue("") == "order.created"', True),
        ('body.items == [] && headers[?"body"].orValue("") == ""', True),
        ('"body.type" != "" && size(body) == 2', False),
    ],
)
def test_filters_that_read_the_whole_body_see_all_of_it(source: str, expected: bool) -> None:
    assert matches(source, request(ORDER)) is expected


def test_a_flow_refuses_a_bad_filter_with_its_position() -> None:
    flow = {"name": "orders", "mode": "async", "filter": "body.type = 'a'"}
    flow["destinations"] = [{"name": "crm", "url": {"url": "https://crm.example"}}]
    with pytest.raises(ConfigError) as caught:
        spec_from_object(flow)
    assert str(caught.value) == (
        "flow 'orders': filter: Syntax error: token recognition error at: '= ' at line 1, column 11"
    )
    text = """\
flows:
  - name: orders
    mode: async
    destinations:
      - name: crm
        url: {url: "https://crm.example"}
        filter: 'body.type == "a" &&'
"""
    with pytest.raises(ConfigError) as caught:
        parse_flow_file(text, source="flows.yaml")
    message = str(caught.value)
    assert message.startswith("flows.yaml:2: flow 'orders': destinations[crm].filter: Syntax")
    assert message.endswith(" at line 1, column 20")


WORDS = ["order.created", "order.paid", "push", ""]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    body: dict[str, Any] = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=4))
    if draw(st.booleans()):
        body["type"] = draw(st.sampled_from(WORDS))
    names = st.sampled_from(["X-Event", "x-event", "Content-Type", "X-Other"])
    values = st.sampled_from(WORDS) | st.text(st.characters(max_codepoint=255), max_size=6)
    headers = draw(st.lists(st.tuples(names, values), max_size=4))
    raw = draw(st.sampled_from([None, b"not json"]))
    return request(body, raw=raw, method=draw(st.sampled_from(["POST", "PUT"])), headers=headers)


# A clause and its meaning: True, False or None for a CEL error on that request.
Clause = tuple[str, Any]


def _body(req: Request) -> Any:
    try:
        return msgspec.json.decode(req.body)
    except msgspec.DecodeError:
        return None


def _header(req: Request, name: str) -> str | None:
    values = [v for k, v in req.headers if k.lower() == name]
    return ", ".join(values) if values else None


def _type_is(word: str) -> Clause:
    def meaning(req: Request) -> bool | None:
        body = _body(req)
        return None if not isinstance(body, dict) or "type" not in body else body["type"] == word

    return f'body.type == "{word}"', meaning


def _event_is(word: str) -> Clause:
    def meaning(req: Request) -> bool | None:
        value = _header(req, "x-event")
        return None if value is None else value == word

    return f'headers["x-event"] == "{word}"', meaning


def _has_type() -> Clause:
    def meaning(req: Request) -> bool | None:
        body = _body(req)
        return "type" in body if isinstance(body, dict) else None

    return "has(body.type)", meaning


def _has_event() -> Clause:
    return '"x-event" in headers', lambda req: _header(req, "x-event") is not None


def _method_is(word: str) -> Clause:
    return f'method == "{word}"', lambda req: req.method == word


def _not(clause: Clause) -> Clause:
    source, meaning = clause

    def negated(req: Request) -> bool | None:
        value = meaning(req)
        return None if value is None else not value

    return f"!({source})", negated


def _and(left: Clause, right: Clause) -> Clause:
    def both(req: Request) -> bool | None:
        a, b = left[1](req), right[1](req)
        if a is False or b is False:
            return False
        return None if a is None or b is None else True

    return f"({left[0]}) && ({right[0]})", both


def _or(left: Clause, right: Clause) -> Clause:
    def either(req: Request) -> bool | None:
        a, b = left[1](req), right[1](req)
        if a is True or b is True:
            return True
        return None if a is None or b is None else False

    return f"({left[0]}) || ({right[0]})", either


words = st.sampled_from(WORDS)
atoms = st.one_of(
    words.map(_type_is),
    words.map(_event_is),
    st.just(_has_type()),
    st.just(_has_event()),
    st.sampled_from(["POST", "PUT"]).map(_method_is),
)
clauses = st.recursive(
    atoms,
    lambda inner: (
        inner.map(_not)
        | st.tuples(inner, inner).map(lambda p: _and(*p))
        | st.tuples(inner, inner).map(lambda p: _or(*p))
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(clause=clauses, req=requests())
def test_matches_agrees_with_the_python_meaning_of_the_filter(clause: Clause, req: Request) -> None:
    source, meaning = clause
    assert compile_filter(source).matches(RequestView(req)) is (meaning(req) is True)


def test_the_examples_in_the_docs_are_the_tested_ones() -> None:
    docs = Path(__file__).parents[2] / "docs" / "configuration.md"
    section = docs.read_text().split("### Filters", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    shown = [
        entry["filter"]
        for entry in yaml.safe_load_all(block.replace("filter:", "---\nfilter:"))
        if entry
    ]
    assert shown == list(dict.fromkeys(source for source, _, _ in DOCUMENTED))
