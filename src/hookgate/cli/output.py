"""Tables for people (rich), JSON for scripts (``--json``)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

console = Console()


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    grid = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(grid)


def when(timestamp: float | None) -> str:
    if not timestamp:
        return ""
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")
