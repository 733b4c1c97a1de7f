"""The console over plain HTTP: sign-in, session cookie, CSRF, clear messages for bad input."""

from __future__ import annotations

import sys
from typing import Any

import httpx
import pytest
from tests.conftest import TOKEN, GatewayProcess
from tests.console.conftest import FLAKY, csrf_of, post_order, sign_in
from tests.e2e.helpers import eventually


def test_pages_need_a_session_and_send_you_to_sign_in(gateway: GatewayProcess) -> None:
    response = httpx.get(gateway.admin_base + "/console/flows")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/console/signin?reason=signin&next=")
    page = httpx.get(gateway.admin_base + response.headers["location"])
    assert "Sign in with the admin token" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_the_bearer_token_does_not_open_the_console(gateway: GatewayProcess) -> None:
    response = gateway.admin("GET", "/console/flows")
    assert response.status_code == 303


def test_sign_in_sets_a_strict_http_only_cookie_scoped_to_the_console(
    gateway: GatewayProcess,
) -> None:
    with httpx.Client(base_url=gateway.admin_base) as client:
        response = sign_in(client)
        assert response.status_code == 303
        assert response.headers["location"] == "/console/flows"
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if "hookgate_session=" in c
        )
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/console" in cookie
        assert TOKEN not in cookie
        assert "orders" in client.get("/console/flows").text


def test_wrong_token_is_refused_with_a_clear_message(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.admin_base) as client:
        response = sign_in(client, token="not-the-token")
        assert response.status_code == 401
        assert "Wrong admin token" in response.text
        assert "hookgate_session" not in response.headers.get("set-cookie", "")


def test_sign_in_without_its_csrf_token_is_refused(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.admin_base) as client:
        response = client.post("/console/signin", data={"token": TOKEN})
        assert response.status_code == 403
        assert "sign-in form had expired" in response.text


def test_an_unknown_or_expired_session_says_so(gateway: GatewayProcess) -> None:
    with httpx.Client(
        base_url=gateway.admin_base, cookies={"hookgate_session": "long-gone"}
    ) as client:
        response = client.get("/console/flows/orders")
        assert response.status_code == 303
        assert "reason=expired" in response.headers["location"]
        assert "next=%2Fconsole%2Fflows%2Forders" in response.headers["location"]
        assert "session has expired" in client.get(response.headers["location"]).text
        scripted = client.get("/console/flows/stats", headers={"accept": "application/json"})
        assert scripted.status_code == 401
        assert "session has expired" in scripted.json()["error"]


def test_state_changes_need_the_csrf_token(
    gateway: GatewayProcess, browser_client: httpx.Client
) -> None:
    missing = browser_client.post("/console/flows/orders/stop")
    assert missing.status_code == 403
    assert "security (CSRF) token" in missing.text
    wrong = browser_client.post("/console/flows/orders/stop", headers={"x-csrf-token": "x"})
    assert wrong.status_code == 403
    assert gateway.flow("orders")["status"] == "running"

    csrf = csrf_of(browser_client.get("/console/flows").text)
    stopped = browser_client.post("/console/flows/orders/stop", data={"csrf": csrf})
    assert stopped.status_code == 303
    assert gateway.flow("orders")["status"] == "stopped"
    assert "stopped" in browser_client.get(stopped.headers["location"]).text
    started = browser_client.post("/console/flows/orders/start", headers={"x-csrf-token": csrf})
    assert started.json() == {"ok": True, "message": "Flow orders started."}
    assert gateway.flow("orders")["status"] == "running"


def test_sign_out_ends_the_session(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.admin_base) as client:
        sign_in(client)
        csrf = csrf_of(client.get("/console/flows").text)
        cookie = client.cookies["hookgate_session"]
        out = client.post("/console/signout", data={"csrf": csrf})
        assert out.headers["location"] == "/console/signin?reason=signedout"
    again = httpx.get(gateway.admin_base + "/console/flows", cookies={"hookgate_session": cookie})
    assert "reason=expired" in again.headers["location"]


def test_a_purged_delivery_is_a_clear_404(browser_client: httpx.Client) -> None:
    response = browser_client.get("/console/deliveries/0123456789abcdef0123456789abcdef")
    assert response.status_code == 404
    assert "no longer exists" in response.text


def _dead_delivery(gateway: GatewayProcess, body: bytes, content_type: str) -> str:
    request_id = post_order(gateway, body, headers={"content-type": content_type})

    def dead() -> str | None:
        items = gateway.admin("GET", "/api/v1/deliveries?flow=orders&status=dead").json()
        return next((d["id"] for d in items["items"] if d["requestId"] == request_id), None)

    found: str = eventually(dead)
    return found


