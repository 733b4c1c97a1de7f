"""The SDK's values and rules, without a server."""

from __future__ import annotations

import msgspec
import pytest

from hookgate.errors import ConfigError
from hookgate.worker import HandlerApp, Request, Response
from hookgate.worker.adapter import as_asgi, to_response
from hookgate.worker.server import resolve_host, resolve_port


def test_request_reads_the_hookgate_headers() -> None:
    request = Request(
        method="POST",
        path="/orders",
        headers={
            "x-hookgate-flow": "flow-1",
            "x-hookgate-delivery": "d-1",
            "x-hookgate-attempt": "3",
            "idempotency-key": "k-1",
        },
        body=b'{"id": 7}',
    )
    assert (request.flow_id, request.delivery_id, request.attempt, request.idempotency_key) == (
        "flow-1",
        "d-1",
        3,
        "k-1",
    )
    assert request.json() == {"id": 7}


def test_request_without_hookgate_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKGATE_FLOW_ID", "from-env")
    request = Request(method="GET", path="/", headers={"x-hookgate-attempt": "x"})
    assert request.flow_id == "from-env"
    assert request.delivery_id is None
    assert request.attempt is None
    assert request.idempotency_key is None
    with pytest.raises(ValueError):
        request.json()


def test_request_is_frozen() -> None:
    request = Request(method="GET", path="/")
    with pytest.raises(AttributeError):
        request.path = "/other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("result", "status", "body", "content_type"),
    [
        ({"a": 1}, 200, b'{"a":1}', "application/json"),
        ("text", 200, "text", "text/plain; charset=utf-8"),
        (b"\x00", 200, b"\x00", "application/octet-stream"),
        (None, 204, b"", None),
    ],
)
def test_to_response(result: object, status: int, body: object, content_type: str | None) -> None:
    response = to_response(result)  # type: ignore[arg-type]
    assert (response.status, response.body) == (status, body)
    assert response.headers.get("content-type") == content_type


def test_to_response_keeps_a_response_and_refuses_other_types() -> None:
    response = Response(status=418)
    assert to_response(response) is response
    with pytest.raises(TypeError, match="not int"):
        to_response(42)  # type: ignore[arg-type]


def test_response_json() -> None:
    response = Response.json({"error": "taken"}, status=409, headers={"x-a": "b"})
    assert response.status == 409
    assert msgspec.json.decode(response.body) == {"error": "taken"}
    assert response.headers == {"content-type": "application/json", "x-a": "b"}


def test_as_asgi_tells_handlers_from_apps() -> None:
    async def app(scope: object, receive: object, send: object) -> None: ...

    def handle(request: Request) -> None: ...

    assert as_asgi(app) == (app, False)
    wrapped, is_handler = as_asgi(handle)
    assert is_handler
    assert isinstance(wrapped, HandlerApp)
    assert wrapped.handler is handle


@pytest.mark.parametrize("target", [lambda a, b: None, 42])
def test_as_asgi_refuses_anything_else(target: object) -> None:
    with pytest.raises(ConfigError, match="cannot serve"):
        as_asgi(target)  # type: ignore[arg-type]


def test_port_comes_from_the_argument_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8123")
    assert resolve_port(None) == 8123
    assert resolve_port(9000) == 9000


@pytest.mark.parametrize(
    ("env", "port", "message"),
    [
        (None, None, r"set \$PORT or pass port="),
        ("http", None, r"\$PORT must be a port number, not 'http'"),
        ("70000", None, "between 1 and 65535"),
        (None, 0, "between 1 and 65535"),
    ],
)
def test_port_errors(
    monkeypatch: pytest.MonkeyPatch, env: str | None, port: int | None, message: str
) -> None:
    if env is None:
        monkeypatch.delenv("PORT", raising=False)
    else:
        monkeypatch.setenv("PORT", env)
    with pytest.raises(ConfigError, match=message):
        resolve_port(port)


def test_host_is_loopback_unless_told_or_in_kubernetes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert resolve_host() == "127.0.0.1"
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert resolve_host() == "0.0.0.0"
    monkeypatch.setenv("HOST", "::1")
    assert resolve_host() == "::1"
