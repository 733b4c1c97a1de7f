"""``/api/v1/deliveries``: filters, cursor paging, the stored request, replay and delete."""

from __future__ import annotations

import base64
import sys
import time
from typing import Any

import httpx
import pytest
from tests.admin.conftest import spec
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually

FLAKY = [sys.executable, str(ROOT / "tests" / "workers" / "flaky.py")]


def listing(gateway: GatewayProcess, **params: Any) -> dict[str, Any]:
    response = gateway.admin("GET", "/api/v1/deliveries", params=params)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def post(url: str, body: bytes = b"{}", **headers: str) -> str:
    answer = httpx.post(url, content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    request_id: str = answer.json()["requestId"]
    return request_id


@pytest.fixture(scope="module")
def parked(gateway: GatewayProcess) -> tuple[str, list[str]]:
    """A flow whose worker never starts, with 7 queued requests (oldest first)."""
    flow = gateway.admin("POST", "/api/v1/flows", json=spec("dl-parked")).json()
    return flow["id"], [post(flow["url"], f'{{"n": {i}}}'.encode()) for i in range(7)]


@pytest.fixture(scope="module")
def worked(gateway: GatewayProcess) -> dict[str, list[str]]:
    """A flow with a real worker: two requests done, two dead (400)."""
    body = spec(
        "dl-worked",
        worker={"command": FLAKY},
        retry={"max_attempts": 1},
        idle_timeout="1s",
    )
    flow = gateway.admin("POST", "/api/v1/flows", json=body).json()
    done = [post(flow["url"]) for _ in range(2)]
    dead = [post(flow["url"] + "?status=400") for _ in range(2)]

    def settled() -> bool:
        items = listing(gateway, flow="dl-worked")["items"]
        return len(items) == 4 and all(d["status"] in ("done", "dead") for d in items)

    eventually(settled, timeout=30)
    return {"done": done, "dead": dead}


def test_pages_follow_the_cursor_newest_first(
    gateway: GatewayProcess, parked: tuple[str, list[str]]
) -> None:
    flow_id, sent = parked
    seen: list[dict[str, Any]] = []
    page = listing(gateway, flow=flow_id, limit=3)
    sizes = [len(page["items"])]
    seen += page["items"]
    while page["cursor"]:
        page = listing(gateway, flow=flow_id, limit=3, cursor=page["cursor"])
        sizes.append(len(page["items"]))
        seen += page["items"]
    assert sizes == [3, 3, 1]
    assert [d["requestId"] for d in seen] == list(reversed(sent))
    assert all(d["flowId"] == flow_id and d["flow"] == "dl-parked" for d in seen)
    assert all(d["status"] == "queued" for d in seen)
    received = [d["receivedAt"] for d in seen]
    assert received == sorted(received, reverse=True)
    # A page exactly as big as what is left ends without a cursor.
    assert listing(gateway, flow="dl-parked", limit=7)["cursor"] is None


def test_filters_by_flow_and_status(
    gateway: GatewayProcess, parked: tuple[str, list[str]], worked: dict[str, list[str]]
) -> None:
    by_status = {
        status: {d["requestId"] for d in listing(gateway, flow="dl-worked", status=status)["items"]}
        for status in ("queued", "leased", "done", "dead")
    }
    assert by_status == {
        "queued": set(),
        "leased": set(),
        "done": set(worked["done"]),
        "dead": set(worked["dead"]),
    }
    queued = {d["requestId"] for d in listing(gateway, status="queued", limit=1000)["items"]}
    assert set(parked[1]) <= queued
    assert not queued & set(worked["done"] + worked["dead"])
    dead = listing(gateway, status="dead", limit=1000)["items"]
    assert {d["lastError"][:9] for d in dead if d["flow"] == "dl-worked"} == {"HTTP 400:"}


def test_time_range_filter(gateway: GatewayProcess, name: str) -> None:
    flow = gateway.admin("POST", "/api/v1/flows", json=spec(name)).json()
    before = post(flow["url"])
    middle = time.time()
    after = post(flow["url"])
    newer = {d["requestId"] for d in listing(gateway, flow=name, since=middle)["items"]}
    older = {d["requestId"] for d in listing(gateway, flow=name, until=middle)["items"]}
    assert (newer, older) == ({after}, {before})


@pytest.mark.parametrize(
    "params, words",
    [
        ({"status": "failed"}, "queued, leased, done, dead"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "many"}, "many"),
        ({"cursor": "not-a-cursor"}, "not-a-cursor"),
        ({"since": "yesterday"}, "yesterday"),
    ],
)
def test_bad_query_parameters_are_400(
    gateway: GatewayProcess, params: dict[str, str], words: str
) -> None:
    response = gateway.admin("GET", "/api/v1/deliveries", params=params)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]


