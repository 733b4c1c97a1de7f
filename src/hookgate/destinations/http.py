"""The ``url`` destination: a delivery sent to an existing HTTP(S) endpoint with httpx.

The endpoint gets the request as a worker would (``domain.forwarding.outbound``): the caller's
method, headers (signatures included, untouched) and body, the flow's sub-path and query appended
to the URL's path, Hookgate's ``X-Request-Id``/``X-Hookgate-*``/``Idempotency-Key`` added, and
the destination's own ``headers`` over the caller's same-named ones. Nothing of the client's own
is added: no ``User-Agent`` or ``Accept-Encoding`` the caller did not send, no cookies kept from
earlier answers, and redirects are answers (a 3xx is not followed, so the request and its
credentials never reach a host the flow's author did not name).

TLS is verified against certifi's roots, or ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set (httpx's
``trust_env``, which also applies ``HTTPS_PROXY``/``NO_PROXY``); ``verify_tls: false`` turns it
off. Only the first ``RESPONSE_HEAD`` bytes of an answer are kept; a small answer is read to its
end so its connection is reused, a large one is cut off with its connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncGenerator, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import cast

import httpx

from hookgate.domain.deliveries import Delivery
from hookgate.domain.destinations import HttpTarget
from hookgate.domain.forwarding import RESPONSE_HEAD, Outbound, Reply, outbound

DRAIN = 64 * 1024
"""An answer up to this size is read to its end (and the rest dropped) to keep its connection."""
KEEP_IDLE = 4.0
"""Seconds an idle connection stays pooled: under the 5 s that Node.js and uvicorn keep theirs,
so a delivery rarely goes out on a connection the endpoint is closing at that moment."""
KEEP_CONNECTIONS = 32
CLIENT_DEFAULTS = ("accept", "accept-encoding", "connection", "user-agent")
"""Headers httpx adds to every request; the endpoint gets the caller's, or none."""
PORTS = {"http": 80, "https": 443}


class HttpSender:
    """One flow's ``url`` destination: one httpx client (a keep-alive pool) per sender."""

    kind = "url"

    def __init__(self, flow_name: str, flow_id: str, target: HttpTarget, shape: str) -> None:
        self.flow_name = flow_name
        self.flow_id = flow_id
        self.target = target
        self.shape = shape
        self._url = httpx.URL(target.url)
        host = self._url.host
        port = self._url.port or PORTS[self._url.scheme]
        self._authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._client: httpx.AsyncClient | None = None

    def _connect(self) -> httpx.AsyncClient:
        """The client, opened on first use (again after ``close``)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=self.target.verify_tls,
                follow_redirects=False,
                limits=httpx.Limits(
                    max_connections=None,  # the dispatcher bounds deliveries in flight
                    max_keepalive_connections=KEEP_CONNECTIONS,
                    keepalive_expiry=KEEP_IDLE,
                ),
                cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
            )
            for name in CLIENT_DEFAULTS:
                del self._client.headers[name]
        return self._client

    def _request(self, delivery: Delivery, timeout: float) -> httpx.Request:
        """The request a delivery becomes: the URL with its sub-path and query, and headers."""
        sent = outbound(delivery, self.shape)
        own = {name.lower().encode() for name in self.target.headers}
        headers = [(k, v) for k, v in sent.headers if k.lower() not in own]
        headers += [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in self.target.headers.items()
        ]
        return self._connect().build_request(
            sent.method,
            _join(self._url, sent),
            headers=headers,
            content=sent.body,
            timeout=timeout,  # each step's; the whole exchange has the same deadline in send
        )

    async def send(self, delivery: Delivery, *, timeout: float) -> Reply:
        try:
            request = self._request(delivery, timeout)
        except (httpx.InvalidURL, UnicodeEncodeError) as exc:
            return Reply(status=None, error=f"cannot send to {self._authority}: {exc}")
        except OSError as exc:  # the TLS context: SSL_CERT_FILE or SSL_CERT_DIR unreadable
            return Reply(status=None, error=f"cannot load TLS CA certificates: {exc}")
        answered = False
        try:
            async with asyncio.timeout(timeout):
                response = await self._connect().send(request, stream=True)
                answered = True
                try:
                    head = await _head(response)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            waited = "its answer did not finish" if answered else "no answer"
            return Reply(
                status=None,
                error=f"{self._authority}: {waited}, timed out after {timeout:g}s",
                timed_out=True,
            )
        except httpx.TransportError as exc:
            return Reply(status=None, error=self._explain(exc))
        return Reply(
            status=response.status_code,
            headers=[
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in response.headers.raw
            ],
            head=head,
        )

    def _explain(self, exc: httpx.TransportError) -> str:
        """The cause under httpx's and anyio's wrappers, said for the attempt history."""
        where = self._authority
        for cause in _causes(exc):
            if isinstance(cause, ssl.SSLCertVerificationError):
                return f"TLS certificate verify failed for {where}: {cause.verify_message}"
            if isinstance(cause, ssl.SSLError):
                return f"TLS handshake with {where} failed: {cause.reason or cause}"
            if isinstance(cause, ConnectionRefusedError):
                return f"connect refused to {where}"
            if isinstance(cause, socket.gaierror):
                return f"cannot resolve {self._url.host}: {cause.strerror}"
        if isinstance(exc, httpx.ConnectError):
            return f"cannot connect to {where}: {exc}"
        if isinstance(exc, httpx.RemoteProtocolError):
            return f"invalid or broken-off answer from {where}: {exc}"
        return f"connection to {where} failed: {exc or type(exc).__name__}"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _join(base: httpx.URL, sent: Outbound) -> httpx.URL:
    """The destination URL's path with the delivery's sub-path after it, and both queries."""
    sub, _, query = sent.target.encode("latin-1").partition(b"?")
    root = base.raw_path.partition(b"?")[0]
    path = root if sub == b"/" else root.rstrip(b"/") + sub
    query = b"&".join(q for q in (base.query, query) if q)
    return base.copy_with(raw_path=path + (b"?" + query if query else b""))


async def _head(response: httpx.Response) -> bytes:
    """The answer's first ``RESPONSE_HEAD`` bytes, as sent (not decompressed); the rest is
    dropped as it arrives, up to ``DRAIN`` bytes, and then with the connection."""
    head = b""
    received = 0
    raw = cast(AsyncGenerator[bytes, None], response.aiter_raw())  # typed as an iterator
    async with contextlib.aclosing(raw) as chunks:
        async for chunk in chunks:
            if len(head) < RESPONSE_HEAD:
                head += chunk[: RESPONSE_HEAD - len(head)]
            received += len(chunk)
            if received > DRAIN:
                break
    return head


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``'s causes and contexts, and the members of any exception group among them."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
