"""The ledger against a real PostgreSQL: runs, partitions, the run lock and resuming."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.db import ledger, locks
from sync.db.counts import PartitionStats, RunCounts
from sync.db.schema import sync_partitions
from tests.helpers import run_row

DAY = dt.date(2024, 5, 1)
END = 1_714_579_199  # 2024-05-01 23:59:59 in Asia/Shanghai
START = END - 30 * 86_400 + 1
PARAMS = {"dates": ["2024-05-01"], "douyin_id": None, "page_size": 10000}


async def partition_row(conn: AsyncConnection, partition_id: int) -> dict[str, Any]:
    query = select(sync_partitions).where(sync_partitions.c.id == partition_id)
    return dict((await conn.execute(query)).one()._mapping)


async def new_run(
    conn: AsyncConnection,
    status: str | None = None,
    *,
    params: dict[str, Any] = PARAMS,
    app: str = "app",
    kind: str = "backfill",
) -> int:
    """A run, finished with `status` unless None (left running)."""
    run_id = await ledger.start_run(conn, kind, app, params)
    if status is not None:
        await ledger.finish_run(conn, run_id, status, RunCounts(), None)
    return run_id


async def done(conn: AsyncConnection, run_id: int, start: int = START, end: int = END) -> int:
    pid = await ledger.start_partition(conn, run_id, DAY, start, end, "")
    await ledger.partition_done(conn, pid, PartitionStats())
    return pid


def test_run_lock_key_is_stable_signed_int64() -> None:
    """The lock key is the same in every process and fits PostgreSQL's bigint."""
    assert locks.run_lock_key("app") == locks.run_lock_key("app")
    assert locks.run_lock_key("app") != locks.run_lock_key("app2")
    keys = [locks.run_lock_key(f"app{i}") for i in range(200)]
    assert all(-(2**63) <= k < 2**63 for k in keys)
    assert any(k < 0 for k in keys)  # the sign bit is used, not dropped
    assert locks.run_lock_key("app") == 6902467519290553815


async def test_run_lock_excludes_a_second_session(engine: AsyncEngine) -> None:
    """One session holds an app's lock across commits; others fail until it is released."""
    async with engine.connect() as first, engine.connect() as second:
        assert await locks.acquire_run_lock(first, "app")
        await first.commit()  # the lock is the session's, not the transaction's
        assert not await locks.acquire_run_lock(second, "app")
        assert await locks.acquire_run_lock(second, "other app")
        assert await locks.release_run_lock(first, "app")
        assert not await locks.release_run_lock(first, "app")
        assert await locks.acquire_run_lock(second, "app")
        assert await locks.release_run_lock(second, "app")
        assert await locks.release_run_lock(second, "other app")


async def test_lock_is_released_when_the_session_ends(engine: AsyncEngine) -> None:
    """A killed process's lock goes with its session."""
    async with engine.connect() as holder, engine.connect() as other:
        assert await locks.acquire_run_lock(holder, "app")
        await holder.invalidate()  # closes the database session, as a crash would
        assert await locks.acquire_run_lock(other, "app")
        await locks.release_run_lock(other, "app")


async def test_the_server_probes_every_session_so_a_vanished_machine_frees_its_lock(
    engine: AsyncEngine,
) -> None:
    """A machine that vanishes sends no FIN: its session, and the lock, would live until the
    server's kernel keepalive gave up (two hours). Our sessions set the server's side of the
    socket to probe after 60 s, every 10 s, three times; over TCP, SHOW reads the socket's own
    options. (Over the embedded server's Unix socket they mean nothing and read 0.)"""
    async with engine.connect() as conn:
        tcp = await conn.scalar(text("SELECT inet_client_addr() IS NOT NULL"))
        shown = [
            await conn.scalar(text(f"SHOW {name}"))
            for name in ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")
        ]
    assert shown == (["60", "10", "3"] if tcp else ["0", "0", "0"])


