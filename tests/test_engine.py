"""The sync engine against the sandbox over HTTP and a real PostgreSQL: exact, resumable, polite."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.cli.exits import run_exit_status
from sync.db.schema import sync_partitions, sync_runs, video_daily_earnings
from sync.sandbox import Faults, SandboxServer
from tests.helpers import (
    Clock,
    MakeSandbox,
    assert_no_rule_breaks,
    assert_table_is_truth,
    run_row,
    run_sync,
    sandbox_settings,
)


async def test_backfill_is_exact(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A backfill leaves every billing date equal to the platform's answer, IDs and money exact."""
    dates = clock.recent_dates(3)
    now = clock()
    result = await run_sync(sandbox_settings(sandbox, database_url), dates, now=now, page_size=40)
    assert result.status == "succeeded", result.failed
    total = await assert_table_is_truth(engine, sandbox, dates, now)
    assert total > 0 and result.counts.rows_inserted == total
    assert_no_rule_breaks(sandbox)
    async with engine.connect() as conn:
        big = await conn.scalar(select(func.min(video_daily_earnings.c.video_id)))
    assert big is not None and big > 2**53


async def test_resync_unchanged_writes_nothing(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """Running the same dates again changes no row and creates no row version."""
    dates = clock.recent_dates(2)
    settings = sandbox_settings(sandbox, database_url)
    await run_sync(settings, dates, page_size=100, now=clock())
    async with engine.connect() as conn:
        before = (
            await conn.execute(text("SELECT sum(xmin::text::bigint) FROM video_daily_earnings"))
        ).scalar()
    second = await run_sync(settings, dates, page_size=100, now=clock())
    assert second.status == "succeeded"
    assert (second.counts.rows_inserted, second.counts.rows_updated) == (0, 0)
    assert second.counts.rows_unchanged == second.counts.rows_fetched
    async with engine.connect() as conn:
        after = (
            await conn.execute(text("SELECT sum(xmin::text::bigint) FROM video_daily_earnings"))
        ).scalar()
    assert before == after


async def test_snake_case_keys(
    make_sandbox: MakeSandbox, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """Items keyed in snake_case (the doc tables) land the same as PascalCase ones."""
    sb = await make_sandbox(seed=3, videos=200, snake_case=True)
    dates = clock.recent_dates(1)
    now = clock()
    result = await run_sync(sandbox_settings(sb, database_url), dates, now=now)
    assert result.status == "succeeded"
    assert await assert_table_is_truth(engine, sb, dates, now) > 0


async def test_exact_multiple_of_page_size(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A window whose row count is a multiple of the page size ends with an empty page."""
    now = clock()
    d = clock.recent_dates(1)[0]
    window = planner.windows_for(d, now)[0]
    n = len(sandbox.truth(d, window.start, window.end))
    assert n >= 2
    size = n // 2 if n % 2 == 0 else n
    plan = planner.Plan((planner.Partition(d, window),))
    result = await run_sync(
        sandbox_settings(sandbox, database_url), [d], plan=plan, page_size=size, now=clock()
    )
    assert result.status == "succeeded"
    assert result.counts.api_calls == n // size + 1
    assert result.counts.rows_inserted == n


async def test_late_changes_and_removals_mirrored(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A nightly after late settlement updates changed rows, adds new ones, deletes removed ones."""
    dates = clock.recent_dates(3)
    settings = sandbox_settings(sandbox, database_url)
    await run_sync(settings, dates, kind="nightly", now=clock())
    changes = sandbox.mutate(dates[-2:], change_fraction=0.2, add=3, remove=2, seed=5)
    assert changes
    now = clock()
    result = await run_sync(settings, dates, kind="nightly", now=now)
    assert result.status == "succeeded"
    assert result.counts.rows_updated > 0
    assert result.counts.rows_removed >= 2
    assert result.counts.rows_inserted >= 3
    await assert_table_is_truth(engine, sandbox, dates, now)


async def test_faults_still_exact(
    make_sandbox: MakeSandbox, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """5% internal errors and 2% 502/503s are retried; the table ends exact."""
    faults = Faults(seed=11, busy_rate=0.05, http_5xx_rate=0.02)
    sb = await make_sandbox(seed=3, videos=300, faults=faults)
    dates = clock.recent_dates(4)
    now = clock()
    result = await run_sync(sandbox_settings(sb, database_url), dates, now=now, page_size=30)
    assert result.status == "succeeded", result.failed
    assert result.counts.retries > 0
    await assert_table_is_truth(engine, sb, dates, now)
    assert_no_rule_breaks(sb)


async def test_token_expires_mid_run(
    make_sandbox: MakeSandbox, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A token that lives two seconds is refreshed in flight; the run completes exactly."""
    sb = await make_sandbox(seed=3, videos=300, token_lifetime=2.0)
    dates = clock.recent_dates(3)
    now = clock()
    result = await run_sync(sandbox_settings(sb, database_url), dates, now=now, page_size=20)
    assert result.status == "succeeded", result.failed
    await assert_table_is_truth(engine, sb, dates, now)
    token_calls = sb.stats()["endpoints"]["client_token"]["calls"]
    assert token_calls >= 2


async def test_permanent_error_fails_partition_not_run(
    make_sandbox: MakeSandbox, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A partition the platform refuses is failed with err_no and log_id; others still commit."""
    sb = await make_sandbox(seed=3, videos=200)
    dates = clock.recent_dates(1)
    now = clock()
    good = planner.plan(dates, now).partitions
    bad = planner.Partition(dates[0], planner.Window(int(now) - 100 * 86400, int(now) - 95 * 86400))
    plan = planner.Plan((*good, bad))
    result = await run_sync(sandbox_settings(sb, database_url), dates, plan=plan, now=clock())
    assert result.status == "partial" and run_exit_status(result) == 1
    assert len(result.failed) == 1 and result.failed[0].err_no == 28013009
    assert result.failed[0].log_id
    async with engine.connect() as conn:
        statuses = dict(
            (
                await conn.execute(
                    select(sync_partitions.c.status, func.count()).group_by(
                        sync_partitions.c.status
                    )
                )
            ).all()
        )
    assert statuses == {"done": len(good), "failed": 1}


async def test_no_capability_stops_run(
    make_sandbox: MakeSandbox, database_url: str, clock: Clock
) -> None:
    """28001018 stops the whole run with a message naming the missing permission."""
    sb = await make_sandbox(seed=3, videos=100, capability=False)
    result = await run_sync(sandbox_settings(sb, database_url), clock.recent_dates(2), now=clock())
    assert result.status == "failed"
    assert result.error is not None and "28001018" in result.error


async def test_resume_skips_done_partitions(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """An unfinished run's done partitions are skipped by the same command run again."""
    dates = clock.recent_dates(2)
    settings = sandbox_settings(sandbox, database_url)
    first = await run_sync(settings, dates, now=clock())
    # Pretend the first run died: it never finished, one partition never completed.
    async with engine.begin() as conn:
        await conn.execute(sync_runs.update().values(status="running", finished_at=None))
        victim = await conn.scalar(select(func.max(sync_partitions.c.id)))
        await conn.execute(
            sync_partitions.update().where(sync_partitions.c.id == victim).values(status="running")
        )
    now = clock()
    second = await run_sync(settings, dates, now=now)
    assert second.status == "succeeded"
    assert second.counts.partitions_skipped == first.counts.partitions_total - 1
    assert second.counts.partitions_done == 1
    await assert_table_is_truth(engine, sandbox, dates, now)
    third = await run_sync(settings, dates, restart=True, now=clock())
    assert third.counts.partitions_skipped == 0


async def test_douyin_id_filter_scopes_mirror(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A creator-filtered run only mirrors that creator's rows and leaves the others alone."""
    dates = clock.recent_dates(1)
    settings = sandbox_settings(sandbox, database_url)
    now = clock()
    await run_sync(settings, dates, now=now)
    creator = sandbox.truth(dates[0])[0]["douyin_id"]
    result = await run_sync(settings, dates, now=now, douyin_id=creator)
    assert result.status == "succeeded"
    assert result.counts.rows_removed == 0
    await assert_table_is_truth(engine, sandbox, dates, now)


async def test_run_ledger_counts(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """sync_runs records the run's outcome, counts and API calls."""
    dates = clock.recent_dates(2)
    result = await run_sync(sandbox_settings(sandbox, database_url), dates, now=clock())
    row = await run_row(engine, result.run_id)
    assert row.status == "succeeded"
    assert row.api_calls == result.counts.api_calls > 0
    assert row.rows_inserted == result.counts.rows_inserted
    assert row.partitions_done == row.partitions_total


async def test_moved_publish_time_falls_back_from_appending(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A window with nothing stored is appended page by page; a key stored under another window
    (its publish time moved) ends that attempt, and the retry's full merge makes it exact."""
    dates = clock.recent_dates(1)
    settings = sandbox_settings(sandbox, database_url)
    now = clock()
    plan = planner.plan(dates, now)
    first, second = plan.partitions[0].window, plan.partitions[1].window
    await run_sync(settings, dates, plan=plan, now=now)
    async with engine.begin() as conn:  # one row of the first window moves into the second;
        moved = await conn.scalar(  # the rest of the first window is gone: an empty scope
            text(
                "UPDATE video_daily_earnings SET publish_time = to_timestamp(:t) "
                "WHERE ctid = (SELECT ctid FROM video_daily_earnings "
                "WHERE publish_time BETWEEN to_timestamp(:a) AND to_timestamp(:b) LIMIT 1) "
                "RETURNING video_id"
            ),
            {"t": second.start, "a": first.start, "b": first.end},
        )
        await conn.execute(
            text(
                "DELETE FROM video_daily_earnings "
                "WHERE publish_time BETWEEN to_timestamp(:a) AND to_timestamp(:b)"
            ),
            {"a": first.start, "b": first.end},
        )
    assert moved is not None
    # One worker: the first window goes first, while the moved row is still stored.
    result = await run_sync(settings, dates, plan=plan, now=now, concurrency=1)
    assert result.status == "succeeded", result.failed
    await assert_table_is_truth(engine, sandbox, dates, now)
    assert_no_rule_breaks(sandbox)
    async with engine.connect() as conn:  # the first window took a second attempt
        attempts = await conn.scalar(
            select(sync_partitions.c.attempts).where(
                sync_partitions.c.run_id == result.run_id,
                func.extract("epoch", sync_partitions.c.window_start) == first.start,
            )
        )
    assert attempts == 2
