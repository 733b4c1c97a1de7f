"""The composition root: builds the store, registry, runtime, dispatcher and both listeners.

Start-up order matters for "nothing lost": the store is opened (and migrated) before any
listener binds, flows are loaded before the public listener answers, and on SIGTERM the
listeners stop accepting and finish in-flight requests before deliveries are drained and the
store's last group commit is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
from pathlib import Path
from typing import IO, Any

from starlette.routing import Mount

from hookgate import isolation, logs, serving, tracing
from hookgate.admin.app import AdminAPI, create_admin_app
from hookgate.asgi import BodyBudget, BodyReader
from hookgate.config import TOKEN_FILE, Settings, admin_token, prepare_data_dir
from hookgate.console import Console
from hookgate.destinations.open import check_destination
from hookgate.dispatch import Dispatcher
from hookgate.dispatch.hooks import delivery_hooks
from hookgate.dispatch.scheduler import Scheduler
from hookgate.dispatch.waiters import Waiters
from hookgate.dispatch.wakeups import Wakeups
from hookgate.domain.concurrency import Ledger
from hookgate.domain.endpoints import Endpoint
from hookgate.domain.flowfile import parse_flow_file
from hookgate.domain.flows import FlowSpec, Mode
from hookgate.errors import ConfigError, SchemaMismatch, StoreUnavailable
from hookgate.events import EventHub
from hookgate.housekeeping import Housekeeping
from hookgate.ingress import Ingress
from hookgate.ingress.guards import FlowGuard, Guards
from hookgate.ingress.protocol import Edge
from hookgate.metrics import Metrics
from hookgate.proxy import SyncProxy, TracedProxy
from hookgate.registry import FlowRegistry
from hookgate.runtime.base import Runtime
from hookgate.runtime.local import LocalRuntime
from hookgate.services import Services
from hookgate.store.changes import Change, Committed
from hookgate.store.open import open_store
from hookgate.transport.client import Http1Transport

log = logs.get("hookgate")

GC_THRESHOLD = 20_000


def build_runtime(settings: Settings, ledger: Ledger[Endpoint]) -> Runtime:
    if settings.runtime == "kubernetes":
        try:
            from hookgate.runtime.kubernetes.client import connect
            from hookgate.runtime.kubernetes.runtime import KubernetesRuntime
        except ImportError as exc:
            raise ConfigError(
                f"the kubernetes runtime needs its client ({exc.name} is not installed):"
                " pip install 'hookgate[kubernetes]'"
            ) from None

        runtime: Runtime = KubernetesRuntime(
            namespace=settings.namespace,
            client=connect(namespace=settings.namespace),
            owner=settings.owner,
        )
        return runtime
    return LocalRuntime(pid_file=settings.data_dir / "worker-pids", inflight=ledger.inflight)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store = open_store(
            settings.database,
            max_queued_bytes=settings.max_queued_bytes,
            synchronous=settings.synchronous,
            disk_reserve=settings.disk_reserve,
        )
        self.metrics.store_accepting.set_function(lambda: float(self.store.accepting))
        self.registry = FlowRegistry(self.store)
        ledger: Ledger[Endpoint] = Ledger()
        self.runtime = build_runtime(settings, ledger)
        self.transport = Http1Transport()
        self.events = EventHub()
        self.tracing = tracing.from_environment()
        waiters = Waiters()
        self.dispatcher = Dispatcher(
            waiters=waiters,
            ledger=ledger,
            hooks=delivery_hooks(metrics=self.metrics, events=self.events, tracing=self.tracing),
            registry=self.registry,
            store=self.store,
            runtime=self.runtime,
            transport=self.transport,
        )
        self.scheduler = Scheduler(registry=self.registry, store=self.store)
        self.proxy = SyncProxy(
            runtime=self.runtime,
            transport=self.transport,
            max_waiting=settings.max_sync_waiters,
            ledger=ledger,
        )
        self.housekeeping = Housekeeping(
            store=self.store,
            registry=self.registry,
            runtime=self.runtime,
            dispatcher=self.dispatcher,
            proxy=self.proxy,
            metrics=self.metrics,
        )
        self.guards = Guards()
        self.ingress = Ingress(
            registry=self.registry,
            store=self.store,
            metrics=self.metrics,
            guards=self.guards,
            forwarder=TracedProxy(self.proxy, self.tracing) if self.tracing.enabled else self.proxy,
            events=self.events,
            tracing=self.tracing,
            bodies=BodyReader(
                budget=BodyBudget(settings.limits.body_memory), spool_dir=settings.data_dir
            ),
            ready=lambda: self.ready,
            waiters=waiters,
        )
        self.ready = False
        self.token = ""
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._lock: IO[str] | None = None
        self._specs: list[FlowSpec] = []
        self._console: Console | None = None
        self._edges: tuple[Edge, ...] = ()

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> tuple[socket.socket, socket.socket]:
        """Everything that can fail fast does, before anything listens: flow file, dirs, ports."""
        if (problem := isolation.make_undumpable()) is not None:
            log.warning("cannot make the gateway non-dumpable", error=problem)
        settings = self.settings
        if settings.flows_file is not None:
            self._specs = await self._read_flow_file(settings.flows_file)
        prepare_data_dir(settings.data_dir)
        self._lock = serving.lock(settings.data_dir)
        public = serving.bind(settings.listen, "cannot listen on", backlog=serving.PUBLIC_BACKLOG)
        admin = serving.bind(
            settings.admin_listen, "cannot listen (admin) on", backlog=serving.ADMIN_BACKLOG
        )
        serving.warn_if_exposed(settings.admin_listen)
        self.token, generated = admin_token(settings.data_dir)
        if generated:
            # Never the token itself in a log: container logs are kept and shipped elsewhere.
            path = settings.data_dir / TOKEN_FILE
            log.info("admin token generated", file=str(path))
            if sys.stdout.isatty():
                print(f"Admin token (first start; kept in {path}): {self.token}", flush=True)
        return public, admin

    async def boot(self) -> None:
        """Open the store (waiting for a database that is down), load flows, start delivering.

        Until this is done ``/readyz`` is false and ``/hook/*`` answers 503, never 404.
        """
        await self._open_store()
        self.store.changes.subscribe(Wakeups(dispatcher=self.dispatcher, registry=self.registry))
        self.store.changes.subscribe(self._committed)
        self.runtime.on_ready = self._worker_ready
        self.runtime.on_failed = self._worker_failed
        self.runtime.on_start_failed = self.dispatcher.start_failed
        await self.runtime.start()
        await self.registry.load()
        self.registry.subscribe(self._flow_changed)
        for flow in self.registry.flows():
            if flow.mode is Mode.SYNC and flow.running:
                await self.runtime.scale(flow, flow.spec.replicas)
        for spec in self._specs:
            for warning in self.validate(spec):
                log.warning(warning)
        for flow, outcome in await self.registry.apply_all(self._specs):
            log.info("flow applied", flow=flow.name, outcome=outcome)
        await self.dispatcher.start()
        self.scheduler.start()
        self._tasks = [
            asyncio.create_task(self.housekeeping.stats(lambda: self._edges)),
            asyncio.create_task(self.housekeeping.purge()),
        ]
        # Start-up objects (flows, modules) never die: keep them out of every collection, and
        # collect the young generation less often (each request allocates a few hundred objects).
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, 20, 20)
        self.ready = True

    async def _open_store(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.store.open()
                return
            except SchemaMismatch:
                raise
            except StoreUnavailable as exc:
                if not self.settings.database.startswith("postgres"):
                    raise
                log.warning("database unavailable; retrying", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    @staticmethod
    async def _read_flow_file(path: Path) -> list[FlowSpec]:
        try:
            text = await asyncio.to_thread(path.read_text)
        except OSError as exc:
            raise ConfigError(f"cannot read flow file {path}: {exc.strerror}") from None
        return parse_flow_file(text, source=str(path))

    def validate(self, spec: FlowSpec) -> list[str]:
        """Checks that need this gateway: secrets resolvable, a worker this runtime can run,
        the client of each broker destination installed.

        Returns warnings: what does not stop the flow from being applied but will fail.
        """
        try:
            FlowGuard(spec)
        except ConfigError as exc:
            raise ConfigError(f"flow {spec.name!r}: {exc}") from None
        for destination in spec.routes:
            if destination.kind != "worker":
                check_destination(spec.name, destination)
        return [] if spec.worker is None else self.runtime.validate(spec)

    async def _flow_changed(self, flow_id: str) -> None:
        self.guards.forget(flow_id)
        flow = self.registry.get(flow_id)
        await self.dispatcher.flow_changed(flow_id)
        await self.scheduler.flow_changed(flow_id)
        if flow is None:
            await self.runtime.remove(flow_id)
        elif flow.mode is Mode.SYNC:
            await self.runtime.scale(flow, flow.spec.replicas if flow.running else 0)

    def _worker_ready(self, flow_id: str, seconds: float) -> None:
        flow = self.registry.get(flow_id)
        if flow is not None:
            self.metrics.cold_start_seconds.labels(flow.name).observe(seconds)
            self.metrics.worker_starts.labels(flow.name, "ok").inc()
        self.dispatcher.notify(flow_id)

    def _worker_failed(self, flow_id: str, reason: str) -> None:
        flow = self.registry.get(flow_id)
        if flow is not None:
            self.metrics.worker_starts.labels(flow.name, "failed").inc()

    def _committed(self, change: Change) -> None:
        if isinstance(change, Committed):
            self.metrics.store_commit_batch.observe(change.operations)
            self.metrics.store_commit_seconds.observe(change.seconds)

    def admin_app(self) -> Any:
        services = Services(
            registry=self.registry,
            store=self.store,
            metrics=self.metrics,
            events=self.events,
            workers=self.runtime.status,
            concurrency_limit=self.housekeeping.concurrency_limit,
            public_url=self.settings.public_url,
            stopping=self._stop,
        )
        api = AdminAPI(
            services,
            validate=self.validate,
            next_ticks=self.scheduler.next_ticks,
            runtime=self.settings.runtime,
        )
        console = Console(
            services,
            token=self.token,
            live=api.events,
            trusted_proxies=self.settings.trusted_proxies,
        )
        self._console = console
        return create_admin_app(
            api, token=self.token, extra_routes=[Mount("/console", app=console.app())]
        )

    async def close(self) -> None:
        self.ready = False
        for task in self._tasks:
            task.cancel()
        await self.scheduler.close()
        await self.dispatcher.close()
        await self.runtime.close()
        await self.transport.close()
        await self.store.close()
        await asyncio.to_thread(self.tracing.shutdown)
        if self._lock is not None:
            self._lock.close()

    # serving -----------------------------------------------------------------------------
    async def serve(self) -> None:
        public, admin = await self.start()
        closed = self.metrics.connections_closed
        public_edge, admin_edge = serving.edges(
            self.settings, lambda listener, reason: closed.labels(listener, reason).inc()
        )
        self._edges = (public_edge, admin_edge)
        servers = [
            serving.Server(
                serving.config(self.ingress, edge=public_edge, backlog=serving.PUBLIC_BACKLOG)
            ),
            serving.Server(
                serving.config(self.admin_app(), edge=admin_edge, backlog=serving.ADMIN_BACKLOG)
            ),
        ]
        if self._console is not None:
            self._console.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._signalled, sig)
        listening = [
            asyncio.create_task(servers[0].serve(sockets=[public])),
            asyncio.create_task(servers[1].serve(sockets=[admin])),
        ]
        stopper = asyncio.create_task(self._stop.wait())
        booting = asyncio.create_task(self.boot())
        await asyncio.wait([booting, stopper], return_when=asyncio.FIRST_COMPLETED)
        if booting.done() and booting.exception() is None:
            self._announce()
            await asyncio.wait([*listening, stopper], return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down: finishing in-flight requests")
        self.ready = False
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*listening, return_exceptions=True)
        log.info("shutting down: stopping workers and closing the store")
        stopper.cancel()
        if not booting.done():
            booting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await booting
        failure = None if booting.cancelled() else booting.exception()
        await self.close()
        log.info("stopped")
        if failure is not None:
            raise failure

    def _signalled(self, sig: signal.Signals) -> None:
        if not self._stop.is_set():
            log.info("stop requested", signal=sig.name)
        self._stop.set()

    def _announce(self) -> None:
        s = self.settings
        log.info(
            "hookgate ready",
            listen=str(s.listen),
            admin=str(s.admin_listen),
            database=s.database.split("@")[-1],
            runtime=s.runtime,
        )
        for flow in self.registry.flows():
            print(
                f"  {flow.name:<24} {flow.mode.value:<5} {s.public_url}/hook/{flow.id}", flush=True
            )
