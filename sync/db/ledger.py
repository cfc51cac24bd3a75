"""The ledger: one sync_runs row per run, one sync_partitions row per partition attempt.

Nothing here commits: every function runs in the caller's transaction, so that a partition's
`partition_done` commits together with its rows (sync.db.store) or not at all.

A run's life:

    locks.acquire_run_lock(...)       one run per app at a time (sync.db.locks)
    mark_stale_runs(conn)             'running' runs whose process died become 'interrupted'
    find_resumable_run / done_windows what an unfinished identical run already did
    start_run -> start_partition -> partition_done | partition_failed ... -> finish_run
    locks.release_run_lock(...)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import cast

from sync.db.counts import PartitionStats, RunCounts
from sync.db.locks import locks_held_elsewhere, run_lock_key
from sync.db.schema import sync_partitions, sync_runs
from sync.db.statuses import PartitionStatus, RunStatus
from sync.errors import RunLockedError

FINAL_RUN_STATUSES = tuple(s for s in RunStatus if s.final)
STALE_ERROR = "interrupted"  # the error of a partition whose run's process died


def from_unix(seconds: int) -> dt.datetime:
    """Unix seconds as an aware UTC datetime (how windows are stored)."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def to_unix(moment: dt.datetime) -> int:
    """An aware datetime as whole Unix seconds."""
    return int(moment.timestamp())


async def mark_stale_runs(
    conn: AsyncConnection, app_id: str | None = None, *, keep: int | None = None
) -> list[int]:
    """Mark 'running' runs whose process is gone as 'interrupted'; returns their ids.

    A run is stale when no other session holds its app's run lock: a live run keeps its lock
    until it finishes. Call it while holding the lock, before `start_run` (or pass the current
    run as `keep`). Their 'running' partitions become 'failed' with error 'interrupted'.
    With `app_id`, only that app's runs are considered.
    """
    running_run = sync_runs.c.status == RunStatus.RUNNING
    query = select(sync_runs.c.id, sync_runs.c.app_id).where(running_run)
    if app_id is not None:
        query = query.where(sync_runs.c.app_id == app_id)
    if keep is not None:
        query = query.where(sync_runs.c.id != keep)
    running = (await conn.execute(query)).all()
    if not running:
        return []
    held = await locks_held_elsewhere(conn)
    stale = [r.id for r in running if run_lock_key(r.app_id) not in held]
    if not stale:
        return []
    now = func.clock_timestamp()
    await conn.execute(
        update(sync_runs)
        .where(sync_runs.c.id.in_(stale), running_run)
        .values(
            status=RunStatus.INTERRUPTED,
            finished_at=now,
            error=func.coalesce(sync_runs.c.error, "interrupted: the process ended mid-run"),
        )
    )
    p = sync_partitions
    await conn.execute(
        update(p)
        .where(p.c.run_id.in_(stale), p.c.status == PartitionStatus.RUNNING)
        .values(status=PartitionStatus.FAILED, finished_at=now, error=STALE_ERROR)
    )
    return stale


# -- runs -----------------------------------------------------------------------------------


async def start_run(
    conn: AsyncConnection, kind: str, app_id: str, params: Mapping[str, Any]
) -> int:
    """Record a new run as 'running'; `params` (JSON-serialisable) identify it for resuming."""
    run_id = await conn.scalar(
        insert(sync_runs)
        .values(
            kind=kind,
            app_id=app_id,
            params=dict(params),
            status=RunStatus.RUNNING,
            started_at=func.clock_timestamp(),
        )
        .returning(sync_runs.c.id)
    )
    assert run_id is not None
    return int(run_id)


async def finish_run(
    conn: AsyncConnection, run_id: int, status: RunStatus, counts: RunCounts, error: str | None
) -> None:
    """Record a run's end: its final status, counters and error (None when there was none)."""
    if status not in FINAL_RUN_STATUSES:
        raise ValueError(f"a run ends as one of {', '.join(FINAL_RUN_STATUSES)}, not '{status}'")
    await conn.execute(
        update(sync_runs)
        .where(sync_runs.c.id == run_id)
        .values(status=status, finished_at=func.clock_timestamp(), error=error, **counts.columns())
    )


def _same_run_kind(kind: str, params: Mapping[str, Any], app_id: str | None) -> Any:
    cond = and_(sync_runs.c.kind == kind, sync_runs.c.params == cast(dict(params), JSONB))
    if app_id is not None:
        cond = and_(cond, sync_runs.c.app_id == app_id)
    return cond


async def find_resumable_run(
    conn: AsyncConnection, kind: str, params: Mapping[str, Any], *, app_id: str | None = None
) -> int | None:
    """The latest run of this kind with equal params (as JSON values), unless it succeeded.

    A succeeded run means there is nothing to resume; otherwise its done partitions (see
    `done_windows`) need not be fetched again. Pass `app_id` so that another app's run, whose
    rows are another app's, is never taken for this one.
    """
    latest = (
        await conn.execute(
            select(sync_runs.c.id, sync_runs.c.status)
            .where(_same_run_kind(kind, params, app_id))
            .order_by(sync_runs.c.id.desc())
            .limit(1)
        )
    ).first()
    if latest is None or latest.status == RunStatus.SUCCEEDED:
        return None
    return int(latest.id)


