"""``/api/v1/flows`` over HTTP: create, get, replace, delete, start, stop, apply, and refusals."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest
from tests.admin.conftest import spec
from tests.conftest import ROOT, TOKEN, GatewayProcess
from tests.e2e.helpers import eventually

FLAKY = [sys.executable, str(ROOT / "tests" / "workers" / "flaky.py")]


def error(response: httpx.Response, status: int) -> str:
    """The JSON error message of a refusal with ``status``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    message: str = body["error"]
    return message


def test_create_returns_the_flow_with_id_url_and_defaults(
    gateway: GatewayProcess, name: str
) -> None:
    created = gateway.admin("POST", "/api/v1/flows", json=spec(name))
    assert created.status_code == 201, created.text
    flow = created.json()
    assert flow["name"] == name
    assert flow["mode"] == "async"
    assert flow["status"] == "running"
    assert flow["url"] == f"{gateway.base}/hook/{flow['id']}"
    assert flow["spec"]["concurrency"] == "auto"
    assert flow["spec"]["timeout"] == 30
    assert flow["spec"]["retry"] == {"max_attempts": 10, "backoff": 1, "max_backoff": 3600}
    assert flow["createdAt"] == flow["updatedAt"]
    assert httpx.post(flow["url"], content=b"{}").status_code == 202


def test_the_flow_view_says_the_concurrency_limit_in_force(
    gateway: GatewayProcess, name: str
) -> None:
    """Null before any traffic; after deliveries, what ``auto`` found, or the pinned number."""
    pinned = f"{name}-pinned"
    worker = {"command": FLAKY}
    urls = [
        gateway.admin("POST", "/api/v1/flows", json=body).json()["url"]
        for body in (
            spec(name, worker=worker, idle_timeout="2m"),
            spec(pinned, worker=worker, idle_timeout="2m", concurrency=5, max_workers=1),
        )
    ]
    assert gateway.flow(name)["concurrencyLimit"] is None
    assert gateway.flow(pinned)["concurrencyLimit"] is None
    for url in urls:
        for _ in range(10):
            assert httpx.post(url, content=b"{}").status_code == 202

    def delivered(flow: str) -> bool:
        items = gateway.admin("GET", "/api/v1/deliveries", params={"flow": flow}).json()["items"]
        return len(items) == 10 and all(d["status"] == "done" for d in items)

    eventually(lambda: delivered(name) and delivered(pinned), timeout=30)
    found = gateway.flow(name)["concurrencyLimit"]
    assert isinstance(found, int) and found >= 1
    assert gateway.flow(pinned)["concurrencyLimit"] == 5
    listed = gateway.admin("GET", "/api/v1/flows").json()["items"]
    assert {f["name"]: f["concurrencyLimit"] for f in listed if f["name"] in (name, pinned)} == {
        name: found,
        pinned: 5,
    }


def test_get_by_name_and_by_id_and_list(gateway: GatewayProcess, name: str) -> None:
    flow = gateway.admin("POST", "/api/v1/flows", json=spec(name)).json()
    by_name = gateway.admin("GET", f"/api/v1/flows/{name}")
    by_id = gateway.admin("GET", f"/api/v1/flows/{flow['id']}")
    assert by_name.status_code == by_id.status_code == 200
    assert by_name.json()["id"] == by_id.json()["id"] == flow["id"]
    listed = gateway.admin("GET", "/api/v1/flows").json()["items"]
    assert [f["id"] for f in listed if f["name"] == name] == [flow["id"]]


def test_replace_keeps_the_id_and_says_what_happened(gateway: GatewayProcess, name: str) -> None:
    flow = gateway.admin("POST", "/api/v1/flows", json=spec(name)).json()
    same = gateway.admin("PUT", f"/api/v1/flows/{name}", json=spec(name))
    assert same.status_code == 200
    assert same.json()["outcome"] == "unchanged"
    assert same.json()["updatedAt"] == flow["updatedAt"]

    changed = gateway.admin("PUT", f"/api/v1/flows/{flow['id']}", json=spec(name, timeout="5s"))
    assert changed.status_code == 200
    body = changed.json()
    assert body["outcome"] == "updated"
    assert body["id"] == flow["id"]
    assert body["spec"]["timeout"] == 5
    assert body["updatedAt"] > flow["updatedAt"]
    assert gateway.flow(name)["spec"]["timeout"] == 5


