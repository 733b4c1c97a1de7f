"""Every manifest, generated or shipped, passes ``kubernetes-validate --strict`` (1.29, 1.37)."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hookgate.runtime.kubernetes import specs

from .conftest import make_flow

VERSIONS = ["1.29.0", "1.37.0"]
DEPLOY = Path(__file__).parents[3] / "deploy" / "kubernetes"


def sample_flows() -> list[Any]:
    return [
        make_flow("minimal"),
        make_flow("minimal-async", "async"),
        make_flow(
            "everything",
            "sync",
            replicas=3,
            concurrency=2,
            worker={
                "image": "registry.example/all:1",
                "port": 9000,
                "readiness_path": "/healthz",
                "env": {"A": "1"},
                "image_pull_secrets": ["regcred"],
                "service_account": "w",
                "node_selector": {"pool": "flows"},
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"memory": "256Mi"},
                },
                "tolerations": [
                    {
                        "key": "k",
                        "operator": "Equal",
                        "value": "v",
                        "effect": "NoExecute",
                        "tolerationSeconds": 60,
                    }
                ],
            },
        ),
        make_flow("x" * 63, "async", max_workers=16, worker={"image": "i:1", "port": 1}),
    ]


def shipped() -> list[tuple[str, dict[str, Any]]]:
    """Every object in deploy/kubernetes (kustomize files and patches aside)."""
    return [
        (f"{path.relative_to(DEPLOY)}#{i}", doc)
        for path in sorted(DEPLOY.rglob("*.yaml"))
        if path.name != "kustomization.yaml" and "patch" not in path.name
        for i, doc in enumerate(yaml.safe_load_all(path.read_text()))
        if doc
    ]


def check(obj: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for {version}: {exc}")


@pytest.mark.parametrize("version", VERSIONS)
def test_generated_objects_are_valid(version: str) -> None:
    for obj in specs.render(sample_flows(), "flows"):
        check(obj, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_shipped_manifests_are_valid(version: str) -> None:
    objects = shipped()
    assert {o["kind"] for _, o in objects} >= {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "ConfigMap",
        "PersistentVolumeClaim",
    }
    for _, obj in objects:
        check(obj, version)


@pytest.mark.parametrize("overlay", ["", "overlays/postgres"])
@pytest.mark.parametrize("version", VERSIONS)
def test_kustomize_builds_are_valid(overlay: str, version: str) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (for `kubectl kustomize`) is not installed")
    built = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(built) if doc]
    assert objects
    for obj in objects:
        check(obj, version)
    if overlay:
        [gateway] = [o for o in objects if o["kind"] == "Deployment"]
        assert gateway["spec"]["replicas"] == 2
        env = gateway["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {
            "name": "HOOKGATE_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "hookgate-database", "key": "url"}},
        } in env
        assert "PersistentVolumeClaim" not in {o["kind"] for o in objects}


def test_the_cli_agrees(tmp_path: Path) -> None:
    """The CI gate runs the CLI; make sure it accepts what the Python API accepts."""
    # The script installed next to the interpreter running the tests (its venv's bin/).
    cli = shutil.which("kubernetes-validate") or str(
        Path(sysconfig.get_path("scripts")) / "kubernetes-validate"
    )
    target = tmp_path / "flows.yaml"
    target.write_text(yaml.safe_dump_all(specs.render(sample_flows(), "flows")))
    for version in VERSIONS:
        result = subprocess.run(
            [cli, "--strict", "-k", version, str(target)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
