"""Names, labels and selectors of a flow's objects: deterministic, DNS-safe, collision-free.

A flow's name is human and may change or be reused after a delete; its id never changes but
is not a valid label value (it may start with ``-``). So every object carries a short hex
digest of the id (the flow *key*): it goes into names, which stay unique when two flows
share a name over time, and into the ``hookgate.io/flow`` label that selects the pods.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from hookgate.domain.flows import Flow

MANAGER = "hookgate"
FLOW_LABEL = "hookgate.io/flow"
FLOW_ID_ANNOTATION = "hookgate.io/flow-id"
SPEC_HASH_ANNOTATION = "hookgate.io/spec-hash"
MAX_NAME = 63
JOB_SUFFIX = 7  # "-" and six hex digits of the Job's spec hash

_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def flow_key(flow_id: str) -> str:
    """48 bits of the id's digest: a valid label value, unique among realistic flow counts."""
    return hashlib.sha256(flow_id.encode()).hexdigest()[:12]


def base_name(flow: Flow) -> str:
    """``hg-<name>-<key>``, a DNS-1035 label short enough to take a Job suffix."""
    key = flow_key(flow.id)
    room = MAX_NAME - JOB_SUFFIX - len("hg--") - len(key)
    part = _NOT_DNS.sub("-", flow.name.lower())[:room].strip("-")
    return f"hg-{part}-{key}" if part else f"hg-{key}"


def job_name(flow: Flow, spec_hash: str) -> str:
    return f"{base_name(flow)}-{spec_hash[: JOB_SUFFIX - 1]}"


def selector(flow_id: str, *, instance: str) -> dict[str, str]:
    """What selects a flow's pods; stable for its life (Deployment selectors are immutable)."""
    return {"app.kubernetes.io/instance": instance, FLOW_LABEL: flow_key(flow_id)}


def labels(flow: Flow, *, instance: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": flow.name,
        "app.kubernetes.io/component": f"{flow.mode.value}-worker",
        "app.kubernetes.io/part-of": "hookgate",
        "app.kubernetes.io/managed-by": MANAGER,
        **selector(flow.id, instance=instance),
    }


def digest(obj: Any) -> str:
    """A stable hash of a JSON-able object (key order does not matter)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
