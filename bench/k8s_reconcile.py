"""Reconcile 1,000 flows from nothing against the kmock API emulator, then measure steady state.

Run from the repository root: ``python -m bench.k8s_reconcile [--flows 1000]``.
Prints the time to converge, the API requests it took by verb, and the requests made during
a steady-state period with several resyncs (the target: zero writes).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from tests.runtime.kubernetes.emulator import WRITES, Emulator, emulated

from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import Flow, new_flow_id
from hookgate.runtime.kubernetes.client import kubeconfig_for
from hookgate.runtime.kubernetes.runtime import KubernetesRuntime


def flows(count: int) -> list[Flow]:
    return [
        Flow(
            id=new_flow_id(),
            created_at=0.0,
            updated_at=0.0,
            spec=spec_from_object(
                {
                    "name": f"flow-{i:05d}",
                    "mode": "sync" if i % 2 else "async",
                    "worker": {"image": f"registry.example/flow-{i}:1"},
                }
            ),
        )
        for i in range(count)
    ]


def by_verb(cluster: Emulator, start: int = 0) -> dict[str, int]:
    return dict(Counter(str(r.action.value) for r in list(cluster)[start:] if r.action))


async def main(count: int, steady: float, resync: float) -> None:
    wanted = flows(count)
    async with emulated() as cluster:
        runtime = KubernetesRuntime(
            namespace="flows",
            client=kubeconfig_for(str(cluster.url)),
            identity="bench",
            resync=resync,
        )
        await runtime.start()
        started = time.perf_counter()
        await asyncio.gather(*(runtime.scale(flow, 1) for flow in wanted))
        elapsed = time.perf_counter() - started
        print(
            f"{count} flows reconciled from nothing in {elapsed:.2f}s "
            f"({count / elapsed:.0f} flows/s)"
        )
        print(f"  requests: {by_verb(cluster)}")
        mark = len(list(cluster))
        await asyncio.sleep(steady)
        await asyncio.gather(*(runtime.scale(flow, 1) for flow in wanted))
        later = list(cluster)[mark:]
        written = sum(
            r.action in WRITES and r.resource.plural != "leases"
            for r in later
            if r.resource is not None
        )
        print(
            f"steady state, {steady:.0f}s with resync every {resync:.0f}s and every flow "
            f"re-scaled: {by_verb(cluster, mark)}; writes to flow objects: {written}"
        )
        await runtime.close()
        await runtime.kube.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--steady", type=float, default=5.0, help="seconds of steady state")
    parser.add_argument("--resync", type=float, default=2.0, help="seconds between resyncs")
    options = parser.parse_args()
    asyncio.run(main(options.flows, options.steady, options.resync))
