"""The ``Runtime`` protocol: keep N workers of a flow, and say where the ready ones listen.

Level-based, like a Kubernetes controller: callers say how many workers a flow should have
(``scale``), the runtime converges and reports (``status``). Sync flows ask for ``replicas``;
the dispatcher asks for async workers on demand and for 0 once the queue has been idle.
Implemented by ``local.LocalRuntime`` (processes) and ``kubernetes.KubernetesRuntime``; both
pass ``tests/runtime/test_contract.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import msgspec

from hookgate.domain.flows import Flow, FlowSpec, Status


class Endpoint(msgspec.Struct, frozen=True):
    """Where a ready worker (or a Service in front of several) accepts HTTP."""

    host: str
    port: int
    capacity: int = 1

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


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


W = TypeVar("W")


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
