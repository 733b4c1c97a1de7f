"""The worked examples of docs/security.md, run for real: bash, openssl, and a stand-in curl.

Each ``auth:`` YAML block followed by a ``bash`` block is one example. The bash block runs
with a ``curl`` that records the request instead of sending it; the recorded request is
then checked by a guard built from the YAML block, with the secrets the script exported.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from hookgate.auth import Request, build_guard

from .support import methods

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
URL = "http://127.0.0.1:9/hook/AAAAAAAAAAAAAAAAAAAAAA"

FAKE_CURL = """\
import base64, json, os, sys
args, out = sys.argv[1:], {"method": None, "headers": [], "body": None}
while args:
    arg = args.pop(0)
    if arg == "-X":
        out["method"] = args.pop(0)
    elif arg == "-H":
        name, _, value = args.pop(0).partition(":")
        out["headers"].append([name.strip(), value.strip()])
    elif arg in ("--data-binary", "-d", "--data"):
        out["body"] = args.pop(0)
    elif arg == "-u":
        token = base64.b64encode(args.pop(0).encode()).decode()
        out["headers"].append(["Authorization", "Basic " + token])
    else:
        out["url"] = arg
out["env"] = dict(os.environ)
with open(os.environ["CURL_CAPTURE"], "w") as handle:
    json.dump(out, handle)
"""


def examples() -> list[tuple[str, str, str]]:
    blocks = re.findall(r"^### (.+?)$|^```(\w+)\n(.*?)^```", DOC.read_text(), re.M | re.S)
    found, title, previous = [], "", None
    for heading, language, code in blocks:
        if heading:
            title, previous = heading, None
            continue
        if language == "bash" and previous is not None:
            found.append((title, previous, code))
        previous = code if language == "yaml" and code.startswith("auth:") else None
    return found


EXAMPLES = examples()
UNSIGNED = {"Microsoft Graph (`msgraph`)", "Okta event hooks"}
"""Schemes whose sender signs nothing: a shared secret travels with the body, not over it."""


def test_every_scheme_has_a_runnable_example():
    assert [title for title, _, _ in EXAMPLES] == [
        "Standard Webhooks (v1, HMAC)",
        "Standard Webhooks (v1a, ed25519)",
        "GitHub",
        "Stripe",
        "Shopify",
        "Slack",
        "Meta (Facebook, Instagram, WhatsApp, Messenger)",
        "Microsoft Graph (`msgraph`)",
        "Zoom",
        "Dropbox",
        "X (Twitter) Account Activity (`x`)",
        "Okta event hooks",
        "Twilio",
        "Generic HMAC",
        "Open Integration Hub (`oih`)",
        "Bearer token",
        "JWT (`jwt`)",
        "HTTP Basic",
    ]


@pytest.mark.parametrize(("title", "config", "script"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_the_example_request_is_admitted(tmp_path, monkeypatch, title, config, script):
    curl = tmp_path / "bin" / "curl"
    curl.parent.mkdir()
    curl.write_text(f"#!{sys.executable}\n{FAKE_CURL}")
    curl.chmod(curl.stat().st_mode | stat.S_IEXEC)
    capture = tmp_path / "request.json"
    env = {
        "PATH": f"{curl.parent}:/usr/bin:/bin",
        "URL": URL,
        "CURL_CAPTURE": str(capture),
        "HOME": str(tmp_path),
    }
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    sent = json.loads(capture.read_text())

    auth = yaml.safe_load(config)["auth"]
    for entry in auth:
        for field in ("secret", "token", "password", "verify_token", "keys"):
            refs = entry.get(field, [])
            for ref in [refs] if isinstance(refs, str) else refs:
                name = ref.removeprefix("env:")
                monkeypatch.setenv(name, sent["env"][name])
        if "public_url" in entry:  # the docs show a public address; the example sends to URL
            entry["public_url"] = "{0.scheme}://{0.netloc}".format(urlsplit(URL))
    guard = build_guard(methods(auth))
    headers = [(name.lower().encode(), value.encode()) for name, value in sent["headers"]]
    body = sent["body"].encode()
    request = {
        "method": sent["method"] or "POST",
        "path": urlsplit(sent["url"]).path,
        "query": "",
        "headers": headers,
        "client": "203.0.113.5",
        "now": time.time(),
    }
    assert guard.check(Request(body=body, **request)) is None
    if title not in UNSIGNED:
        changed = Request(body=body + b" ", **request)
        assert guard.check(changed) is not None or not guard.needs_body
    if title == "GitHub":
        assert (
            b"x-hub-signature-256",
            b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ) in headers