async def test_run_is_started_and_finished_with_its_counters(engine: AsyncEngine) -> None:
    """start_run records a running run; finish_run its status, counters and error."""
    async with engine.begin() as conn:
        run_id = await ledger.start_run(conn, "nightly", "app", PARAMS)
        row = await run_row(conn, run_id)
        assert (row.kind, row.app_id, row.params, row.status) == (
            "nightly",
            "app",
            PARAMS,
            "running",
        )
        assert row.finished_at is None
        counts = RunCounts(
            partitions_total=4,
            partitions_done=2,
            partitions_failed=1,
            partitions_skipped=1,
            rows_fetched=10,
            rows_inserted=5,
            rows_updated=2,
            rows_unchanged=1,
            rows_removed=1,
            rows_rejected=1,
            api_calls=7,
            throttled=1,
            retries=2,
            qps_used=9.5,
        )
        await ledger.finish_run(conn, run_id, "partial", counts, "1 partitions failed")
        row = await run_row(conn, run_id)
    assert row.status == "partial" and row.error == "1 partitions failed"
    assert row.finished_at >= row.started_at
    stored = {k: getattr(row, k) for k in counts.columns()}
    assert stored == counts.columns() | {"qps_used": Decimal("9.5")}


async def test_finish_run_refuses_an_unknown_status(engine: AsyncEngine) -> None:
    """A run can only end as succeeded, partial, failed or interrupted."""
    async with engine.begin() as conn:
        run_id = await new_run(conn)
        with pytest.raises(ValueError, match="not 'done'"):
            await ledger.finish_run(conn, run_id, "done", RunCounts(), None)


async def test_partition_done_stores_window_and_stats(engine: AsyncEngine) -> None:
    """A partition keeps its window as timestamps, and its stats when done."""
    async with engine.begin() as conn:
        run_id = await new_run(conn)
        pid = await ledger.start_partition(conn, run_id, DAY, START, END, "douyin_id=x")
        row = await partition_row(conn, pid)
        assert (row["status"], row["attempts"], row["scope"]) == ("running", 1, "douyin_id=x")
        assert row["window_start"] == ledger.from_unix(START)
        assert ledger.to_unix(row["window_end"]) == END
        stats = PartitionStats(
            pages=3,
            api_calls=4,
            rows_fetched=25,
            inserted=10,
            updated=5,
            unchanged=8,
            removed=1,
            rejected=1,
            repeated=1,
            sanitized=2,
            last_log_id="202405020000001234",
        )
        await ledger.partition_done(conn, pid, stats)
        row = await partition_row(conn, pid)
    assert row["status"] == "done" and row["finished_at"] is not None
    assert {k: row[k] for k in stats.columns()} == stats.columns()
    assert (row["rows_inserted"], row["rows_repeated"], row["texts_sanitized"]) == (10, 1, 2)


async def test_partition_done_belongs_to_the_callers_transaction(engine: AsyncEngine) -> None:
    """partition_done does not commit: rolling back the merge's transaction undoes it."""
    async with engine.connect() as conn:
        async with conn.begin():
            pid = await ledger.start_partition(conn, await new_run(conn), DAY, START, END, "")
        transaction = await conn.begin()
        await ledger.partition_done(conn, pid, PartitionStats(inserted=5))
        await transaction.rollback()
        row = await partition_row(conn, pid)
    assert (row["status"], row["rows_inserted"]) == ("running", 0)


async def test_partition_failed_keeps_code_message_and_log_id(engine: AsyncEngine) -> None:
    """A failed partition stores err_no, message and log id; the stats' log id is the fallback."""
    async with engine.begin() as conn:
        run_id = await new_run(conn)
        first = await ledger.start_partition(conn, run_id, DAY, START, END, "")
        stats = PartitionStats(pages=2, last_log_id="page-log")
        await ledger.partition_failed(conn, first, stats, 28001007, "bad parameter", "err-log")
        second = await ledger.start_partition(conn, run_id, DAY, START, END, "")
        await ledger.partition_failed(conn, second, stats, None, "timeout", None)
        a, b = await partition_row(conn, first), await partition_row(conn, second)
    assert (a["status"], a["err_no"], a["error"], a["last_log_id"], a["pages"]) == (
        "failed",
        28001007,
        "bad parameter",
        "err-log",
        2,
    )
    assert (b["err_no"], b["last_log_id"]) == (None, "page-log")


async def test_partition_retry_counts_attempts(engine: AsyncEngine) -> None:
    """partition_retry adds an attempt and clears the previous failure."""
    async with engine.begin() as conn:
        pid = await ledger.start_partition(conn, await new_run(conn), DAY, START, END, "")
        await ledger.partition_failed(conn, pid, PartitionStats(), 1, "boom", None)
        await ledger.partition_retry(conn, pid)
        row = await partition_row(conn, pid)
    assert (row["attempts"], row["status"], row["error"], row["err_no"]) == (
        2,
        "running",
        None,
        None,
    )


