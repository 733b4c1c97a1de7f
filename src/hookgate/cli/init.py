"""``hookgate init [DIR]``: a flow file with one async and one sync flow, and their workers."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

LANGUAGES = {"python": ("python", ".py"), "node": ("node", ".js")}
WORKERS = ("orders", "hello")

FLOWS = """\
# Flows of this project: `hookgate serve --config flows.yaml` (from this directory) runs them,
# and `hookgate flows apply -f flows.yaml` updates a running gateway. Every field is described
# in docs/configuration.md of Hookgate.
flows:
  # async: the request is stored, answered 202, and delivered to the worker (started on
  # demand, stopped when idle) until it answers 2xx; retried with backoff, then dead letters.
  - name: orders
    mode: async
    worker:
      command: [{program}, workers/orders{suffix}]
    retry: {{max_attempts: 5, backoff: 1s, max_backoff: 1m}}

  # sync: the worker runs at all times and the caller gets its answer.
  - name: hello
    mode: sync
    worker:
      command: [{program}, workers/hello{suffix}]
    replicas: 1
    timeout: 10s
"""


@click.command(short_help="Start a project: flows.yaml and two workers.")
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--lang",
    type=click.Choice(sorted(LANGUAGES)),
    default="python",
    show_default=True,
    help="Language of the workers (python uses Hookgate's SDK; node needs only Node.js).",
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def init(directory: Path, lang: str, force: bool) -> None:
    """Write DIRECTORY/flows.yaml (default: here) with an async flow `orders` and a sync flow
    `hello`, and a worker for each in DIRECTORY/workers/, ready for
    `hookgate serve --config flows.yaml`.

    A worker command naming `python` runs with the gateway's own interpreter, so the SDK is
    found without activating a virtualenv.
    """
    program, suffix = LANGUAGES[lang]
    sources = resources.files("hookgate.scaffold") / lang
    files = {Path("flows.yaml"): FLOWS.format(program=program, suffix=suffix)}
    for worker in WORKERS:
        files[Path("workers") / f"{worker}{suffix}"] = (sources / f"{worker}{suffix}").read_text()
    existing = [str(p) for p in files if (directory / p).exists()]
    if existing and not force:
        raise click.ClickException(
            f"{', '.join(existing)} already in {directory}; nothing was written (--force "
            "overwrites)"
        )
    for path, text in files.items():
        target = directory / path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        except OSError as exc:
            raise click.ClickException(f"cannot write {target}: {exc.strerror}") from None
    click.echo(f"Wrote {', '.join(str(p) for p in files)} in {directory}. Next:")
    if directory.resolve() != Path.cwd():
        click.echo(f"  cd {directory}")
    click.echo("  hookgate serve --config flows.yaml")
    click.echo("and, in another terminal (same directory), the URLs and a first request:")
    click.echo("  hookgate flows list")
    click.echo('  curl -d \'{"id": 1}\' "$(hookgate flows show orders -o json | jq -r .url)"')
