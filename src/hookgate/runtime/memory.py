"""The memory runtime: workers are ASGI apps in this event loop, on made-up host names.

It keeps the ``Runtime`` contract (``tests/runtime/test_contract.py``) the way the local
runtime does with processes: a task per flow converges to the wanted number of workers,
retries failed starts with backoff, rolls out a changed spec (new workers ready first) and
stops surplus ones. A worker is started by running its app's ASGI lifespan: ready at
``lifespan.startup.complete``; ``startup.failed`` (or an exception) is a failed start with
that message; the lifespan ending afterwards is a crash. An app without lifespan support is
ready at once. ``MemoryTransport`` reaches the ready ones through the shared ``Network``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hookgate import logs
from hookgate.asgi import Receive, Scope, Send
from hookgate.domain.backoff import RestartBackoff
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import Flow, FlowSpec
from hookgate.errors import WorkerStartFailed
from hookgate.runtime.base import FlowState, Reconciled

log = logs.get("hookgate.runtime")

App = Callable[[Scope, Receive, Send], Awaitable[None]]
Apps = Callable[[Flow, dict[str, str]], App]
"""Makes a new worker of the flow, given its environment; ``WorkerStartFailed`` if it cannot."""
PORT = 80
RESTART = RestartBackoff(first=0.05, cap=1.0, stable_after=1.0)
STOP_GRACE = 1.0


class Network:
    """Host names to apps: where the memory runtime's workers listen, and the transport calls."""

    def __init__(self) -> None:
        self.apps: dict[str, App] = {}
        self._serial = itertools.count(1)

    def listen(self, name: str, app: App, *, capacity: int = 1) -> Endpoint:
        host = f"{name}-{next(self._serial)}.memory"
        self.apps[host] = app
        return Endpoint(host, PORT, capacity)

    def close(self, endpoint: Endpoint) -> None:
        self.apps.pop(endpoint.host, None)

    def app(self, endpoint: Endpoint) -> App | None:
        return self.apps.get(endpoint.host) if endpoint.port == PORT else None


class _Worker:
    """One worker: its app's lifespan runs in ``task``; ``ready`` once startup completed."""

    def __init__(self, flow: Flow, app: App) -> None:
        self.spec = flow.spec
        self.app = app
        self.endpoint: Endpoint | None = None
        self.started_at = time.monotonic()
        self.ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        """Resolves to None once started, or to why the start failed."""
        self.shutdown = asyncio.Event()
        self.draining = False
        self.task = asyncio.create_task(self._lifespan())

    @property
    def serving(self) -> bool:
        return self.endpoint is not None and not self.draining and not self.task.done()

    async def _lifespan(self) -> None:
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "lifespan.startup"}
            await self.shutdown.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                self._started(None)
            elif message["type"] == "lifespan.startup.failed":
                self._started(message.get("message") or "the worker failed to start")

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if not sent:
                self._started(None)  # no lifespan support: ready at once, as uvicorn does
                await self.shutdown.wait()
                return
            self._started(str(exc) or repr(exc))

    def _started(self, failure: str | None) -> None:
        if not self.ready.done():
            self.ready.set_result(failure)

    async def stop(self, grace: float) -> None:
        self.draining = True
        self.shutdown.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(self.task), grace)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


_Flow = FlowState[_Worker]


