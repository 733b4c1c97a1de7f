"""What the cluster has, as the watches last reported it, indexed by flow key.

Every replica keeps this cache (it answers ``endpoints`` and ``status`` without a request);
only the leader acts on it. Warning events are not labelled, so they are kept by the name
of the object they are about and matched to a flow by its name prefix.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hookgate.runtime.kubernetes.names import FLOW_LABEL

Object = dict[str, Any]
WORKLOADS = ("Service", "Deployment", "Job", "PodDisruptionBudget")
MAX_WARNINGS = 10_000


def flow_of(obj: Object) -> str | None:
    labels = obj.get("metadata", {}).get("labels") or {}
    key = labels.get(FLOW_LABEL)
    return key if isinstance(key, str) else None


class Observed:
    def __init__(self) -> None:
        self._by_flow: dict[str, dict[str, dict[str, Object]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        self.warnings: dict[str, Object] = {}

    def objects(self, key: str, kind: str) -> dict[str, Object]:
        """The flow's observed objects of one kind, by name."""
        flow = self._by_flow.get(key)
        return flow.get(kind, {}) if flow is not None else {}

    def get(self, kind: str, obj: Object) -> Object | None:
        """The last observed state of ``obj`` (by flow and name), if any."""
        key = flow_of(obj)
        return self.objects(key, kind).get(obj["metadata"]["name"]) if key is not None else None

    def put(self, kind: str, obj: Object) -> str | None:
        """Record an added/changed object; returns the flow it belongs to, if any."""
        if kind == "Event":
            self._warn(obj)
            return None
        key = flow_of(obj)
        if key is not None:
            self._by_flow[key][kind][obj["metadata"]["name"]] = obj
        return key

    def drop(self, kind: str, obj: Object) -> str | None:
        key = flow_of(obj)
        if key is not None and key in self._by_flow:
            self._by_flow[key][kind].pop(obj["metadata"]["name"], None)
        return key

    def replace(self, kind: str, objects: list[Object]) -> set[str]:
        """Swap in a fresh listing of one kind; returns the flows whose objects changed."""
        fresh: dict[str, dict[str, Object]] = defaultdict(dict)
        for obj in objects:
            key = flow_of(obj)
            if key is not None:
                fresh[key][obj["metadata"]["name"]] = obj
        changed = set()
        for key in set(fresh) | {k for k, kinds in self._by_flow.items() if kinds.get(kind)}:
            if self._by_flow[key].get(kind, {}) != fresh.get(key, {}):
                changed.add(key)
            self._by_flow[key][kind] = fresh.get(key, {})
        return changed

    def _warn(self, event: Object) -> None:
        if event.get("type") != "Warning":
            return
        name = (event.get("involvedObject") or {}).get("name")
        if not name:
            return
        if len(self.warnings) >= MAX_WARNINGS:
            self.warnings.pop(next(iter(self.warnings)))
        self.warnings.pop(name, None)
        self.warnings[name] = event

    def warnings_for(self, prefix: str) -> list[Object]:
        """Warning events about objects whose name starts with the flow's base name."""
        return [
            event
            for name, event in self.warnings.items()
            if name == prefix or name.startswith(prefix + "-")
        ]
