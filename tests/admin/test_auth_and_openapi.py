"""The admin listener's bearer token, and the OpenAPI 3.1 document of what it serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from starlette.routing import Mount, Route
from tests.conftest import TOKEN, GatewayProcess

from hookgate.config import load_settings
from hookgate.gateway import Gateway

PROTECTED = [
    ("GET", "/api/v1/flows"),
    ("POST", "/api/v1/flows"),
    ("GET", "/api/v1/flows/anything"),
    ("DELETE", "/api/v1/flows/anything"),
    ("POST", "/api/v1/apply"),
    ("GET", "/api/v1/deliveries"),
    ("POST", "/api/v1/deliveries/replay"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/metrics"),
]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer",
        f"Bearer{TOKEN}",
    ],
)
@pytest.mark.parametrize("method, path", PROTECTED)
def test_no_or_wrong_token_is_401(
    gateway: GatewayProcess, method: str, path: str, authorization: str | None
) -> None:
    headers = {"authorization": authorization} if authorization is not None else {}
    response = httpx.request(method, gateway.admin_base + path, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "missing or wrong admin token"}
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_right_token_is_accepted_whatever_the_scheme_case(gateway: GatewayProcess) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = httpx.get(
            gateway.admin_base + "/api/v1/flows", headers={"authorization": f"{scheme} {TOKEN}"}
        )
        assert response.status_code == 200


def test_the_public_listener_serves_no_admin_route(gateway: GatewayProcess) -> None:
    for _method, path in PROTECTED:
        response = httpx.get(gateway.base + path, headers={"authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 404


def document(gateway: GatewayProcess) -> dict[str, Any]:
    response = gateway.admin("GET", "/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    doc: dict[str, Any] = response.json()
    return doc


def test_openapi_document_is_valid_openapi_3_1(gateway: GatewayProcess) -> None:
    doc = document(gateway)
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # raises on anything that is not valid OpenAPI 3.1
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]
    flow_schema = doc["components"]["schemas"]["FlowSpec"]
    assert {"name", "mode"} <= set(flow_schema["required"])
    assert "destinations" in flow_schema["properties"]
    # Optional: an async flow may forward to url or broker destinations only.
    assert "worker" in flow_schema["properties"]
    assert "worker" not in flow_schema["required"]


def served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path) of every API route the admin app of a real gateway serves."""
    settings = load_settings(
        data_dir=str(tmp_path), listen="127.0.0.1:0", admin_listen="127.0.0.1:0"
    )
    app: Any = Gateway(settings).admin_app()
    while not hasattr(app, "routes"):
        app = app.app  # through the middleware to the router
    routes: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Mount):
            continue  # the console: HTML pages, not the API
        assert isinstance(route, Route)
        for method in route.methods or {"GET"}:
            if method != "HEAD":
                # The document names a parameter; the route also says how to match it.
                routes.add((method.lower(), re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)))
    return routes


def test_every_api_route_is_in_the_openapi_document(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    doc = document(gateway)
    documented = {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }
    served = {
        (method, path)
        for method, path in served_routes(tmp_path)
        if path.startswith("/api/") and path != "/api/v1/openapi.json"
    }
    assert len(served) >= 12
    assert served - documented == set()
    assert documented - served == set()
