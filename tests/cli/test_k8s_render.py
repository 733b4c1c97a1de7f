"""``hookgate k8s render`` on a base install: rendering is pure, so it must work without the
``kubernetes`` extra (lightkube and its HTTP client blocked from importing here), and asking for
the kubernetes runtime without them must name the extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

FLOWS = """
flows:
  - name: orders
    mode: sync
    worker: {image: "registry.example/orders:1", port: 8080}
  - name: billing
    mode: async
    worker: {image: "registry.example/billing:2"}
"""
BLOCKED = "import sys; sys.modules['lightkube'] = None; sys.modules['httpx2'] = None; "


def run_blocked(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED + code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_render_needs_no_cluster_client(tmp_path: Path) -> None:
    flow_file = tmp_path / "flows.yaml"
    flow_file.write_text(FLOWS)
    done = run_blocked(
        "from hookgate.cli.main import main; main()", "k8s", "render", str(flow_file)
    )
    assert done.returncode == 0, done.stderr
    objects = [o for o in yaml.safe_load_all(done.stdout) if o]
    kinds = sorted({o["kind"] for o in objects})
    assert {"Deployment", "Service"} <= set(kinds), kinds
    images = [
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    assert images == ["registry.example/orders:1"]


def test_the_kubernetes_runtime_without_its_client_names_the_extra(tmp_path: Path) -> None:
    done = run_blocked(
        "from hookgate.gateway import build_runtime; from hookgate.config import load_settings;"
        " from hookgate.domain.concurrency import Ledger;"
        f" build_runtime(load_settings(data_dir={str(tmp_path)!r}, runtime='kubernetes'), Ledger())"
    )
    assert done.returncode != 0
    assert "pip install 'hookgate[kubernetes]'" in done.stderr
    assert "ConfigError" in done.stderr
