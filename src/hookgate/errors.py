"""The one error tree of Hookgate.

Foreign exceptions (sqlite3, psycopg, the worker transport's socket errors, lightkube) are
translated into these at the boundary of the module that imports the driver, so callers only
ever catch what is drawn here::

    HookgateError
    ├── ConfigError            a flow file, a flow body or a setting is invalid
    ├── FlowNotFound           no flow with that name or id
    ├── FlowConflict           a flow with that name exists already
    ├── StoreError             the store failed
    │   ├── StoreUnavailable   cannot reach / write the store now (answer 503, retry later)
    │   ├── StoreFull          the bound on queued bytes is reached (answer 503)
    │   └── SchemaMismatch     the database schema is newer than this code
    ├── DeliveryNotFound       no delivery with that id (or it was purged)
    ├── WorkerError            a worker could not be used
    │   ├── WorkerStartFailed  the worker process/pod never became ready
    │   ├── WorkerUnreachable  connection refused before anything was sent (safe to retry)
    │   ├── WorkerTimeout      no answer within the flow's timeout
    │   └── WorkerFailed       the worker broke the exchange (reset, invalid HTTP, died)
    └── RuntimeFailure         the runtime (processes, Kubernetes) refused an action
"""

from __future__ import annotations


class HookgateError(Exception):
    """Base of every error Hookgate raises on purpose."""


class ConfigError(HookgateError):
    """Invalid configuration; the message names the flow, the field and the problem."""


class FlowNotFound(HookgateError):
    pass


class FlowConflict(HookgateError):
    pass


class StoreError(HookgateError):
    pass


class StoreUnavailable(StoreError):
    pass


class StoreFull(StoreError):
    pass


class SchemaMismatch(StoreError):
    pass


class DeliveryNotFound(HookgateError):
    pass


class WorkerError(HookgateError):
    pass


class WorkerStartFailed(WorkerError):
    pass


class WorkerUnreachable(WorkerError):
    pass


class WorkerTimeout(WorkerError):
    pass


class WorkerFailed(WorkerError):
    pass


class RuntimeFailure(HookgateError):
    pass
