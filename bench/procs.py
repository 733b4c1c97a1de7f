"""Servers the harness starts: a child process with its own log, readiness, usage and a clean stop.

Each server runs in its own session (process group), so whatever it starts — a gateway's workers —
is stopped with it, and nothing outside the group is ever signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from bench.errors import ServerDown
from bench.results import Usage

try:
    import psutil
except ImportError:  # the dev extra installs it; /proc does the same job on Linux
    psutil = None  # type: ignore[assignment]


class Service:
    def __init__(
        self,
        *,
        name: str,
        command: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.log = log
        self.env = env
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise ServerDown(f"{self.name} was never started")
        return self._process.pid

    def start(self) -> Service:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    def wait_ready(self, probe: Callable[[], bool], *, timeout: float) -> float:
        """Seconds until ``probe()`` is true; :class:`ServerDown` if the process exits or stalls."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if probe():
                return time.monotonic() - started
            time.sleep(0.02)
        raise ServerDown(
            f"{self.name} did not become ready within {timeout:.0f} s; log {self.log}:\n"
            f"{self.log_tail()}"
        )

    def check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise ServerDown(
                f"{self.name} exited with status {self._process.returncode}; log {self.log}:\n"
                f"{self.log_tail()}"
            )

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace``; then kill anything left in the group."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Meter:
    """CPU seconds spent between :meth:`start` and :meth:`stop` and peak RSS of one process and
    its store processes (the SQLite writer a gateway starts): the gateway's whole cost.

    ``tree`` counts every descendant instead (the flow's workers too), including processes
    started during the window; one that ended before :meth:`stop` is not counted."""

    def __init__(self, pid: int, *, tree: bool = False) -> None:
        self.pid = pid
        self.tree = tree
        self._cpu_at_start: dict[int, float] = {}

    def start(self) -> Meter:
        self._cpu_at_start = {p: cpu_seconds(p) for p in self._pids()}
        return self

    def stop(self) -> Usage:
        pids = [p for p in self._pids() if self.tree or p in self._cpu_at_start]
        return Usage(
            cpu_s=round(sum(cpu_seconds(p) - self._cpu_at_start.get(p, 0.0) for p in pids), 2),
            peak_rss_mb=round(sum(peak_rss_bytes(p) for p in pids) / 1024**2, 1),
        )

    def _pids(self) -> list[int]:
        if self.tree and psutil is not None:
            children = psutil.Process(self.pid).children(recursive=True)
            return [self.pid, *(c.pid for c in children)]
        return [self.pid, *store_processes(self.pid)]


def store_processes(pid: int) -> list[int]:
    """Children of ``pid`` running ``hookgate.store.*`` (not its workers)."""
    found = []
    for child in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (child / "stat").read_text().rsplit(")", 1)[1].split()
            command = (child / "cmdline").read_bytes().split(b"\0")
            if int(stat[1]) == pid and any(a.startswith(b"hookgate.store.") for a in command):
                found.append(int(child.name))
    return found


def cpu_seconds(pid: int) -> float:
    if psutil is not None:
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    if psutil is not None:
        return int(psutil.Process(pid).memory_info().rss)
    return _status_kb(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The kernel's high-water mark (VmHWM) where there is one, else the RSS now."""
    try:
        return _status_kb(pid, "VmHWM") * 1024
    except (OSError, KeyError):
        return rss_bytes(pid)


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == field:
            return int(value.split()[0])
    raise KeyError(field)
