"""What a worker receives: forwarded headers and the Open Integration Hub envelope."""

from __future__ import annotations

import base64
import json
from typing import Any

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
) -> Delivery:
    headers = [("content-type", content_type)] if content_type else []
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


ENVELOPE_KEYS = {
    "id",
    "data",
    "headers",
    "query",
    "method",
    "url",
    "pathSuffix",
    "params",
    "metadata",
    "attachments",
}


def shaped(message: dict[str, Any]) -> dict[str, Any]:
    """The envelope survives JSON and has the OIH shape."""
    message = json.loads(json.dumps(message))
    assert set(message) == ENVELOPE_KEYS
    assert message["id"] == "0189f0c2a8e04b7a9d1e000000000001"
    assert message["metadata"] == {
        "source": {"name": "shop-orders", "type": "webhook", "externalExecId": "req-9"}
    }
    return message


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/vnd.api+json; charset=utf-8"]
)
def test_envelope_of_a_json_post(content_type: str) -> None:
    message = shaped(
        envelope(
            delivery(
                body=b'{"order": 7, "items": [1, 2]}',
                content_type=content_type,
                path="/orders/7",
                query="src=shop&x=1",
            ),
            flow_name="shop-orders",
        )
    )
    assert message["data"] == {"order": 7, "items": [1, 2]}
    assert message["method"] == "POST"
    assert message["pathSuffix"] == "/orders/7"
    assert message["url"] == "/orders/7?src=shop&x=1"
    assert message["query"] == message["params"] == {"src": "shop", "x": "1"}
    assert message["headers"]["x-custom"] == "yes"


def test_envelope_of_a_form_post() -> None:
    message = shaped(
        envelope(
            delivery(
                body=b"name=Ren%C3%A9&empty=", content_type="application/x-www-form-urlencoded"
            ),
            flow_name="shop-orders",
        )
    )
    assert message["data"]["empty"] == ""
    assert set(message["data"]) == {"name", "empty"}
    assert message["data"]["name"] == "René"


def test_envelope_of_a_get_carries_the_query_as_data() -> None:
    message = shaped(
        envelope(delivery(method="GET", query="challenge=abc&n=2"), flow_name="shop-orders")
    )
    assert message["data"] == {"challenge": "abc", "n": "2"}
    assert message["method"] == "GET"
    assert message["url"] == "/?challenge=abc&n=2"


def test_envelope_of_broken_json_or_text_keeps_it_raw() -> None:
    broken = shaped(
        envelope(delivery(body=b"{nope", content_type="application/json"), flow_name="shop-orders")
    )
    assert broken["data"] == {"raw": "{nope"}
    text = shaped(
        envelope(
            delivery(body=b"<a>1</a>", content_type="application/xml"), flow_name="shop-orders"
        )
    )
    assert text["data"] == {"raw": "<a>1</a>"}


def test_envelope_of_a_binary_body_is_still_valid_json() -> None:
    message = shaped(
        envelope(
            delivery(body=bytes(range(256)), content_type="application/octet-stream"),
            flow_name="shop-orders",
        )
    )
    assert message["data"] == {}
    (attachment,) = message["attachments"]
    assert base64.b64decode(attachment["content"]) == bytes(range(256))
    assert attachment["contentType"] == "application/octet-stream"
    assert attachment["size"] == 256


def test_envelope_form_fields_are_utf8() -> None:
    message = envelope(
        delivery(
            body="name=Ren%C3%A9&city=K%C3%B6ln&raw=Müller".encode(),
            content_type="application/x-www-form-urlencoded",
        ),
        flow_name="shop-orders",
    )
    assert message["data"] == {"name": "René", "city": "Köln", "raw": "Müller"}
    assert message["attachments"] == []