class MemoryRuntime(Reconciled[_Worker]):
    shares_cpu = False

    def __init__(
        self,
        apps: Apps,
        *,
        network: Network | None = None,
        restart: RestartBackoff = RESTART,
        stop_grace: float = STOP_GRACE,
    ) -> None:
        super().__init__()
        self.apps = apps
        self.network = network if network is not None else Network()
        self.restart = restart
        self.stop_grace = stop_grace
        self.on_ready: Callable[[str, float], None] = lambda _flow_id, _seconds: None
        self.on_failed: Callable[[str, str], None] = lambda _flow_id, _reason: None
        self.on_start_failed: Callable[[str, str], None] = lambda _flow_id, _reason: None

    def validate(self, spec: FlowSpec) -> list[str]:
        """Any worker: ``apps`` makes one of every flow."""
        return []

    async def start(self) -> None:
        """Nothing runs before ``scale``."""

    async def close(self) -> None:
        await asyncio.gather(*(self.remove(flow_id) for flow_id in list(self._flows)))

    async def remove(self, flow_id: str) -> None:
        state = self._flows.pop(flow_id, None)
        if state is None:
            return
        for worker in state.workers:
            self._unlisten(worker)
        await state.halt()
        await asyncio.gather(*(w.stop(self.stop_grace) for w in state.workers))

    def endpoints(self, flow_id: str) -> list[Endpoint]:
        state = self._flows.get(flow_id)
        if state is None:
            return []
        return [w.endpoint for w in state.workers if w.endpoint is not None and w.serving]

    # reconciliation ----------------------------------------------------------------------
    async def _reconcile(self, state: _Flow) -> None:
        while True:
            state.changed.clear()
            await self._step(state)
            self._report(state)
            await state.settle()

    async def _step(self, state: _Flow) -> None:
        for worker in [w for w in state.workers if w.task.done() and w.ready.done()]:
            state.workers.remove(worker)
            self._unlisten(worker)
            if not worker.draining and worker.ready.result() is None:
                state.status.restarts += 1
                state.status.last_exit = "the worker's app ended"
                if time.monotonic() - worker.started_at >= self.restart.stable_after:
                    state.failures = 0
                self._failed(state, "the worker's app ended")
        current = state.current()
        outdated = [w for w in state.workers if w not in current]
        missing = state.desired - len(current)
        if missing > 0 and time.monotonic() >= state.not_before:
            await asyncio.gather(*(self._start(state) for _ in range(missing)))
            current = state.current()
        surplus = current[state.desired :]
        if sum(w.serving for w in current) >= state.desired or state.desired == 0:
            surplus += outdated
        for worker in surplus:
            self._unlisten(worker)
        await asyncio.gather(*(self._retire(state, w) for w in surplus))

    def _report(self, state: _Flow) -> None:
        state.status.ready = sum(w.serving for w in state.workers)
        state.status.starting = sum(not w.ready.done() for w in state.workers)

    async def _start(self, state: _Flow) -> None:
        flow = state.flow
        env = {
            **flow.spec.workload.env,
            "HOOKGATE_FLOW_ID": flow.id,
            "HOOKGATE_MODE": flow.mode.value,
        }
        try:
            worker = _Worker(flow, self.apps(flow, env))
        except WorkerStartFailed as exc:
            self._failed(state, str(exc), start=True)
            return
        state.workers.append(worker)
        self._report(state)
        failure = await worker.ready
        if failure is not None:
            state.workers.remove(worker)
            await worker.stop(self.stop_grace)
            self._failed(state, failure, start=True)
            return
        worker.endpoint = self.network.listen(flow.name, worker.app, capacity=flow.spec.slots)
        worker.task.add_done_callback(lambda _task: state.changed.set())
        state.status.last_error = state.status.last_error_at = None
        self._report(state)
        self.on_ready(flow.id, time.monotonic() - worker.started_at)

    def _failed(self, state: _Flow, reason: str, *, start: bool = False) -> None:
        state.failures += 1
        state.not_before = time.monotonic() + self.restart.delay(state.failures)
        state.status.last_error, state.status.last_error_at = reason, time.time()
        self.on_failed(state.flow.id, reason)
        if start:
            self.on_start_failed(state.flow.id, reason)
        log.warning("worker failed", flow=state.flow.name, reason=reason)

    def _unlisten(self, worker: _Worker) -> None:
        """No request reaches a worker from the moment it is asked to stop."""
        worker.draining = True
        if worker.endpoint is not None:
            self.network.close(worker.endpoint)

    async def _retire(self, state: _Flow, worker: _Worker) -> None:
        await worker.stop(self.stop_grace)
        if worker in state.workers:
            state.workers.remove(worker)
