"""Cost of one filter per request, in µs, on a 1 KB JSON body (issue 17: ≤ 20 µs).

Run: ``python -m bench.filters``. Each row is the whole per-request work: a fresh
``RequestView`` (so the JSON decoding and the header map are counted), the variables the
expression reads, and the evaluation. The chosen library goes through ``compile_filter``;
the others, when installed, get the same variables (``pip install jmespath
common-expression-language cel-python`` to compare).
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

import msgspec

from hookgate.domain.deliveries import Request
from hookgate.domain.filters import CelFilter, RequestView, compile_filter

ITEMS = [{"sku": f"A-{i}", "qty": i} for i in range(8)]
DATA = {"amount": 1250, "currency": "eur", "items": ITEMS, "note": ""}
PAYLOAD: dict[str, Any] = {"type": "order.created", "id": "evt_1", "data": DATA}
DATA["note"] = "x" * (1024 - len(msgspec.json.encode(PAYLOAD)))
BODY = msgspec.json.encode(PAYLOAD)
HEADERS = [
    ("Host", "hooks.example.com"),
    ("User-Agent", "GitHub-Hookshot/1.0"),
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(BODY))),
    ("Accept", "*/*"),
    ("X-GitHub-Event", "push"),
    ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ("X-Hub-Signature-256", "sha256=" + "0" * 64),
    ("Accept-Encoding", "gzip"),
    ("X-Forwarded-For", "192.0.2.9"),
]
REQUEST = Request(
    id="d",
    request_id="r",
    flow_id="f",
    method="POST",
    path="/orders/eu",
    query="region=eu&page=1",
    headers=HEADERS,
    body=BODY,
    source="192.0.2.9",
    received_at=0.0,
)
# (what it shows, CEL, JMESPath): each holds for REQUEST.
CASES = [
    (
        "header only (no JSON)",
        'headers["x-github-event"] == "push"',
        "headers.\"x-github-event\" == 'push'",
    ),
    (
        "body field and header",
        'body.type == "order.created" && headers["x-github-event"] == "push"',
        "body.type == 'order.created' && headers.\"x-github-event\" == 'push'",
    ),
    (
        "method, path, nested number",
        'method == "POST" && path.startsWith("/orders") && body.data.amount > 1000',
        "method == 'POST' && starts_with(path, '/orders') && body.data.amount > `1000`",
    ),
    (
        "scan a list, query",
        'body.data.items.exists(i, i.sku == "A-7") && "eu" in query.region',
        "length(body.data.items[?sku == 'A-7']) > `0` && contains(query.region, 'eu')",
    ),
    (
        "whole body (size)",
        'size(body) == 3 && body.type == "order.created"',
        "length(@.body) == `3` && body.type == 'order.created'",
    ),
]
Evaluate = Callable[[dict[str, Any]], Any]


# The others are imported only when compared: they are not Hookgate's dependencies.
def _jmespath(source: str) -> Evaluate:
    import jmespath

    return jmespath.compile(source).search


def _cel_rust(source: str) -> Evaluate:
    import cel

    return cel.compile(source).execute


def _cel_python(source: str) -> Evaluate:
    import celpy

    env = celpy.Environment()
    program = env.program(env.compile(source))
    return lambda data: program.evaluate(celpy.json_to_cel(data))


OTHERS: list[tuple[str, Callable[[str], Evaluate], bool]] = [
    ("jmespath", _jmespath, False),
    ("common-expression-language", _cel_rust, True),
    ("cel-python", _cel_python, True),
]
"""Name, compiler, and whether it takes the CEL text (else the JMESPath one)."""


def micros(call: Callable[[], object]) -> float:
    timer = timeit.Timer(call)
    number, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=number)) / number * 1e6


def other(compiler: Callable[[str], Evaluate], source: str, reads: CelFilter) -> Callable[[], Any]:
    """One request through another library, given the variables the CEL filter reads."""
    evaluate = compiler(source)

    def run() -> Any:
        view = RequestView(REQUEST)
        return evaluate({name: getattr(view, name) for name in reads.reads})

    return run


def main() -> None:
    columns = ["cel-expr-python (chosen)"]
    rows: dict[str, list[str]] = {}
    for label, cel_source, _ in CASES:
        chosen = compile_filter(cel_source)
        if not chosen.matches(RequestView(REQUEST)):
            raise SystemExit(f"{label}: the filter does not hold for the benchmark request")
        rows[label] = [f"{micros(lambda f=chosen: f.matches(RequestView(REQUEST))):.1f}"]
    for name, compiler, takes_cel in OTHERS:
        try:
            compiler("true" if takes_cel else "`true`")
        except ImportError:
            continue
        columns.append(name)
        for label, cel_source, jmes_source in CASES:
            chosen = compile_filter(cel_source)
            assert isinstance(chosen, CelFilter)
            run = other(compiler, cel_source if takes_cel else jmes_source, chosen)
            if not run():
                raise SystemExit(f"{name}, {label}: does not hold for the benchmark request")
            rows[label].append(f"{micros(run):.1f}")
    baseline = micros(lambda: RequestView(REQUEST).body)
    print(f"1 KB JSON body ({len(BODY)} bytes), {len(HEADERS)} headers; µs per request")
    print(f"{'filter':<30}" + "".join(f"{c:>28}" for c in columns))
    for label, cells in rows.items():
        print(f"{label:<30}" + "".join(f"{c:>28}" for c in cells))
    print(f"(decoding the body alone: {baseline:.1f} µs)")


if __name__ == "__main__":
    main()
