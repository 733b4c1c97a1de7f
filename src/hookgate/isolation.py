"""What keeps the gateway's secrets from flow code running on the same machine.

Two leaks, two fixes. A worker is *handed* nothing secret: it gets only ``INHERITED`` of the
gateway's environment. And a worker cannot *take* anything: a process may read
``/proc/<pid>/environ`` and ``/proc/<pid>/mem`` of every dumpable process of its own user, so
the gateway and its SQLite writer make themselves non-dumpable, after which only root can. Files
of the gateway's user stay readable to a worker of that user; ``worker.user`` is what keeps a
worker out of those (docs/security.md, "Worker isolation").
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_DUMPABLE = 4
# The gateway's variables a child process sees (never its secrets), besides ``LC_*``.
INHERITED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "TZ",
        "TMPDIR",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)


def inherited_environment() -> dict[str, str]:
    """The part of this process's environment that child processes may see."""
    return {k: v for k, v in os.environ.items() if k in INHERITED or k.startswith("LC_")}


def make_undumpable() -> str | None:
    """Linux: no other non-root process may read this one's environ, memory or file descriptors
    (and it leaves no core dump). The flag survives fork, so children that do not exec keep it;
    a program started with exec is dumpable again. Elsewhere: nothing to do.

    Returns why it failed, else None. No logging here: the SQLite writer imports this module
    and must stay small (it imports almost nothing else)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        return os.strerror(ctypes.get_errno())
    return None
