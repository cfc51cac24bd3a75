"""The ledger read for the measured lookback: an app's re-syncs (sync.lateness.Resync).

One done full-scope partition per (billing date, window end) is a date's first sync of that
window (the first by id): it found every row new, so it is not a re-sync. Every later done
full-scope partition of it is; a run's partitions of one date sum to one re-sync, dated by the
run's start in China time. Partitions with an API filter (scope) are left out: they see a part
of the date only.
"""

from __future__ import annotations

from sqlalchemy import Date, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.db.schema import sync_partitions, sync_runs
from sync.db.statuses import PartitionStatus
from sync.lateness import Lateness, Resync, measure


async def resyncs(conn: AsyncConnection, app_id: str) -> list[Resync]:
    """The app's re-syncs, oldest run first."""
    p, r = sync_partitions, sync_runs
    changed = p.c.rows_inserted + p.c.rows_updated + p.c.rows_removed
    nth = func.row_number().over(partition_by=(p.c.billing_date, p.c.window_end), order_by=p.c.id)
    done = (
        select(p.c.run_id, p.c.billing_date, changed.label("changed"), nth.label("nth"))
        .where(p.c.app_id == app_id, p.c.status == PartitionStatus.DONE, p.c.scope == "")
        .subquery()
    )
    day = func.cast(func.timezone(literal("Asia/Shanghai"), r.c.started_at), Date)
    query = (
        select(done.c.billing_date, day, r.c.kind, func.sum(done.c.changed))
        .select_from(done.join(r, r.c.id == done.c.run_id))
        .where(done.c.nth > 1)
        .group_by(r.c.id, done.c.billing_date)
        .order_by(r.c.id, done.c.billing_date)
    )
    return [
        Resync(billing_date, run_day, kind == "nightly", int(n))
        for billing_date, run_day, kind, n in await conn.execute(query)
    ]


async def app_lateness(conn: AsyncConnection, app_id: str) -> Lateness:
    """The app's measured lateness and suggested lookback (sync.lateness.measure)."""
    return measure(await resyncs(conn, app_id))