def test_stop_and_start(gateway: GatewayProcess, name: str) -> None:
    flow = gateway.admin("POST", "/api/v1/flows", json=spec(name)).json()
    stopped = gateway.admin("POST", f"/api/v1/flows/{name}/stop")
    assert stopped.status_code == 200
    assert stopped.json()["status"] == "stopped"
    assert httpx.post(flow["url"]).status_code == 404
    assert gateway.admin("POST", f"/api/v1/flows/{name}/stop").json()["status"] == "stopped"
    started = gateway.admin("POST", f"/api/v1/flows/{flow['id']}/start")
    assert started.json()["status"] == "running"
    assert httpx.post(flow["url"]).status_code == 202


def test_pause_and_resume(gateway: GatewayProcess, name: str) -> None:
    flow = gateway.admin("POST", "/api/v1/flows", json=spec(name)).json()
    paused = gateway.admin("POST", f"/api/v1/flows/{name}/pause")
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert httpx.post(flow["url"]).status_code == 202
    assert httpx.head(flow["url"]).status_code == 200
    queued = gateway.admin("GET", "/api/v1/deliveries", params={"flow": name}).json()["items"]
    assert [d["status"] for d in queued] == ["queued"]
    resumed = gateway.admin("POST", f"/api/v1/flows/{flow['id']}/resume")
    assert resumed.json()["status"] == "running"


def test_only_an_async_flow_can_be_paused(gateway: GatewayProcess, name: str) -> None:
    sync = spec(name, mode="sync")
    gateway.admin("POST", "/api/v1/flows", json=sync)
    refused = gateway.admin("POST", f"/api/v1/flows/{name}/pause")
    assert refused.status_code == 422
    assert "stop it instead" in refused.json()["error"]
    assert gateway.flow(name)["status"] != "paused"  # (failing: its worker command is made up)
    gateway.admin("PUT", f"/api/v1/flows/{name}", json={**sync, "mode": "async"})
    gateway.admin("POST", f"/api/v1/flows/{name}/pause")
    made_sync = gateway.admin("PUT", f"/api/v1/flows/{name}", json=sync)
    assert made_sync.status_code == 422
    assert "resume it before making it sync" in made_sync.json()["error"]


def test_delete(gateway: GatewayProcess, name: str) -> None:
    flow = gateway.admin("POST", "/api/v1/flows", json=spec(name)).json()
    assert httpx.post(flow["url"], content=b"queued").status_code == 202
    deleted = gateway.admin("DELETE", f"/api/v1/flows/{name}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": flow["id"], "name": name, "deleted": True}
    assert "no flow" in error(gateway.admin("GET", f"/api/v1/flows/{name}"), 404)
    error(gateway.admin("DELETE", f"/api/v1/flows/{name}"), 404)
    assert httpx.post(flow["url"]).status_code == 404
    # Its deliveries went with it.
    items = gateway.admin("GET", "/api/v1/deliveries", params={"limit": 1000}).json()["items"]
    assert [d for d in items if d["flowId"] == flow["id"]] == []


def test_a_duplicate_name_is_409(gateway: GatewayProcess, name: str) -> None:
    other = name + "-other"
    assert gateway.admin("POST", "/api/v1/flows", json=spec(name)).status_code == 201
    assert gateway.admin("POST", "/api/v1/flows", json=spec(other)).status_code == 201
    assert name in error(gateway.admin("POST", "/api/v1/flows", json=spec(name)), 409)
    # Renaming a flow onto another's name is the same conflict.
    assert name in error(gateway.admin("PUT", f"/api/v1/flows/{other}", json=spec(name)), 409)
    assert gateway.flow(other)["name"] == other


