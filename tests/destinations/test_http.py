"""The ``url`` destination against real HTTP(S) servers on loopback ports."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from tests.conftest import free_port

from hookgate.destinations.base import Sender
from hookgate.destinations.http import HttpSender
from hookgate.domain.deliveries import Delivery, State
from hookgate.domain.destinations import HttpTarget
from hookgate.domain.forwarding import RESPONSE_HEAD, Reply

HUGE = 10 * 1024 * 1024
SIGNATURE = "sha256=6f1ed002ab5595859014ebf0951522d9"


def delivery(
    *,
    method: str = "POST",
    path: str = "/",
    query: str = "",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b'{"order": 7}',
) -> Delivery:
    return Delivery(
        id="0189f0c2a8e04b7a9d1e000000000001",
        request_id="req-9",
        flow_id="FLOWIDFLOWIDFLOWIDFLOW",
        state=State.LEASED,
        attempts=1,
        next_at=0.0,
        received_at=1_700_000_000.0,
        method=method,
        path=path,
        query=query,
        headers=headers if headers is not None else [("content-type", "application/json")],
        body=body,
        source="192.0.2.7",
    )


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    peer: object
    """The client's address and port: one per TCP connection."""

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


@dataclass
class Server:
    """An aiohttp server recording what it receives; the last path segment picks an answer."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    huge_ended: asyncio.Event = field(default_factory=asyncio.Event)
    huge_sent: int = 0
    huge_broken: bool = False

    async def handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(
            Seen(
                method=request.method,
                target=request.raw_path,
                headers=[(k.decode(), v.decode()) for k, v in request.raw_headers],
                body=await request.read(),
                peer=peer,
            )
        )
        last = request.path.rsplit("/", 1)[-1]
        if last == "redirect":
            return web.Response(status=302, headers={"Location": "/landed"})
        if last == "busy":
            return web.Response(status=429, headers={"Retry-After": "7"}, text="slow down")
        if last == "cookie":
            return web.Response(headers={"Set-Cookie": "session=s3cret; Path=/"}, text="ok")
        if last == "medium":
            return web.Response(body=b"m" * 5000)
        if last == "huge":
            return await self.huge(request)
        return web.Response(text=f"got {request.method}", headers={"X-Answer": "yes"})

    async def huge(self, request: web.Request) -> web.StreamResponse:
        """10 MB, written as fast as the client reads it; whether it all went out is recorded."""
        response = web.StreamResponse(headers={"Content-Length": str(HUGE)})
        chunk = bytes(range(256)) * 256
        try:
            await response.prepare(request)
            while self.huge_sent < HUGE:
                await response.write(chunk)
                self.huge_sent += len(chunk)
        except (ConnectionError, asyncio.CancelledError):
            self.huge_broken = True
            raise
        finally:
            self.huge_ended.set()
        return response


Serve = Callable[..., Awaitable[Server]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a recording server, over TLS when given a context; all are stopped afterwards."""
    runners: list[web.AppRunner] = []

    async def start(path: str = "/", tls: ssl.SSLContext | None = None) -> Server:
        server = Server()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", server.handle)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        port = runner.addresses[0][1]
        server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def senders() -> AsyncIterator[Callable[..., HttpSender]]:
    """Make senders; each is closed afterwards."""
    made: list[HttpSender] = []

    def make(
        url: str,
        *,
        shape: str = "raw",
        headers: dict[str, str] | None = None,
        verify_tls: bool = True,
    ) -> HttpSender:
        target = HttpTarget(url=url, headers=headers or {}, verify_tls=verify_tls)
        sender = HttpSender("orders", "FLOWIDFLOWIDFLOWIDFLOW", target, shape)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        await sender.close()


def test_it_is_a_sender() -> None:
    sender: Sender = HttpSender("f", "id", HttpTarget(url="http://127.0.0.1/"), "raw")
    assert sender.kind == "url"


# What the endpoint receives ----------------------------------------------------------------