def test_binary_and_large_bodies_are_shown_in_part_with_a_download(
    gateway: GatewayProcess, browser_client: httpx.Client
) -> None:
    garbage = bytes(range(256)) * 4096  # 1 MiB, with NULs: not text
    delivery = _dead_delivery(gateway, garbage, "application/octet-stream")
    page = browser_client.get(f"/console/deliveries/{delivery}")
    assert page.status_code == 200
    assert "shown as hex" in page.text
    assert "only the first 16.4 KB are shown" in page.text
    assert len(page.text) < 200_000
    assert "00000000  00 01 02 03" in page.text
    raw = browser_client.get(f"/console/deliveries/{delivery}/body")
    assert raw.content == garbage
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.headers["content-disposition"].startswith("attachment;")


def test_a_delivery_shows_json_masked_credentials_and_verdicts(
    gateway: GatewayProcess, browser_client: httpx.Client
) -> None:
    delivery = _dead_delivery(gateway, b'{"order":7,"note":"<b>hi</b>"}', "application/json")
    page = browser_client.get(f"/console/deliveries/{delivery}").text
    assert "shown as json" in page
    assert "&#34;order&#34;: 7" in page
    assert "&lt;b&gt;hi&lt;/b&gt;" in page
    assert "orders-secret-token" not in page
    assert "Bearer ••••••" in page
    assert "passed (bearer)" in page
    assert "HTTP 400" in page


def test_flow_configuration_masks_secrets(browser_client: httpx.Client) -> None:
    page = browser_client.get("/console/flows/orders").text
    assert "token: ••••••" in page
    assert "FLAKY_STATUS: ••••••" in page
    assert "ORDERS_TOKEN" not in page
    assert browser_client.get("/console/flows/nosuch").status_code == 404


def test_events_stream_needs_the_bearer_token_on_the_api(gateway: GatewayProcess) -> None:
    response = httpx.get(gateway.admin_base + "/api/v1/events?flow=orders")
    assert response.status_code == 401
    assert gateway.admin("GET", "/api/v1/events?flow=nosuch").status_code == 404


def test_dead_letters_filter_replay_all_matching_and_delete(
    gateway: GatewayProcess, browser_client: httpx.Client
) -> None:
    first = _dead_delivery(gateway, b"first", "text/plain")
    second = _dead_delivery(gateway, b"second", "text/plain")
    listing = browser_client.get("/console/dead", params={"flow": "orders"})
    assert first in listing.text and second in listing.text
    assert "Nothing matches" in browser_client.get("/console/dead?since=2999-01-01T00:00").text
    bad = browser_client.get("/console/dead?since=yesterday")
    assert bad.status_code == 400
    assert "since: expected a date and time" in bad.text

    csrf = csrf_of(listing.text)
    nothing = browser_client.post("/console/dead/delete", data={"csrf": csrf})
    assert nothing.status_code == 400
    assert "select at least one delivery" in nothing.text
    deleted = browser_client.post("/console/dead/delete", data={"csrf": csrf, "id": [first]})
    assert deleted.headers["location"].endswith("done=deleted&n=1")
    assert browser_client.get(f"/console/deliveries/{first}").status_code == 404

    replayed = browser_client.post(
        "/console/dead/replay",
        data={"csrf": csrf, "all": "1", "flow": "orders", "status": "dead"},
    )
    assert replayed.status_code == 303
    count = int(replayed.headers["location"].rsplit("n=", 1)[1])
    assert count >= 1
    assert (
        f"{count} deliveries queued for replay."
        in browser_client.get(replayed.headers["location"]).text
    )

    def replayed_and_dead_again() -> bool:
        delivery = gateway.admin("GET", f"/api/v1/deliveries/{second}").json()
        return delivery["status"] == "dead" and len(delivery["history"]) == 2

    eventually(replayed_and_dead_again)


def test_an_open_event_stream_does_not_hold_up_shutdown(gateway_factory: Any) -> None:
    gw = gateway_factory()
    with httpx.stream(
        "GET",
        gw.admin_base + "/api/v1/events",
        headers={"authorization": f"Bearer {TOKEN}"},
        timeout=30,
    ) as stream:
        lines = stream.iter_lines()
        assert next(lines) == "event: subscribed"
        # uvicorn would wait 30 s for an open response; the stream must end on SIGTERM instead.
        assert gw.stop(timeout=20) == 0
        assert list(lines)[-1:] in ([], [""])


