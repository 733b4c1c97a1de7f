"""What a broker destination publishes for a delivery: body, content type and headers.

Shared by the RabbitMQ and NATS senders so both carry the same message. ``raw`` is what a
worker would get (the stored body, or the flow's envelope with ``delivery: envelope``);
``oih`` is the event the Open Integration Hub webhooks service publishes to its event bus
(docs/workers.md, "Broker destinations"), so OIH's component orchestrator can consume it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from hookgate.domain.deliveries import Delivery
from hookgate.domain.forwarding import envelope, outbound

OIH_EXCHANGE = "event-bus"
"""The topic exchange OIH's event bus publishes to (``lib/event-bus`` ``RabbitMqTransport``)."""
OIH_ROUTING_KEY = "flow.execute"
"""The event name, which the event bus uses as routing key."""


class Publication(msgspec.Struct, kw_only=True, frozen=True):
    body: bytes
    content_type: str | None
    headers: dict[str, str]


def publication(delivery: Delivery, *, preset: str, shape: str) -> Publication:
    """The message for one attempt; the same bytes on every attempt of a delivery, so a
    consumer may compare as well as dedupe by the delivery id."""
    headers = {
        "x-request-id": delivery.request_id,
        "x-hookgate-flow": delivery.flow_id,
        "x-hookgate-delivery": delivery.id,
        "x-hookgate-attempt": str(delivery.attempts),
    }
    if preset == "oih":
        body = msgspec.json.encode(oih_event(delivery))
        return Publication(body=body, content_type="application/json", headers=headers)
    sent = outbound(delivery, shape)
    content_type = next((v for k, v in sent.headers if k.lower() == b"content-type"), None)
    return Publication(
        body=sent.body,
        content_type=content_type.decode("latin-1") if content_type is not None else None,
        headers=headers,
    )


def oih_event(delivery: Delivery) -> dict[str, Any]:
    """The ``flow.execute`` event, key for key in OIH's order.

    OIH's ``flow`` is its whole MongoDB flow document, which Hookgate does not have; the
    orchestrator reads only its ``_id`` (and loads the flow by it). ``passthrough`` is left out
    of ``msg``: OIH's webhooks service does not set it.
    """
    msg = envelope(delivery)
    del msg["passthrough"]
    return {
        "headers": {
            "name": OIH_ROUTING_KEY,
            "type": "webhooks",
            "createdAt": int(delivery.received_at * 1000),
            "serviceName": "webhooks",
        },
        "payload": {
            "flow": {"_id": delivery.flow_id},
            "msg": msg,
            "msgOpts": {
                "headers": {
                    "taskId": delivery.flow_id,
                    "execId": delivery.id,
                    "userId": "DOES_NOT_MATTER",
                }
            },
        },
    }