async def test_the_request_arrives_as_the_caller_sent_it(
    serve: Serve, senders: Callable[..., HttpSender]
) -> None:
    server = await serve("/hooks/in?token=abc")
    sender = senders(
        server.url, headers={"X-Custom": "from the destination", "X-Api-Key": "dest-key"}
    )
    caller = [
        ("Host", "caller.example"),
        ("Content-Type", "application/json"),
        ("X-Hub-Signature-256", SIGNATURE),
        ("x-custom", "from the caller"),
        ("Connection", "close"),
    ]
    reply = await sender.send(
        delivery(
            method="PUT",
            path="/orders/%C3%A9x",
            query="a=1&b=%20",
            headers=caller,
            body=b"\x00\xff",
        ),
        timeout=5,
    )

    assert (reply.status, reply.error, reply.head) == (200, None, b"got PUT")
    assert reply.header("x-answer") == "yes"
    [seen] = server.seen
    assert seen.method == "PUT"
    assert seen.target == "/hooks/in/orders/%C3%A9x?token=abc&a=1&b=%20"
    assert seen.body == b"\x00\xff"
    host = server.url.split("/")[2]
    assert seen.header("host") == [host]  # the destination's, not the caller's
    assert seen.header("x-hub-signature-256") == [SIGNATURE]
    assert seen.header("x-custom") == ["from the destination"]
    assert seen.header("x-api-key") == ["dest-key"]
    assert seen.header("x-request-id") == ["req-9"]
    assert seen.header("x-hookgate-flow") == ["FLOWIDFLOWIDFLOWIDFLOW"]
    assert seen.header("idempotency-key") == ["0189f0c2a8e04b7a9d1e000000000001"]
    assert seen.header("x-forwarded-host") == ["caller.example"]
    assert seen.header("content-length") == ["2"]
    # Nothing of the client's own, and nothing hop-by-hop of the caller's.
    for name in ("user-agent", "accept", "accept-encoding", "connection", "cookie"):
        assert seen.header(name) == [], name


@pytest.mark.parametrize(
    ("base", "path", "query", "expected"),
    [
        ("/", "/", "", "/"),
        ("/", "/a/b", "x=1", "/a/b?x=1"),
        ("/hooks", "/", "", "/hooks"),
        ("/hooks/", "/", "x=1", "/hooks/?x=1"),
        ("/hooks/", "/a/", "", "/hooks/a/"),
        ("/hooks?k=v", "/a", "x=1", "/hooks/a?k=v&x=1"),
    ],
)
async def test_the_sub_path_and_query_follow_the_url(
    serve: Serve,
    senders: Callable[..., HttpSender],
    base: str,
    path: str,
    query: str,
    expected: str,
) -> None:
    server = await serve(base)
    reply = await senders(server.url).send(delivery(path=path, query=query), timeout=5)
    assert reply.status == 200
    assert [s.target for s in server.seen] == [expected]


async def test_the_envelope_goes_to_the_url_itself(
    serve: Serve, senders: Callable[..., HttpSender]
) -> None:
    server = await serve("/oih/in")
    sender = senders(server.url, shape="envelope")
    reply = await sender.send(delivery(method="PATCH", path="/sub", query="q=1"), timeout=5)

    assert reply.status == 200
    [seen] = server.seen
    assert (seen.method, seen.target) == ("POST", "/oih/in")
    assert seen.header("content-type") == ["application/json"]
    message = json.loads(seen.body)
    assert (message["method"], message["data"]) == ("PATCH", {"order": 7})


async def test_connections_are_reused(serve: Serve, senders: Callable[..., HttpSender]) -> None:
    server = await serve()
    sender = senders(server.url)
    for _ in range(50):
        assert (await sender.send(delivery(), timeout=5)).status == 200
    assert len(server.seen) == 50
    assert len({s.peer for s in server.seen}) == 1


async def test_a_send_after_close_opens_a_connection_again(
    serve: Serve, senders: Callable[..., HttpSender]
) -> None:
    server = await serve()
    sender = senders(server.url)
    assert (await sender.send(delivery(), timeout=5)).status == 200
    await sender.close()
    assert (await sender.send(delivery(), timeout=5)).status == 200
    assert len({s.peer for s in server.seen}) == 2


async def test_cookies_from_an_answer_are_not_sent_on(
    serve: Serve, senders: Callable[..., HttpSender]
) -> None:
    server = await serve()
    sender = senders(server.url)
    assert (await sender.send(delivery(path="/cookie"), timeout=5)).header("set-cookie")
    assert (await sender.send(delivery(), timeout=5)).status == 200
    assert [s.header("cookie") for s in server.seen] == [[], []]


# The answer ----------------------------------------------------------------------------------


async def test_a_redirect_is_the_answer(serve: Serve, senders: Callable[..., HttpSender]) -> None:
    server = await serve()
    reply = await senders(server.url).send(delivery(path="/redirect"), timeout=5)
    assert (reply.status, reply.header("location")) == (302, "/landed")
    assert [s.target for s in server.seen] == ["/redirect"]


