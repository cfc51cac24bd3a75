"""The status queries against ledger rows written through sync.db.ledger, and the screen
sync.cli.status draws from them.

Runs get the database's clock as started_at, and the windows are planned from "now": these tests'
`clock` is the wall clock (marked `wall_clock`), so both agree on the day."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync import planner
from sync.cli.status_text import render_run_detail, render_status
from sync.db import ledger, locks, status
from sync.db.counts import PartitionStats, RunCounts
from sync.db.schema import video_daily_earnings
from sync.db.statuses import PartitionStatus, RunStatus
from tests.helpers import Clock

pytestmark = pytest.mark.wall_clock


async def run(
    conn: AsyncConnection,
    status_: RunStatus | None = RunStatus.SUCCEEDED,
    kind: str = "nightly",
    app: str = "a",
) -> int:
    run_id = await ledger.start_run(conn, kind, app, {"kind": kind})
    if status_ is not None:
        await ledger.finish_run(conn, run_id, status_, RunCounts(partitions_total=1), None)
    return run_id


async def partition(
    conn: AsyncConnection,
    run_id: int,
    day: dt.date,
    window: planner.Window,
    outcome: PartitionStatus = PartitionStatus.DONE,
    *,
    scope: str = "",
    err_no: int | None = None,
) -> int:
    pid = await ledger.start_partition(conn, run_id, day, window.start, window.end, scope)
    if outcome is PartitionStatus.DONE:
        await ledger.partition_done(conn, pid, PartitionStats(inserted=1))
    elif outcome is PartitionStatus.FAILED:
        await ledger.partition_failed(conn, pid, PartitionStats(), err_no, "it broke", "log-1")
    return pid


async def sync_fully(conn: AsyncConnection, run_id: int, now: float, *days: dt.date) -> None:
    """Every window of each day (planned at `now`) done in the run."""
    for day in days:
        for window in planner.windows_for(day, now):
            await partition(conn, run_id, day, window)


async def store_rows(
    conn: AsyncConnection, day: dt.date, n: int, app: str = "a", *, task: int = 1
) -> None:
    """`n` rows of the app (videos 0..n-1 of `task`) for the billing date."""
    now = dt.datetime.now(dt.UTC)
    values: list[dict[str, Any]] = [
        {"billing_date": day, "video_id": i, "task_id": task, "app_id": app}
        | {"first_synced_at": now, "last_synced_at": now}
        for i in range(n)
    ]
    await conn.execute(insert(video_daily_earnings), values)


def test_days_left_counts_to_the_end_of_the_reach() -> None:
    """days_left is date + 90 days - today."""
    assert status.days_left(dt.date(2024, 1, 1), dt.date(2024, 3, 24)) == 7


async def test_recent_runs_and_run_detail(engine: AsyncEngine, clock: Clock) -> None:
    """Runs come newest first; a run's detail lists its partitions with Unix-second windows."""
    now = clock.start
    today = clock.today
    day = today - dt.timedelta(days=3)
    async with engine.begin() as conn:
        first = await run(conn)
        second = await run(conn, "partial", kind="backfill")
        window = planner.windows_for(day, now)[0]
        pid = await partition(conn, second, day, window, PartitionStatus.FAILED, err_no=28001007)
        runs = await status.recent_runs(conn, limit=1)
        assert [r.id for r in runs] == [second]
        assert [r.id for r in await status.recent_runs(conn)] == [second, first]
        detail = await status.run_detail(conn, second)
        assert await status.run_detail(conn, 999) is None
    assert detail is not None
    info, parts = detail
    assert (info.kind, info.status, info.partitions_total) == ("backfill", "partial", 1)
    assert [(p.id, p.window_start, p.window_end, p.err_no) for p in parts] == [
        (pid, window.start, window.end, 28001007)
    ]


async def test_statuses_are_stored_as_their_words(engine: AsyncEngine, clock: Clock) -> None:
    """Run and partition statuses are written as the same words as before the enums (no
    migration) and read back by the status queries as RunStatus and PartitionStatus members."""
    day = clock.today - dt.timedelta(days=3)
    async with engine.begin() as conn:
        run_id = await run(conn, RunStatus.PARTIAL)
        window = planner.windows_for(day, clock.start)[0]
        await partition(conn, run_id, day, window, PartitionStatus.FAILED)
        stored = await conn.execute(
            text(
                "SELECT r.status::text, p.status::text FROM sync_runs r"
                " JOIN sync_partitions p ON p.run_id = r.id WHERE r.id = :id"
            ),
            {"id": run_id},
        )
        detail = await status.run_detail(conn, run_id)
    assert stored.one() == ("partial", "failed")
    assert detail is not None
    info, parts = detail
    assert info.status is RunStatus.PARTIAL and parts[0].status is PartitionStatus.FAILED
    assert [s.value for s in RunStatus] == [
        "running",
        "succeeded",
        "partial",
        "failed",
        "interrupted",
    ]
    assert [s.value for s in PartitionStatus] == ["running", "done", "failed"]