async def done_windows(
    conn: AsyncConnection, run_id: int, *, scope: str | None = None
) -> dict[tuple[dt.date, int], int]:
    """The done partitions of `run_id` and of the unfinished runs it continues, as
    {(billing_date, window_end): window_start} (the earliest start when several are done).

    A run that resumed an interrupted run and was interrupted in turn still carries the first
    one's work: runs of the same kind, app and params since the last succeeded one count.
    """
    run, chain_run, prior = (
        sync_runs.alias("run"),
        sync_runs.alias("chain"),
        sync_runs.alias("prior"),
    )

    def same_as_run(other: Any) -> Any:
        return and_(
            other.c.kind == run.c.kind,
            other.c.app_id == run.c.app_id,
            other.c.params == run.c.params,
        )

    last_success = (
        select(func.coalesce(func.max(prior.c.id), 0))
        .where(same_as_run(prior), prior.c.status == RunStatus.SUCCEEDED, prior.c.id < run.c.id)
        .correlate(run)
        .scalar_subquery()
    )
    chain = (
        select(chain_run.c.id)
        .select_from(run.join(chain_run, same_as_run(chain_run)))
        .where(run.c.id == run_id, chain_run.c.id <= run_id, chain_run.c.id > last_success)
    )
    p = sync_partitions
    query = (
        select(p.c.billing_date, p.c.window_end, func.min(p.c.window_start))
        .where(p.c.run_id.in_(chain), p.c.status == PartitionStatus.DONE)
        .group_by(p.c.billing_date, p.c.window_end)
    )
    if scope is not None:
        query = query.where(p.c.scope == scope)
    result = await conn.execute(query)
    return {(d, to_unix(end)): to_unix(start) for d, end, start in result}


async def claim_run(conn: AsyncConnection, run_id: int) -> None:
    """In a partition's transaction, before its commit: the run is still 'running', and stays so
    until the commit (a share lock on its row). RunLockedError if not.

    The fence behind the run lock: a run whose lock connection died can have its lock taken by
    another run, which marks it 'interrupted' (`mark_stale_runs`) before it resumes the work.
    Whichever comes first waits for the other, so the taker either sees this partition done or
    this partition sees the run taken, and rolls back.
    """
    status = await conn.scalar(
        select(sync_runs.c.status).where(sync_runs.c.id == run_id).with_for_update(read=True)
    )
    if status != RunStatus.RUNNING:
        raise RunLockedError(
            f"run {run_id} was marked '{status}' by another run of its app that took the run "
            "lock (this run's lock connection was lost); that run owns the work now"
        )


# -- partitions -----------------------------------------------------------------------------


async def start_partition(
    conn: AsyncConnection,
    run_id: int,
    billing_date: dt.date,
    window_start: int,
    window_end: int,
    scope: str,
) -> int:
    """Record a partition attempt as 'running' (attempts 1); the window is in Unix seconds."""
    if window_start > window_end:
        raise ValueError(f"window_start {window_start} is after window_end {window_end}")
    partition_id = await conn.scalar(
        insert(sync_partitions)
        .values(
            run_id=run_id,
            app_id=select(sync_runs.c.app_id).where(sync_runs.c.id == run_id).scalar_subquery(),
            billing_date=billing_date,
            window_start=from_unix(window_start),
            window_end=from_unix(window_end),
            scope=scope,
            status=PartitionStatus.RUNNING,
            attempts=1,
            started_at=func.clock_timestamp(),
        )
        .returning(sync_partitions.c.id)
    )
    assert partition_id is not None
    return int(partition_id)


async def running_partition(
    conn: AsyncConnection, run_id: int, billing_date: dt.date, window_start: int, window_end: int
) -> int | None:
    """The run's 'running' entry for this partition, if one was recorded (its commit was in
    doubt when the database went away)."""
    p = sync_partitions
    found = await conn.scalar(
        select(p.c.id)
        .where(
            p.c.run_id == run_id,
            p.c.billing_date == billing_date,
            p.c.window_start == from_unix(window_start),
            p.c.window_end == from_unix(window_end),
            p.c.status == PartitionStatus.RUNNING,
        )
        .order_by(p.c.id.desc())
        .limit(1)
    )
    return None if found is None else int(found)


async def partition_retry(conn: AsyncConnection, partition_id: int) -> None:
    """Count one more attempt of a partition and mark it 'running' again."""
    await conn.execute(
        update(sync_partitions)
        .where(sync_partitions.c.id == partition_id)
        .values(
            attempts=sync_partitions.c.attempts + 1,
            status=PartitionStatus.RUNNING,
            err_no=None,
            error=None,
            finished_at=None,
        )
    )


async def partition_done(conn: AsyncConnection, partition_id: int, stats: PartitionStats) -> None:
    """Mark a partition done, in the caller's transaction (the one that merged its rows)."""
    await conn.execute(
        update(sync_partitions)
        .where(sync_partitions.c.id == partition_id)
        .values(status=PartitionStatus.DONE, finished_at=func.clock_timestamp(), **stats.columns())
    )


async def abandon_partitions(conn: AsyncConnection, run_id: int, reason: str) -> int:
    """Mark the run's partitions still 'running' as 'failed' (the run stopped before they
    ended and rolled their rows back); returns how many. Call after every worker has ended."""
    p = sync_partitions
    result = await conn.execute(
        update(p)
        .where(p.c.run_id == run_id, p.c.status == PartitionStatus.RUNNING)
        .values(status=PartitionStatus.FAILED, finished_at=func.clock_timestamp(), error=reason)
    )
    return int(result.rowcount or 0)


async def partition_failed(
    conn: AsyncConnection,
    partition_id: int,
    stats: PartitionStats,
    err_no: int | None,
    error: str,
    log_id: str | None,
) -> None:
    """Mark a partition failed with the platform's code, message and log id (if any)."""
    values = stats.columns()
    values["last_log_id"] = log_id or stats.last_log_id
    await conn.execute(
        update(sync_partitions)
        .where(sync_partitions.c.id == partition_id)
        .values(
            status=PartitionStatus.FAILED,
            finished_at=func.clock_timestamp(),
            err_no=err_no,
            error=error,
            **values,
        )
    )
