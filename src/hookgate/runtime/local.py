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
import contextlib
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from hookgate import logs
from hookgate.domain.backoff import RestartBackoff
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import Flow, FlowSpec
from hookgate.errors import ConfigError, WorkerStartFailed
from hookgate.runtime.base import FlowState, Reconciled
from hookgate.runtime.processes import (
    Worker,
    free_port,
    interpreted,
    launch,
    probe,
    signal_group,
    validate_flow,
)

log = logs.get("hookgate.runtime")

START_TIMEOUT = 15.0
STOP_GRACE = 5.0
RESTART = RestartBackoff()
# Workers of one flow started at the same time; the rest follow as these get ready.
START_BATCH = 4
POLL = 0.005

_Flow = FlowState[Worker]


class LocalRuntime(Reconciled[Worker]):
    shares_cpu = True

    def __init__(
        self,
        *,
        pid_file: Path | None = None,
        start_timeout: float = START_TIMEOUT,
        stop_grace: float = STOP_GRACE,
        restart: RestartBackoff = RESTART,
        inflight: Callable[[Endpoint], int] = lambda _endpoint: 0,
    ) -> None:
        super().__init__()
        self.pid_file = pid_file
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self.restart = restart
        self.inflight = inflight
        """Requests a worker still holds (``Ledger.inflight``): a worker to stop finishes them."""
        self.on_ready: Callable[[str, float], None] = lambda _flow_id, _seconds: None
        self.on_failed: Callable[[str, str], None] = lambda _flow_id, _reason: None
        # A worker could not start (as opposed to one that ran and exited).
        self.on_start_failed: Callable[[str, str], None] = lambda _flow_id, _reason: None

    async def start(self) -> None:
        self._kill_orphans()

    async def close(self) -> None:
        flows = list(self._flows)
        await asyncio.gather(*(self.remove(flow_id) for flow_id in flows))

    async def remove(self, flow_id: str) -> None:
        state = self._flows.pop(flow_id, None)
        if state is None:
            return
        await state.halt()
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
            await state.settle()

    async def _step(self, state: _Flow) -> None:
        for worker in [w for w in state.workers if not w.alive]:
            state.workers.remove(worker)
            await self._exited(state, worker)
        current = state.current()
        outdated = [w for w in state.workers if w not in current]
        missing = state.desired - len(current)
        if missing > 0 and time.monotonic() >= state.not_before:
            batch = min(missing, START_BATCH)
            await asyncio.gather(*(self._start(state) for _ in range(batch)))
            if missing > batch:
                state.changed.set()  # the next batch at once (unless one failed: backoff)
            current = state.current()
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
        env, launcher = launch(flow.spec)
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
                if await probe(worker.port, path):
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
            signal_group(worker.process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(worker.process.wait(), self.stop_grace)
            except TimeoutError:
                signal_group(worker.process.pid, signal.SIGKILL)
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
                signal_group(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def _call(hook: Callable[..., None], *args: object) -> None:
    """The gateway's hooks (metrics) must not take a flow's manager down with them."""
    try:
        hook(*args)
    except Exception as exc:
        log.error("runtime hook failed", hook=getattr(hook, "__name__", "?"), error=repr(exc))