async def test_billing_date_summary(engine: AsyncEngine, clock: Clock) -> None:
    """Per date: the last full-scope done partition's finish, and the stored row count."""
    now = clock.start
    today = clock.today
    day = today - dt.timedelta(days=3)
    other = day - dt.timedelta(days=1)
    async with engine.begin() as conn:
        run_id = await run(conn)
        window = planner.windows_for(day, now)[0]
        await partition(conn, run_id, day, window)
        await partition(conn, run_id, other, window, scope="douyin_id=x")
        await store_rows(conn, day, 3)
        await store_rows(conn, other, 2)
        summary = await status.billing_date_summary(conn, [day, other, day], app_id="a")
    assert [(s.billing_date, s.rows) for s in summary] == [(other, 2), (day, 3)]
    assert summary[0].last_synced_at is None  # a filtered sync is not a full one
    assert summary[1].last_synced_at is not None


async def test_unrecovered_failures(engine: AsyncEngine, clock: Clock) -> None:
    """A failure counts until a later done partition with the same date, end and scope (and no
    later start) makes it good; repeated failures show once, the latest."""
    now = clock.start
    today = clock.today
    day = today - dt.timedelta(days=3)
    w1, w2, w3 = planner.windows_for(day, now)[:3]
    async with engine.begin() as conn:
        run_id = await run(conn, RunStatus.PARTIAL)
        await partition(conn, run_id, day, w1, PartitionStatus.FAILED)
        await partition(conn, run_id, day, w1)  # made good
        await partition(conn, run_id, day, w2, PartitionStatus.FAILED, err_no=1)
        latest = await partition(conn, run_id, day, w2, PartitionStatus.FAILED, err_no=2)
        await partition(conn, run_id, day, w3)
        late = await partition(
            conn, run_id, day, w3, PartitionStatus.FAILED
        )  # fails after a success
        narrower = planner.Window(w2.start + 10, w2.end)
        await partition(conn, run_id, day, narrower)  # covers less: not made good
        failures = await status.unrecovered_failures(conn, app_id="a")
        next_day = day + dt.timedelta(days=1)
        assert await status.unrecovered_failures(conn, next_day, app_id="a") == []
    assert [(f.id, f.err_no) for f in failures] == [(latest, 2), (late, None)]


async def test_incomplete_dates(engine: AsyncEngine, clock: Clock) -> None:
    """Dates whose done full-scope windows do not reach back to the run's oldest publish time
    are incomplete, with the reason and the days they have left."""
    now = clock.start
    today = clock.today
    full, partial, failed, filtered, resumed = (today - dt.timedelta(days=i) for i in range(1, 6))
    never = today - dt.timedelta(days=6)
    async with engine.begin() as conn:
        run_id = await run(conn, RunStatus.INTERRUPTED)
        await sync_fully(conn, run_id, now, full)
        newest, *older = planner.windows_for(partial, now)
        await partition(conn, run_id, partial, newest)
        await partition(conn, run_id, failed, planner.windows_for(failed, now)[0])
        await partition(
            conn,
            run_id,
            failed,
            planner.windows_for(failed, now)[1],
            PartitionStatus.FAILED,
            err_no=7,
        )
        for window in planner.windows_for(filtered, now):
            await partition(conn, run_id, filtered, window, scope="douyin_id=x")
        first, *rest = planner.windows_for(resumed, now)
        await partition(conn, run_id, resumed, first)
        later = await run(conn, RunStatus.SUCCEEDED)
        for window in rest:
            await partition(conn, later, resumed, window)
        items = await status.incomplete_dates(conn, today, never, app_id="a")
    got = {i.billing_date: i for i in items}
    assert sorted(got) == [never, filtered, failed, partial]
    assert got[never].reason == "never synced"
    assert got[never].days_left == 84
    assert got[filtered].reason == "never synced"
    before = planner.shanghai_text(newest.start)
    assert got[partial].reason == f"publish times before {before} not synced"
    assert got[failed].reason.endswith("; failed err_no 7: it broke")
    assert older  # the test needs a date with more than one window


