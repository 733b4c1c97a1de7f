"""The ``Runtime`` protocol: keep N workers of a flow, and say where the ready ones listen.

Level-based, like a Kubernetes controller: callers say how many workers a flow should have
(``scale``), the runtime converges and reports (``status``). Sync flows ask for ``replicas``;
the dispatcher asks for async workers on demand and for 0 once the queue has been idle.
Implemented by ``local.LocalRuntime`` (processes) and ``kubernetes.KubernetesRuntime``; both
pass ``tests/runtime/test_contract.py``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import msgspec

from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import MAX_WORKERS, Flow, FlowSpec, Mode, Status


class WorkerStatus(msgspec.Struct, kw_only=True):
    desired: int = 0
    ready: int = 0
    starting: int = 0
    restarts: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    """When ``last_error`` happened (Unix time); both are cleared by the next good start."""
    last_exit: str | None = None
    stopping: int = 0
    """Workers asked to stop that are finishing what they hold (terminating pods)."""
    jobs: int = 0
    """Active Kubernetes Jobs of an async flow (0 elsewhere)."""


def flow_state(flow: Flow, workers: WorkerStatus) -> str:
    """The flow's status (``running``, ``paused``, ``stopped``), or ``failing``: running, but
    its last worker start failed and no worker is ready, so nothing it receives can be
    delivered until that is fixed."""
    if flow.status is not Status.RUNNING:
        return flow.status.value
    if workers.last_error is not None and workers.ready == 0:
        return "failing"
    return Status.RUNNING.value


class Runtime(Protocol):
    shares_cpu: bool
    """Whether workers run on the gateway's own machine (one more takes CPU from the rest)."""
    on_ready: Callable[[str, float], None]
    """Called with a flow id and the seconds from creation to ready, once per started worker."""
    on_failed: Callable[[str, str], None]
    """Called with a flow id and the reason each time a worker fails to start or crashes."""
    on_start_failed: Callable[[str, str], None]
    """Called as ``on_failed`` when a worker could not start at all (no worker of the flow
    ran): the dispatcher then fails a delivery instead of letting it wait for one."""

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Let go of the workers: local processes are stopped (SIGTERM, then SIGKILL after a
        grace); Kubernetes objects are left to the cluster and the next leader."""

    async def scale(self, flow: Flow, workers: int) -> None:
        """Converge the flow to ``workers`` workers of its current spec (rolls out changes)."""

    async def remove(self, flow_id: str) -> None:
        """Stop and forget everything of the flow."""

    def endpoints(self, flow_id: str) -> list[Endpoint]:
        """The ready workers of the flow, where requests may be sent now."""

    def status(self, flow_id: str) -> WorkerStatus: ...

    def validate(self, spec: FlowSpec) -> list[str]:
        """When a flow with a ``worker`` is applied: ``ConfigError`` for a worker this runtime
        cannot run (no command, no image); warnings for what may still be fixed here."""


class Worker(Protocol):
    """What ``FlowState`` needs of a runtime's worker to tell current ones from outdated."""

    spec: FlowSpec
    draining: bool


W = TypeVar("W", bound=Worker)


class FlowState(Generic[W]):
    """A flow in a runtime that converges it to ``desired`` workers by itself (the local
    processes, the memory twin): its workers, status, start failures and wake-up."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.desired = 0
        self.workers: list[W] = []
        self.status = WorkerStatus()
        self.failures = 0
        self.not_before = 0.0
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def want(self, flow: Flow, workers: int) -> None:
        """Take ``scale``'s flow and count (capped); a changed spec gets a start at once."""
        if flow.mode is Mode.ASYNC:
            workers = min(workers, flow.spec.max_workers)
        workers = min(workers, MAX_WORKERS)  # a flow stored before the limit existed
        if self.flow.spec != flow.spec:
            self.failures = 0
            self.not_before = 0.0
        self.flow = flow
        self.desired = workers
        self.status.desired = workers
        self.changed.set()

    def current(self) -> list[W]:
        """The workers of the flow's current spec that are not being retired."""
        return [w for w in self.workers if w.spec == self.flow.spec and not w.draining]

    async def settle(self) -> None:
        """Between two reconcile steps: until the flow changes, its backoff ends or 1 s passed."""
        delay = 1.0
        if self.not_before > time.monotonic():
            delay = min(delay, self.not_before - time.monotonic())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(delay, 0.0)):
                await self.changed.wait()

    async def halt(self) -> None:
        """End the reconcile task (the flow is being removed), waiting until it has."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


class Reconciled(abc.ABC, Generic[W]):
    """A runtime converging each flow by a task of its own (the local processes, the memory
    twin): the flows it holds, ``scale`` and ``status``."""

    def __init__(self) -> None:
        self._flows: dict[str, FlowState[W]] = {}

    async def scale(self, flow: Flow, workers: int) -> None:
        state = self._flows.get(flow.id)
        if state is None:
            state = self._flows[flow.id] = FlowState(flow)
            state.task = asyncio.create_task(self._reconcile(state), name=f"flow-{flow.name}")
        state.want(flow, workers)

    def status(self, flow_id: str) -> WorkerStatus:
        state = self._flows.get(flow_id)
        return state.status if state is not None else WorkerStatus()

    @abc.abstractmethod
    async def _reconcile(self, state: FlowState[W]) -> None:
        """Converge the flow until ``remove`` halts it."""
