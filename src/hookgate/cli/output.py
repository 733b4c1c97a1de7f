"""Output for people and for scripts, in kubectl's manner.

Tables are plain columns that fit the terminal: ids and URLs are never cut (they are copied),
the other columns are shortened with ``…`` when the line would wrap; ``-o wide`` cuts nothing,
and piped output is cut only when ``COLUMNS`` asks for a width. ``-o json|yaml`` print the admin
API's answer as it is, ``-o name`` one name (or id) per line; ``--json`` is ``-o json``.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click
import yaml
from rich.console import Console

from hookgate.domain.units import ByteSize, Duration

console = Console()

OUTPUTS = ("table", "wide", "json", "yaml", "name")
# Columns whose values are copied whole: they are never shortened.
KEPT = frozenset({"ID", "URL", "NAME", "FLOW"})
# Shorter cells (statuses, counts, short names) are never cut.
MIN_WIDTH = 10
GAP = "  "


def output_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``-o/--output`` and ``--json``, handed to the command as one ``output`` argument."""

    @functools.wraps(command)
    def wrapper(*args: Any, output: str, json_out: bool, **kwargs: Any) -> Any:
        return command(*args, output="json" if json_out else output, **kwargs)

    wrapper = click.option(
        "--json", "json_out", is_flag=True, help="Same as -o json (kept for scripts)."
    )(wrapper)
    return click.option(
        "-o",
        "--output",
        type=click.Choice(OUTPUTS),
        default="table",
        show_default=True,
        help="table (fits the terminal), wide (nothing shortened), json, yaml, or name "
        "(one per line, for xargs).",
    )(wrapper)


def emit(output: str, data: Any, *, names: Iterable[str], show: Callable[[bool], None]) -> None:
    """Print ``data`` as asked: ``show(wide)`` draws the human form."""
    if output == "json":
        emit_json(data)
    elif output == "yaml":
        click.echo(yaml.safe_dump(data, sort_keys=True, allow_unicode=True), nl=False)
    elif output == "name":
        for name in names:
            click.echo(name)
    else:
        show(output == "wide")


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def _width() -> int | None:
    """The terminal's width; None (no limit) when piped, unless ``COLUMNS`` is set."""
    if "COLUMNS" in os.environ or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def _cell(value: Any) -> str:
    return "" if value is None else " ".join(str(value).split())


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def fit(columns: Sequence[str], rows: Sequence[Sequence[str]], limit: int | None) -> list[int]:
    """Column widths: natural ones, with the widest shortenable column narrowed until the
    line fits ``limit`` (or nothing is left to narrow)."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    if limit is None:
        return widths
    excess = sum(widths) + len(GAP) * (len(widths) - 1) - limit
    while excess > 0:
        candidates = [i for i, c in enumerate(columns) if c not in KEPT and widths[i] > MIN_WIDTH]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        step = min(excess, widths[widest] - MIN_WIDTH)
        widths[widest] -= step
        excess -= step
    return widths


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    wide: bool = False,
) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = fit(columns, cells, None if wide else _width())
    if title:
        click.echo(title)
    for row in [list(columns), *cells]:
        line = GAP.join(_cut(v, w).ljust(w) for v, w in zip(row, widths, strict=True))
        click.echo(line.rstrip())


def when(timestamp: float | None) -> str:
    """A moment as people read it, in UTC (the gateway's logs are in UTC too)."""
    if not timestamp:
        return ""
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """``3d``, ``1h30m``, ``45s``, ``250ms``: the way flow files write durations."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds else "0s"
    parts, rest = [], round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


def size(count: int) -> str:
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if count >= factor and count % factor == 0:
            return f"{count // factor}{unit}"
    return f"{count}B"


def human(value: Any) -> str:
    """One configuration value as a flow file would write it."""
    if isinstance(value, Duration):
        return duration(value)
    if isinstance(value, ByteSize):
        return size(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(human(v) for v in value)
    return str(getattr(value, "value", value))


_AGO = re.compile(r"\d+(\.\d+)?(ms|s|m|h|d)(\d+(\.\d+)?(ms|s|m|h|d))*")


def parse_moment(text: str, *, now: float | None = None) -> float:
    """``--since``/``--until``: ``1h`` (that long ago), an ISO date or time (UTC unless it
    says otherwise), or Unix seconds."""
    text = text.strip()
    if _AGO.fullmatch(text):
        return (time.time() if now is None else now) - Duration.parse(text)
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.datetime.fromisoformat(text.replace(" UTC", "").replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: expected a duration ago like '1h' or '30m', an ISO time like "
            "'2026-12-05T14:00' (UTC) or Unix seconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


class Moment(click.ParamType[float]):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        return value if isinstance(value, float) else parse_moment(str(value))
