"""External programs and ports: find them, or say exactly how to get them."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

from bench.errors import PortInUse, ToolMissing

DEBIAN_PACKAGES = {"wrk": "wrk", "nginx": "nginx-light", "prlimit": "util-linux"}
SEARCH_PATH = (os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin")


def install_command(tool: str) -> str:
    """The exact command that installs ``tool`` on this machine (Debian/Ubuntu, else Homebrew)."""
    package = DEBIAN_PACKAGES.get(tool, tool)
    if Path("/etc/debian_version").exists():
        sudo = "" if os.geteuid() == 0 else "sudo "
        return f"{sudo}apt-get install -y {package}"
    if shutil.which("brew"):
        return f"brew install {tool}"
    return f"apt-get install -y {package}  (Debian/Ubuntu) or  brew install {tool}  (macOS)"


def require(tool: str) -> str:
    """The path of ``tool``; :class:`ToolMissing` with the install command when absent.

    nginx lives in ``/usr/sbin``, not on a non-root user's ``PATH``, so that is searched too.
    """
    found = shutil.which(tool, path=os.pathsep.join(SEARCH_PATH))
    if found is None:
        raise ToolMissing(f"{tool} is not installed; install it with:  {install_command(tool)}")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just had free; :func:`ensure_free` checks again right before use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def ensure_free(port: int, host: str = "127.0.0.1") -> None:
    """Refuse a port something already listens on, so a load run never measures a stranger."""
    if listening(port, host):
        raise PortInUse(f"port {host}:{port} is already in use by another program")
