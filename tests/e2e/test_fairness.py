"""One flow's backlog does not hold another flow's deliveries back (real gateway and workers)."""

from __future__ import annotations

import sys
from typing import Any

import httpx
from tests.conftest import ROOT, GatewayProcess
from tests.e2e.helpers import eventually
from tests.e2e.test_adaptive_concurrency import burst, metric

CAPACITY = ROOT / "tests" / "workers" / "capacity.py"


def test_a_second_flow_is_delivered_while_the_first_drains_a_backlog(
    gateway_factory: Any,
) -> None:
    worker = f"{{command: [{sys.executable}, {CAPACITY}], env: {{CAPACITY: '2', SERVICE: '0.02'}}}}"
    gateway: GatewayProcess = gateway_factory(
        f"""
flows:
  - name: cap
    mode: async
    worker: {worker}
    max_workers: 1
  - name: other
    mode: async
    worker: {worker}
"""
    )
    burst(gateway, 600)  # about 6 s of work for a worker that serves 2 at a time in 20 ms
    url = gateway.hook("other")
    assert all(httpx.post(url, content=b"{}").status_code == 202 for _ in range(10))
    eventually(
        lambda: (
            metric(
                gateway,
                "hookgate_deliveries_total",
                flow="other",
                destination="worker",
                outcome="done",
            )
            == 10
        )
    )
    done = (
        metric(
            gateway, "hookgate_deliveries_total", flow="cap", destination="worker", outcome="done"
        )
        or 0
    )
    assert done < 450, f"the other flow waited for most of the backlog ({done} of 600 done)"
