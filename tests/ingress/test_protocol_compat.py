"""The edge protocol subclasses uvicorn's private httptools protocol: if a uvicorn release
renames what it relies on, this fails loudly instead of the limits silently not applying."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import uvicorn
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from hookgate.domain.limits import ListenerLimits
from hookgate.ingress.protocol import LINGER, Edge, EdgeProtocol, Phase

HOOKS = [
    "connection_made",
    "connection_lost",
    "data_received",
    "on_message_begin",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "on_response_complete",
    "send_400_response",
]


def test_uvicorn_still_has_every_hook_the_edge_overrides() -> None:
    for name in HOOKS:
        assert callable(getattr(HttpToolsProtocol, name, None)), name
        ours = inspect.signature(getattr(EdgeProtocol, name)).parameters
        theirs = inspect.signature(getattr(HttpToolsProtocol, name)).parameters
        assert list(ours) == list(theirs), name
    assert callable(getattr(HttpToolsProtocol, "_unset_keepalive_if_required", None))
    assert {"read_paused", "write_paused"} <= set(vars(FlowControl(_Transport())))
    assert "response_started" in inspect.getsource(RequestResponseCycle.__init__)
    major, minor = (int(part) for part in uvicorn.__version__.split(".")[:2])
    assert (0, 34) <= (major, minor) < (0, 56), "update the pin in pyproject.toml after checking"


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.eof = False

    def write(self, data: Any) -> None:
        self.written += bytes(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.9", 5000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_phases_follow_a_request_through_uvicorns_callbacks() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    edge = Edge(ListenerLimits(), name="test")
    config = uvicorn.Config(app, lifespan="off", log_config=None)
    state = uvicorn.server.ServerState()
    protocol = edge.protocol()(config=config, server_state=state, app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    assert protocol.phase is Phase.IDLE and protocol in edge.waiting
    protocol.data_received(b"POST / HTTP/1.1\r\nhost: x\r\n")
    assert protocol.phase is Phase.HEAD
    protocol.data_received(b"content-length: 4\r\n\r\nab")
    assert protocol.phase is Phase.BODY and protocol not in edge.waiting
    protocol.data_received(b"cd")
    assert protocol.phase is Phase.BUSY and protocol.body_bytes == 4
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.written.startswith(b"HTTP/1.1 204 ")
    assert protocol.phase is Phase.IDLE and protocol in edge.waiting
    protocol.connection_lost(None)
    assert not edge.open and not edge.by_address


async def test_an_answer_before_the_body_lingers_counted_and_is_evicted_first() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    edge = Edge(ListenerLimits(max_connections=2), name="test")
    config = uvicorn.Config(app, lifespan="off", log_config=None)
    state = uvicorn.server.ServerState()
    factory = edge.protocol()
    early = factory(config=config, server_state=state, app_state={})
    transport = _Transport()
    early.connection_made(transport)
    early.data_received(b"POST / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n")
    early.data_received(b"content-length: 100\r\n\r\nab")
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.written.startswith(b"HTTP/1.1 413 ")
    assert transport.eof and not transport.closed  # half-closed: the rest is read and dropped
    assert early.phase is Phase.LINGER and early in edge.lingering
    assert early.timeout_keep_alive_task is None  # the sweep alone ends the linger
    early.data_received(b"x" * 98)
    assert not transport.closed and edge.by_address == {"127.0.0.9": 1}
    early.check(early.since + LINGER / 2)
    assert not transport.closed
    early.check(early.since + LINGER + 0.1)
    assert transport.closed
    early.connection_lost(None)
    assert not edge.open and not edge.by_address

    lingering = factory(config=config, server_state=state, app_state={})
    lingering.connection_made(lingering_transport := _Transport())
    lingering.data_received(b"NOT HTTP\r\n\r\n")
    assert lingering_transport.written.startswith(b"HTTP/1.1 400 ") and lingering_transport.eof
    idle = factory(config=config, server_state=state, app_state={})
    idle.connection_made(idle_transport := _Transport())
    newcomer = factory(config=config, server_state=state, app_state={})
    newcomer.connection_made(_Transport())  # over the cap of 2: the lingering one goes first
    assert lingering_transport.closed and not idle_transport.closed
    assert lingering not in edge.open and {idle, newcomer} <= edge.open
