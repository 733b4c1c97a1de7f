"""kmock's Kubernetes emulator, taught what the runtime relies on and kmock lacks.

Shared by the tests and ``bench/k8s_reconcile.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import enums, rendering

RESOURCES = (
    "v1/services",
    "apps/v1/deployments",
    "batch/v1/jobs",
    "policy/v1/poddisruptionbudgets",
    "v1/pods",
    "v1/events",
    "coordination.k8s.io/v1/leases",
)
WRITES = {enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    """kmock plus what a real API server does that the runtime depends on.

    * Server-side apply's upsert: applying a missing object creates it (kmock treats every
      PATCH as a merge patch of an existing object).
    * ``resourceVersion``: every write stamps a new one, lists report the current one, and
      a write carrying an outdated one is refused with 409 Conflict (optimistic locking).
    * Watches end after ``timeoutSeconds``; ``expire_watches`` ends every open watch and
      answers 410 Gone to any watch resuming from an older version, as an API server does
      once its watch cache has moved past it. Events while no watch runs are not replayed.
    * Server-side apply's field ownership, per manager and operation (``hookgate/Apply``,
      ``kubectl/Update``): an apply removes the fields its manager applied before and no
      longer sends (unless another manager owns them too), and changing a field another
      manager owns is a 409 Conflict unless the apply is forced, which takes the field over.
      Lists are atomic (a real server merges some by key; Hookgate's lists are all its own).
    * RBAC: after ``authorize(rules, token)``, requests bearing that token may do only what
      the Role's rules allow (403 Forbidden otherwise, in the API server's words); requests
      without it (the tests' own) are not restricted.
    """

    refusals: dict[str, tuple[int, str, str]] = attrs.field(factory=dict, init=False)
    _versions: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    version: int = attrs.field(default=0, init=False)
    expired_below: int = attrs.field(default=0, init=False)
    _expiry: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _role: tuple[str, list[dict[str, Any]]] | None = attrs.field(default=None, init=False)
    # object key -> "manager/Operation" -> the field paths it owns
    _owners: dict[Any, dict[str, set[Path]]] = attrs.field(factory=dict, init=False)

    def authorize(self, rules: list[dict[str, Any]], token: str) -> None:
        """Hold requests with ``Authorization: Bearer <token>`` to a Role's ``rules``."""
        self._role = (token, rules)

    def refuse_writes(self, plural: str, code: int, reason: str, message: str) -> None:
        """Answer writes to ``plural`` with an API error, as RBAC or a quota would."""
        self.refusals[plural] = (code, reason, message)

    def expire_watches(self) -> None:
        """End every open watch; resuming from any version seen so far gets 410 Gone."""
        self.expired_below = self.version + 1
        self._expiry.set()
        self._expiry = asyncio.Event()

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        forbidden = self._forbidden(request)
        if forbidden is not None:
            return aiohttp.web.json_response(forbidden, status=403)
        refusal = self.refusals.get(request.resource.plural or "") if request.resource else None
        if refusal is not None and request.action in WRITES:
            code, reason, message = refusal
            return aiohttp.web.json_response(_status(code, reason, message), status=code)
        content_type = request.headers.get("Content-Type", "")
        applying = content_type.startswith("application/apply-patch")
        if request.resource is not None and request.action in (
            enums.action.CREATE,
            enums.action.UPDATE,
        ):
            conflict = self._stamp(request) or self._own(request, applying=applying)
            if conflict is not None:
                return aiohttp.web.json_response(conflict, status=409)
        if request.resource is not None and request.action == enums.action.DELETE:
            self._owners.pop((request.resource, request.namespace, request.name), None)
        if request.action == enums.action.UPDATE and request.resource is not None and applying:
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key not in self.objects or self.objects[key].deleted:
                    if key in self.objects:
                        self.objects[key].create(request.data)
                    else:
                        self.objects[key] = request.data
                    raw = self.objects[key].raw
                    await self._buses[request.resource].put({"type": "ADDED", "object": raw})
                    return aiohttp.web.json_response(raw, status=201)
        return await super()._handle(request)

    def _forbidden(self, request: rendering.Request) -> dict[str, Any] | None:
        """The 403 answer if the request's bearer is held to a Role that does not allow it."""
        if self._role is None or request.resource is None:
            return None
        token, rules = self._role
        if request.headers.get("Authorization") != f"Bearer {token}":
            return None
        verbs = [_verb(request)]
        key = (request.resource, request.namespace, request.name)
        if verbs == ["patch"] and not self._exists(key):
            verbs.append("create")  # an apply that creates the object needs both
        group, plural = request.resource.group or "", request.resource.plural or ""
        for verb in verbs:
            if not any(_allows(rule, group, plural, verb, request.name) for rule in rules):
                what = f"{plural}{'.' + group if group else ''}"
                name = f' "{request.name}"' if request.name else ""
                return _status(
                    403,
                    "Forbidden",
                    f'{what}{name} is forbidden: User "system:serviceaccount:hookgate" cannot '
                    f'{verb} resource "{plural}" in API group "{group}" in the namespace '
                    f'"{request.namespace}"',
                )
        return None

    def _own(self, request: rendering.Request, *, applying: bool) -> dict[str, Any] | None:
        """Field ownership: record what the write sets; an apply also removes and conflicts."""
        if not isinstance(request.data, dict):
            return None
        name = request.name or request.data.get("metadata", {}).get("name")
        key = (request.resource, request.namespace or request.data["metadata"]["namespace"], name)
        manager = request.params.get("fieldManager", "unknown")
        operation = f"{manager}/{'Apply' if applying else 'Update'}"
        fields = _leaves(request.data)
        exists = self._exists(key)
        if not exists:
            self._owners[key] = {}
        owners = self._owners.setdefault(key, {})
        current = self.objects[key].raw if exists else {}
        if applying:
            taken = {
                (other, path)
                for other, paths in owners.items()
                if other != operation
                for path in paths & fields.keys()
                if _at(current, path) != fields[path]
            }
            if taken and request.params.get("force") != "true":
                listed = ", ".join(f'"{o}": .{".".join(p)}' for o, p in sorted(taken))
                return _status(409, "Conflict", f"Apply failed with conflicts: {listed}")
            for other, path in taken:
                owners[other].discard(path)
            shared = set().union(*(p for o, p in owners.items() if o != operation))
            for path in owners.get(operation, set()) - fields.keys() - shared:
                _put(request.data, path, None)  # kmock's patch removes keys set to None
            owners[operation] = set(fields)
        else:
            for other, paths in owners.items():
                if other != operation:
                    paths -= fields.keys()
            owners.setdefault(operation, set()).update(fields)
        return None

    def _stamp(self, request: rendering.Request) -> dict[str, Any] | None:
        """Check a write's ``resourceVersion`` precondition, then give it a new version."""
        if not isinstance(request.data, dict):
            return None
        metadata = request.data.setdefault("metadata", {})
        expected = metadata.get("resourceVersion")
        if expected is not None and request.action == enums.action.UPDATE:
            key = (request.resource, request.namespace, request.name)
            current = self.objects[key].raw if self._exists(key) else {}
            have = current.get("metadata", {}).get("resourceVersion")
            if have != expected:
                return _status(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on {request.resource.plural} "
                    f'"{request.name}": the object has been modified; please apply your '
                    "changes to the latest version and try again",
                )
        self.version = next(self._versions)
        metadata["resourceVersion"] = str(self.version)
        return None

    def _exists(self, key: Any) -> bool:
        """kmock's store has ``in`` but no ``get``, and keeps deleted objects as tombstones."""
        return key in self.objects and not self.objects[key].deleted

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        listing = await super()._serve_list(request)
        assert isinstance(listing, dict)
        listing["metadata"] = {"resourceVersion": str(self.version)}
        return listing

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        since = request.params.get("resourceVersion", "")
        if since.isdigit() and int(since) < self.expired_below:
            yield b""
            yield {"type": "ERROR", "object": _status(410, "Expired", f"too old: {since}")}
            return
        timeout = float(request.params.get("timeoutSeconds") or math.inf)
        expiry = asyncio.ensure_future(self._expiry.wait())
        events = aiter(super()._serve_watch(request))
        deadline = asyncio.get_running_loop().time() + timeout
        event: asyncio.Future[Any] | None = None
        try:
            while True:
                event = asyncio.ensure_future(anext(events))
                left = deadline - asyncio.get_running_loop().time()
                await asyncio.wait(
                    {event, expiry},
                    timeout=None if math.isinf(left) else max(left, 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not event.done():
                    return
                yield event.result()
        finally:
            expiry.cancel()
            if event is not None:
                event.cancel()


Path = tuple[str, ...]
UNOWNED = {("metadata", "resourceVersion"), ("metadata", "name"), ("metadata", "namespace")}


def _leaves(obj: dict[str, Any], prefix: Path = ()) -> dict[Path, Any]:
    """Every field path to a value that is not a map (lists are atomic), with its value."""
    found: dict[Path, Any] = {}
    for key, value in obj.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            found.update(_leaves(value, path))
        elif path not in UNOWNED and key not in ("apiVersion", "kind"):
            found[path] = value
    return found


def _at(obj: Any, path: Path) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _put(obj: dict[str, Any], path: Path, value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = value


def _verb(request: rendering.Request) -> str:
    if request.action == enums.action.UPDATE:
        return "update" if request.method == "PUT" else "patch"
    if request.action == enums.action.DELETE and request.name is None:
        return "deletecollection"
    return {
        enums.action.LIST: "list",
        enums.action.WATCH: "watch",
        enums.action.FETCH: "get",
        enums.action.CREATE: "create",
        enums.action.DELETE: "delete",
    }[request.action]


def _allows(rule: dict[str, Any], group: str, plural: str, verb: str, name: str | None) -> bool:
    names = rule.get("resourceNames")
    return (
        group in rule.get("apiGroups", [])
        and plural in rule.get("resources", [])
        and verb in rule.get("verbs", [])
        and (not names or name in names)
    )


@contextlib.asynccontextmanager
async def emulated() -> AsyncIterator[Emulator]:
    """A running emulator that knows the resources the runtime uses."""
    async with Emulator() as emulator, kmock.Server(emulator):
        for resource in RESOURCES:
            emulator.resources[resource] = {}
        yield emulator
