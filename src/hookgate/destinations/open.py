"""A sender for a flow's destination; the client libraries are optional extras.

The broker clients are imported only here, when a flow asks for one, so a gateway without
brokers needs neither installed, and a flow that names one gets a ``ConfigError`` saying which
extra to install rather than an ``ImportError`` from deep inside the dispatcher.
"""

from __future__ import annotations

import importlib.util

from hookgate.destinations.base import Sender
from hookgate.domain.destinations import Destination
from hookgate.domain.flows import Flow
from hookgate.errors import ConfigError


def open_sender(flow: Flow, destination: Destination) -> Sender:
    """The sender for one of ``flow``'s destinations (not ``workers: true``: the dispatcher
    delivers to the flow's own workers itself)."""
    shape = flow.spec.delivery
    if destination.url is not None:
        from hookgate.destinations.http import HttpSender

        sender: Sender = HttpSender(flow.name, flow.id, destination.url, shape)
        return sender
    check_destination(flow.name, destination)
    if destination.rabbitmq is not None:
        from hookgate.destinations.amqp import RabbitSender

        return RabbitSender(flow.name, flow.id, destination.rabbitmq, shape)
    if destination.nats is not None:
        from hookgate.destinations.nats import NatsSender

        return NatsSender(flow.name, flow.id, destination.nats, shape)
    raise ConfigError(
        f"flow {flow.name!r}: destination {destination.name!r} is the flow's own workers,"
        " which have no sender"
    )


CLIENTS = {"rabbitmq": ("aio_pika", "aio-pika"), "nats": ("nats", "nats-py")}
"""A destination kind's client library: the module, the package (and extra) to install."""


def check_destination(flow_name: str, destination: Destination) -> None:
    """``ConfigError`` naming the extra to install when the destination's client is missing;
    checked when a flow is applied, so the flow is refused rather than left undelivered."""
    client = CLIENTS.get(destination.kind)
    if client is not None and importlib.util.find_spec(client[0]) is None:
        raise ConfigError(
            f"flow {flow_name!r}: destination {destination.name!r} ({destination.kind}) needs"
            f" {client[1]}, which is not installed: pip install 'hookgate[{destination.kind}]'"
        )
