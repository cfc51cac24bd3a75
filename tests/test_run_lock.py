"""The run lock holds: a run whose lock connection dies takes the lock back or stops, and never
commits a partition while another run of its app holds the lock."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db import locks
from sync.db.schema import sync_partitions, sync_runs
from sync.db.statuses import PartitionStatus, RunStatus
from sync.errors import RunLockedError
from sync.pipeline.runs import RunResult
from sync.sandbox import Faults, SandboxServer
from sync.settings import Settings
from tests.helpers import (
    Clock,
    MakeSandbox,
    assert_table_is_truth,
    run_sync,
    sandbox_settings,
    wait_until,
)

DATES = 2


@pytest.fixture
async def slow_sandbox(make_sandbox: MakeSandbox) -> SandboxServer:
    server = await make_sandbox(seed=11, videos=400, tasks=6, creators=20)
    server.sandbox.set_faults(Faults(latency_min=0.05, latency_max=0.15))
    return server


async def _lock_holder(engine: AsyncEngine, app_id: str) -> int | None:
    async with engine.connect() as conn:
        pid = await conn.scalar(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND objsubid = 1 AND (classid::bigint << 32) | objid::bigint = :key"
            ),
            {"key": locks.run_lock_key(app_id)},
        )
    return None if pid is None else int(pid)


async def _done_partitions(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        found = await conn.execute(
            select(sync_partitions.c.id).where(sync_partitions.c.status == PartitionStatus.DONE)
        )
        return len(found.all())


async def _kill_lock_connection_mid_run(engine: AsyncEngine, app_id: str) -> int:
    """Wait until the run holds its lock and committed a partition, then end the lock's session;
    the session's pid."""

    async def holding() -> bool:
        return await _lock_holder(engine, app_id) is not None and await _done_partitions(engine) > 0

    await wait_until(holding, limit=30, what="the run to hold its lock and commit a partition")
    pid = await _lock_holder(engine, app_id)
    assert pid is not None
    async with engine.connect() as conn:
        assert await conn.scalar(select(text("pg_terminate_backend(:pid)")), {"pid": pid})
    return pid


def _options() -> dict[str, Any]:
    return {"page_size": 20, "concurrency": 4}


async def test_a_lost_lock_connection_is_taken_back_and_the_run_goes_on(
    engine: AsyncEngine, database_url: str, slow_sandbox: SandboxServer, clock: Clock
) -> None:
    settings = sandbox_settings(slow_sandbox, database_url)
    dates, now = clock.recent_dates(DATES), clock()
    run = asyncio.create_task(run_sync(settings, dates, now=now, **_options()))
    app = settings.recorded_app
    old = await _kill_lock_connection_mid_run(engine, app)

    async def taken_back() -> bool:
        return await _lock_holder(engine, app) not in (None, old)

    # The run notices, takes its lock again on a new connection, and ends normally.
    await wait_until(taken_back, limit=30, what="the run to take its lock back")
    result = await asyncio.wait_for(run, 120)
    assert result.status == RunStatus.SUCCEEDED, result.error
    await assert_table_is_truth(engine, slow_sandbox, dates, now)


async def _held(engine: AsyncEngine, app_id: str) -> bool:
    return await _lock_holder(engine, app_id) is not None


async def _second_run_waiting(settings: Settings, dates: list[dt.date], now: float) -> RunResult:
    """A second run started again and again while the lock is held (as cron or a queue would)."""
    while True:
        try:
            return await run_sync(settings, dates, now=now, **_options())
        except RunLockedError:
            await asyncio.sleep(0.02)


async def test_a_run_whose_lock_is_taken_stops_and_never_commits_alongside_the_taker(
    engine: AsyncEngine, database_url: str, slow_sandbox: SandboxServer, clock: Clock
) -> None:
    settings = sandbox_settings(slow_sandbox, database_url)
    dates, now = clock.recent_dates(DATES), clock()
    first = asyncio.create_task(run_sync(settings, dates, now=now, **_options()))
    await wait_until(lambda: _held(engine, settings.recorded_app), limit=30, what="the first run")
    second = asyncio.create_task(_second_run_waiting(settings, dates, now))
    await _kill_lock_connection_mid_run(engine, settings.recorded_app)
    a = await asyncio.wait_for(first, 120)
    b = await asyncio.wait_for(second, 120)
    assert b.status == RunStatus.SUCCEEDED, b.error
    async with engine.connect() as conn:
        taker = (await conn.execute(select(sync_runs).where(sync_runs.c.id == b.run_id))).one()
        late = await conn.scalar(
            select(text("count(*)"))
            .select_from(sync_partitions)
            .where(
                sync_partitions.c.run_id == a.run_id,
                sync_partitions.c.status == PartitionStatus.DONE,
                sync_partitions.c.finished_at > taker.started_at,
            )
        )
    if a.status == RunStatus.SUCCEEDED:
        # The first run took its lock back before the second got it: they ran one after other.
        assert a.run_id < b.run_id
    else:
        # The second run took the lock: the first stopped, interrupted, and committed nothing
        # once the second had started.
        assert a.status == RunStatus.INTERRUPTED, a.error
        assert isinstance(a.stop_error, RunLockedError), a.stop_error
        assert late == 0
    await assert_table_is_truth(engine, slow_sandbox, dates, now)