async def test_find_resumable_run(engine: AsyncEngine) -> None:
    """The latest run with equal params is resumable unless it succeeded."""
    async with engine.begin() as conn:
        assert await ledger.find_resumable_run(conn, "backfill", PARAMS) is None
        interrupted = await new_run(conn, "interrupted")
        reordered = dict(reversed(PARAMS.items()))  # equal as JSON, whatever the key order
        assert await ledger.find_resumable_run(conn, "backfill", reordered) == interrupted
        assert await ledger.find_resumable_run(conn, "nightly", PARAMS) is None
        assert await ledger.find_resumable_run(conn, "backfill", PARAMS | {"page_size": 5}) is None
        assert await ledger.find_resumable_run(conn, "backfill", PARAMS, app_id="b") is None
        partial = await new_run(conn, "partial")
        assert await ledger.find_resumable_run(conn, "backfill", PARAMS) == partial
        await new_run(conn, "succeeded")
        assert await ledger.find_resumable_run(conn, "backfill", PARAMS) is None
        await new_run(conn, "succeeded", params=PARAMS | {"page_size": 5})
        failed = await new_run(conn, "failed")
        assert await ledger.find_resumable_run(conn, "backfill", PARAMS, app_id="app") == failed


async def test_done_windows_of_a_run(engine: AsyncEngine) -> None:
    """Only done partitions count, keyed by (date, window end), with the earliest start."""
    async with engine.begin() as conn:
        run_id = await new_run(conn, "interrupted")
        await done(conn, run_id, START + 50)
        await done(conn, run_id, START)
        await done(conn, run_id, START - 30 * 86_400, START - 1)
        failed = await ledger.start_partition(conn, run_id, DAY, 0, 9, "")
        await ledger.partition_failed(conn, failed, PartitionStats(), None, "x", None)
        await ledger.start_partition(conn, run_id, DAY, 10, 19, "")  # left running
        windows = await ledger.done_windows(conn, run_id)
    assert windows == {(DAY, END): START, (DAY, START - 1): START - 30 * 86_400}


async def test_done_windows_follow_a_chain_of_resumed_runs(engine: AsyncEngine) -> None:
    """A resumed run interrupted again still carries the work of the run it resumed, but not
    work from before the last succeeded run with the same params."""
    async with engine.begin() as conn:
        old = await new_run(conn, "interrupted")
        await done(conn, old, 0, 9)
        await new_run(conn, "succeeded")
        first = await new_run(conn, "interrupted")
        await done(conn, first, 10, 19)
        other = await new_run(conn, "interrupted", params=PARAMS | {"page_size": 5})
        await done(conn, other, 20, 29)
        second = await new_run(conn, "interrupted")
        await done(conn, second, 30, 39)
        assert await ledger.done_windows(conn, second) == {(DAY, 19): 10, (DAY, 39): 30}
        assert await ledger.done_windows(conn, first) == {(DAY, 19): 10}
        assert await ledger.done_windows(conn, second, scope="douyin_id=x") == {}


async def test_stale_runs_become_interrupted(engine: AsyncEngine) -> None:
    """'running' runs whose app lock nobody else holds are interrupted, their running
    partitions failed; a run whose lock is held elsewhere, and `keep`, are left alone."""
    async with engine.connect() as conn, engine.connect() as live:
        assert await locks.acquire_run_lock(live, "busy app")
        async with conn.begin():
            assert await locks.acquire_run_lock(conn, "app")
            dead = await new_run(conn)
            running = await ledger.start_partition(conn, dead, DAY, START, END, "")
            finished = await done(conn, dead)
            busy = await new_run(conn, app="busy app")
            current = await new_run(conn)
            assert await ledger.mark_stale_runs(conn, keep=current) == [dead]
            assert await ledger.mark_stale_runs(conn, keep=current) == []
            dead_row = await run_row(conn, dead)
            assert (dead_row.status, dead_row.finished_at is not None) == (
                "interrupted",
                True,
            )
            assert (await run_row(conn, busy)).status == "running"
            assert (await run_row(conn, current)).status == "running"
            row = await partition_row(conn, running)
            assert (row["status"], row["error"]) == ("failed", "interrupted")
            assert (await partition_row(conn, finished))["status"] == "done"
            await locks.release_run_lock(live, "busy app")
            assert await ledger.mark_stale_runs(conn, "other app") == []
            assert await ledger.mark_stale_runs(conn, "busy app") == [busy]
            await locks.release_run_lock(conn, "app")
