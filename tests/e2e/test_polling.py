"""Polling triggers end to end: ticks on time, snapshots carried, no overlap, catch-up."""

from __future__ import annotations

import datetime
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually, on_postgres

POLLER = ROOT / "tests" / "workers" / "poller.py"


def polling_flow(record: Path, *, schedule: str, env: str = "", extra: str = "") -> str:
    return f"""
flows:
  - name: poll
    mode: async
    worker:
      command: [{sys.executable}, {POLLER}]
      env: {{RECORD_FILE: "{record}"{env}}}
    idle_timeout: 30s
    timeout: 10s
    schedule: {schedule}
{extra}
"""


def runs(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line]


def scheduled(run: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(run["scheduledAt"].replace("Z", "+00:00")).timestamp()


def test_ticks_fire_on_time_and_each_run_gets_the_previous_snapshot(
    gateway_factory: Any, tmp_path: Path
) -> None:
    record = tmp_path / "runs.jsonl"
    gateway: GatewayProcess = gateway_factory(polling_flow(record, schedule="{every: 2s}"))
    eventually(lambda: len(runs(record)) >= 6, timeout=30)
    got = runs(record)[:6]
    ticks = [scheduled(r) for r in got]
    assert all(abs((b - a) - 2.0) < 0.01 for a, b in itertools.pairwise(ticks))
    # Run 1 starts a worker (cold start); later runs reach the warm worker within 1 s.
    assert all(r["at"] - scheduled(r) < 1.0 for r in got[1:]), [r["at"] - scheduled(r) for r in got]
    assert [r["snapshot"] for r in got] == [None] + [{"n": n} for n in range(1, 6)]
    assert {r["trigger"] for r in got} == {"schedule"}
    snapshot = gateway.admin("GET", "/api/v1/flows/poll/snapshot").json()["snapshot"]
    assert snapshot["n"] >= 6
    nxt = gateway.flow("poll")["schedule"]["next"]
    assert len(nxt) == 3 and nxt[0] > time.time() - 0.5


def test_no_overlap_skips_ticks_while_a_run_is_going(gateway_factory: Any, tmp_path: Path) -> None:
    record = tmp_path / "runs.jsonl"
    gateway_factory(polling_flow(record, schedule="{every: 1s}", env=", POLL_SLEEP: '2.5'"))
    eventually(lambda: len(runs(record)) >= 3, timeout=30)
    got = runs(record)
    starts = [r["at"] for r in got]
    assert all(b - a >= 2.4 for a, b in itertools.pairwise(starts)), starts


def test_snapshot_can_be_set_and_cleared_and_garbage_keeps_it(
    gateway_factory: Any, tmp_path: Path
) -> None:
    record = tmp_path / "runs.jsonl"
    gateway: GatewayProcess = gateway_factory(
        polling_flow(record, schedule="{every: 1h}", env=", POLL_ANSWER: 'not json'")
    )
    put = gateway.admin("PUT", "/api/v1/flows/poll/snapshot", json={"snapshot": {"cursor": "c1"}})
    assert put.json() == {"snapshot": {"cursor": "c1"}}
    assert gateway.admin("POST", "/api/v1/flows/poll/run").status_code == 202
    eventually(lambda: len(runs(record)) == 1)
    assert runs(record)[0]["snapshot"] == {"cursor": "c1"}
    [run] = eventually(
        lambda: gateway.admin(
            "GET", "/api/v1/deliveries", params={"flow": "poll", "status": "done"}
        ).json()["items"]
    )
    # The stored run shows the snapshot its worker got.
    stored = gateway.admin("GET", f"/api/v1/deliveries/{run['id']}").json()
    assert json.loads(stored["body"])["snapshot"] == {"cursor": "c1"}
    assert gateway.admin("GET", "/api/v1/flows/poll/snapshot").json() == {
        "snapshot": {"cursor": "c1"}
    }
    assert gateway.admin("DELETE", "/api/v1/flows/poll/snapshot").json() == {"snapshot": None}
    too_big = {"snapshot": "x" * (1024 * 1024)}
    assert gateway.admin("PUT", "/api/v1/flows/poll/snapshot", json=too_big).status_code == 422


def test_missed_ticks_after_a_restart_follow_the_missed_setting(
    gateway_factory: Any, tmp_path: Path
) -> None:
    missed_runs = {}
    stamps: dict[str, float] = {}
    for missed in ("skip", "once", "all"):
        record = tmp_path / f"{missed}.jsonl"
        gateway: GatewayProcess = gateway_factory(
            polling_flow(record, schedule=f"{{every: 2s, missed: {missed}}}"), name=missed
        )
        eventually(lambda record=record: len(runs(record)) >= 1, timeout=20)
        gateway.stop()
        stopped = time.time()
        time.sleep(7)
        restarted = time.time()
        gateway.start()
        eventually(
            lambda record=record, since=restarted: any(scheduled(r) > since for r in runs(record)),
            timeout=20,
        )
        gateway.stop()
        stamps[missed] = restarted
        stamps[f"{missed} stopped"] = stopped
        # Ticks run since the stop: catch-up runs first, then the ones on time.
        missed_runs[missed] = sorted(scheduled(r) for r in runs(record) if scheduled(r) > stopped)
    for missed, ticks in missed_runs.items():
        # On the schedule's grid; a tick due while the previous run still goes may be skipped.
        gaps = [(b - a) / 2.0 for a, b in itertools.pairwise(ticks)]
        assert all(gap >= 1 and abs(gap - round(gap)) < 1e-3 for gap in gaps), (missed, ticks)
    # skip: no run for a tick more than half an interval late.
    assert missed_runs["skip"][0] > stamps["skip"] - 1.0, missed_runs
    # once: one run for the whole downtime, for its newest tick; older ones are dropped.
    assert missed_runs["once"][0] > stamps["once"] - 2.0 - 0.05, missed_runs
    # all: a run for every tick of the downtime, from the first one after the stop.
    assert missed_runs["all"][0] < stamps["all stopped"] + 2.0, missed_runs
    downtime = [t for t in missed_runs["all"] if t < stamps["all"]]
    assert len(downtime) >= 3, missed_runs
    assert all(abs(b - a - 2.0) < 1e-3 for a, b in itertools.pairwise(downtime)), missed_runs


def test_invalid_schedules_are_refused_with_a_clear_message(gateway_factory: Any) -> None:
    gateway: GatewayProcess = gateway_factory()
    base = {"name": "p", "mode": "async", "worker": {"command": ["false"]}}
    for schedule, message in (
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"every": "5m", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every": "500ms"}, "at least 1s"),
        ({"every": "5m", "cron": "* * * * *"}, "exactly one of"),
    ):
        answer = gateway.admin("POST", "/api/v1/flows", json={**base, "schedule": schedule})
        assert answer.status_code == 422
        assert message in answer.json()["error"]


def test_two_gateways_on_one_database_enqueue_each_tick_once(
    gateway_factory: Any, tmp_path: Path, pg_url: str
) -> None:
    record = tmp_path / "runs.jsonl"
    flows = polling_flow(record, schedule="{every: 1s, overlap: true}")
    on_postgres(gateway_factory, pg_url, "one", flows)
    on_postgres(gateway_factory, pg_url, "two", flows)
    eventually(lambda: len(runs(record)) >= 8, timeout=30)
    ticks = [scheduled(r) for r in runs(record)]
    assert len(ticks) == len(set(ticks)), sorted(ticks)
