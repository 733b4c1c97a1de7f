"""What a worker receives: forwarded headers and the Open Integration Hub envelope."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest

from hookgate.domain.deliveries import Delivery, State
from hookgate.domain.forwarding import delivery_headers, envelope, forward_headers


def forwarded(headers: list[tuple[str, str]], **kwargs: Any) -> dict[str, list[str]]:
    """The forwarded headers by lower-cased name; given and read as text for readability."""
    options = {"request_id": "req-1", "flow_id": "flow-1", "client": "203.0.113.9", **kwargs}
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    result: dict[str, list[str]] = {}
    for name, value in forward_headers(raw, **options):
        result.setdefault(name.decode().lower(), []).append(value.decode("latin-1"))
    return result


def text(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode(), v.decode("latin-1")) for k, v in headers]


def test_hop_by_hop_headers_are_removed_and_the_rest_kept() -> None:
    got = forwarded(
        [
            ("Host", "hooks.example"),
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("TE", "trailers"),
            ("Trailer", "X-Sum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic Zm9v"),
            ("Proxy-Authenticate", "Basic"),
            ("Content-Length", "12"),
            ("Expect", "100-continue"),
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "push"),
            ("Authorization", "Bearer caller"),
        ]
    )
    for gone in (
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "content-length",
        "expect",
        "host",
    ):
        assert gone not in got
    assert got["content-type"] == ["application/json"]
    assert got["x-github-event"] == ["push"]
    assert got["authorization"] == ["Bearer caller"]


def test_headers_named_in_connection_are_removed() -> None:
    got = forwarded(
        [
            ("Connection", "Keep-Alive, X-Drop-Me"),
            ("connection", "x-also-gone"),
            ("X-Drop-Me", "1"),
            ("x-also-gone", "2"),
            ("X-Stay", "3"),
        ]
    )
    assert "x-drop-me" not in got
    assert "x-also-gone" not in got
    assert got["x-stay"] == ["3"]


def test_hookgate_headers_are_added_and_cannot_be_spoofed_by_the_caller() -> None:
    got = forwarded(
        [
            ("Host", "hooks.example:8443"),
            ("X-Request-Id", "spoofed"),
            ("X-Hookgate-Flow", "spoofed"),
            ("X-Hookgate-Delivery", "spoofed"),
            ("X-Hookgate-Attempt", "99"),
            ("Idempotency-Key", "caller-key"),
            ("X-Forwarded-Proto", "spoofed"),
            ("X-Forwarded-Host", "spoofed"),
        ],
        proto="https",
    )
    assert got["x-request-id"] == ["req-1"]
    assert got["x-hookgate-flow"] == ["flow-1"]
    assert got["x-forwarded-for"] == ["203.0.113.9"]
    assert got["x-forwarded-proto"] == ["https"]
    assert got["x-forwarded-host"] == ["hooks.example:8443"]
    for absent in ("x-hookgate-delivery", "x-hookgate-attempt"):
        assert absent not in got
    # A sync worker sees the caller's own Idempotency-Key.
    assert got["idempotency-key"] == ["caller-key"]


def test_x_forwarded_for_is_appended_to() -> None:
    got = forwarded([("X-Forwarded-For", "198.51.100.1, 10.0.0.1")])
    assert got["x-forwarded-for"] == ["198.51.100.1, 10.0.0.1, 203.0.113.9"]
    assert forwarded([("X-Forwarded-For", "198.51.100.1")], client="")["x-forwarded-for"] == [
        "198.51.100.1"
    ]


def delivery(
    *,
    method: str = "POST",
    body: bytes = b"",
    content_type: str | None = None,
    query: str = "",
    path: str = "/",
    attempts: int = 1,
    extra: tuple[tuple[str, str], ...] = (),
) -> Delivery:
    headers = [("content-type", content_type)] if content_type else []
    headers += extra
    return Delivery(
        id="0189f0c2a8e04b7a9d1e000000000001",
        request_id="req-9",
        flow_id="FLOWIDFLOWIDFLOWIDFLOW",
        state=State.LEASED,
        attempts=attempts,
        next_at=0.0,
        received_at=1_700_000_000.0,
        method=method,
        path=path,
        query=query,
        headers=[*headers, ("x-custom", "yes"), ("connection", "close")],
        body=body,
        source="192.0.2.7",
    )


def test_delivery_headers_carry_delivery_attempt_and_a_constant_idempotency_key() -> None:
    first = dict(text(delivery_headers(delivery(attempts=1))))
    third = dict(text(delivery_headers(delivery(attempts=3))))
    assert first["x-hookgate-delivery"] == "0189f0c2a8e04b7a9d1e000000000001"
    assert (first["x-hookgate-attempt"], third["x-hookgate-attempt"]) == ("1", "3")
    assert first["idempotency-key"] == third["idempotency-key"] == first["x-hookgate-delivery"]
    assert first["x-request-id"] == "req-9"
    assert first["x-hookgate-flow"] == "FLOWIDFLOWIDFLOWIDFLOW"
    assert first["x-forwarded-for"] == "192.0.2.7"
    assert first["x-custom"] == "yes"
    assert "connection" not in first


def test_an_async_delivery_replaces_the_callers_idempotency_key() -> None:
    stored = delivery()
    stored.headers.append(("Idempotency-Key", "caller-key"))
    keys = [v for k, v in text(delivery_headers(stored)) if k.lower() == "idempotency-key"]
    assert keys == [stored.id]


FLOW = "FLOWIDFLOWIDFLOWIDFLOW"
HOOKGATE_HEADERS = {
    "x-custom": "yes",
    "x-request-id": "req-9",
    "x-hookgate-flow": FLOW,
    "x-forwarded-for": "192.0.2.7",
    "x-forwarded-proto": "http",
}


def sent(stored: Delivery) -> Any:
    """The envelope as the worker reads it: encoded the way the dispatcher encodes it."""
    return json.loads(msgspec.json.encode(envelope(stored)))


def oih_message(
    *,
    data: Any,
    content_type: str | None = None,
    method: str = "POST",
    query: dict[str, Any] | None = None,
    url: str = f"/hook/{FLOW}",
    attachments: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every field of the OIH webhooks service's message (docs/workers.md, the field table)."""
    headers = {"content-type": content_type} if content_type else {}
    return {
        "id": "0189f0c2a8e04b7a9d1e000000000001",
        "attachments": attachments or {},
        "data": data,
        "headers": {**headers, **HOOKGATE_HEADERS},
        "metadata": {"externalExecId": "req-9"},
        "url": url,
        "method": method,
        "originalUrl": url,
        "query": query or {},
        "params": {},
        "pathSuffix": url.partition("?")[0],
        "passthrough": {},
    }


