"""Bodies never freeze a page; secrets never show."""

from __future__ import annotations

import json

from hookgate.console import render


def test_json_is_pretty_printed() -> None:
    shown = render.body(b'{"a":[1,2]}', content_type="application/json")
    assert shown.kind == "json"
    assert shown.text == json.dumps({"a": [1, 2]}, indent=2)
    assert not shown.truncated


def test_text_that_is_not_json_stays_text() -> None:
    shown = render.body(b"{not json", content_type="application/json")
    assert (shown.kind, shown.text) == ("text", "{not json")
    assert render.body(b"a=1&b=2").kind == "text"


def test_binary_is_a_hex_dump() -> None:
    shown = render.body(b"\x00\x01\xffABC")
    assert shown.kind == "hex"
    assert shown.text == "00000000  00 01 ff 41 42 43" + " " * 32 + "...ABC"
    assert render.body(b"\xff\xfe latin-1 \xe9").kind == "hex"


def test_a_50_mb_body_is_cut_to_what_a_browser_can_take() -> None:
    text = render.body(b"x" * 50_000_000)
    assert (text.kind, text.size, text.shown) == ("text", 50_000_000, render.SHOWN)
    assert text.truncated and len(text.text) == render.SHOWN
    binary = render.body(b"\x00" * 50_000_000)
    assert binary.kind == "hex"
    assert binary.shown == render.HEX_SHOWN
    assert binary.text.count("\n") == render.HEX_SHOWN // 16 - 1


def test_a_large_json_body_is_not_reformatted() -> None:
    big = json.dumps({"k": "v" * render.SHOWN}).encode()
    assert render.body(big, content_type="application/json").kind == "text"


def test_a_utf8_character_cut_by_truncation_is_dropped_not_a_hex_view() -> None:
    raw = "a" * (render.SHOWN - 1) + "é" + "rest"
    shown = render.body(raw.encode())
    assert shown.kind == "text"
    assert shown.text == "a" * (render.SHOWN - 1)


def test_secrets_and_worker_env_are_masked_in_the_configuration() -> None:
    spec = {
        "name": "orders",
        "worker": {"command": ["run"], "env": {"API_KEY": "plain"}, "image": None},
        "auth": [
            {"type": "github", "secret": ["env:GH", "file:/s"]},
            {"type": "basic", "username": "u", "password": "env:P"},
        ],
    }
    text = render.config_text(spec)
    for secret in ("plain", "env:GH", "file:/s", "env:P"):
        assert secret not in text
    assert "username: u" in text
    assert "image" not in text
    assert "API_KEY: ••••••" in text