def test_a_delivery_shows_the_stored_request(
    gateway: GatewayProcess, parked: tuple[str, list[str]]
) -> None:
    flow = gateway.flow("dl-parked")
    request_id = post(
        flow["url"] + "/sub/path?x=1",
        b'{"caf\xc3\xa9": true}',
        **{"content-type": "application/json", "x-request-id": "admin-show-1"},
    )
    (summary,) = [
        d for d in listing(gateway, flow="dl-parked")["items"] if d["requestId"] == request_id
    ]
    assert "body" not in summary  # lists stay small
    detail = gateway.admin("GET", f"/api/v1/deliveries/{summary['id']}").json()
    assert detail["requestId"] == "admin-show-1"
    assert detail["method"] == "POST"
    assert detail["path"] == "/sub/path"
    assert detail["query"] == "x=1"
    assert detail["source"] == "127.0.0.1"
    assert detail["bodyEncoding"] == "utf-8"
    assert detail["body"] == '{"café": true}'
    assert detail["size"] == len(b'{"caf\xc3\xa9": true}')
    assert ["content-type", "application/json"] in detail["headers"]
    assert detail["history"] == []
    assert detail["status"] == "queued"


def test_a_binary_body_comes_back_base64(
    gateway: GatewayProcess, parked: tuple[str, list[str]]
) -> None:
    raw = bytes(range(256)) + b"\xff\xfe\x00"
    request_id = post(gateway.flow("dl-parked")["url"], raw, **{"content-type": "image/png"})
    (summary,) = [
        d for d in listing(gateway, flow="dl-parked")["items"] if d["requestId"] == request_id
    ]
    detail = gateway.admin("GET", f"/api/v1/deliveries/{summary['id']}").json()
    assert detail["bodyEncoding"] == "base64"
    assert base64.b64decode(detail["body"]) == raw
    assert detail["size"] == len(raw)


def test_history_records_each_attempt(
    gateway: GatewayProcess, worked: dict[str, list[str]]
) -> None:
    items = listing(gateway, flow="dl-worked")["items"]
    dead = next(d for d in items if d["requestId"] == worked["dead"][0])
    detail = gateway.admin("GET", f"/api/v1/deliveries/{dead['id']}").json()
    (attempt,) = detail["history"]
    assert attempt["number"] == 1
    assert attempt["status_code"] == 400
    assert attempt["duration_ms"] >= 0
    assert '"attempt": 1' in attempt["response"]


def test_replay_by_id_and_refusals(gateway: GatewayProcess, parked: tuple[str, list[str]]) -> None:
    assert gateway.admin("POST", "/api/v1/deliveries/replay", json={"ids": ["nope"]}).json() == {
        "replayed": 0
    }
    for body in ([1, 2], {"ids": "abc"}, {"ids": [1]}):
        response = gateway.admin("POST", "/api/v1/deliveries/replay", json=body)
        assert response.status_code == 400, response.text
    assert (
        gateway.admin("POST", "/api/v1/deliveries/replay", json={"flow": "nope"}).status_code == 404
    )


def test_replay_starts_a_new_series_of_attempts_and_keeps_history(
    gateway: GatewayProcess, name: str
) -> None:
    body = spec(name, worker={"command": FLAKY}, retry={"max_attempts": 1}, idle_timeout="1s")
    flow = gateway.admin("POST", "/api/v1/flows", json=body).json()
    request_id = post(flow["url"] + "?status=500")

    def history(status: str, attempts: int) -> list[dict[str, Any]] | None:
        (item,) = listing(gateway, flow=name)["items"]
        if item["status"] != status:
            return None
        found: list[dict[str, Any]] = gateway.admin(
            "GET", f"/api/v1/deliveries/{item['id']}"
        ).json()["history"]
        return found if len(found) == attempts else None

    first = eventually(lambda: history("dead", 1), timeout=20)
    (item,) = listing(gateway, flow=name)["items"]
    assert item["requestId"] == request_id
    replayed = gateway.admin("POST", "/api/v1/deliveries/replay", json={"ids": [item["id"]]})
    assert replayed.json() == {"replayed": 1}
    # The worker still answers 500, so the new series ends dead again after its one attempt.
    second = eventually(lambda: history("dead", 2), timeout=20)
    assert first is not None and second is not None
    assert second[0] == first[0]
    assert [(a["number"], a["status_code"]) for a in second] == [(1, 500), (1, 500)]


