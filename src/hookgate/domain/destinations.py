"""Where a flow's requests go: its own workers, an HTTP(S) URL, a RabbitMQ exchange or a NATS
JetStream subject, each with its own filter, retries, rate and delay.

A flow without ``destinations:`` has one, named ``worker``: its own workers (the ``worker:``
shorthand). One accepted request becomes one delivery per destination whose filter matches;
each delivery moves through its own retries and dead letters, so a failing destination never
holds the others back.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from hookgate.domain.units import Duration, seconds

WORKERS = "worker"
"""The name of the implicit destination: the flow's own workers."""
DESTINATION_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,30}[a-z0-9])?$")


class _Spec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class RetryPolicy(_Spec):
    max_attempts: int = 10
    backoff: Duration = seconds(1)
    max_backoff: Duration = seconds(3600)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.max_backoff < self.backoff:
            raise ValueError("max_backoff must not be below backoff")


class DeliveryRate(_Spec):
    """A token bucket on deliveries: ``per_second`` on average, ``burst`` at once."""

    per_second: Annotated[float, msgspec.Meta(gt=0)]
    burst: Annotated[int, msgspec.Meta(ge=0)] = 0

    def __post_init__(self) -> None:
        if self.burst == 0:
            self.burst = max(1, int(self.per_second))


class HttpTarget(_Spec):
    """An existing HTTP(S) endpoint: the request is sent as it arrived (method, headers, body;
    the flow's sub-path and query appended to the URL's path), or as the OIH envelope."""

    url: str
    headers: dict[str, str] = {}
    verify_tls: bool = True

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")


class RabbitTarget(_Spec):
    """An AMQP 0-9-1 exchange: a delivery is done once the broker confirms the publish."""

    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    exchange: str = ""
    routing_key: str = ""
    preset: Literal["raw", "oih"] = "raw"

    def __post_init__(self) -> None:
        if not self.url.startswith(("amqp://", "amqps://")):
            raise ValueError(f"url must start with amqp:// or amqps://, got {self.url!r}")


class NatsTarget(_Spec):
    """A NATS JetStream subject: a delivery is done once the stream acknowledges it."""

    subject: str
    url: str = "nats://127.0.0.1:4222"
    preset: Literal["raw", "oih"] = "raw"

    def __post_init__(self) -> None:
        if not self.url.startswith(("nats://", "tls://")):
            raise ValueError(f"url must start with nats:// or tls://, got {self.url!r}")
        if not self.subject or any(c in self.subject for c in " \t*>"):
            raise ValueError(f"subject must be a concrete NATS subject, got {self.subject!r}")


Kind = Literal["worker", "url", "rabbitmq", "nats"]


class Destination(_Spec):
    """One destination of a flow: exactly one of ``workers: true``, ``url``, ``rabbitmq``,
    ``nats``; the rest defaults to the flow's own settings."""

    name: str
    workers: bool = False
    url: HttpTarget | None = None
    rabbitmq: RabbitTarget | None = None
    nats: NatsTarget | None = None
    filter: str | None = None
    """An expression over the request (see ``domain.routing``); ANDed with the flow's."""
    retry: RetryPolicy | None = None
    """None: the flow's ``retry``."""
    rate_limit: DeliveryRate | None = None
    delay: Duration | None = None
    """None: the flow's ``delay``."""

    def __post_init__(self) -> None:
        if not DESTINATION_NAME.match(self.name):
            raise ValueError(
                "a destination name is 1-32 lowercase letters, digits, '_' or '-', starting and"
                f" ending with a letter or digit; got {self.name!r}"
            )
        given = [k for k in ("url", "rabbitmq", "nats") if getattr(self, k) is not None]
        given += ["workers"] if self.workers else []
        if len(given) != 1:
            raise ValueError(
                f"destination {self.name!r} needs exactly one of `workers: true`, `url`,"
                f" `rabbitmq` or `nats`; got {', '.join(given) or 'none'}"
            )

    @property
    def kind(self) -> Kind:
        if self.url is not None:
            return "url"
        if self.rabbitmq is not None:
            return "rabbitmq"
        if self.nats is not None:
            return "nats"
        return "worker"
