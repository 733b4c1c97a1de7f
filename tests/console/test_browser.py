"""The console in a real headless Chromium: sign in, watch a request arrive live, open it,
replay dead deliveries and see them delivered, at desktop and phone width.

Set ``HOOKGATE_SCREENSHOTS=DIR`` to save the screenshots used in docs/operations.md.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import TOKEN, GatewayProcess
from tests.console.conftest import post_order
from tests.e2e.helpers import eventually

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = os.environ.get("HOOKGATE_SCREENSHOTS")


def _unavailable() -> str | None:
    if shutil.which(CHROMIUM) is None:
        return f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[dev]'"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def fix_the_worker(gateway: GatewayProcess) -> None:
    """What an engineer does before replaying: make the flow's worker answer 200."""
    spec = gateway.flow("orders")["spec"]
    spec["worker"]["env"] = {"FLAKY_STATUS": "200"}
    response = gateway.admin("PUT", "/api/v1/flows/orders", json=spec)
    assert response.status_code == 200, response.text
    # An idle async worker of the old spec may linger until its idle_timeout (2 s here).
    eventually(lambda: gateway.flow("orders")["workers"]["ready"] == 0)


def test_sign_in_watch_open_and_replay(page: Any, gateway: GatewayProcess) -> None:
    from playwright.sync_api import expect

    admin = gateway.admin_base
    page.goto(admin + "/console/")
    expect(page.locator("h1")).to_have_text("Sign in")
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    expect(page.locator("p[role=status]")).to_contain_text("Wrong admin token")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(admin + "/console/flows")
    row = page.locator("tr", has=page.locator("a", has_text="orders"))
    expect(row).to_contain_text("running")
    expect(row).to_contain_text(gateway.hook("orders"))
    expect(page.locator("tr", has_text="quotes")).to_contain_text("1/1")
    shot(page, "console-flows")

    page.click("text=orders")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    request_id = post_order(gateway, b'{"order": 42, "items": ["book"]}', params={"n": "1"})
    expect(page.locator("#live")).to_contain_text(request_id)
    expect(page.locator("#live tr.request").first).to_contain_text("202")
    expect(page.locator("#live tr.delivery").first).to_contain_text("dead (400)")
    post_order(gateway, b'{"order": 43}')
    expect(page.locator("#live tr.delivery")).to_have_count(2)
    shot(page, "console-flow")

    delivery_link = page.locator("#live tr.delivery", has_text="#1").last
    delivery_link.locator("a").click()
    expect(page.locator("#delivery-state")).to_have_text("dead")
    expect(page.locator("pre.body")).to_contain_text('"order": 42')
    expect(page.locator("dl.facts")).to_contain_text(request_id)
    expect(page.locator("dl.facts")).to_contain_text("passed (bearer)")
    expect(page.locator("table").last).to_contain_text("400")

    fix_the_worker(gateway)
    expect(page.locator("#delivery-live")).to_have_attribute("data-state", "live")
    page.click("#replay")
    expect(page.locator("#delivery-state")).to_have_text("done")
    expect(page.locator("table").last).to_contain_text("200")
    shot(page, "console-delivery")

    page.click("text=Dead letters")
    expect(page.locator("h1")).to_have_text("Dead letters")
    dead = page.locator("tbody tr")
    expect(dead).to_have_count(1)
    shot(page, "console-dead-letters")
    dead.first.locator("input[name=id]").check()
    page.click("text=Replay selected")
    expect(page.locator("p[role=status]")).to_contain_text("1 deliveries queued for replay.")
    page.goto(admin + "/console/dead?status=done&flow=orders")
    expect(page.locator("tbody tr")).to_have_count(2)

    page.click("text=Sign out")
    expect(page.locator("p[role=status]")).to_contain_text("You are signed out.")
    page.goto(admin + "/console/flows")
    expect(page.locator("h1")).to_have_text("Sign in")


def test_usable_at_phone_width(browser: Any, gateway: GatewayProcess) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    try:
        page.goto(gateway.admin_base + "/console/signin")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        expect(page.locator("table.flows")).to_be_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the flows page is {width}px wide on a 375px screen"
        expect(page.locator("tr", has_text="orders").locator("button.copy")).to_be_visible()
        shot(page, "console-phone")
    finally:
        context.close()
