"""Settings: the only module that reads the environment and files for configuration.

Precedence: command-line option, then ``HOOKGATE_*`` environment variable, then default.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from hookgate.domain.limits import ListenerLimits
from hookgate.domain.units import ByteSize, Duration
from hookgate.errors import ConfigError

TOKEN_FILE = "admin-token"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Address(msgspec.Struct, frozen=True):
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, what: str) -> Address:
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = "127.0.0.1", text
        host = host.strip("[]") or "0.0.0.0"
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"{what}: expected HOST:PORT, got {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Settings(msgspec.Struct, kw_only=True):
    data_dir: Path
    listen: Address
    admin_listen: Address
    database: str
    public_url: str
    max_queued_bytes: int = 1024**3
    max_sync_waiters: int = 10_000
    disk_reserve: int = 64 * 1024**2
    synchronous: str = "FULL"
    runtime: str = "local"
    namespace: str = "default"
    owner: str | None = None
    flows_file: Path | None = None
    limits: ListenerLimits = ListenerLimits()
    max_connections: int | None = None
    """None: derived from the open-file limit at start (``limits.connections_for``)."""
    trusted_proxies: tuple[Network, ...] = ()


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"HOOKGATE_{name}", default)


def load_settings(
    *,
    data_dir: str | None = None,
    listen: str | None = None,
    admin_listen: str | None = None,
    database: str | None = None,
    public_url: str | None = None,
    flows_file: str | None = None,
    runtime: str | None = None,
) -> Settings:
    directory = Path(data_dir or env("DATA_DIR") or "./hookgate-data").resolve()
    public = Address.parse(listen or env("LISTEN") or "127.0.0.1:8080", what="--listen")
    admin = Address.parse(
        admin_listen or env("ADMIN_LISTEN") or "127.0.0.1:8081", what="--admin-listen"
    )
    db = database or env("DATABASE_URL") or f"sqlite://{directory / 'hookgate.db'}"
    host = "127.0.0.1" if public.host in ("0.0.0.0", "::") else public.host
    try:
        max_queued = ByteSize.parse(env("MAX_QUEUED_BYTES") or "1GiB")
    except ValueError as exc:
        raise ConfigError(f"HOOKGATE_MAX_QUEUED_BYTES: {exc}") from None
    waiters = env("MAX_SYNC_WAITERS") or "10000"
    if not (waiters.isascii() and waiters.isdigit()):
        raise ConfigError(f"HOOKGATE_MAX_SYNC_WAITERS must be a whole number ≥ 0, got {waiters!r}")
    try:
        reserve = ByteSize.parse(env("DISK_RESERVE") or "64MiB")
    except ValueError as exc:
        raise ConfigError(f"HOOKGATE_DISK_RESERVE: {exc}") from None
    synchronous = (env("SQLITE_SYNCHRONOUS") or "FULL").upper()
    if synchronous not in {"FULL", "NORMAL", "EXTRA", "OFF"}:
        raise ConfigError("HOOKGATE_SQLITE_SYNCHRONOUS must be FULL, EXTRA, NORMAL or OFF")
    max_connections = _setting("MAX_CONNECTIONS", None, _count)
    limits = ListenerLimits(
        head_timeout=_setting("HEAD_TIMEOUT", 10.0, Duration.parse),
        body_timeout=_setting("BODY_TIMEOUT", 10.0, Duration.parse),
        body_min_rate=_setting("BODY_MIN_RATE", 1024, ByteSize.parse),
        keep_alive=_setting("KEEP_ALIVE", 30.0, Duration.parse),
        max_connections_per_ip=_setting("MAX_CONNECTIONS_PER_IP", 256, _count),
        body_memory=_setting("BODY_MEMORY", 64 * 1024**2, ByteSize.parse),
    )
    kind = runtime or env("RUNTIME") or "local"
    if kind not in {"local", "kubernetes"}:
        raise ConfigError(f"--runtime must be 'local' or 'kubernetes', got {kind!r}")
    return Settings(
        trusted_proxies=networks(env("TRUSTED_PROXIES") or "", what="HOOKGATE_TRUSTED_PROXIES"),
        data_dir=directory,
        listen=public,
        admin_listen=admin,
        database=db,
        public_url=(public_url or env("PUBLIC_URL") or f"http://{host}:{public.port}").rstrip("/"),
        max_queued_bytes=max_queued,
        max_sync_waiters=int(waiters),
        disk_reserve=reserve,
        synchronous=synchronous,
        runtime=kind,
        namespace=env("NAMESPACE") or "default",
        owner=env("OWNER"),
        flows_file=Path(flows_file) if flows_file else None,
        limits=limits,
        max_connections=max_connections,
    )


def _setting(name: str, default: Any, parse: Callable[[str], Any]) -> Any:
    """``HOOKGATE_<name>`` parsed, or ``default``; a bad value names the variable."""
    text = env(name)
    if text is None or not text.strip():
        return default
    try:
        value = parse(text)
    except ValueError as exc:
        raise ConfigError(f"HOOKGATE_{name}: {exc}") from None
    if not value:
        raise ConfigError(f"HOOKGATE_{name}: must be above 0, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"expected a whole number, got {text!r}")
    return int(text)


def networks(text: str, *, what: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDRs (``10.0.0.0/8, ::1``); an address is a /32 or /128."""
    found = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{what}: {item!r} is not an IP address or CIDR") from None
    return tuple(found)


def prepare_data_dir(directory: Path) -> None:
    """Create the data directory and prove it is writable, with a message that says which."""
    try:
        # Readable by the gateway's user only: it holds the database and maybe the admin token.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = directory / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"data directory {directory} is not writable: {exc.strerror}") from None


def admin_token(directory: Path) -> tuple[str, bool]:
    """The admin token: ``HOOKGATE_ADMIN_TOKEN``, the stored one, or a new one (returned once).

    Returns the token and whether it was generated now (so the caller prints it once).
    """
    given = env("ADMIN_TOKEN")
    if given:
        return given, False
    path = directory / TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), False
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, True


def read_token(directory: Path) -> str | None:
    """The token a CLI should present: env, else the data directory's file, else None."""
    given = env("ADMIN_TOKEN")
    if given:
        return given
    path = directory / TOKEN_FILE
    try:
        return path.read_text().strip()
    except OSError:
        return None
