"""The OpenAPI 3.1 document of the admin API; flow schemas come from the msgspec models."""

from __future__ import annotations

import functools
from typing import Any

from hookgate import __version__
from hookgate.admin import inputs
from hookgate.admin.schemas import schema_ref, schemas
from hookgate.store.base import MIN_PREFIX


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


STATUSES = {
    "400": "The request is malformed: the message names the field",
    "401": "Missing or wrong admin token",
    "404": "No such flow or delivery",
    "409": "A flow with that name exists already",
    "422": "Well-formed, but not applicable here: the message names the field (a secret"
    " reference that does not resolve, a worker this runtime cannot run, an invalid cron"
    " expression or time zone, …)",
    "503": "The store cannot be used now; retry later",
}


NULL = {"type": "null", "description": "the same as leaving the field out"}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(schema_ref("Error"), STATUSES[code]) for code in ("401", *codes, "503")}


FLOW_REF = {
    "name": "ref",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "flow name or id",
}


@functools.cache
def openapi_document(runtime: str = "local") -> dict[str, Any]:
    spec, components = schemas(runtime)
    flow_ok = _json(schema_ref("Flow"))
    body = {"required": True, "content": {"application/json": {"schema": spec}}}
    delivery_id = {"type": "string", "pattern": inputs.DELIVERY_ID}
    ref = {
        "type": "string",
        "pattern": inputs.DELIVERY_REF,
        "not": {"const": inputs.SIBLING},
        "description": "the delivery id, the caller's request id (X-Request-Id), the"
        f" provider's delivery id (e.g. X-GitHub-Delivery), or a prefix of one ({MIN_PREFIX}"
        " characters or more)",
    }
    filters = {
        "flow": {"type": "string", "description": "flow name or id"},
        "status": {"enum": inputs.STATUSES},
        "since": {"type": "number", "description": "received at or after (Unix seconds)"},
        "until": {"type": "number", "description": "received before (Unix seconds)"},
    }
    query = {
        **filters,
        "limit": {"type": "integer", "minimum": 1, "maximum": inputs.MAX_PAGE, "default": 50},
        "cursor": {
            "type": "string",
            "pattern": inputs.CURSOR,
            "description": "the previous page's `cursor`",
        },
    }
    paths = {
        "/api/v1/flows": {
            "get": {
                "summary": "List flows",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"items": {"type": "array", "items": schema_ref("Flow")}},
                        }
                    ),
                    **_errors(),
                },
            },
            "post": {
                "summary": "Create a flow",
                "requestBody": body,
                "responses": {"201": flow_ok, **_errors("400", "409", "422")},
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
                                "required": ["flows"],
                                "properties": {"flows": {"type": "array", "items": spec}},
                                "additionalProperties": False,
                            }
                        }
                    },
                },
                "responses": {"200": _json({"type": "object"}), **_errors("400", "422")},
            }
        },
        "/api/v1/flows/{ref}": {
            "parameters": [FLOW_REF],
            "get": {"summary": "Get a flow", "responses": {"200": flow_ok, **_errors("404")}},
            "put": {
                "summary": "Replace a flow's spec (id kept; a masked value keeps the stored one)",
                "requestBody": body,
                "responses": {"200": flow_ok, **_errors("400", "404", "409", "422")},
            },
            "delete": {
                "summary": "Delete a flow and its deliveries",
                "responses": {"200": _json({"type": "object"}), **_errors("404")},
            },
        },
        "/api/v1/flows/{ref}/start": {
            "parameters": [FLOW_REF],
            "post": {"summary": "Start a flow", "responses": {"200": flow_ok, **_errors("404")}},
        },
        "/api/v1/flows/{ref}/stop": {
            "parameters": [FLOW_REF],
            "post": {
                "summary": "Stop a flow (its URL answers 404 until started)",
                "responses": {"200": flow_ok, **_errors("404")},
            },
        },
        "/api/v1/flows/{ref}/pause": {
            "parameters": [FLOW_REF],
            "post": {
                "summary": "Pause an async flow: its URL still accepts and stores, nothing is"
                " delivered until it is resumed",
                "responses": {"200": flow_ok, **_errors("404", "422")},
            },
        },
        "/api/v1/flows/{ref}/resume": {
            "parameters": [FLOW_REF],
            "post": {
                "summary": "Resume a paused flow (or start a stopped one): what it holds is"
                " delivered",
                "responses": {"200": flow_ok, **_errors("404")},
            },
        },
        "/api/v1/flows/{ref}/snapshot": {
            "parameters": [FLOW_REF],
            "get": {
                "summary": "The snapshot a polling flow carries to its next run",
                "responses": {"200": _json({"type": "object"}), **_errors("404")},
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
                "responses": {"200": _json({"type": "object"}), **_errors("404", "422")},
            },
            "delete": {
                "summary": "Forget the snapshot (the next run gets null)",
                "responses": {"200": _json({"type": "object"}), **_errors("404")},
            },
        },
        "/api/v1/flows/{ref}/run": {
            "parameters": [FLOW_REF],
            "post": {
                "summary": "Enqueue a poll run now, outside the schedule",
                "responses": {"202": _json({"type": "object"}), **_errors("404", "422")},
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
                        "content": {
                            "text/event-stream": {
                                "schema": {
                                    "type": "object",
                                    "required": ["data"],
                                    "properties": {
                                        "event": {"type": "string"},
                                        "data": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    **_errors("404"),
                },
            }
        },
        "/api/v1/deliveries": {
            "get": {
                "summary": "List deliveries, newest first",
                "parameters": [
                    {"name": name, "in": "query", "schema": schema}
                    for name, schema in query.items()
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "items": {"type": "array", "items": schema_ref("Delivery")},
                                "cursor": {"type": ["string", "null"]},
                            },
                        }
                    ),
                    **_errors("400", "404"),
                },
            }
        },
        "/api/v1/deliveries/{id}": {
            "get": {
                "summary": "A delivery with its request and attempts, by any of its ids",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": ref}],
                "responses": {
                    "200": _json(schema_ref("Delivery")),
                    "409": _json(
                        schema_ref("Ambiguous"),
                        "The id names several deliveries (a prefix, or a request id sent"
                        " twice): they are listed",
                    ),
                    "405": _json(
                        schema_ref("Error"),
                        f"`{inputs.SIBLING}` is the path /api/v1/deliveries/{inputs.SIBLING}"
                        " (POST only), never an id",
                    ),
                    **_errors("400", "404"),
                },
            },
            "delete": {
                "summary": "Delete a delivery (by its delivery id only)",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": delivery_id}
                ],
                "responses": {"200": _json({"type": "object"}), **_errors("404")},
            },
        },
        "/api/v1/deliveries/replay": {
            "post": {
                "summary": "Replay deliveries by ids, or by flow/status/time range (default: dead)",
                "requestBody": {
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "ids": {"type": ["array", "null"], "items": {"type": "string"}},
                                    **{n: {"anyOf": [f, NULL]} for n, f in filters.items()},
                                },
                                "additionalProperties": False,
                            }
                        }
                    }
                },
                "responses": {"200": _json({"type": "object"}), **_errors("400", "404")},
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