@pytest.mark.parametrize(
    "body, field",
    [
        ({"mode": "async", "worker": {"command": ["x"]}}, "name"),
        ({"name": "n-1", "worker": {"command": ["x"]}}, "mode"),
        ({"name": "n-1", "mode": "async"}, "worker"),
        ({"name": "n-1", "mode": "sometimes", "worker": {"command": ["x"]}}, "mode"),
        (
            {"name": "n-1", "mode": "async", "worker": {"command": ["x"]}, "timeout": "soon"},
            "timeout",
        ),
        (
            {"name": "n-1", "mode": "async", "worker": {"command": ["x"]}, "concurrency": "8"},
            "concurrency",
        ),
        (
            {"name": "n-1", "mode": "async", "worker": {"command": ["x"]}, "max_body": "big"},
            "max_body",
        ),
        ({"name": "n-1", "mode": "async", "worker": {"command": ["x"]}, "colour": "red"}, "colour"),
        ({"name": "n-1", "mode": "async", "worker": {"command": "x"}}, "worker.command"),
        ({"name": "n-1", "mode": "async", "worker": {"command": ["x"], "shell": True}}, "shell"),
        (
            {
                "name": "n-1",
                "mode": "async",
                "worker": {"command": ["x"]},
                "retry": {"max_attempts": "3"},
            },
            "retry.max_attempts",
        ),
        ({"name": "N 1", "mode": "async", "worker": {"command": ["x"]}}, "name"),
        ({"name": "n-1", "mode": "async", "worker": {"image": "img:1"}}, "worker.command"),
        (
            {
                "name": "n-1",
                "mode": "async",
                "worker": {"command": ["x"]},
                "auth": [{"type": "github", "secret": "hunter2"}],
            },
            "auth[0]",
        ),
        (["not", "an", "object"], "object"),
    ],
)
def test_invalid_bodies_are_422_naming_the_field(
    gateway: GatewayProcess, body: Any, field: str
) -> None:
    message = error(gateway.admin("POST", "/api/v1/flows", json=body), 422)
    assert field in message
    assert "n-1" not in {f["name"] for f in gateway.admin("GET", "/api/v1/flows").json()["items"]}


@pytest.mark.parametrize("field", ["replicas", "max_workers"])
def test_more_than_256_workers_is_422(gateway: GatewayProcess, name: str, field: str) -> None:
    message = error(gateway.admin("POST", "/api/v1/flows", json=spec(name, **{field: 257})), 422)
    assert message == f"flow '{name}': field {field}: at most 256 workers per flow, got 257"
    created = gateway.admin("POST", "/api/v1/flows", json=spec(name, **{field: 256}))
    assert created.status_code == 201, created.text
    replaced = gateway.admin("PUT", f"/api/v1/flows/{name}", json=spec(name, **{field: 200000}))
    assert "at most 256 workers per flow, got 200000" in error(replaced, 422)
    applied = gateway.admin("POST", "/api/v1/apply", json={"flows": [spec(name, **{field: 10**9})]})
    assert "at most 256 workers per flow, got 1000000000" in error(applied, 422)
    assert gateway.flow(name)["spec"][field] == 256


def test_an_unknown_worker_user_is_422(gateway: GatewayProcess, name: str) -> None:
    body = spec(name, worker={"command": ["false"], "user": "hookgate-no-such-user"})
    message = error(gateway.admin("POST", "/api/v1/flows", json=body), 422)
    assert message == (
        f"flow '{name}': field worker.user: no user 'hookgate-no-such-user' on this machine"
    )
    error(gateway.admin("GET", f"/api/v1/flows/{name}"), 404)


def test_invalid_replacement_is_422_and_changes_nothing(gateway: GatewayProcess, name: str) -> None:
    gateway.admin("POST", "/api/v1/flows", json=spec(name))
    message = error(gateway.admin("PUT", f"/api/v1/flows/{name}", json=spec(name, timeout=-1)), 422)
    assert "timeout" in message
    assert gateway.flow(name)["spec"]["timeout"] == 30


@pytest.mark.parametrize("raw", [b"{", b"", b"not json", b'{"name": "x",}', b"\xff\xfe"])
def test_malformed_json_is_400(gateway: GatewayProcess, raw: bytes) -> None:
    response = httpx.post(
        gateway.admin_base + "/api/v1/flows",
        content=raw,
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
    )
    message = error(response, 400)
    assert "invalid request" in message


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/v1/flows/no-such-flow"),
        ("PUT", "/api/v1/flows/no-such-flow"),
        ("DELETE", "/api/v1/flows/no-such-flow"),
        ("POST", "/api/v1/flows/no-such-flow/start"),
        ("POST", "/api/v1/flows/no-such-flow/stop"),
        ("POST", "/api/v1/flows/no-such-flow/pause"),
        ("POST", "/api/v1/flows/no-such-flow/resume"),
        ("GET", "/api/v1/flows/AAAAAAAAAAAAAAAAAAAAAA"),
        ("GET", "/api/v1/deliveries/0123456789abcdef0123456789abcdef"),
        ("DELETE", "/api/v1/deliveries/0123456789abcdef0123456789abcdef"),
        ("GET", "/api/v1/deliveries?flow=no-such-flow"),
    ],
)
def test_unknown_things_are_404(gateway: GatewayProcess, method: str, path: str) -> None:
    body = spec("no-such-flow") if method == "PUT" else None
    error(gateway.admin(method, path, json=body), 404)


