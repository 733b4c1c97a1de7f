"""The message a broker destination publishes, checked against OIH's event field by field."""

from __future__ import annotations

import msgspec
from tests.destinations.conftest import FLOW_ID, delivery

from hookgate.destinations.message import oih_event, publication
from hookgate.domain.forwarding import envelope


def test_raw_is_the_stored_body_with_its_content_type_and_hookgates_headers() -> None:
    stored = delivery(b"a,b\n1,2\n", headers=[("content-type", "text/csv")], attempts=3)
    sent = publication(stored, preset="raw", shape="raw")
    assert sent.body == b"a,b\n1,2\n"
    assert sent.content_type == "text/csv"
    assert sent.headers == {
        "x-request-id": stored.request_id,
        "x-hookgate-flow": FLOW_ID,
        "x-hookgate-delivery": stored.id,
        "x-hookgate-attempt": "3",
    }


def test_raw_without_a_content_type_has_none() -> None:
    sent = publication(delivery(b"x", headers=[]), preset="raw", shape="raw")
    assert (sent.body, sent.content_type) == (b"x", None)


def test_raw_of_an_envelope_flow_is_the_envelope() -> None:
    stored = delivery()
    sent = publication(stored, preset="raw", shape="envelope")
    assert sent.content_type == "application/json"
    assert msgspec.json.decode(sent.body) == envelope(stored)


def test_oih_is_the_flow_execute_event_of_oihs_event_bus() -> None:
    stored = delivery(
        b'{"order": {"id": 7}}',
        headers=[("content-type", "application/json"), ("x-tag", "one"), ("x-tag", "two")],
    )
    sent = publication(stored, preset="oih", shape="raw")
    assert sent.content_type == "application/json"
    event = msgspec.json.decode(sent.body)
    assert event == oih_event(stored)
    assert list(event) == ["headers", "payload"]
    assert event["headers"] == {
        "name": "flow.execute",
        "type": "webhooks",
        "createdAt": int(stored.received_at * 1000),
        "serviceName": "webhooks",
    }
    assert list(event["payload"]) == ["flow", "msg", "msgOpts"]
    assert event["payload"]["flow"] == {"_id": FLOW_ID}
    assert event["payload"]["msgOpts"] == {
        "headers": {"taskId": FLOW_ID, "execId": stored.id, "userId": "DOES_NOT_MATTER"}
    }
    msg = event["payload"]["msg"]
    assert list(msg) == [
        "id", "attachments", "data", "headers", "metadata", "url", "method",
        "originalUrl", "query", "params", "pathSuffix",
    ]  # fmt: skip
    url = f"/hook/{FLOW_ID}/orders/new?src=shop&a=1&a=2&b[c]=3"
    assert msg == {
        "id": stored.id,
        "attachments": {},
        "data": {"order": {"id": 7}},
        "headers": {
            "content-type": "application/json",
            "x-tag": "one, two",
            "x-request-id": stored.request_id,
            "x-hookgate-flow": FLOW_ID,
            "x-forwarded-for": "10.0.0.7",
            "x-forwarded-proto": "http",
        },
        "metadata": {"externalExecId": stored.request_id},
        "url": url,
        "method": "POST",
        "originalUrl": url,
        "query": {"src": "shop", "a": ["1", "2"], "b": {"c": "3"}},
        "params": {},
        "pathSuffix": f"/hook/{FLOW_ID}/orders/new",
    }


def test_the_same_delivery_publishes_the_same_bytes_on_every_attempt() -> None:
    stored = delivery()
    first = publication(stored, preset="oih", shape="raw").body
    stored.attempts = 2
    assert publication(stored, preset="oih", shape="raw").body == first
