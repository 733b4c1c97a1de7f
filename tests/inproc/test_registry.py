"""The flow registry on the memory store: two registries on one ``Tables`` are two gateways
on one database; each hears of the other's changes when it refreshes, and only of real ones."""

from __future__ import annotations

from hookgate.domain.flowfile import spec_from_object
from hookgate.domain.flows import Status
from hookgate.registry import FlowRegistry
from hookgate.store.memory import MemoryStore, Tables

BIG = 10**12


async def test_a_change_on_one_gateway_reaches_the_other_on_refresh() -> None:
    tables = Tables()
    stores = [MemoryStore(max_queued_bytes=BIG, tables=tables) for _ in range(2)]
    for store in stores:
        await store.open()
    here, there = FlowRegistry(stores[0]), FlowRegistry(stores[1])
    await here.load()
    await there.load()
    heard: list[str] = []

    async def listen(flow_id: str) -> None:
        heard.append(flow_id)

    there.subscribe(listen)
    spec = spec_from_object({"name": "orders", "mode": "async", "worker": {"command": ["w"]}})
    flow = await here.create(spec)
    assert there.get(flow.id) is None
    await there.refresh(flow.id)
    assert there.find("orders") == flow
    await there.refresh(flow.id)  # nothing changed: nobody is told
    assert heard == [flow.id]

    paused = await here.set_status("orders", Status.PAUSED)
    await there.load()
    assert there.find(flow.id).status is Status.PAUSED == paused.status
    await here.delete("orders")
    await there.refresh(flow.id)
    assert there.get(flow.id) is None
    assert heard == [flow.id] * 3