@pytest.mark.parametrize(
    "method, path, status",
    [("GET", "/api/v1/nothing-here", 404), ("PATCH", "/api/v1/flows", 405)],
)
def test_unknown_routes_and_methods_answer_json(
    gateway: GatewayProcess, method: str, path: str, status: int
) -> None:
    error(gateway.admin(method, path), status)


def test_apply_creates_updates_and_reports_unchanged(gateway: GatewayProcess, name: str) -> None:
    first, second = name + "-a", name + "-b"
    body = {"flows": [spec(first), spec(second)]}
    created = gateway.admin("POST", "/api/v1/apply", json=body)
    assert created.status_code == 200
    items = created.json()["items"]
    assert [(i["name"], i["outcome"]) for i in items] == [(first, "created"), (second, "created")]
    assert all(i["url"] == f"{gateway.base}/hook/{i['id']}" for i in items)

    body = {"flows": [spec(first), spec(second, timeout=9)]}
    again = gateway.admin("POST", "/api/v1/apply", json=body).json()["items"]
    assert [(i["name"], i["outcome"]) for i in again] == [(first, "unchanged"), (second, "updated")]
    assert [i["id"] for i in again] == [i["id"] for i in items]


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "BAD NAME", "mode": "async", "worker": {"command": ["x"]}},
        {"name": "needs-command", "mode": "async", "worker": {"image": "img:1"}},
        {
            "name": "inline-secret",
            "mode": "async",
            "worker": {"command": ["x"]},
            "auth": [{"type": "bearer", "token": "plain"}],
        },
    ],
)
def test_apply_is_all_or_nothing(gateway: GatewayProcess, name: str, bad: dict[str, Any]) -> None:
    body = {"flows": [spec(name), bad]}
    message = error(gateway.admin("POST", "/api/v1/apply", json=body), 422)
    assert "flows[1]" in message or bad["name"] in message
    error(gateway.admin("GET", f"/api/v1/flows/{name}"), 404)


def test_apply_refuses_duplicate_names_and_bad_shapes(gateway: GatewayProcess, name: str) -> None:
    message = error(
        gateway.admin("POST", "/api/v1/apply", json={"flows": [spec(name), spec(name)]}), 422
    )
    assert f"'{name}' is declared twice" in message
    error(gateway.admin("GET", f"/api/v1/flows/{name}"), 404)
    assert "flows" in error(gateway.admin("POST", "/api/v1/apply", json=[spec(name)]), 422)
    assert "flows" in error(gateway.admin("POST", "/api/v1/apply", json={"flows": {}}), 422)


def test_worker_env_values_are_masked_and_a_masked_spec_put_back_changes_nothing(
    gateway: GatewayProcess, name: str
) -> None:
    body = spec(name, worker={"command": ["false"], "env": {"API_KEY": "env-secret"}})
    created = gateway.admin("POST", "/api/v1/flows", json=body)
    assert created.status_code == 201, created.text
    assert "env-secret" not in created.text
    shown = gateway.flow(name)
    assert shown["spec"]["worker"]["env"] == {"API_KEY": "••••••"}
    assert "env-secret" not in gateway.admin("GET", "/api/v1/flows").text

    again = gateway.admin("PUT", f"/api/v1/flows/{name}", json=shown["spec"])
    assert again.json()["outcome"] == "unchanged"
    applied = gateway.admin("POST", "/api/v1/apply", json={"flows": [shown["spec"]]})
    assert applied.json()["items"][0]["outcome"] == "unchanged"


def test_a_nul_character_in_a_flow_is_refused_naming_the_field(
    gateway: GatewayProcess, name: str
) -> None:
    body = spec(name, worker={"command": ["run\u0000"]})
    response = gateway.admin("POST", "/api/v1/flows", json=body)
    assert response.status_code == 400, response.text
    assert "worker.command[0]" in response.json()["error"]