def _signin_cookies(base: str, **headers: str) -> list[str]:
    """Sign in by hand, passing the sign-in cookie back even when it is Secure."""
    form = httpx.get(base + "/console/signin", headers=headers)
    nonce = form.cookies["hookgate_signin"]
    response = httpx.post(
        base + "/console/signin",
        data={"csrf": csrf_of(form.text), "token": TOKEN, "next": ""},
        headers={**headers, "cookie": f"hookgate_signin={nonce}"},
    )
    assert response.status_code == 303, response.text
    return [*form.headers.get_list("set-cookie"), *response.headers.get_list("set-cookie")]


def test_cookies_are_not_secure_over_plain_http_whatever_the_client_claims(
    gateway: GatewayProcess,
) -> None:
    for cookie in _signin_cookies(gateway.admin_base, **{"x-forwarded-proto": "https"}):
        assert "secure" not in cookie.lower(), cookie


def test_cookies_are_secure_behind_a_trusted_https_proxy(gateway_factory: Any) -> None:
    proxied = gateway_factory(env={"HOOKGATE_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"})
    cookies = _signin_cookies(proxied.admin_base, **{"x-forwarded-proto": "http, https"})
    assert {c.split("=")[0] for c in cookies} >= {"hookgate_signin", "hookgate_session"}
    for cookie in cookies:
        if "max-age=0" not in cookie.lower():
            assert "; secure" in cookie.lower(), cookie
    for cookie in _signin_cookies(proxied.admin_base):
        assert "secure" not in cookie.lower(), cookie


def test_a_trusted_proxy_that_is_not_an_address_stops_the_gateway(gateway_factory: Any) -> None:
    gateway = gateway_factory(env={"HOOKGATE_TRUSTED_PROXIES": "10.0.0.0/8, proxy"}, start=False)
    with pytest.raises(RuntimeError, match="HOOKGATE_TRUSTED_PROXIES: 'proxy' is not an IP"):
        gateway.start()


def test_the_search_box_finds_a_request_by_any_id_and_lists_several(
    gateway: GatewayProcess, browser_client: httpx.Client
) -> None:
    assert 'action="/console/search"' in browser_client.get("/console/flows").text
    post_order(gateway, headers={"x-request-id": "console-find-1"})
    found = browser_client.get("/console/search", params={"q": " console-find-1 "})
    assert found.status_code == 303
    page = browser_client.get(found.headers["location"])
    assert page.status_code == 200 and "console-find-1" in page.text
    delivery_id = found.headers["location"].rsplit("/", 1)[-1]
    prefix = browser_client.get("/console/search", params={"q": delivery_id[:24]})
    assert prefix.headers["location"] == f"/console/deliveries/{delivery_id}"

    post_order(gateway, headers={"x-request-id": "console-twin-b"})
    post_order(gateway, headers={"x-request-id": "console-twin-c"})
    several = browser_client.get("/console/search", params={"q": "console-twin"})
    assert several.status_code == 200
    assert "&#39;console-twin&#39; matches 2 deliveries" in several.text
    assert "console-twin-b" in several.text and "console-twin-c" in several.text
    assert several.text.count('href="/console/deliveries/') == 2

    missing = browser_client.get("/console/search", params={"q": "nobody-sent-this"})
    assert missing.status_code == 404
    assert "No delivery with the id, request id or provider id" in missing.text
    garbage = browser_client.get("/console/search", params={"q": "a\x00b"})
    assert garbage.status_code == 400
    assert "no control character" in garbage.text


def test_pause_resume_and_confirmations_on_the_flow_page(
    gateway: GatewayProcess, browser_client: httpx.Client
) -> None:
    page = browser_client.get("/console/flows/orders").text
    csrf = csrf_of(page)
    assert 'action="/console/flows/' in page and "Pause flow" in page
    assert "Senders will get 404 from its URL until it is started again" in page
    assert "Senders will get 404 from its URL for good" in page
    assert "data-confirm=" in page

    paused = browser_client.post("/console/flows/orders/pause", data={"csrf": csrf})
    assert paused.status_code == 303
    assert gateway.flow("orders")["status"] == "paused"
    notice = browser_client.get(paused.headers["location"]).text
    assert "Flow orders paused: its URL still accepts and stores" in notice
    post_order(gateway)
    page = browser_client.get("/console/flows/orders").text
    assert "Resume flow" in page and "Pause flow" not in page
    resumed = browser_client.post("/console/flows/orders/resume", headers={"x-csrf-token": csrf})
    assert resumed.json() == {
        "ok": True,
        "message": "Flow orders resumed: what it held is being delivered.",
    }
    assert gateway.flow("orders")["status"] == "running"

    assert "Pause flow" not in browser_client.get("/console/flows/quotes").text
    refused = browser_client.post("/console/flows/quotes/pause", data={"csrf": csrf})
    assert refused.status_code == 400
    assert "stop it instead" in refused.text