def data_url(kind: str, body: bytes) -> str:
    return f"data:{kind};base64,{base64.b64encode(body).decode()}"


def test_envelope_of_a_json_post_with_a_sub_path_and_a_query() -> None:
    query = "src=shop&x=1&x=2&b[c]=3&b[d][]=4"
    got = sent(
        delivery(
            body=b'{"order": 7, "items": [1, 2]}',
            content_type="application/json",
            path="/orders/7",
            query=query,
        )
    )
    assert got == oih_message(
        data={"order": 7, "items": [1, 2]},
        content_type="application/json",
        query={"src": "shop", "x": ["1", "2"], "b": {"c": "3", "d": ["4"]}},
        url=f"/hook/{FLOW}/orders/7?{query}",
    )


def test_envelope_of_a_form_post_with_repeated_and_nested_keys() -> None:
    kind = "application/x-www-form-urlencoded"
    body = (
        b"name=Ren%C3%A9&tag=a&tag=b&order[id]=7&order[items][]=x&order[items][]=y"
        b"&order[ship][city]=K%C3%B6ln&list[1]=second&list[0]=first&plus=a+b&empty=&bad=%E0%A4%A"
    )
    assert sent(delivery(body=body, content_type=kind)) == oih_message(
        data={
            "name": "René",
            "tag": ["a", "b"],
            "order": {"id": "7", "items": ["x", "y"], "ship": {"city": "Köln"}},
            "list": ["first", "second"],
            "plus": "a b",
            "empty": "",
            "bad": "%E0%A4%A",
        },
        content_type=kind,
    )


PURCHASE_ORDER = b"""<?xml version="1.0" encoding="UTF-8"?>
<po:order xmlns:po="urn:example:po" orderDate="1999-10-20">
  <po:shipTo country="US"><name>Alice &amp; Bob</name><zip>90952</zip></po:shipTo>
  <item partNum="872-AA">Lawnmower</item>
  <item partNum="926-AA"><qty>1</qty></item>
  <comment><![CDATA[<fragile>]]></comment>
  <empty/>
  <spaces>  </spaces>
</po:order>"""


