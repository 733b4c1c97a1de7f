"""``open_sender``: the right sender per kind, and a missing client named with its extra."""

from __future__ import annotations

import sys

import pytest

from hookgate.destinations.amqp import RabbitSender
from hookgate.destinations.nats import NatsSender
from hookgate.destinations.open import open_sender
from hookgate.domain.destinations import Destination, NatsTarget, RabbitTarget
from hookgate.domain.flows import Flow, FlowSpec, Mode
from hookgate.errors import ConfigError


def flow(*destinations: Destination) -> Flow:
    spec = FlowSpec(name="orders", mode=Mode.ASYNC, destinations=list(destinations))
    return Flow(id="f1", spec=spec, created_at=0.0, updated_at=0.0)


RABBIT = Destination(name="bus", rabbitmq=RabbitTarget(exchange="x", routing_key="k"))
NATS = Destination(name="js", nats=NatsTarget(subject="orders.new"))


def test_each_broker_kind_gets_its_sender() -> None:
    rabbit = open_sender(flow(RABBIT), RABBIT)
    assert isinstance(rabbit, RabbitSender)
    assert (rabbit.flow_name, rabbit.flow_id, rabbit.target, rabbit.shape) == (
        "orders", "f1", RABBIT.rabbitmq, "raw",
    )  # fmt: skip
    js = open_sender(flow(NATS), NATS)
    assert isinstance(js, NatsSender)
    assert js.target == NATS.nats


@pytest.mark.parametrize(
    ("destination", "module", "message"),
    [
        (
            RABBIT,
            "aio_pika",
            "needs aio-pika, which is not installed: pip install 'hookgate[rabbitmq]'",
        ),
        (NATS, "nats", "needs nats-py, which is not installed: pip install 'hookgate[nats]'"),
    ],
)
def test_a_missing_client_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, destination: Destination, module: str, message: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        open_sender(flow(destination), destination)
