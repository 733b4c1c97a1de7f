"""Workers as local processes, reconciled per flow like a tiny Kubernetes controller.

For each flow a task compares what runs with what is wanted (``scale``) and converges:
start missing workers a few at a time (and wait until they accept connections), restart
crashed ones with capped exponential backoff, roll out a changed spec (new workers ready first,
then the old ones drained and stopped), and stop surplus ones with SIGTERM, then SIGKILL after
a grace. The task ends only when the flow is removed: no failure, however often repeated, and
no unexpected error stops it, so a fixed flow always recovers.
"""

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
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from hookgate import isolation, logs
from hookgate.domain.backoff import RestartBackoff
from hookgate.domain.flows import MAX_WORKERS, Flow, FlowSpec, Mode
from hookgate.errors import ConfigError, WorkerStartFailed
from hookgate.runtime.base import Endpoint, FlowState, WorkerStatus

log = logs.get("hookgate.runtime")

PYTHON_NAMES = ("python", "python3")
START_TIMEOUT = 15.0
STOP_GRACE = 5.0
RESTART = RestartBackoff()
# Workers of one flow started at the same time; the rest follow as these get ready.
START_BATCH = 4
POLL = 0.005
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


_Flow = FlowState[Worker]


class LocalRuntime:
    shares_cpu = True

    def __init__(
        self,
        *,
        pid_file: Path | None = None,
        start_timeout: float = START_TIMEOUT,
        stop_grace: float = STOP_GRACE,
        restart: RestartBackoff = RESTART,
    ) -> None:
        self.pid_file = pid_file
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.restart = restart
        self.inflight: Callable[[Endpoint], int] = lambda _endpoint: 0
        self.on_ready: Callable[[str, float], None] = lambda _flow_id, _seconds: None
        self.on_failed: Callable[[str, str], None] = lambda _flow_id, _reason: None
        # A worker could not start (as opposed to one that ran and exited).
        self.on_start_failed: Callable[[str, str], None] = lambda _flow_id, _reason: None
        self._flows: dict[str, _Flow] = {}

    async def start(self) -> None:
        self._kill_orphans()

    async def close(self) -> None:
        flows = list(self._flows)
        await asyncio.gather(*(self.remove(flow_id) for flow_id in flows))

    async def scale(self, flow: Flow, workers: int) -> None:
        if flow.mode is Mode.ASYNC:
            workers = min(workers, flow.spec.max_workers)
        workers = min(workers, MAX_WORKERS)  # a flow stored before the limit existed
        state = self._flows.get(flow.id)
        if state is None:
            state = self._flows[flow.id] = _Flow(flow)
            state.task = asyncio.create_task(self._reconcile(state), name=f"flow-{flow.name}")
        if state.flow.spec != flow.spec:
            state.failures = 0
            state.not_before = 0.0
        state.flow = flow
        state.desired = workers
        state.status.desired = workers
        state.changed.set()

    async def remove(self, flow_id: str) -> None:
        state = self._flows.pop(flow_id, None)
        if state is None:
            return
        if state.task is not None:
            state.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.task
        await asyncio.gather(*(self._stop(w) for w in state.workers))
        self._write_pids()

    def endpoints(self, flow_id: str) -> list[Endpoint]:
        state = self._flows.get(flow_id)
        if state is None:
            return []
        return [w.endpoint for w in state.workers if w.ready and not w.draining and w.alive]

    def validate(self, spec: FlowSpec) -> list[str]:
        if not spec.workload.command:
            raise ConfigError(
                f"flow {spec.name!r}: field worker.command is needed by the local runtime"
            )
        return validate_flow(spec)

    def status(self, flow_id: str) -> WorkerStatus:
        state = self._flows.get(flow_id)
        return state.status if state is not None else WorkerStatus()

    # reconciliation ----------------------------------------------------------------------
    async def _reconcile(self, state: _Flow) -> None:
        """Converge until cancelled by ``remove``; an error is logged and retried with backoff."""
        while True:
            state.changed.clear()
            try:
                await self._step(state)
                self._report(state)
            except Exception as exc:
                log.error("flow reconciliation failed", flow=state.flow.name, error=repr(exc))
                self._failed(state, f"internal error: {exc!r}")
            delay = 1.0
            if state.not_before > time.monotonic():
                delay = min(delay, state.not_before - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.0)):
                    await state.changed.wait()

    async def _step(self, state: _Flow) -> None:
        for worker in [w for w in state.workers if not w.alive]:
            state.workers.remove(worker)
            await self._exited(state, worker)
        current = [w for w in state.workers if w.spec == state.flow.spec and not w.draining]
        outdated = [w for w in state.workers if w not in current]
        missing = state.desired - len(current)
        if missing > 0 and time.monotonic() >= state.not_before:
            batch = min(missing, START_BATCH)
            await asyncio.gather(*(self._start(state) for _ in range(batch)))
            if missing > batch:
                state.changed.set()  # the next batch at once (unless one failed: backoff)
            current = [w for w in state.workers if w.spec == state.flow.spec and not w.draining]
        surplus = current[state.desired :] if len(current) > state.desired else []
        if sum(w.ready for w in current) >= state.desired or state.desired == 0:
            surplus += outdated
        if surplus:
            await asyncio.gather(*(self._retire(state, w) for w in surplus))

    def _report(self, state: _Flow) -> None:
        state.status.ready = sum(1 for w in state.workers if w.ready and w.alive and not w.draining)
        state.status.starting = sum(1 for w in state.workers if not w.ready and w.alive)

    async def _start(self, state: _Flow) -> None:
        flow = state.flow
        started = time.monotonic()
        try:
            worker = await self._spawn(flow)
        except WorkerStartFailed as exc:
            self._failed(state, str(exc), start=True)
            return
        state.workers.append(worker)
        self._report(state)
        self._write_pids()
        try:
            await self._wait_ready(worker)
        except WorkerStartFailed as exc:
            state.workers.remove(worker)
            await self._stop(worker)
            self._write_pids()
            self._failed(state, str(exc), start=True)
            return
        worker.ready = True
        state.status.last_error = state.status.last_error_at = None
        self._report(state)
        _call(self.on_ready, flow.id, time.monotonic() - started)
        log.info(
            "worker ready",
            flow=flow.name,
            pid=worker.process.pid,
            port=worker.port,
            seconds=round(time.monotonic() - started, 3),
        )

    def _failed(self, state: _Flow, reason: str, *, start: bool = False) -> None:
        state.failures += 1
        wait = self.restart.delay(state.failures)
        state.not_before = time.monotonic() + wait
        state.status.last_error = reason
        state.status.last_error_at = time.time()
        _call(self.on_failed, state.flow.id, reason)
        if start:
            _call(self.on_start_failed, state.flow.id, reason)
        log.warning("worker failed", flow=state.flow.name, reason=reason, retry_in=wait)

    async def _exited(self, state: _Flow, worker: Worker) -> None:
        code = worker.process.returncode
        reason = (
            f"exited with code {code}"
            if code is not None and code >= 0
            else (f"killed by signal {-(code or 0)}")
        )
        await asyncio.gather(*worker.logs, return_exceptions=True)
        self._write_pids()
        if worker.draining:
            return
        state.status.last_exit = reason
        state.status.restarts += 1
        if time.monotonic() - worker.started_at >= self.restart.stable_after:
            state.failures = 0
        self._failed(state, f"worker {worker.process.pid} {reason}")

    async def _spawn(self, flow: Flow) -> Worker:
        command = interpreted(flow.spec.workload.command)
        if not command:
            raise WorkerStartFailed("the flow has no worker.command for the local runtime")
        if shutil.which(command[0]) is None:
            raise WorkerStartFailed(f"cannot start {command[0]!r}: no such executable")
        env, launcher = _launcher(flow.spec)
        try:
            port = free_port()
            env |= {
                **flow.spec.workload.env,
                "PORT": str(port),
                "HOOKGATE_FLOW_ID": flow.id,
                "HOOKGATE_MODE": flow.mode.value,
            }
            process = await asyncio.create_subprocess_exec(
                *launcher,
                *command,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise WorkerStartFailed(f"cannot start {command[0]!r}: {exc.strerror}") from None
        worker = Worker(flow=flow, process=process, port=port)
        for stream, name in ((process.stdout, "stdout"), (process.stderr, "stderr")):
            if stream is not None:
                worker.logs.append(asyncio.create_task(self._pump(flow, worker, stream, name)))
        return worker

    @staticmethod
    async def _pump(flow: Flow, worker: Worker, stream: asyncio.StreamReader, name: str) -> None:
        while True:
            try:
                line = await stream.readline()
            except (ValueError, ConnectionError):
                continue
            if not line:
                return
            worker.tail.append(line.decode(errors="replace").rstrip())
            log.info(
                "worker output",
                flow=flow.name,
                worker=worker.process.pid,
                stream=name,
                line=line.decode(errors="replace").rstrip(),
            )

    async def _wait_ready(self, worker: Worker) -> None:
        deadline = time.monotonic() + self.start_timeout
        path = worker.spec.workload.readiness_path
        exited = asyncio.ensure_future(worker.process.wait())
        try:
            while time.monotonic() < deadline:
                if exited.done():
                    await asyncio.gather(*worker.logs, return_exceptions=True)
                    said = f": {worker.tail[-1]}" if worker.tail else ""
                    raise WorkerStartFailed(
                        f"worker exited with code {worker.process.returncode} before it was "
                        "ready" + said
                    )
                if await _probe(worker.port, path):
                    return
                await asyncio.wait([exited], timeout=POLL)  # an exit ends the wait at once
        finally:
            exited.cancel()
        raise WorkerStartFailed(
            f"worker did not accept connections on port {worker.port} "
            f"within {self.start_timeout:g}s"
        )

    async def _retire(self, state: _Flow, worker: Worker) -> None:
        """Take a worker out of rotation, let its in-flight requests finish, then stop it."""
        worker.draining = True
        self._report(state)
        deadline = time.monotonic() + float(worker.spec.timeout)
        while self.inflight(worker.endpoint) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await self._stop(worker)
        if worker in state.workers:
            state.workers.remove(worker)
        self._write_pids()

    async def _stop(self, worker: Worker) -> None:
        worker.draining = True
        if worker.alive:
            _signal(worker.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(worker.process.wait(), self.stop_grace)
            except TimeoutError:
                _signal(worker.process.pid, signal.SIGKILL)
                await worker.process.wait()
        await asyncio.gather(*worker.logs, return_exceptions=True)

    # orphans of a gateway that was killed ------------------------------------------------
    def _write_pids(self) -> None:
        if self.pid_file is None:
            return
        pids = [str(w.process.pid) for s in self._flows.values() for w in s.workers if w.alive]
        with contextlib.suppress(OSError):
            self.pid_file.write_text("\n".join(pids))

    def _kill_orphans(self) -> None:
        """Workers left running by a gateway that died (kill -9) are stopped on restart."""
        if self.pid_file is None or not self.pid_file.exists():
            return
        for text in self.pid_file.read_text().split():
            pid = int(text)
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if b"HOOKGATE_FLOW_ID=" in environ:
                _signal(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def _launcher(spec: FlowSpec) -> tuple[dict[str, str], list[str]]:
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


def _call(hook: Callable[..., None], *args: object) -> None:
    """The gateway's hooks (metrics) must not take a flow's manager down with them."""
    try:
        hook(*args)
    except Exception as exc:
        log.error("runtime hook failed", hook=getattr(hook, "__name__", "?"), error=repr(exc))


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def _probe(port: int, path: str | None) -> bool:
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
