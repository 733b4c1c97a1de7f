"""A worker process: the user it runs as, how it is launched, signalled and seen to listen."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import pwd
import shutil
import signal
import socket
import sys
import time
from typing import NamedTuple

from hookgate import isolation
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import Flow, FlowSpec
from hookgate.errors import ConfigError, WorkerStartFailed

PYTHON_NAMES = ("python", "python3")
# util-linux's setpriv starts every worker: so that it dies with the gateway, even on kill -9
# (Linux parent-death signal), and as ``worker.user`` (the event loop cannot switch users).
SETPRIV = shutil.which("setpriv")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Account(NamedTuple):
    """The user a flow's workers run as (``worker.user``)."""

    name: str
    uid: int
    gid: int
    groups: list[int]
    home: str

    def switch(self) -> list[str]:
        """setpriv's options to become this user; none if the gateway is this user already."""
        if self.uid == os.geteuid():
            return []
        groups = ",".join(str(gid) for gid in self.groups)
        return [f"--reuid={self.uid}", f"--regid={self.gid}", f"--groups={groups}"]


def account(user: str | int) -> Account:
    """Look ``worker.user`` up; ConfigError if it is unknown or this process cannot become it."""
    try:
        numeric = isinstance(user, int) or user.isdigit()
        entry = pwd.getpwuid(int(user)) if numeric else pwd.getpwnam(str(user))
    except KeyError:
        raise ConfigError(f"field worker.user: no user {user!r} on this machine") from None
    if os.geteuid() not in (0, entry.pw_uid):
        raise ConfigError(
            f"field worker.user: starting workers as {entry.pw_name!r} needs a gateway "
            f"running as root (it runs as uid {os.geteuid()})"
        )
    if SETPRIV is None and entry.pw_uid != os.geteuid():
        raise ConfigError("field worker.user: switching users needs setpriv (util-linux)")
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)


def validate_flow(spec: FlowSpec) -> list[str]:
    """Refuse, when the flow is applied, what would make every start of its workers fail;
    return warnings for what may still be fixed on this machine (a program not installed yet)."""
    if spec.workload.user is not None:
        try:
            account(spec.workload.user)
        except ConfigError as exc:
            raise ConfigError(f"flow {spec.name!r}: {exc}") from None
    command = interpreted(spec.workload.command)
    if command and shutil.which(command[0]) is None:
        return [
            f"flow {spec.name!r}: worker command {command[0]!r} is not found on the gateway's "
            "PATH; its workers cannot start until it is installed"
        ]
    return []


def interpreted(command: list[str] | None) -> list[str]:
    """``python`` and ``python3`` mean the gateway's own interpreter: a worker using the SDK
    then finds it without an activated virtualenv (a pip-only install works as is)."""
    if command and command[0] in PYTHON_NAMES:
        return [sys.executable, *command[1:]]
    return command or []


class Worker:
    """One process of a flow; ``ready`` once it accepts connections on its port."""

    def __init__(self, *, flow: Flow, process: asyncio.subprocess.Process, port: int) -> None:
        self.flow_id = flow.id
        self.spec = flow.spec
        self.process = process
        self.port = port
        self.ready = False
        self.draining = False
        self.started_at = time.monotonic()
        self.endpoint = Endpoint("127.0.0.1", port, flow.spec.slots)
        self.logs: list[asyncio.Task[None]] = []
        self.tail: collections.deque[str] = collections.deque(maxlen=3)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None


def launch(spec: FlowSpec) -> tuple[dict[str, str], list[str]]:
    """A worker's environment before ``worker.env``, and the setpriv prefix that starts it."""
    env = isolation.inherited_environment()
    switch: list[str] = []
    if spec.workload.user is not None:
        try:
            user = account(spec.workload.user)
        except ConfigError as exc:
            raise WorkerStartFailed(str(exc)) from None
        env |= {"HOME": user.home, "USER": user.name, "LOGNAME": user.name}
        switch = user.switch()
    return env, [SETPRIV, *switch, "--pdeathsig", "KILL", "--"] if SETPRIV else []


def signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def probe(port: int, path: str | None) -> bool:
    """True once the port accepts a connection (and ``path`` answers 2xx, when given)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        if path is None:
            return True
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
        )
        status_line = await asyncio.wait_for(reader.readline(), 2.0)
        parts = status_line.split()
        return len(parts) >= 2 and parts[1].startswith(b"2")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
