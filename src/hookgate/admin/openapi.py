"""The OpenAPI 3.1 document of the admin API; flow schemas come from the msgspec models."""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from hookgate import __version__
from hookgate.domain.flows import FlowSpec
from hookgate.domain.units import ByteSize, Duration


def _schema_hook(type_: type) -> dict[str, Any]:
    if type_ is Duration:
        return {
            "anyOf": [
                {"type": "number"},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"},
            ],
            "description": "seconds, or a duration like '30s', '5m', '1h30m'",
        }
    if type_ is ByteSize:
        return {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "description": "bytes, or a size like '10MB', '512KiB'",
        }
    raise NotImplementedError


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERROR = _json(_ref("Error"), "Error")
FLOW_REF = {
    "name": "ref",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "flow name or id",
}


@functools.cache
def openapi_document() -> dict[str, Any]:
    (spec,), components = msgspec.json.schema_components(
        [FlowSpec], schema_hook=_schema_hook, ref_template="#/components/schemas/{name}"
    )
    components["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    }
    components["Flow"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "mode": {"enum": ["async", "sync"]},
            "status": {"enum": ["running", "failing", "stopped"]},
            "url": {"type": "string"},
            "createdAt": {"type": "number"},
            "updatedAt": {"type": "number"},
            "spec": spec,
            "workers": {"type": "object"},
        },
    }
    components["Delivery"] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "requestId": {"type": "string"},
            "flowId": {"type": "string"},
            "status": {"enum": ["queued", "leased", "done", "dead"]},
            "attempts": {"type": "integer"},
            "body": {"type": "string"},
            "bodyEncoding": {"enum": ["utf-8", "base64"]},
            "headers": {"type": "array"},
            "history": {"type": "array"},
        },
    }
    flow_ok = _json(_ref("Flow"))
    errors = {"401": ERROR, "404": ERROR, "409": ERROR, "422": ERROR}
    body = {"required": True, "content": {"application/json": {"schema": spec}}}
    paths = {
        "/api/v1/flows": {
            "get": {
                "summary": "List flows",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"items": {"type": "array", "items": _ref("Flow")}},
                        }
                    )
                },
            },
            "post": {
                "summary": "Create a flow",
                "requestBody": body,
                "responses": {"201": flow_ok, **errors},
            },
        },
        "/api/v1/apply": {
            "post": {
                "summary": "Create or update flows by name (validated as a whole first)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"flows": {"type": "array", "items": spec}},
                            }
                        }
                    },
                },
                "responses": {"200": _json({"type": "object"}), **errors},
            }
        },
        "/api/v1/flows/{ref}": {
            "parameters": [FLOW_REF],
            "get": {"summary": "Get a flow", "responses": {"200": flow_ok, **errors}},
            "put": {
                "summary": "Replace a flow's spec (id kept)",
                "requestBody": body,
                "responses": {"200": flow_ok, **errors},
            },
            "delete": {
                "summary": "Delete a flow and its deliveries",
                "responses": {"200": _json({"type": "object"}), **errors},
            },
        },
        "/api/v1/flows/{ref}/start": {
            "parameters": [FLOW_REF],
            "post": {"summary": "Start a flow", "responses": {"200": flow_ok, **errors}},
        },
        "/api/v1/flows/{ref}/stop": {
            "parameters": [FLOW_REF],
            "post": {
                "summary": "Stop a flow (its URL answers 404 until started)",
                "responses": {"200": flow_ok, **errors},
            },
        },
        "/api/v1/flows/{ref}/snapshot": {
            "parameters": [FLOW_REF],
            "get": {
                "summary": "The snapshot a polling flow carries to its next run",
                "responses": {"200": _json({"type": "object"}), **errors},
            },
            "put": {
                "summary": "Replace the snapshot (JSON, at most 1 MB)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["snapshot"],
                                "properties": {"snapshot": {}},
                            }
                        }
                    },
                },
                "responses": {"200": _json({"type": "object"}), **errors},
            },
            "delete": {
                "summary": "Forget the snapshot (the next run gets null)",
                "responses": {"200": _json({"type": "object"}), **errors},
            },
        },
        "/api/v1/flows/{ref}/run": {
            "parameters": [FLOW_REF],
            "post": {
                "summary": "Enqueue a poll run now, outside the schedule",
                "responses": {"202": _json({"type": "object"}), **errors},
            },
        },
        "/api/v1/events": {
            "get": {
                "summary": "Live requests and delivery outcomes as server-sent events",
                "parameters": [
                    {
                        "name": "flow",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "flow name or id (default: all flows)",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "An event stream: one JSON object per `data:`",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **errors,
                },
            }
        },
        "/api/v1/deliveries": {
            "get": {
                "summary": "List deliveries, newest first",
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": "string"}}
                    for n in ("flow", "status", "limit", "cursor", "since", "until")
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "items": {"type": "array", "items": _ref("Delivery")},
                                "cursor": {"type": ["string", "null"]},
                            },
                        }
                    ),
                    **errors,
                },
            }
        },
        "/api/v1/deliveries/{id}": {
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": {
                "summary": "A delivery with its request and attempts",
                "responses": {"200": _json(_ref("Delivery")), **errors},
            },
            "delete": {
                "summary": "Delete a delivery",
                "responses": {"200": _json({"type": "object"}), **errors},
            },
        },
        "/api/v1/deliveries/replay": {
            "post": {
                "summary": "Replay deliveries by ids, or by flow/status/time range",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "ids": {"type": "array", "items": {"type": "string"}},
                                    "flow": {"type": "string"},
                                    "status": {"type": "string"},
                                    "since": {"type": "number"},
                                    "until": {"type": "number"},
                                },
                            }
                        }
                    }
                },
                "responses": {"200": _json({"type": "object"}), **errors},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hookgate admin API", "version": __version__},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
