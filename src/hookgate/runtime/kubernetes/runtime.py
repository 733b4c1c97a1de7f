"""``KubernetesRuntime``: the ``Runtime`` protocol on Kubernetes (Services, Deployments, Jobs).

``scale`` records what is wanted and, on the leader, converges the flow at once; the
reconciler keeps converging it afterwards (drift, retries). ``endpoints`` and ``status``
answer from the watched state without a request, on every replica. ``close`` leaves the
workers running: they belong to the cluster, and another replica takes over the Lease.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

from lightkube import AsyncClient

from hookgate import logs
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flows import Flow, FlowSpec
from hookgate.errors import ConfigError, RuntimeFailure
from hookgate.runtime.base import WorkerStatus
from hookgate.runtime.kubernetes import health, names, reconciler, specs
from hookgate.runtime.kubernetes.client import Kube
from hookgate.runtime.kubernetes.lease import LeaderElector
from hookgate.runtime.kubernetes.reconciler import Reconciler

RESYNC = 300.0
LEASE_DURATION = 15
MAX_STARTING = 10_000


def default_identity() -> str:
    """The pod name in a cluster (``HOSTNAME``), plus the pid to tell processes apart."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}-{os.getpid()}"


log = logs.get("hookgate.kubernetes")
OWNER_KINDS = frozenset({"Deployment"})


class KubernetesRuntime:
    shares_cpu = False

    def __init__(
        self,
        *,
        namespace: str,
        client: AsyncClient,
        instance: str = specs.DEFAULT_INSTANCE,
        identity: str | None = None,
        leader_election: bool = True,
        lease_duration: int = LEASE_DURATION,
        resync: float = RESYNC,
        watch_timeout: int = reconciler.WATCH_TIMEOUT,
        owner: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.owner = owner
        self.instance = instance
        self.kube = Kube(client, namespace=namespace)
        self.elector: LeaderElector | None = None
        if leader_election:
            self.elector = LeaderElector(
                kube=self.kube,
                name=f"{instance}-reconciler",
                identity=identity or default_identity(),
                duration=lease_duration,
                on_change=self._leadership_changed,
            )
        self.reconciler = Reconciler(
            kube=self.kube,
            instance=instance,
            resync=resync,
            leading=self.leading,
            watch_timeout=watch_timeout,
        )
        self.on_ready: Callable[[str, float], None] = lambda _flow_id, _seconds: None
        self.on_failed: Callable[[str, str], None] = lambda _flow_id, _reason: None
        self.on_start_failed: Callable[[str, str], None] = lambda _flow_id, _reason: None
        self._starting: dict[str, float] = {}
        self.reconciler.on_pod = self._pod_changed

    def leading(self) -> bool:
        return self.elector is None or self.elector.leading

    async def start(self) -> None:
        if self.owner is not None:
            await self._own()
        await self.reconciler.start()
        if self.elector is not None:
            await self.elector.start()

    async def _own(self) -> None:
        """Resolve ``owner`` ("Deployment/hookgate") to an ownerReference for every object."""
        assert self.owner is not None
        kind, _, name = self.owner.partition("/")
        try:
            found = await self.kube.get(kind, name) if kind in OWNER_KINDS else None
        except RuntimeFailure as exc:
            log.warning(
                "cannot read the owner; flow objects get no owner", owner=self.owner, error=str(exc)
            )
            return
        if found is None:
            log.warning("owner not found; flow objects get no owner", owner=self.owner)
            return
        self.reconciler.owner = specs.owner_reference(found)

    async def close(self) -> None:
        if self.elector is not None:
            await self.elector.close()
        await self.reconciler.close()

    async def scale(self, flow: Flow, workers: int) -> None:
        await self.reconciler.reconcile(self.reconciler.want(flow, workers))

    async def remove(self, flow_id: str) -> None:
        await self.reconciler.reconcile(self.reconciler.forget(flow_id))

    def endpoints(self, flow_id: str) -> list[Endpoint]:
        """One endpoint per ready pod, at its own address, with the flow's slots per worker.

        The gateway balances over pods itself (least outstanding, per-pod concurrency), which
        a Service cannot do for kept-alive connections. A terminating pod (deletion
        requested) is not ready, so it gets no new request while it finishes its own.
        """
        wanted = self.reconciler.wanted.get(names.flow_key(flow_id))
        if wanted is None or wanted.flow is None:
            return []
        spec = wanted.flow.spec
        return [
            Endpoint(address, spec.workload.port, spec.slots)
            for address in sorted(health.ready_addresses(self._pods(flow_id)))
        ]

    def validate(self, spec: FlowSpec) -> list[str]:
        if not spec.workload.image:
            raise ConfigError(
                f"flow {spec.name!r}: field worker.image is needed by the kubernetes runtime"
            )
        return []

    def status(self, flow_id: str) -> WorkerStatus:
        key = names.flow_key(flow_id)
        wanted = self.reconciler.wanted.get(key)
        observed = self.reconciler.observed
        pods = self._pods(flow_id)
        desired = wanted.workers if wanted is not None and wanted.flow is not None else 0
        ready = sum(health.is_ready(pod) for pod in pods)
        error = wanted.error if wanted is not None else None
        if error is None and ready < desired:
            prefix = names.base_name(wanted.flow) if wanted and wanted.flow else ""
            error = health.last_error(
                pods=pods,
                jobs=list(observed.objects(key, "Job").values()),
                deployments=list(observed.objects(key, "Deployment").values()),
                warnings=observed.warnings_for(prefix) if prefix else [],
            )
        return WorkerStatus(
            desired=desired,
            ready=ready,
            starting=sum(health.is_starting(p) for p in pods),
            restarts=health.restarts(pods),
            last_error=error,
            last_exit=health.last_exit(pods),
            stopping=sum(health.is_stopping(p) for p in pods),
            jobs=sum(health.is_active(j) for j in observed.objects(key, "Job").values()),
        )

    def _pods(self, flow_id: str) -> list[specs.Object]:
        return list(self.reconciler.observed.objects(names.flow_key(flow_id), "Pod").values())

    def _pod_changed(self, event: str, before: specs.Object | None, pod: specs.Object) -> None:
        """Time pods from first sight to ready (cold start) and report failed starts.

        Only pods this replica saw before they were ready are timed; the clock is this
        replica's, so API timestamps (whole seconds, other clocks) play no part.
        """
        name = pod["metadata"]["name"]
        if event == "DELETED":
            self._starting.pop(name, None)
            return
        flow_id = (pod["metadata"].get("annotations") or {}).get(names.FLOW_ID_ANNOTATION)
        if not isinstance(flow_id, str):
            return
        ready = health.is_ready(pod)
        if before is None and not ready and name not in self._starting:
            if len(self._starting) >= MAX_STARTING:
                self._starting.pop(next(iter(self._starting)))
            self._starting[name] = time.monotonic()
        if ready and name in self._starting:
            self.on_ready(flow_id, time.monotonic() - self._starting.pop(name))
        failure = health.start_failure(before, pod)
        if failure is not None:
            self.on_failed(flow_id, failure)
            if name in self._starting and self.leading():
                # Never ready (a bad image, a crash while starting): one delivery takes the
                # failure as an attempt. Only the leader tells, so two replicas do not each
                # spend an attempt on the same failed start.
                self.on_start_failed(flow_id, failure)

    def _leadership_changed(self, leading: bool) -> None:
        if leading:
            self.reconciler.enqueue_all()
