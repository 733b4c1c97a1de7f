"""The harness's own rules: tools named with their install command, ports in use refused,
servers that never come up reported, results saved and summarised."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from bench.errors import PortInUse, ServerDown, ToolMissing
from bench.gateway import Gateway, flow
from bench.procs import Meter, Service
from bench.tools import ensure_free, require

from bench import record, report, results

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_tool_names_the_command_that_installs_it() -> None:
    with pytest.raises(ToolMissing, match=r"apt-get install -y no-such-tool-xyz"):
        require("no-such-tool-xyz")


def test_cli_exits_2_with_the_install_command_when_wrk_is_missing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "ingest"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": "/nonexistent"},
        timeout=60,
    )
    assert done.returncode == 2
    assert "apt-get install -y wrk" in done.stdout


def test_a_port_in_use_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(PortInUse):
            ensure_free(sock.getsockname()[1])


def test_a_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    service = Service(
        name="broken",
        command=[sys.executable, "-c", "print('boom'); exit(3)"],
        log=tmp_path / "log",
    )
    with service.start(), pytest.raises(ServerDown, match=r"(?s)exited with status 3.*boom"):
        service.wait_ready(lambda: False, timeout=10)


def test_a_server_that_never_gets_ready_is_reported(tmp_path: Path) -> None:
    service = Service(
        name="slow",
        command=[sys.executable, "-c", "import time; time.sleep(30)"],
        log=tmp_path / "log",
    )
    with service.start(), pytest.raises(ServerDown, match="did not become ready within 1 s"):
        service.wait_ready(lambda: False, timeout=1)


def test_a_gateway_that_refuses_its_flow_file_is_a_failure(tmp_path: Path) -> None:
    bad = flow("Not A Valid Name")
    with pytest.raises(ServerDown, match="hookgate exited"):
        Gateway(workdir=tmp_path, flows=[bad]).__enter__()


def test_meter_reports_cpu_and_peak_rss_of_a_process() -> None:
    meter = Meter(os.getpid()).start()
    sum(range(200_000))
    usage = meter.stop()
    assert usage.cpu_s >= 0
    assert usage.peak_rss_mb > 1


def test_percentiles_are_nearest_rank_samples() -> None:
    latency = results.percentiles([float(i) for i in range(100, 0, -1)])
    assert (latency.p50_ms, latency.p90_ms, latency.p99_ms, latency.max_ms) == (50, 90, 99, 100)


def _run(scenario: str, started: str, rate: float) -> results.Run:
    row = results.Row(case="c", rate=rate, latency=results.percentiles([1.0, 2.0]))
    return results.Run(
        scenario=scenario,
        started=started,
        command=f"python -m bench {scenario}",
        quick=False,
        machine={"cpu": "test cpu", "cores": 2},
        ceiling_rps=None,
        rows=[row],
    )


def test_latest_run_per_scenario_wins(tmp_path: Path) -> None:
    results.save(_run("ingest", "2026-01-02T00:00:00+00:00", 2.0), tmp_path)
    results.save(_run("ingest", "2026-01-01T00:00:00+00:00", 1.0), tmp_path)
    results.save(_run("drain", "2026-01-01T00:00:00+00:00", 3.0), tmp_path)
    newest = results.latest(tmp_path)
    assert newest["ingest"].rows[0].rate == 2.0
    assert set(newest) == {"ingest", "drain"}


def test_summary_rewrites_only_the_marked_section(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(f"# Title\nintro\n{report.START}\nold table\n{report.END}\nafter\n")
    run = _run("ingest", "2026-01-02T00:00:00+00:00", 1234.0)
    report.rewrite(doc, {"ingest": run}, order=["ingest"])
    text = doc.read_text()
    assert text.startswith("# Title\nintro\n")
    assert text.endswith(f"{report.END}\nafter\n")
    assert "old table" not in text
    assert "`python -m bench ingest` — 2026-01-02T00:00:00+00:00" in text
    assert "| c | 1,234 req/s |" in text


def test_summary_names_the_flow_settings_beyond_the_defaults(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text(f"{report.START}\n{report.END}\n")
    worker = {"command": ["worker"]}
    plain = _run("e2e", "2026-01-02T00:00:00+00:00", 1.0)
    plain.settings = {"flow": {"name": "e2e", "mode": "async", "worker": worker}}
    tuned = _run("sync", "2026-01-02T00:00:00+00:00", 2.0)
    tuned.settings = {
        "flows": [{"name": "a", "mode": "sync", "worker": worker, "replicas": 2}],
        "flow": {"name": "b", "mode": "sync", "worker": worker, "concurrency": 32},
    }
    report.rewrite(doc, {"e2e": plain, "sync": tuned}, order=["e2e", "sync"])
    e2e, sync = doc.read_text().split("### sync")
    assert "; flow settings: the defaults" in e2e
    assert "; flow settings beyond the defaults: `concurrency: 32`, `replicas: 2`" in sync


def test_summary_refuses_a_document_without_markers(tmp_path: Path) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# nothing to rewrite\n")
    with pytest.raises(ValueError, match="no <!-- bench:results:start -->"):
        report.rewrite(doc, {}, order=[])


def test_record_skips_a_half_written_line_and_counts_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "deliveries.log"
    path.write_text("1.5 d1 1\n1.6 d2 1\n1.7 d1 2\n1.8 d3")
    received = record.read(path)
    assert [d.delivery_id for d in received] == ["d1", "d2", "d1"]
    assert record.duplicates(received) == 1