def test_the_flow_page_shows_the_concurrency_limit_in_force(
    gateway: GatewayProcess, browser_client: httpx.Client
) -> None:
    spec = {"name": "limited", "mode": "sync", "worker": {"command": [sys.executable, str(FLAKY)]}}
    url = gateway.admin("POST", "/api/v1/flows", json=spec).json()["url"]
    page = browser_client.get("/console/flows/limited").text
    assert '<dd data-field="concurrency"' in page and ">auto (no worker in use)</dd>" in page

    assert httpx.post(url, content=b"{}", timeout=20).status_code == 200
    limit = gateway.flow("limited")["concurrencyLimit"]
    assert isinstance(limit, int) and limit >= 1
    assert f">auto (now {limit})</dd>" in browser_client.get("/console/flows/limited").text
    rows = browser_client.get("/console/flows/stats").json()["items"]
    assert [r["concurrency"] for r in rows if r["name"] == "limited"] == [f"auto (now {limit})"]


def test_a_flow_is_deleted_from_the_console(
    gateway: GatewayProcess, browser_client: httpx.Client
) -> None:
    spec = {"name": "doomed", "mode": "async", "worker": {"command": ["false"]}}
    url = gateway.admin("POST", "/api/v1/flows", json=spec).json()["url"]
    csrf = csrf_of(browser_client.get("/console/flows/doomed").text)
    deleted = browser_client.post("/console/flows/doomed/delete", data={"csrf": csrf})
    assert deleted.status_code == 303
    assert (
        "Flow doomed deleted: its URL answers 404 for good."
        in browser_client.get(deleted.headers["location"]).text
    )
    assert gateway.admin("GET", "/api/v1/flows/doomed").status_code == 404
    assert httpx.post(url).status_code == 404


def test_destinations_order_keys_and_rate_limits_are_shown_without_credentials(
    gateway: GatewayProcess, browser_client: httpx.Client
) -> None:
    spec = {
        "name": "routed",
        "mode": "async",
        "order_key": "body.id",
        "destinations": [
            {
                "name": "crm",
                "url": {"url": "https://crm.example:8443/in/T0KEN?key=k3y"},
                "rate_limit": {"per_second": 2.5, "burst": 5},
            },
            {
                "name": "bus",
                "rabbitmq": {
                    "url": "amqp://shop:s3cret@127.0.0.1:5672/",
                    "exchange": "shop",
                    "routing_key": "orders",
                },
            },
            {"name": "stream", "nats": {"subject": "shop.orders"}, "delay": "3s"},
        ],
    }
    assert gateway.admin("POST", "/api/v1/flows", json=spec).status_code == 201
    gateway.admin("POST", "/api/v1/flows/routed/pause")
    request_id = httpx.post(gateway.hook("routed"), content=b'{"id": "order-7"}').json()[
        "requestId"
    ]
    page = browser_client.get("/console/flows/routed").text
    table = page[
        page.index('<table id="destinations">') : page.index(
            "</table>", page.index('<table id="destinations">')
        )
    ]
    assert (
        "<td>crm</td><td>url</td><td><code>https://crm.example:8443</code></td>"
        "<td>2.5/s, burst 5</td>" in table
    )
    assert (
        "amqp://127.0.0.1:5672 · exchange &#39;shop&#39;, routing key &#39;orders&#39; · raw"
        in table
    )
    assert "nats://127.0.0.1:4222 · subject shop.orders · raw" in table and "3 s" in table
    assert "s3cret" not in table and "T0KEN" not in table and "k3y" not in table
    assert page.count("key <code>order-7</code>") == 3  # the recent deliveries

    listed = browser_client.get("/console/dead", params={"flow": "routed", "status": "queued"}).text
    for name in ("crm", "bus", "stream"):
        assert f"<td>{name} <small" in listed
    [item, *_] = gateway.admin("GET", "/api/v1/deliveries", params={"flow": "routed"}).json()[
        "items"
    ]
    assert item["requestId"] == request_id
    shown = browser_client.get(f"/console/deliveries/{item['id']}").text
    assert f"<dt>Destination</dt><dd>{item['destination']}</dd>" in shown
    assert "<dt>Order key</dt><dd><code>order-7</code></dd>" in shown
