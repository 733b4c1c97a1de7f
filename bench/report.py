"""Showing results: a rich table per run, and the results section of BENCHMARKS.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from bench.results import Row, Run

START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"
COLUMNS = (
    "case",
    "rate",
    "x ceiling",
    "p50",
    "p90",
    "p99",
    "max",
    "errors",
    "CPU s",
    "peak RSS",
    "note",
)


def cells(row: Row) -> list[str]:
    latency = row.latency
    ms = ["—"] * 4
    if latency is not None:
        ms = [_ms(v) for v in (latency.p50_ms, latency.p90_ms, latency.p99_ms, latency.max_ms)]
    return [
        row.case,
        f"{row.rate:,.0f} {row.unit}" if row.rate is not None else "—",
        f"{row.ratio:.2f}" if row.ratio is not None else "—",
        *ms,
        str(row.errors.total),
        f"{row.usage.cpu_s:.1f}" if row.usage else "—",
        f"{row.usage.peak_rss_mb:.0f} MB" if row.usage else "—",
        row.note,
    ]


def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 10 else f"{value:.0f} ms"


def table(run: Run) -> Table:
    title = f"{run.scenario} — {run.started}" + (" (quick)" if run.quick else "")
    view = Table(title=title, title_justify="left")
    for column in COLUMNS:
        view.add_column(column, justify="left" if column in ("case", "note") else "right")
    for row in run.rows:
        view.add_row(*cells(row))
    return view


def markdown(runs: dict[str, Run], order: list[str]) -> str:
    """One table per scenario (latest run), with the exact command, date and machine."""
    if not runs:
        return "No results yet: run `make bench`, then `python -m bench --summary-only`.\n"
    parts = []
    for name in [n for n in order if n in runs] + sorted(set(runs) - set(order)):
        run = runs[name]
        machine = run.machine
        parts += [
            f"### {name}\n",
            f"`{run.command}` — {run.started}"
            f"{' (quick)' if run.quick else ''} — {machine.get('cpu')}, "
            f"{machine.get('usable_cores') or machine.get('cores')} cores, "
            f"Linux {machine.get('kernel')}, Python {machine.get('python')}"
            f"{_ceiling(run)}{_flow_settings(run)}\n",
            "| " + " | ".join(COLUMNS) + " |",
            "|" + "|".join("---" if c in ("case", "note") else "---:" for c in COLUMNS) + "|",
            *("| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in run.rows),
            "",
        ]
    return "\n".join(parts)


def _ceiling(run: Run) -> str:
    if run.ceiling_rps is None or run.scenario == "ceiling":
        return ""
    return f"; ceiling in the same run {run.ceiling_rps:,.0f} req/s"


FLOW_IDENTITY = ("name", "mode", "worker")
"""What every flow of a scenario sets; anything else is a setting a user would not have."""


def _flow_settings(run: Run) -> str:
    """The flows' settings beyond the defaults, so a tuned figure is never read as one a user
    gets (the headline figures use the defaults)."""
    flows = [spec for value in run.settings.values() for spec in _flows(value)]
    if not flows:
        return ""
    tuned = sorted(
        {f"`{key}: {value}`" for spec in flows for key, value in spec.items()}
        - {f"`{key}: {spec.get(key)}`" for spec in flows for key in FLOW_IDENTITY}
    )
    if not tuned:
        return "; flow settings: the defaults"
    return "; flow settings beyond the defaults: " + ", ".join(tuned)


def _flows(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value] if "name" in value and "worker" in value else []
    if isinstance(value, list):
        return [spec for item in value for spec in _flows(item)]
    return []


def rewrite(path: Path, runs: dict[str, Run], order: list[str]) -> None:
    """Replace what lies between the result markers of ``path``; the rest is left as written."""
    text = path.read_text()
    head, found_start, rest = text.partition(START)
    _, found_end, tail = rest.partition(END)
    if not (found_start and found_end):
        raise ValueError(f"{path} has no {START} … {END} section to rewrite")
    path.write_text(f"{head}{START}\n{markdown(runs, order)}\n{END}{tail}")
