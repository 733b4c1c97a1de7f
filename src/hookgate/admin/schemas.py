"""The admin API's component schemas: the flow spec's from its msgspec model, tightened."""

from __future__ import annotations

from typing import Any

import msgspec

from hookgate.admin import inputs
from hookgate.domain.flows import NAME, FlowSpec, Status
from hookgate.domain.redaction import MASK
from hookgate.domain.units import ByteSize, Duration


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_UNITS: dict[type, tuple[str, str, str]] = {
    Duration: (
        "number",
        r"^(\d+(\.\d+)?(ms|s|m|h|d))+$",
        "seconds, or a duration like '30s', '5m', '1h30m'",
    ),
    ByteSize: (
        "integer",
        r"^\d+(\.\d+)?\s*([kKmMgG][iI]?[bB]|[bB])?$",
        "bytes, or a size like '10MB', '512KiB'",
    ),
}
"""The types msgspec cannot describe: a plain number, or a text with a unit."""


def _schema_hook(type_: type) -> dict[str, Any]:
    if type_ not in _UNITS:
        raise NotImplementedError
    number, pattern, description = _UNITS[type_]
    return {
        "anyOf": [{"type": number, "minimum": 0}, {"type": "string", "pattern": pattern}],
        "description": description,
    }


SECRET_REF = {"anyOf": [{"type": "string", "pattern": "^(env|file):.+"}, {"const": MASK}]}
SECRET_REFS = {
    "anyOf": [SECRET_REF, {"type": "array", "minItems": 1, "items": SECRET_REF}],
    "description": "a reference, never the secret: 'env:NAME' or 'file:PATH' (a list rotates);"
    f" shown as {MASK!r}, which sent back keeps the stored reference",
}


def _tightened(components: dict[str, Any], *, runtime: str) -> None:
    """What the spec's own checks refuse, said in the schema, so a client can know it first."""
    props = {name: schema.get("properties", {}) for name, schema in components.items()}
    props["FlowSpec"]["name"].update(pattern=NAME.pattern)
    if runtime == "local":
        components["WorkerSpec"]["required"] = ["command"]
        props["WorkerSpec"]["command"] = {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string"},
        }
    else:
        components["WorkerSpec"]["required"] = ["image"]
        props["WorkerSpec"]["image"] = {"type": "string", "minLength": 1}
    props["WorkerSpec"]["port"].update(minimum=1, maximum=65535)
    props["WorkerSpec"]["readiness_path"]["anyOf"][0]["pattern"] = "^/"
    props["RetryPolicy"]["max_attempts"]["minimum"] = 1
    props["RateLimit"]["rate"]["exclusiveMinimum"] = 0
    for schema in props.values():
        for field in ("secret", "token", "password"):
            if field in schema:
                schema[field] = SECRET_REFS


def schemas(runtime: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The flow spec's schema, and every component's (``runtime`` says what a worker needs)."""
    (spec,), components = msgspec.json.schema_components(
        [FlowSpec], schema_hook=_schema_hook, ref_template="#/components/schemas/{name}"
    )
    _tightened(components, runtime=runtime)
    components["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    }
    components["Ambiguous"] = {
        "type": "object",
        "required": ["error", "candidates"],
        "properties": {
            "error": {"type": "string"},
            "candidates": {"type": "array", "items": schema_ref("Delivery")},
        },
    }
    components["Flow"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "mode": {"enum": ["async", "sync"]},
            "status": {"enum": [*(status.value for status in Status), "failing"]},
            "url": {"type": "string"},
            "createdAt": {"type": "number"},
            "updatedAt": {"type": "number"},
            "spec": spec,
            "workers": {"type": "object"},
            "concurrencyLimit": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "Requests in flight the flow allows now, over its ready"
                " workers: found by measuring (`concurrency: auto`) or pinned. Null before"
                " it has one (no worker ready, no traffic since the gateway started).",
            },
        },
    }
    components["Delivery"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "requestId": {"type": "string"},
            "flowId": {"type": "string"},
            "status": {"enum": inputs.STATUSES},
            "destination": {"type": ["string", "null"]},
            "orderKey": {"type": ["string", "null"]},
            "attempts": {"type": "integer"},
            "body": {"type": "string"},
            "bodyEncoding": {"enum": ["utf-8", "base64"]},
            "headers": {"type": "array"},
            "history": {"type": "array"},
        },
    }
    return spec, components
