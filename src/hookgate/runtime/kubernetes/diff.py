"""Desired versus observed objects: what to apply and what to delete, decided purely.

An object is applied when it is missing, its spec-hash annotation differs (the flow
changed) or a field Hookgate sets was changed by someone else (drift, e.g. ``kubectl
scale``). Fields the API server adds are ignored, and so are ``resources``, which it
rewrites into canonical quantities (the hash covers them).
"""

from __future__ import annotations

from typing import Any

import msgspec

from hookgate.runtime.kubernetes import health
from hookgate.runtime.kubernetes.names import SPEC_HASH_ANNOTATION

Object = dict[str, Any]
UNCOMPARED = frozenset({"resources"})


class Plan(msgspec.Struct, frozen=True):
    apply: list[Object]
    delete: list[tuple[str, str]]
    failed_job: Object | None = None

    @property
    def empty(self) -> bool:
        return not self.apply and not self.delete


def spec_hash(obj: Object) -> str | None:
    value = (obj.get("metadata", {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    return value if isinstance(value, str) else None


def covers(have: Any, want: Any) -> bool:
    """Whether ``have`` holds every value of ``want`` (extra keys in ``have`` are fine)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            key in UNCOMPARED or (key in have and covers(have[key], value))
            for key, value in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(have) == len(want)
            and all(covers(h, w) for h, w in zip(have, want, strict=True))
        )
    return bool(have == want)


def needs_apply(want: Object, have: Object | None) -> bool:
    return have is None or spec_hash(have) != spec_hash(want) or not covers(have, want)


def plan(want: list[Object], have: dict[str, dict[str, Object]]) -> Plan:
    """The writes that turn ``have`` (kind -> name -> object) into ``want``.

    A finished Job cannot be restarted, so a wanted Job whose namesake is over is deleted
    and created afresh; a failed one is reported in ``failed_job`` so the caller can back off.
    """
    wanted = {(obj["kind"], obj["metadata"]["name"]): obj for obj in want}
    delete = [
        (kind, name)
        for kind, objects in have.items()
        for name in objects
        if (kind, name) not in wanted
    ]
    apply: list[Object] = []
    failed: Object | None = None
    for (kind, name), obj in wanted.items():
        current = have.get(kind, {}).get(name)
        if kind == "Job" and current is not None and not health.is_active(current):
            if health.finished(current) == "Failed":
                failed = current
            delete.append((kind, name))
            apply.append(obj)
        elif needs_apply(obj, current):
            apply.append(obj)
    return Plan(apply=apply, delete=delete, failed_job=failed)
