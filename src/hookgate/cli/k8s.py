"""``hookgate k8s render FLOWFILE``: the Kubernetes objects a flow file would get."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import click
import yaml

from hookgate.domain.flowfile import parse_flow_file
from hookgate.domain.flows import Flow
from hookgate.errors import ConfigError


@click.group()
def k8s() -> None:
    """Kubernetes helpers."""


@k8s.command()
@click.argument("flow_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--namespace", default="default", show_default=True)
def render(flow_file: Path, namespace: str) -> None:
    """Print the Services, Deployments and Jobs the flows of FLOW_FILE would get, as YAML.

    The file's flows have no ids yet, so a stable placeholder derived from each name stands
    in for the id (the gateway's objects carry the real one).
    """
    from hookgate.runtime.kubernetes.specs import render as render_objects

    try:
        specs = parse_flow_file(flow_file.read_text(), source=str(flow_file))
        now = time.time()
        flows = [
            Flow(id=_placeholder(spec.name), spec=spec, created_at=now, updated_at=now)
            for spec in specs
        ]
        objects = render_objects(flows, namespace)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(yaml.safe_dump_all(objects, sort_keys=False), nl=False)


def _placeholder(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