async def test_a_429_keeps_its_retry_after(
    serve: Serve, senders: Callable[..., HttpSender]
) -> None:
    server = await serve()
    reply = await senders(server.url).send(delivery(path="/busy"), timeout=5)
    assert (reply.status, reply.header("Retry-After"), reply.head) == (429, "7", b"slow down")
    assert not reply.timed_out


async def test_a_huge_answer_is_cut_after_its_head(
    serve: Serve, senders: Callable[..., HttpSender]
) -> None:
    server = await serve()
    reply = await senders(server.url).send(delivery(path="/huge"), timeout=30)

    assert (reply.status, reply.error) == (200, None)
    assert reply.head == (bytes(range(256)) * 4)[:RESPONSE_HEAD]
    assert reply.header("content-length") == str(HUGE)
    async with asyncio.timeout(10):
        await server.huge_ended.wait()
    assert server.huge_broken  # the connection was closed before the body was all sent
    assert server.huge_sent < HUGE


async def test_a_small_answer_past_its_head_keeps_the_connection(
    serve: Serve, senders: Callable[..., HttpSender]
) -> None:
    server = await serve()
    sender = senders(server.url)
    for _ in range(3):
        reply = await sender.send(delivery(path="/medium"), timeout=5)
        assert (reply.status, reply.head) == (200, b"m" * RESPONSE_HEAD)
    assert len({s.peer for s in server.seen}) == 1


# Failures come back as replies ----------------------------------------------------------------


async def test_an_endpoint_that_never_answers_times_out(
    senders: Callable[..., HttpSender],
) -> None:
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reply = await senders(f"http://127.0.0.1:{port}/").send(delivery(), timeout=0.5)
    finally:
        server.close()
    assert accepted.is_set()
    assert reply == Reply(
        status=None,
        error=f"127.0.0.1:{port}: no answer, timed out after 0.5s",
        timed_out=True,
    )


async def test_an_answer_that_stalls_times_out(senders: Callable[..., HttpSender]) -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nten bytes.")
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(stalls, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reply = await senders(f"http://127.0.0.1:{port}/").send(delivery(), timeout=0.5)
    finally:
        server.close()
    assert reply == Reply(
        status=None,
        error=f"127.0.0.1:{port}: its answer did not finish, timed out after 0.5s",
        timed_out=True,
    )


async def test_a_refused_connection_is_an_error(senders: Callable[..., HttpSender]) -> None:
    port = free_port()
    reply = await senders(f"http://127.0.0.1:{port}/x").send(delivery(), timeout=5)
    assert reply == Reply(status=None, error=f"connect refused to 127.0.0.1:{port}")


async def test_an_unknown_host_is_an_error(senders: Callable[..., HttpSender]) -> None:
    reply = await senders("http://no-such-host.invalid/").send(delivery(), timeout=5)
    assert reply.status is None
    assert reply.error is not None and reply.error.startswith("cannot resolve no-such-host.invalid")


# TLS -----------------------------------------------------------------------------------------


@dataclass
class Certificates:
    ca: Path
    server: ssl.SSLContext


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA of our own and a certificate it issued for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hookgate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = folder / "server.pem"
    chain.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + leaf.public_bytes(serialization.Encoding.PEM)
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(chain)
    return Certificates(ca=ca_file, server=server)


async def test_an_untrusted_certificate_is_refused(
    serve: Serve,
    senders: Callable[..., HttpSender],
    certificates: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    server = await serve(tls=certificates.server)
    reply = await senders(server.url).send(delivery(), timeout=5)
    authority = server.url.split("/")[2]
    assert reply.status is None
    assert reply.error == (
        f"TLS certificate verify failed for {authority}: unable to get local issuer certificate"
    )
    assert server.seen == []


async def test_verify_tls_off_delivers(
    serve: Serve, senders: Callable[..., HttpSender], certificates: Certificates
) -> None:
    server = await serve(tls=certificates.server)
    reply = await senders(server.url, verify_tls=False).send(delivery(), timeout=5)
    assert (reply.status, reply.error) == (200, None)
    assert len(server.seen) == 1


async def test_a_ca_from_ssl_cert_file_is_trusted(
    serve: Serve,
    senders: Callable[..., HttpSender],
    certificates: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))
    server = await serve(tls=certificates.server)
    reply = await senders(server.url).send(delivery(), timeout=5)
    assert (reply.status, reply.error) == (200, None)
    assert len(server.seen) == 1
