"""The NATS JetStream destination: a delivery is done once the stream has stored it.

Why nats-py: it is the official client and speaks JetStream. Its publish waits for the stream's
acknowledgement; ``Nats-Msg-Id`` (the delivery id) lets the stream drop a repeat within its
duplicate window, and consumers may dedupe by it beyond that (delivery is at least once).
The connection does not reconnect in the background: a lost one is replaced on the next send,
so a send never waits on an outage longer than it takes to be refused.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from hookgate.destinations.base import CONFIRMED
from hookgate.destinations.message import publication
from hookgate.domain.deliveries import Delivery
from hookgate.domain.destinations import NatsTarget
from hookgate.domain.forwarding import Reply


class NatsSender:
    """Publishes each delivery to ``target``'s subject and waits for JetStream's ack."""

    kind = "nats"

    def __init__(self, flow_name: str, flow_id: str, target: NatsTarget, shape: str) -> None:
        self.flow_name = flow_name
        self.flow_id = flow_id
        self.target = target
        self.shape = shape
        parts = urlsplit(target.url)
        self.address = f"{parts.hostname or '127.0.0.1'}:{parts.port or 4222}"
        """Where the server is, for errors: the URL without its credentials."""
        self._client: Client | None = None
        self._stream: JetStreamContext | None = None
        self._lock = asyncio.Lock()
        self._last_error: Exception | None = None

    async def send(self, delivery: Delivery, *, timeout: float) -> Reply:
        message = publication(delivery, preset=self.target.preset, shape=self.shape)
        headers = {"Nats-Msg-Id": delivery.id, **message.headers}
        if message.content_type is not None:
            headers["content-type"] = message.content_type
        subject = self.target.subject
        try:
            async with asyncio.timeout(timeout):
                stream = await self._open(timeout)
                ack = await stream.publish(subject, message.body, headers=headers, timeout=timeout)
        except (TimeoutError, nats.errors.TimeoutError):
            return Reply(
                status=None,
                error=f"NATS at {self.address} did not acknowledge the publish to {subject!r}"
                f" within {timeout:g}s",
                timed_out=True,
            )
        except nats.js.errors.NoStreamResponseError:
            return Reply(status=None, error=f"no JetStream stream takes subject {subject!r}")
        except nats.js.errors.APIError as exc:
            return Reply(status=None, error=f"JetStream refused the publish to {subject!r}: {exc}")
        except (OSError, nats.errors.Error) as exc:
            await self._forget()
            cause: Exception = exc
            if isinstance(exc, nats.errors.NoServersError) and self._last_error is not None:
                cause = self._last_error
            reason = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
            return Reply(status=None, error=f"NATS at {self.address}: {reason}")
        head = f"stored in stream {ack.stream!r} as sequence {ack.seq}"
        if ack.duplicate:
            head += " (a duplicate: stored before, within the stream's duplicate window)"
        return Reply(status=CONFIRMED, head=head.encode())

    async def _open(self, timeout: float) -> JetStreamContext:
        async with self._lock:
            if self._stream is None or self._client is None or self._client.is_closed:
                self._client = await nats.connect(
                    self.target.url,
                    name=f"hookgate {self.flow_name}",
                    connect_timeout=timeout,
                    allow_reconnect=False,
                    # nats-py tries a server once more before it gives up; without a pause.
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0,
                    error_cb=self._note,
                )
                self._stream = self._client.jetstream()
            return self._stream

    async def _forget(self) -> None:
        """Drops a connection that failed; the next send opens a new one."""
        async with self._lock:
            client, self._client, self._stream = self._client, None, None
        if client is not None and not client.is_closed:
            await client.close()

    async def close(self) -> None:
        await self._forget()

    async def _note(self, exc: Exception) -> None:
        """nats-py logs each connection error at ERROR by default, and answers a failed
        connect with "no servers available": the reason it kept becomes the attempt's error."""
        self._last_error = exc