async def test_check_healthy(engine: AsyncEngine, clock: Clock) -> None:
    """No problem when the last nightly run succeeded today and dates near the edge are done."""
    now, today = clock.start, clock.today
    edge = [today - dt.timedelta(days=i) for i in range(83, 90)]
    async with engine.begin() as conn:
        await sync_fully(conn, await run(conn), now, *edge)
        assert await status.check(conn, today) == (True, [])


async def test_check_reports_problems(engine: AsyncEngine, clock: Clock) -> None:
    """An incomplete date with a week or less left, and a failed last nightly run, are problems;
    an incomplete date with more days left is not."""
    now, today = clock.start, clock.today
    async with engine.begin() as conn:
        ok, problems = await status.check(conn, today)
        assert not ok and "no finished nightly run is recorded" in problems
        edge = [today - dt.timedelta(days=i) for i in range(83, 90)]
        run_id = await run(conn, RunStatus.PARTIAL)
        await sync_fully(conn, run_id, now, *edge[1:])
        ok, problems = await status.check(conn, today)
    assert not ok
    assert problems == [
        # 89 dates in the reach, 6 synced; the oldest incomplete one is the nearest to leaving
        f"app a: 83 billing dates incomplete, {edge[0]} leaves the API's reach in 7 days",
        f"app a: the last nightly run ({run_id}) ended partial",
    ]


async def test_check_skips_a_nightly_run_in_progress(engine: AsyncEngine, clock: Clock) -> None:
    """A running nightly whose lock is held is not judged; the one before it is, and a
    'running' one whose process died is a failure."""
    now, today = clock.start, clock.today
    edge = [today - dt.timedelta(days=i) for i in range(83, 90)]
    async with engine.connect() as conn, engine.connect() as live, conn.begin():
        await sync_fully(conn, await run(conn), now, *edge)
        stuck = await run(conn, None)
        assert await status.check(conn, today) == (
            False,
            [f"app a: the last nightly run ({stuck}) stopped without finishing"],
        )
        assert await locks.acquire_run_lock(live, "a")
        assert await status.check(conn, today) == (True, [])
        await locks.release_run_lock(live, "a")


async def test_check_flags_an_old_nightly_run(engine: AsyncEngine, clock: Clock) -> None:
    """A last nightly run more than two days old is a problem even if it succeeded."""
    now, today = clock.start, clock.today
    edge = [today - dt.timedelta(days=i) for i in range(83, 90)]
    async with engine.begin() as conn:
        run_id = await run(conn)
        await sync_fully(conn, run_id, now, *edge)
        later = today + dt.timedelta(days=3)
        ok, problems = await status.check(conn, later)
    assert not ok
    assert f"app a: the last nightly run ({run_id}) started on {today}" in problems


async def test_render_status(engine: AsyncEngine, clock: Clock) -> None:
    """The status screen shows the verdict, problems (naming the app), a line per app and every
    section as aligned tables."""
    now = clock.start
    today = clock.today
    day = today - dt.timedelta(days=3)
    async with engine.begin() as conn:
        run_id = await run(conn, RunStatus.PARTIAL)
        await partition(
            conn,
            run_id,
            day,
            planner.windows_for(day, now)[0],
            PartitionStatus.FAILED,
            err_no=28001007,
        )
        report = await status.collect_status(conn, today)
        detail = await status.run_detail(conn, run_id)
    text = render_status(report)
    assert text.startswith(f"taskbox-sync status for {today} (times in China time): PROBLEMS\n")
    assert f"  ! app a: the last nightly run ({run_id}) ended partial\n" in text
    failed = "Failed partitions not yet made good"
    for heading in ("Apps", "Recent runs", "Recent billing dates", failed):
        assert f"\n{heading}\n" in text
    lines = text.splitlines()
    apps = lines.index("Apps") + 1
    assert lines[apps].split() == ["app", "last", "nightly", "last", "run", "running",
                                   "incomplete", "nearest", "leaves", "failed", "rows"]  # fmt: skip
    app_line = lines[apps + 2]
    assert app_line.startswith("a ") and lines[apps + 3] == ""
    assert f"nightly partial (run {run_id})" in app_line and " no " in app_line
    header = lines.index("Recent runs") + 1
    headers = ["run", "kind", "status", "app", "started", "took", "done", "failed", "skipped",
               "fetched", "inserted", "updated", "removed", "calls", "error"]  # fmt: skip
    assert lines[header].split() == headers
    assert len(lines[header + 1]) >= len(lines[header + 2].rstrip()) - len("error")
    assert all(line == line.rstrip() for line in lines)
    assert "28001007" in text and "it broke" in text
    assert detail is not None
    assert "28001007" in render_run_detail(*detail)
