"""Flows: what a user declares (``FlowSpec``) and what Hookgate stores (``Flow``).

The flow id is the public URL; it is generated once (128 random bits, URL-safe) and never
derived from anything the user can change, so edits, restarts and re-applies keep it. Flow files
are read in ``domain.flowfile``.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import zoneinfo
from typing import Annotated, Any, Literal

import msgspec
from croniter import croniter

from hookgate.domain.auth import AuthMethod
from hookgate.domain.concurrency import CEILING
from hookgate.domain.destinations import WORKERS, Destination, RetryPolicy, _Spec
from hookgate.domain.filters import compile_filter, compile_key
from hookgate.domain.units import ByteSize, Duration, enc_hook, seconds, size
from hookgate.errors import ConfigError

NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")


AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]
# Workers of one flow at most (``replicas``, ``max_workers``): each is a process or a pod, and
# a typo such as 200000 must be refused, not tried. Checked on every flow submitted, not in the
# type, so that a flow stored before the limit existed still loads (the runtime caps it).
MAX_WORKERS = 256


class Mode(enum.StrEnum):
    ASYNC = "async"
    SYNC = "sync"


class Status(enum.StrEnum):
    """``paused``: an async flow's URL still accepts and stores, but nothing is delivered."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class WorkerSpec(_Spec):
    command: list[str] | None = None
    image: str | None = None
    env: dict[str, str] = {}
    port: int = 8080
    readiness_path: str | None = None
    user: str | int | None = None
    resources: dict[str, dict[str, str]] | None = None
    image_pull_secrets: list[str] = []
    service_account: str | None = None
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []

    def __post_init__(self) -> None:
        if not self.command and not self.image:
            raise ValueError(
                "a worker needs `command` (local runtime) or `image` (kubernetes runtime)"
            )
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1-65535, got {self.port}")
        if self.readiness_path is not None and not self.readiness_path.startswith("/"):
            raise ValueError("readiness_path must start with '/'")
        if self.user == "" or (isinstance(self.user, int) and self.user < 0):
            raise ValueError("user must be a user name or a uid (0 or more)")


class RateLimit(_Spec):
    """Token bucket: ``rate`` requests per second on average, bursts up to ``burst``."""

    rate: float
    burst: int = 0

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be above 0")
        if self.burst <= 0:
            self.burst = max(1, int(self.rate))


class Cors(_Spec):
    allow_origins: list[str]
    allow_methods: list[str] = msgspec.field(default_factory=lambda: ["POST"])
    allow_headers: list[str] = []
    max_age: Duration = seconds(600)


class Schedule(_Spec):
    every: Duration | None = None
    cron: str | None = None
    timezone: str = "UTC"
    overlap: bool = False
    busy: Literal["wait", "skip"] = "skip"
    missed: Literal["skip", "once", "all"] = "once"

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError("a schedule needs exactly one of `every` or `cron`")
        if self.every is not None and self.every < 1:
            raise ValueError("`every` must be at least 1s")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ValueError(f"invalid cron expression {self.cron!r}")
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None


HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
SET_BY_HOOKGATE = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "x-request-id"}
)


class Accept(_Spec):
    """async: the immediate answer to a stored request (default ``202`` and the request id as
    JSON). ``{requestId}`` in ``body`` is replaced by the request id."""

    status: Literal[200, 202, 204] = 202
    body: str | None = None
    headers: dict[str, str] = {}

    def __post_init__(self) -> None:
        if self.status == 204 and self.body:
            raise ValueError("a 204 answer has no body: leave `body` out or use 200 or 202")
        for name, value in self.headers.items():
            if not HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not an HTTP token")
            if name.lower() in SET_BY_HOOKGATE:
                raise ValueError(f"header {name!r} is set by Hookgate")
            if not value.isprintable() or not value.isascii():
                raise ValueError(f"header {name!r}: the value must be printable ASCII")