def test_delete_a_delivery(gateway: GatewayProcess, name: str) -> None:
    flow = gateway.admin("POST", "/api/v1/flows", json=spec(name)).json()
    post(flow["url"])
    (item,) = listing(gateway, flow=name)["items"]
    deleted = gateway.admin("DELETE", f"/api/v1/deliveries/{item['id']}")
    assert deleted.json() == {"deleted": 1}
    assert gateway.admin("GET", f"/api/v1/deliveries/{item['id']}").status_code == 404
    assert listing(gateway, flow=name)["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "99999999999999999999"}, "cursor"),
        ({"limit": ""}, "limit"),
        ({"status": ""}, "status"),
        ({"since": "nan"}, "since"),
        ({"until": "1e999"}, "until"),
    ],
)
def test_out_of_range_query_values_are_400_naming_the_field(
    gateway: GatewayProcess, params: dict[str, str], field: str
) -> None:
    response = gateway.admin("GET", "/api/v1/deliveries", params=params)
    assert response.status_code == 400, response.text
    assert f"field {field}" in response.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"flow": [1]}, "flow"),
        ({"status": 5}, "status"),
        ({"since": [1]}, "since"),
        ({"status": "gone"}, "status"),
        ({"flow": "a\u0000b"}, "flow"),
        ({"stauts": "dead"}, "stauts"),
    ],
)
def test_malformed_replay_filters_are_400_naming_the_field(
    gateway: GatewayProcess, body: dict[str, Any], field: str
) -> None:
    response = gateway.admin("POST", "/api/v1/deliveries/replay", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]


def test_an_id_that_cannot_be_a_delivery_is_not_found(gateway: GatewayProcess) -> None:
    for delivery_id in ("a%00b", "x" * 32, "0" * 33):
        response = gateway.admin("DELETE", f"/api/v1/deliveries/{delivery_id}")
        assert response.status_code == 404, response.text
    for method in ("GET", "DELETE"):  # the sibling path, not a lookup
        assert gateway.admin(method, "/api/v1/deliveries/replay").status_code == 405
    for ref in ("x" * 32, "0" * 33):
        response = gateway.admin("GET", f"/api/v1/deliveries/{ref}")
        assert response.status_code == 404, response.text
        assert repr(ref) in response.json()["error"]


@pytest.mark.parametrize("ref", ["a%00b", "a%0Ab", "%7F" * 8, "x" * 257])
def test_a_lookup_that_cannot_name_a_delivery_is_400(gateway: GatewayProcess, ref: str) -> None:
    response = gateway.admin("GET", f"/api/v1/deliveries/{ref}")
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith("invalid request: field id: expected a delivery id")


def test_a_delivery_is_found_by_request_id_and_by_prefix(
    gateway: GatewayProcess, parked: tuple[str, list[str]]
) -> None:
    _, request_ids = parked
    (item,) = [
        d for d in listing(gateway, flow="dl-parked")["items"] if d["requestId"] == request_ids[3]
    ]
    for ref in (request_ids[3], item["id"], item["id"][:24], request_ids[3][:24]):
        found = gateway.admin("GET", f"/api/v1/deliveries/{ref}")
        assert found.status_code == 200, found.text
        assert (found.json()["id"], found.json()["body"]) == (item["id"], '{"n": 3}')


def test_a_prefix_of_several_lists_them_and_a_short_one_finds_nothing(
    gateway: GatewayProcess, parked: tuple[str, list[str]]
) -> None:
    url = gateway.flow("dl-parked")["url"]
    twins = {post(url, **{"x-request-id": f"twin-order-{n}"}) for n in "ab"}
    several = gateway.admin("GET", "/api/v1/deliveries/twin-order")
    assert several.status_code == 409, several.text
    assert (
        several.json()["error"] == "'twin-order' matches 2 deliveries: show one by its delivery id"
    )
    assert {d["requestId"] for d in several.json()["candidates"]} == twins
    assert all("body" not in d for d in several.json()["candidates"])
    short = gateway.admin("GET", "/api/v1/deliveries/twin-or")
    assert short.status_code == 404
    assert "a prefix needs 8 characters or more" in short.json()["error"]


def test_credentials_in_a_stored_request_are_masked(
    gateway: GatewayProcess, parked: tuple[str, list[str]]
) -> None:
    flow = gateway.flow("dl-parked")
    secrets = {
        "authorization": "Bearer caller-secret",
        "cookie": "session=caller-cookie",
        "x-hub-signature-256": "sha256=caller-signature",
    }
    request_id = post(flow["url"], b"{}", **secrets)
    (summary,) = [
        d for d in listing(gateway, flow="dl-parked")["items"] if d["requestId"] == request_id
    ]
    response = gateway.admin("GET", f"/api/v1/deliveries/{summary['id']}")
    for secret in secrets.values():
        assert secret.split("=")[-1].split()[-1] not in response.text
    headers = dict(response.json()["headers"])
    assert headers["authorization"].startswith("Bearer ••••••")


def test_a_wrong_method_names_every_method_of_the_path(gateway: GatewayProcess) -> None:
    response = gateway.admin("OPTIONS", "/api/v1/deliveries/" + "0" * 32)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "DELETE"}
    response = gateway.admin("POST", "/api/v1/flows/x/snapshot")
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "DELETE"}