def test_envelope_of_an_xml_post_is_shaped_as_xml2js_with_oihs_options() -> None:
    kind = "application/xml; charset=utf-8"
    assert sent(delivery(body=PURCHASE_ORDER, content_type=kind)) == oih_message(
        data={
            "po-order": {
                "_attr": {"xmlns:po": "urn:example:po", "orderDate": "1999-10-20"},
                "po-shipTo": {"_attr": {"country": "US"}, "name": "Alice & Bob", "zip": "90952"},
                "item": [
                    {"_": "Lawnmower", "_attr": {"partNum": "872-AA"}},
                    {"_attr": {"partNum": "926-AA"}, "qty": "1"},
                ],
                "comment": "<fragile>",
                "empty": "",
                "spaces": "  ",
            }
        },
        content_type=kind,
    )


def test_envelope_of_a_multipart_post_carries_fields_as_data_and_the_file_as_an_attachment() -> (
    None
):
    pdf = b"%PDF-1.4\n\x00\xff\xfe binary"
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="tag"\r\n\r\na\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="tag"\r\n\r\nb\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="order[id]"\r\n\r\n7\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nK\xc3\xb6ln\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="invoice"; '
        b'filename="C:\\docs\\invoice.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
        + pdf
        + b"\r\n--XyZ--\r\n"
    )
    kind = "multipart/form-data; boundary=XyZ"
    assert sent(delivery(body=body, content_type=kind)) == oih_message(
        data={"tag": ["a", "b"], "order": {"id": "7"}, "note": "Köln"},
        content_type=kind,
        attachments={
            "invoice.pdf": {
                "content-type": "application/pdf",
                "size": len(pdf),
                "url": data_url("application/pdf", pdf),
            }
        },
    )


@pytest.mark.parametrize(
    ("kind", "body", "name"),
    [
        ("text/csv", b"id,name\n1,Ada\n", "payload.csv"),
        ("text/plain; charset=utf-8", b"hello, not JSON", "payload.txt"),
        ("application/octet-stream", bytes(range(256)), "payload.bin"),
        ("image/png", b"\x89PNG\r\n\x1a\n", "payload.png"),
        ("application/vnd.api+json", b'{"data": []}', "payload.false"),
        ("application/json", b"{nope", "payload.json"),
        ("application/json", b'"a JSON string"', "payload.json"),
        ("application/xml", b"<bar><hasi></bar>", "payload.xml"),
        ("multipart/form-data", b"--x\r\n", "payload.false"),
        ("application/json", b"[" * 300 + b"]" * 300, "payload.json"),
        ("application/xml", b"<a>" * 300 + b"</a>" * 300, "payload.xml"),
        ("application/x-www-form-urlencoded", b"a" + b"[b]" * 300 + b"=1", "payload.false"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_envelope_of_a_body_oih_does_not_parse_is_the_attachment_payload(
    kind: str, body: bytes, name: str
) -> None:
    bare = kind.split(";")[0]
    assert sent(delivery(body=body, content_type=kind)) == oih_message(
        data={},
        content_type=kind,
        attachments={name: {"content-type": kind, "size": len(body), "url": data_url(bare, body)}},
    )


def test_envelope_of_plain_text_that_is_json_is_parsed_as_oih_does() -> None:
    got = sent(delivery(body=b' [1, {"a": null}]', content_type="text/plain"))
    assert got == oih_message(data=[1, {"a": None}], content_type="text/plain")


def test_envelope_of_a_get_carries_the_query_as_data() -> None:
    query = "challenge=abc&n=2&n=3&filter[status]=open"
    parsed = {"challenge": "abc", "n": ["2", "3"], "filter": {"status": "open"}}
    assert sent(delivery(method="GET", query=query)) == oih_message(
        data=parsed, method="GET", query=parsed, url=f"/hook/{FLOW}?{query}"
    )


def test_envelope_of_an_empty_post() -> None:
    assert sent(delivery(query="a=1")) == oih_message(
        data={}, query={"a": "1"}, url=f"/hook/{FLOW}?a=1"
    )


def test_envelope_headers_fold_repeats_as_node_does() -> None:
    repeated = (
        ("Accept", "text/html"),
        ("accept", "application/json"),
        ("Cookie", "a=1"),
        ("cookie", "b=2"),
        ("Set-Cookie", "s=1"),
        ("set-cookie", "t=2"),
        ("User-Agent", "first"),
        ("user-agent", "second"),
        ("X-Custom", "again"),
    )
    headers = sent(delivery(extra=repeated))["headers"]
    assert headers == {
        "accept": "text/html, application/json",
        "cookie": "a=1; b=2",
        "set-cookie": ["s=1", "t=2"],
        "user-agent": "first",
        **HOOKGATE_HEADERS,
        "x-custom": "again, yes",
    }