class FlowSpec(_Spec):
    """One entry of ``flows:`` in a flow file; every field but name, mode, worker has a default."""

    name: str
    mode: Mode
    worker: WorkerSpec | None = None
    """The flow's own workers: needed by a sync flow and by a ``workers: true`` destination."""
    destinations: list[Destination] = []
    """async: where requests go; none listed: one, ``worker``, the flow's own workers."""
    filter: str | None = None
    """async: deliver only requests this expression holds for (``domain.filters``)."""
    order_key: str | None = None
    """async: deliveries with the same key (``header:Name``, ``query:name`` or a JSON path
    into the body such as ``data.object.id``) go one at a time, in accept order."""
    delay: Duration = seconds(0)
    """async: how long each delivery waits before its first attempt."""
    concurrency: AtLeastOne | Literal["auto"] = "auto"
    max_workers: AtLeastOne = 4
    replicas: AtLeastOne = 1
    idle_timeout: Duration = seconds(30)
    timeout: Duration = seconds(30)
    queue_timeout: Duration = seconds(1)
    retry: RetryPolicy = msgspec.field(default_factory=RetryPolicy)
    max_body: ByteSize = size(10 * 1000**2)
    max_queued: ByteSize | None = None
    """Bound on what the flow's undelivered requests take in the store (head, body, row);
    None: a quarter of ``HOOKGATE_MAX_QUEUED_BYTES``."""
    auth: list[AuthMethod] = []
    dedupe_window: Duration = seconds(72 * 3600)
    rate_limit: RateLimit | None = None
    cors: Cors | None = None
    schedule: Schedule | None = None
    delivery: Literal["raw", "envelope"] = "raw"
    request_buffering: bool = True
    """sync: read the whole body before a worker slot is taken (a slow sender holds no worker)."""
    retention: Duration = seconds(7 * 86400)
    accept: Accept | None = None
    """async: the immediate answer; None: ``202 {"requestId": …, "status": "accepted"}``."""
    max_wait: Duration = seconds(30)
    """async: how long a ``Prefer: wait=N`` caller may wait for the worker's answer at most."""
    fallback: Literal["async"] | None = None
    """sync: a worker that does not answer within ``timeout`` → stored, ``202`` + ``Location``."""
    max_answer: ByteSize = size(1000**2)
    """A worker's answer kept for a status URL (and a ``Prefer: wait`` caller) at most."""

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise ValueError(
                "name must be 1-63 lowercase letters, digits, '.', '_' or '-', "
                f"starting and ending with a letter or digit; got {self.name!r}"
            )
        if self.timeout <= 0:
            raise ValueError("timeout must be above 0")
        self._check_destinations()
        if self.max_queued is not None and self.max_queued < self.max_body:
            raise ValueError(
                f"max_queued ({self.max_queued} bytes) must not be below max_body"
                f" ({self.max_body} bytes): a request of max_body could never be queued"
            )
        if self.schedule is not None and self.mode is not Mode.ASYNC:
            raise ValueError("a schedule needs mode: async (poll runs are queued deliveries)")
        if self.accept is not None and self.mode is not Mode.ASYNC:
            raise ValueError("`accept` needs mode: async (a sync flow answers with its worker's)")
        if self.fallback is not None and self.mode is not Mode.SYNC:
            raise ValueError("`fallback` needs mode: sync (an async flow is stored already)")
        if self.fallback is not None and not self.request_buffering:
            raise ValueError(
                "`fallback: async` needs request_buffering: true (the stored request is the"
                " buffered body)"
            )

    def _check_destinations(self) -> None:
        if self.mode is Mode.SYNC and (self.destinations or self.filter or self.order_key):
            raise ValueError(
                "`destinations`, `filter` and `order_key` need mode: async (a sync flow"
                " answers with its own worker's answer)"
            )
        names = [d.name for d in self.destinations]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"destination {twice[0]!r} is listed twice")
        if self.schedule is not None and all(d.kind != "worker" for d in self.routes):
            raise ValueError("a schedule needs a `workers: true` destination: poll runs are theirs")
        needs = self.mode is Mode.SYNC or any(d.kind == "worker" for d in self.routes)
        if needs and self.worker is None:
            raise ValueError(
                "a `worker` is needed: a sync flow and a `workers: true` destination run the"
                " flow's own workers (or list only url, rabbitmq or nats destinations)"
            )
        for where, expression in [("filter", self.filter)] + [
            (f"destinations[{d.name}].filter", d.filter) for d in self.destinations
        ]:
            if expression is not None:
                compile_filter(expression, where=where)
        if self.order_key is not None:
            compile_key(self.order_key)

    @property
    def routes(self) -> list[Destination]:
        """The destinations, or the one implied by ``worker:`` alone."""
        return self.destinations or [Destination(name=WORKERS, workers=True)]

    @property
    def workload(self) -> WorkerSpec:
        """The flow's worker: asked for only where the flow runs workers (checked at parse)."""
        if self.worker is None:
            raise ConfigError(f"flow {self.name!r} has no `worker`")
        return self.worker

    @property
    def slots(self) -> int:
        """Requests one worker may get at a time: the pinned number, or ``auto``'s ceiling."""
        return CEILING if self.concurrency == "auto" else self.concurrency

    def pinned(self) -> int | None:
        """The fixed per-worker concurrency, None when it is found by measuring (``auto``)."""
        return None if self.concurrency == "auto" else self.concurrency

    def spec_hash(self) -> str:
        """A stable digest of the spec: equal specs give equal hashes (unchanged on re-apply)."""
        return hashlib.sha256(encode(self)).hexdigest()[:16]


class Flow(msgspec.Struct, kw_only=True):
    """A stored flow: the spec plus what Hookgate owns (id, status, times)."""

    id: str
    spec: FlowSpec
    status: Status = Status.RUNNING
    created_at: float
    updated_at: float

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def mode(self) -> Mode:
        return self.spec.mode

    @property
    def running(self) -> bool:
        """Delivering: its workers run and its queue is worked off."""
        return self.status is Status.RUNNING

    @property
    def accepting(self) -> bool:
        """Its URL takes requests (running or paused); a stopped flow's answers 404."""
        return self.status is not Status.STOPPED


# Settings that only one mode reads: a flow of the other mode is shown without them.
ONLY_FOR = {
    Mode.ASYNC: frozenset(
        {"max_workers", "idle_timeout", "retry", "dedupe_window", "schedule", "delivery"}
        | {"retention", "destinations", "filter", "order_key", "delay"}
    ),
    Mode.SYNC: frozenset({"replicas", "queue_timeout", "request_buffering"}),
}


def settings_for(mode: Mode, spec: dict[str, Any]) -> dict[str, Any]:
    """A spec's fields (as ``to_builtins`` gives them) without those the other mode ignores."""
    other = Mode.SYNC if mode is Mode.ASYNC else Mode.ASYNC
    return {k: v for k, v in spec.items() if k not in ONLY_FOR[other]}


def new_flow_id() -> str:
    """128 random bits, URL-safe base64 without padding (22 characters), never starting with
    ``-``: the CLI takes a flow by its id, and a leading dash would read as an option."""
    while (flow_id := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return flow_id


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value, enc_hook=enc_hook, order="deterministic")


def to_builtins(value: Any) -> Any:
    return msgspec.to_builtins(value, enc_hook=enc_hook, order="deterministic")
