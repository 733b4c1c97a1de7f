"""Copy one store into another (``hookgate db copy``), e.g. from SQLite to PostgreSQL.

Flows keep their ids, so their URLs stay the same. Every delivery moves whole: body, headers,
state, attempt counter and history, so queued requests are delivered from the new store, dead
letters stay replayable and done ones are purged on the same schedule as before. A delivery that
was leased when the source stopped is queued again (its holder is gone; the worker sees the same
``Idempotency-Key``). Dedupe keys are not copied: their windows start afresh.

The copy is safe to run again after an interruption: deliveries already in the target are
skipped, and ``force`` lets flows that were copied before (same id) be overwritten.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from hookgate.domain.deliveries import State
from hookgate.domain.flows import Flow
from hookgate.errors import FlowConflict
from hookgate.store.base import DeliveryRecord, Store

BATCH = 500


class CopyResult(msgspec.Struct, kw_only=True, frozen=True):
    flows_created: int
    flows_replaced: int
    deliveries_copied: int
    deliveries_skipped: int


def check_flows(source: list[Flow], target: list[Flow], *, force: bool) -> None:
    """Refuse a copy that would clash with the target's flows; say which and what to do."""
    ids_by_name = {flow.name: flow.id for flow in target}
    other_id = sorted(f.name for f in source if ids_by_name.get(f.name, f.id) != f.id)
    if other_id:
        raise FlowConflict(
            f"the target has flows named {', '.join(other_id)} with other ids (other URLs);"
            " delete or rename them there first"
        )
    same_id = sorted(f.name for f in source if f.id in ids_by_name.values())
    if same_id and not force:
        raise FlowConflict(
            f"the target already has flows {', '.join(same_id)} (same ids, copied before?);"
            " pass --force to overwrite them with the source's and add missing deliveries"
        )


async def copy_store(
    source: Store,
    target: Store,
    *,
    force: bool = False,
    batch: int = BATCH,
    progress: Callable[[int], None] | None = None,
) -> CopyResult:
    """Copy flows, then deliveries oldest first in batches; ``progress(n)`` after each batch."""
    flows = await source.list_flows()
    existing = await target.list_flows()
    check_flows(flows, existing, force=force)
    present = {flow.id for flow in existing}
    replaced = 0
    for flow in flows:
        if flow.id in present:
            await target.update_flow(flow)
            replaced += 1
        else:
            await target.create_flow(flow)
        await _copy_schedule(source, target, flow.id)

    copied = skipped = 0
    cursor: str | None = None
    while True:
        records, cursor = await source.export_deliveries(limit=batch, cursor=cursor)
        inserted = await target.import_deliveries([_unleased(r) for r in records])
        copied += inserted
        skipped += len(records) - inserted
        if progress is not None:
            progress(len(records))
        if cursor is None:
            break
    return CopyResult(
        flows_created=len(flows) - replaced,
        flows_replaced=replaced,
        deliveries_copied=copied,
        deliveries_skipped=skipped,
    )


async def _copy_schedule(source: Store, target: Store, flow_id: str) -> None:
    """A polling flow keeps its snapshot and its place in the schedule."""
    snapshot = await source.snapshot(flow_id)
    if snapshot is not None:
        await target.set_snapshot(flow_id, snapshot)
    last = await source.last_tick(flow_id)
    if last is not None:
        await target.claim_tick(flow_id, tick=last, request=None, exclusive=False)


def _unleased(record: DeliveryRecord) -> DeliveryRecord:
    """A lease of the stopped source means nothing in the target: queue it again."""
    if record.delivery.state is not State.LEASED:
        return record
    delivery = msgspec.structs.replace(record.delivery, state=State.QUEUED, lease_until=None)
    return DeliveryRecord(delivery, record.attempts)
