"""The listeners: sockets, the data directory's lock, and uvicorn behind the edge protocol.

Both listeners run uvicorn's httptools protocol wrapped by ``ingress.protocol.Edge``, so the
admin listener has the same bounded heads and deadlines as the public one. The open-file limit
is raised to its hard limit first, and the public connection cap derived from it, so that
``accept()`` never fails with ``EMFILE`` (asyncio then stops accepting for everyone).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import resource
import socket
from collections.abc import Callable, Generator
from pathlib import Path
from typing import IO, Any

import msgspec
import uvicorn

from hookgate import logs
from hookgate.auth.ip import parse_address
from hookgate.config import Address, Network, Settings
from hookgate.domain.limits import connections_for
from hookgate.errors import ConfigError
from hookgate.ingress.protocol import Edge

log = logs.get("hookgate")

PUBLIC_BACKLOG = 2048
ADMIN_BACKLOG = 128
# The admin listener serves operators and their consoles (each console holds one live stream):
# at most this many connections, and at most an eighth of the open-file limit.
ADMIN_CONNECTIONS = 512


class Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the gateway (it runs two of them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(address: Address, what: str, *, backlog: int) -> socket.socket:
    """Bind before serving so a port in use is one clear message, not a traceback."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{what} {address}: {exc.strerror}") from None
    sock.listen(backlog)
    return sock


def lock(directory: Path) -> IO[str]:
    """One gateway per data directory: SQLite's single writer lives in one process."""
    handle = (directory / "gateway.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(f"another gateway is running on data directory {directory}") from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def raise_file_limit() -> int:
    """Raise the soft open-file limit to the hard one; return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def edges(settings: Settings, on_close: Callable[[str, str], None]) -> tuple[Edge, Edge]:
    """The public and admin edges, with the public connection cap fitted to the file limit."""
    files = raise_file_limit()
    admin_cap = max(8, min(ADMIN_CONNECTIONS, files // 8))
    cap = settings.max_connections or connections_for(files - admin_cap)
    if cap > files - admin_cap:
        log.warning(
            "HOOKGATE_MAX_CONNECTIONS is above what the open-file limit allows",
            max_connections=cap,
            open_files=files,
        )
    public = msgspec.structs.replace(settings.limits, max_connections=cap)
    admin = msgspec.structs.replace(
        public, max_connections=admin_cap, max_connections_per_ip=admin_cap
    )
    trusted = _trusted(settings.trusted_proxies)
    return (
        Edge(public, name="public", trusted=trusted, on_close=lambda r: on_close("public", r)),
        Edge(admin, name="admin", on_close=lambda r: on_close("admin", r)),
    )


def _trusted(networks: tuple[Network, ...]) -> Callable[[str], bool]:
    if not networks:
        return lambda _address: False

    def trusted(address: str) -> bool:
        try:
            return any(parse_address(address) in n for n in networks)
        except ValueError:
            return False

    return trusted


def warn_if_exposed(address: Address) -> None:
    """The admin API holds every flow's configuration: say so loudly when it is not private."""
    try:
        loopback = ipaddress.ip_address(address.host).is_loopback
    except ValueError:
        loopback = address.host == "localhost"
    if not loopback:
        log.warning(
            "the admin listener is reachable from other hosts: it should stay on a loopback "
            "address or behind a private network, and the admin token is then all that "
            "protects it",
            admin=str(address),
        )


def config(app: Any, *, edge: Edge, backlog: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="none",
        http=edge.protocol(),
        ws="none",  # no WebSocket upgrades: an Upgrade header is an ordinary request
        proxy_headers=False,
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        backlog=backlog,
        timeout_keep_alive=max(1, int(edge.limits.keep_alive)),
        timeout_graceful_shutdown=30,
    )
