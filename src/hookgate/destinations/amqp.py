"""The RabbitMQ destination: one robust connection and a few confirmed channels per sender.

Why aio-pika: its robust connection reconnects and reopens the channels (and redeclares what
was declared on them) by itself, and its publisher confirms let concurrent publishes share a
channel while each awaits its own ``Basic.Ack``. Publishes go straight to each channel's aiormq
channel (the one the robust channel has open now): aio-pika's ``Message`` and ``Exchange``
layers cost about a fifth of a publish and add nothing a sender needs. aiormq holds a channel's
lock from a publish until its frames are written, so one channel writes one publish per loop
turn; publishes take the channels in turn. A delivery is done only
once the broker has confirmed it; ``mandatory`` publishing makes a message no queue takes an
error, not a silent drop. The delivery id is the ``message_id``: delivery is at least once,
consumers dedupe by it.
"""

from __future__ import annotations

import asyncio
import itertools
from urllib.parse import urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection
from aio_pika.connection import make_url

from hookgate.destinations.base import CONFIRMED
from hookgate.destinations.message import OIH_EXCHANGE, OIH_ROUTING_KEY, publication
from hookgate.domain.deliveries import Delivery
from hookgate.domain.destinations import RabbitTarget
from hookgate.domain.forwarding import Reply

RECONNECT_INTERVAL = 1.0
"""Seconds between the robust connection's reconnect attempts after the broker went away."""

CHANNELS = 2
"""Channels per sender: two publish about a fifth faster than one (bench.brokers); more did not
measurably help on two cores."""

PERSISTENT = int(aio_pika.DeliveryMode.PERSISTENT)
"""AMQP ``delivery_mode`` 2: the broker writes the message to disk before it confirms it
(on a durable queue)."""


class RabbitSender:
    """Publishes each delivery to ``target``'s exchange and waits for the broker's confirm."""

    kind = "rabbitmq"

    def __init__(self, flow_name: str, flow_id: str, target: RabbitTarget, shape: str) -> None:
        self.flow_name = flow_name
        self.flow_id = flow_id
        self.target = target
        self.shape = shape
        self.exchange_name, self.routing_key = target.exchange, target.routing_key
        if target.preset == "oih" and not (target.exchange or target.routing_key):
            self.exchange_name, self.routing_key = OIH_EXCHANGE, OIH_ROUTING_KEY
        parts = urlsplit(target.url)
        self.address = f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}"
        """Where the broker is, for errors: the URL without its credentials."""
        self._connection: AbstractRobustConnection | None = None
        self._channels: tuple[AbstractRobustChannel, ...] = ()
        self._turns = itertools.count()
        self._lock = asyncio.Lock()

    async def send(self, delivery: Delivery, *, timeout: float) -> Reply:
        message = publication(delivery, preset=self.target.preset, shape=self.shape)
        where = f"exchange {self.exchange_name!r} with routing key {self.routing_key!r}"
        properties = aiormq.spec.Basic.Properties(
            content_type=message.content_type,
            delivery_mode=PERSISTENT,
            message_id=delivery.id,
            headers=dict(message.headers),
        )
        try:
            async with asyncio.timeout(timeout):
                channel = await self._open(timeout)
                await channel.basic_publish(
                    message.body,
                    exchange=self.exchange_name,
                    routing_key=self.routing_key,
                    properties=properties,
                    mandatory=True,
                )
        except TimeoutError:
            return Reply(
                status=None,
                error=f"RabbitMQ at {self.address} did not confirm the publish to {where}"
                f" within {timeout:g}s",
                timed_out=True,
            )
        except aiormq.exceptions.PublishError as exc:
            return Reply(status=None, error=f"unroutable: {where} {_returned(exc)}")
        except aiormq.exceptions.DeliveryError:
            return Reply(status=None, error=f"RabbitMQ refused (nack) the publish to {where}")
        except aiormq.exceptions.ChannelClosed as exc:
            await self._forget()
            refusal = f"RabbitMQ refused the publish to {where}: {exc.args[0]}"
            return Reply(status=None, error=refusal)
        except (OSError, aiormq.exceptions.AMQPError, RuntimeError) as exc:
            await self._forget()
            return Reply(status=None, error=f"RabbitMQ at {self.address}: {_describe(exc)}")
        head = f"published to exchange {self.exchange_name!r} with routing key {self.routing_key!r}"
        return Reply(status=CONFIRMED, head=head.encode())

    async def _open(self, timeout: float) -> aiormq.abc.AbstractChannel:
        """The open channel under the robust one: connected on first use, and waited for while
        the robust connection reconnects (the caller's deadline bounds the wait)."""
        async with self._lock:
            if not self._channels:
                # Not ``connect_robust``: a first connect cut short by the deadline would leave
                # its connection retrying in the background, out of reach of ``close``.
                connection = aio_pika.RobustConnection(
                    make_url(self.target.url, reconnect_interval=RECONNECT_INTERVAL),
                    client_properties={"connection_name": f"hookgate {self.flow_name}"},
                )
                try:
                    await connection.connect(timeout=timeout)
                    channels = [await self._confirmed(connection) for _ in range(CHANNELS)]
                    if self.exchange_name == OIH_EXCHANGE and self.target.preset == "oih":
                        # Declared as OIH's event bus declares it (a durable topic exchange),
                        # so a fresh broker takes the first event the same way OIH's own
                        # would; the robust channel declares it again after a reconnect.
                        await channels[0].declare_exchange(OIH_EXCHANGE, "topic", durable=True)
                except BaseException:
                    await connection.close()
                    raise
                self._connection, self._channels = connection, tuple(channels)
            channel = self._channels[next(self._turns) % CHANNELS]
        await channel.ready()
        return await channel.get_underlay_channel()

    @staticmethod
    async def _confirmed(connection: AbstractRobustConnection) -> AbstractRobustChannel:
        channel = await connection.channel(on_return_raises=True)
        assert isinstance(channel, AbstractRobustChannel)
        return channel

    async def _forget(self) -> None:
        """Drops a connection that failed outright; the next send opens a new one."""
        async with self._lock:
            connection, self._connection = self._connection, None
            self._channels = ()
        if connection is not None:
            await connection.close()

    async def close(self) -> None:
        await self._forget()


def _returned(exc: aiormq.exceptions.PublishError) -> str:
    frame = exc.frame
    code, text = getattr(frame, "reply_code", None), getattr(frame, "reply_text", "")
    return f"was returned by the broker ({code} {text}): no queue is bound to take it"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
