"""``python -m bench [--quick] [SCENARIO…]``: run scenarios, print tables, save JSON results."""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
from rich.console import Console

from bench import machine, report, results
from bench.context import FULL, QUICK, REPO, Context
from bench.errors import BenchFailure, ToolMissing
from bench.scenarios import Scenario, all_scenarios
from bench.tools import require

BENCHMARKS = REPO / "BENCHMARKS.md"
SCENARIOS = {s.name: s for s in all_scenarios()}


def plan(names: tuple[str, ...]) -> list[Scenario]:
    """The named scenarios (all when none) in canonical order, with the ceiling whenever a
    load scenario needs its ratio from the same run."""
    chosen = set(names or SCENARIOS)
    if any(SCENARIOS[n].uses_ceiling for n in chosen):
        chosen.add("ceiling")
    return [s for s in SCENARIOS.values() if s.name in chosen]


def check_tools(scenarios: list[Scenario]) -> None:
    for tool in sorted({t for s in scenarios for t in s.tools}):
        require(tool)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", metavar="[SCENARIO]...", nargs=-1, type=click.Choice(list(SCENARIOS)))
@click.option("--quick", is_flag=True, help="Short runs: the whole set in under 2 minutes.")
@click.option("--summary", is_flag=True, help="Then rewrite BENCHMARKS.md's results section.")
@click.option("--summary-only", is_flag=True, help="Only rewrite BENCHMARKS.md; run nothing.")
@click.option("--keep", is_flag=True, help="Keep the temporary directory (logs, data dirs).")
@click.option("--list", "show", is_flag=True, help="List the scenarios and exit.")
def main(
    names: tuple[str, ...], quick: bool, summary: bool, summary_only: bool, keep: bool, show: bool
) -> None:
    """Benchmark Hookgate against the nginx ceiling; all scenarios when none is named."""
    console = Console(width=None if sys.stdout.isatty() else 160)
    if show:
        for scenario in SCENARIOS.values():
            console.print(f"[bold]{scenario.name:12}[/] {scenario.about}")
        return
    if summary_only:
        write_summary(console)
        return
    scenarios = plan(names)
    try:
        check_tools(scenarios)
    except ToolMissing as exc:
        console.print(f"[red bold]cannot run:[/] {exc}")
        sys.exit(2)
    command = shlex.join(["python", "-m", "bench", *sys.argv[1:]])
    root = Path(tempfile.mkdtemp(prefix="hookgate-bench-"))
    try:
        ctx = Context(timing=QUICK if quick else FULL, root=root, console=console)
        failures = run_all(ctx, scenarios, command=command, quick=quick)
    finally:
        if keep:
            console.print(f"temporary files kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if summary:
        write_summary(console)
    if failures:
        console.print(f"[red bold]{len(failures)} scenario(s) failed:[/] {', '.join(failures)}")
        if not keep:
            console.print("the temporary files are removed; rerun with --keep to read the logs")
        sys.exit(1)


def run_all(ctx: Context, scenarios: list[Scenario], *, command: str, quick: bool) -> list[str]:
    """Run each scenario; a failure is printed and named, never saved as a result."""
    facts = machine.facts()
    failures = []
    for scenario in scenarios:
        ctx.console.rule(f"[bold]{scenario.name}[/] — {scenario.about}")
        started, clock = results.now_iso(), time.monotonic()
        try:
            outcome = scenario.run(ctx)
        except BenchFailure as exc:
            ctx.console.print(f"[red bold]FAILED[/] {scenario.name}: {exc}")
            failures.append(scenario.name)
            continue
        run = results.Run(
            scenario=scenario.name,
            started=started,
            command=command,
            quick=quick,
            machine=facts,
            ceiling_rps=ctx.ceiling_rps,
            rows=outcome.rows,
            settings={
                **outcome.settings,
                "timing": ctx.timing,
                "elapsed_s": round(time.monotonic() - clock, 1),
            },
        )
        ctx.console.print(report.table(run))
        ctx.console.print(f"saved {results.save(run).relative_to(REPO)}")
    return failures


def write_summary(console: Console) -> None:
    try:
        report.rewrite(BENCHMARKS, results.latest(), order=list(SCENARIOS))
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"rewrote the results section of {BENCHMARKS.name}")


if __name__ == "__main__":
    main()
