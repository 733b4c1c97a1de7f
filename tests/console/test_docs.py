"""docs/operations.md and the Grafana dashboard name exactly the metrics the gateway exports."""

from __future__ import annotations

import json
import re

from prometheus_client import Counter
from tests.conftest import ROOT

from hookgate.metrics import Metrics

DOCS = ROOT / "docs"


def exported() -> dict[str, set[str]]:
    """Metric name as scraped (counters with ``_total``) -> its label names."""
    names: dict[str, set[str]] = {}
    for attribute in vars(Metrics()).values():
        if hasattr(attribute, "_labelnames"):
            suffix = "_total" if isinstance(attribute, Counter) else ""
            names[attribute._name + suffix] = set(attribute._labelnames)
    return names


def test_operations_md_lists_every_metric_with_its_labels() -> None:
    text = (DOCS / "operations.md").read_text()
    rows = dict(re.findall(r"^\| `(hookgate_\w+)` \| \w+ \|([^|]*)\|", text, re.M))
    documented = {name: set(re.findall(r"`(\w+)`", labels)) for name, labels in rows.items()}
    assert documented == exported()


def test_the_grafana_dashboard_uses_exported_metrics_and_labels() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 30
    metrics = exported()
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            for name in re.findall(r"hookgate_\w+", target["expr"]):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                assert base in metrics, f"{panel['title']}: {name} is not exported"
                used.add(base)
            for labels in re.findall(r"by \(([^)]*)\)", target["expr"]):
                for label in (part.strip() for part in labels.split(",")):
                    assert label == "le" or any(label in m for m in metrics.values()), label
    assert used == set(metrics), f"no panel for {set(metrics) - used}"


def test_the_screenshots_in_operations_md_exist() -> None:
    text = (DOCS / "operations.md").read_text()
    images = re.findall(r"\(images/([\w-]+\.png)\)|src=\"images/([\w-]+\.png)\"", text)
    for pair in images:
        assert (DOCS / "images" / (pair[0] or pair[1])).is_file()
    assert len(images) == 5
