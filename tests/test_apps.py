"""Several apps, one database (#14): each app's rows, runs, resume and failures its own, and a
fleet of apps synced in one process."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.cli.exits import fleet_exit_status
from sync.cli.summary import render_fleet
from sync.db import locks
from sync.db.database import create_engine
from sync.db.schema import sync_partitions, sync_runs, video_daily_earnings
from sync.db.statuses import RunStatus
from sync.pipeline.fleet import FleetApp, FleetResult, Outcome, run_fleet
from sync.pipeline.runs import RunOptions
from sync.sandbox import Faults, SandboxServer
from sync.sandbox.apps_file import render_apps_file, secret_env
from tests.helpers import (
    Clock,
    MakeSandbox,
    assert_table_is_truth,
    backfill_args,
    cli_env,
    done_partitions,
    partitions,
    run_cli,
    run_sync,
    runs,
    sandbox_settings,
    spawned,
    wait_until,
)

OPTIONS = RunOptions(kind="backfill", page_size=50, concurrency=4)


@pytest.fixture
async def shop_a(make_sandbox: MakeSandbox) -> SandboxServer:
    return await make_sandbox(seed=21, videos=150, tasks=5, creators=15)


@pytest.fixture
async def shop_b(make_sandbox: MakeSandbox) -> SandboxServer:
    return await make_sandbox(seed=22, videos=120, tasks=4, creators=12)


def _app(sandbox: SandboxServer, database_url: str, app_id: str, **changes: Any) -> FleetApp:
    return FleetApp(app_id, sandbox_settings(sandbox, database_url, app=app_id, **changes))


async def _fleet(
    database_url: str, apps: list[FleetApp], dates: list[dt.date], now: float, **options: Any
) -> FleetResult:
    db = create_engine(database_url, pool_size=8)
    try:
        plan = planner.plan(dates, now)
        return await run_fleet(db, apps, dataclasses.replace(OPTIONS, **options), plan)
    finally:
        await db.dispose()


def _fields(options: RunOptions) -> dict[str, Any]:
    return {
        "kind": options.kind,
        "page_size": options.page_size,
        "concurrency": options.concurrency,
    }


async def _rows_of(engine: AsyncEngine, app_id: str) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).where(video_daily_earnings.c.app_id == app_id)
        )
    return int(count or 0)


async def test_a_second_app_never_removes_the_first_apps_rows(
    engine: AsyncEngine,
    database_url: str,
    shop_a: SandboxServer,
    shop_b: SandboxServer,
    clock: Clock,
) -> None:
    """What was seen: app B's backfill of the same date removed every row of app A."""
    dates, now = clock.recent_dates(2), clock()
    a = await run_sync(sandbox_settings(shop_a, database_url, app="tt_a"), dates, now=now)
    stored_a = await _rows_of(engine, "tt_a")
    assert a.status == RunStatus.SUCCEEDED and stored_a > 0
    b = await run_sync(sandbox_settings(shop_b, database_url, app="tt_b"), dates, now=now)
    assert b.status == RunStatus.SUCCEEDED
    assert b.counts.rows_removed == 0
    assert await _rows_of(engine, "tt_a") == stored_a
    # Each app's rows equal its own platform's answer; a re-sync of A changes nothing.
    await assert_table_is_truth(engine, shop_a, dates, now, app_id="tt_a")
    await assert_table_is_truth(engine, shop_b, dates, now, app_id="tt_b")
    again = await run_sync(sandbox_settings(shop_a, database_url, app="tt_a"), dates, now=now)
    assert (again.counts.rows_inserted, again.counts.rows_updated) == (0, 0)
    assert again.counts.rows_removed == 0


async def test_a_fleet_syncs_every_app_in_one_process(
    engine: AsyncEngine,
    database_url: str,
    shop_a: SandboxServer,
    shop_b: SandboxServer,
    clock: Clock,
) -> None:
    dates, now = clock.recent_dates(2), clock()
    apps = [_app(shop_a, database_url, "tt_a"), _app(shop_b, database_url, "tt_b")]
    result = await _fleet(database_url, apps, dates, now)
    assert [a.outcome for a in result.apps] == [Outcome.DONE, Outcome.DONE]
    assert fleet_exit_status(result) == 0
    await assert_table_is_truth(engine, shop_a, dates, now, app_id="tt_a")
    await assert_table_is_truth(engine, shop_b, dates, now, app_id="tt_b")
    async with engine.connect() as conn:
        apps_of_runs = (await conn.execute(select(sync_runs.c.app_id))).scalars().all()
    assert sorted(apps_of_runs) == ["tt_a", "tt_b"]
    summary = render_fleet(result)
    assert "tt_a" in summary and "tt_b" in summary and "total" in summary


async def test_an_app_without_the_grant_fails_alone(
    engine: AsyncEngine,
    database_url: str,
    shop_a: SandboxServer,
    make_sandbox: MakeSandbox,
    clock: Clock,
) -> None:
    no_grant = await make_sandbox(seed=23, videos=50, tasks=3, creators=5, capability=False)
    refused = await make_sandbox(seed=24, videos=50, tasks=3, creators=5)
    dates, now = clock.recent_dates(1), clock()
    apps = [
        _app(no_grant, database_url, "tt_no_grant"),
        _app(shop_a, database_url, "tt_a"),
        _app(refused, database_url, "tt_refused", client_key="wrong-key"),
    ]
    result = await _fleet(database_url, apps, dates, now)
    outcomes = {a.app_id: a.outcome for a in result.apps}
    assert outcomes == {
        "tt_no_grant": Outcome.FAILED,
        "tt_a": Outcome.DONE,
        "tt_refused": Outcome.FAILED,
    }
    assert fleet_exit_status(result) == 1
    no_grant_run = next(a for a in result.apps if a.app_id == "tt_no_grant").result
    assert no_grant_run is not None and "28001018" in (no_grant_run.error or "")
    await assert_table_is_truth(engine, shop_a, dates, now, app_id="tt_a")
    summary = render_fleet(result)
    assert "28001018" in summary


async def test_an_app_locked_elsewhere_is_skipped_and_all_locked_is_75(
    engine: AsyncEngine,
    database_url: str,
    shop_a: SandboxServer,
    shop_b: SandboxServer,
    clock: Clock,
) -> None:
    dates, now = clock.recent_dates(1), clock()
    apps = [_app(shop_a, database_url, "tt_a"), _app(shop_b, database_url, "tt_b")]
    async with engine.connect() as holder:
        assert await locks.acquire_run_lock(holder, "tt_b")
        await holder.commit()
        result = await _fleet(database_url, apps, dates, now)
        assert [a.outcome for a in result.apps] == [Outcome.DONE, Outcome.LOCKED]
        assert fleet_exit_status(result) == 0
        assert "locked" in render_fleet(result)
        assert await locks.acquire_run_lock(holder, "tt_a")
        await holder.commit()
        every = await _fleet(database_url, apps, dates, now)
        assert [a.outcome for a in every.apps] == [Outcome.LOCKED, Outcome.LOCKED]
        assert fleet_exit_status(every) == 75
        await locks.release_run_lock(holder, "tt_a")
        await locks.release_run_lock(holder, "tt_b")
        await holder.commit()
    assert await _rows_of(engine, "tt_b") == 0


async def test_keys_another_app_holds_are_counted_not_moved(
    engine: AsyncEngine, database_url: str, shop_a: SandboxServer, clock: Clock
) -> None:
    """Two apps whose answers list the same keys (say, one app's credentials given twice under
    two ids): the second never takes the first's rows, and says so."""
    dates, now = clock.recent_dates(1), clock()
    first = await run_sync(sandbox_settings(shop_a, database_url, app="tt_a"), dates, now=now)
    stored = await _rows_of(engine, "tt_a")
    twin = await run_sync(sandbox_settings(shop_a, database_url, app="tt_twin"), dates, now=now)
    assert first.status == twin.status == RunStatus.SUCCEEDED
    assert twin.counts.rows_foreign == stored
    assert twin.counts.rows_inserted == twin.counts.rows_removed == 0
    assert await _rows_of(engine, "tt_a") == stored and await _rows_of(engine, "tt_twin") == 0
    sample = twin.counts.foreign_keys
    assert sample and all(k.stored_app == "tt_a" and k.log_id for k in sample)
    async with engine.connect() as conn:
        stored_foreign = await conn.scalar(
            select(sync_runs.c.rows_foreign).where(sync_runs.c.id == twin.run_id)
        )
    assert stored_foreign == stored


async def test_resume_takes_only_the_apps_own_runs(
    engine: AsyncEngine,
    database_url: str,
    shop_a: SandboxServer,
    shop_b: SandboxServer,
    clock: Clock,
) -> None:
    """An unfinished run of app A is resumed by A's next run, never by B's (same params)."""
    dates, now = clock.recent_dates(2), clock()
    settings_a = sandbox_settings(shop_a, database_url, app="tt_a")
    settings_b = sandbox_settings(shop_b, database_url, app="tt_b")
    first = await run_sync(settings_a, dates, now=now)
    # Pretend A's run died: it never finished, one partition never completed.
    async with engine.begin() as conn:
        await conn.execute(sync_runs.update().values(status="running", finished_at=None))
        victim = await conn.scalar(select(func.max(sync_partitions.c.id)))
        await conn.execute(
            sync_partitions.update().where(sync_partitions.c.id == victim).values(status="running")
        )
    b = await run_sync(settings_b, dates, now=now)
    assert b.status == RunStatus.SUCCEEDED and b.counts.partitions_skipped == 0
    resumed = await run_sync(settings_a, dates, now=now)
    assert resumed.status == RunStatus.SUCCEEDED
    assert resumed.counts.partitions_skipped == first.counts.partitions_total - 1
    await assert_table_is_truth(engine, shop_a, dates, now, app_id="tt_a")
    await assert_table_is_truth(engine, shop_b, dates, now, app_id="tt_b")


# -- the command line with an apps file ------------------------------------------------------


@pytest.fixture
async def three_apps(make_sandbox: MakeSandbox) -> SandboxServer:
    """Three apps, the third without the 数据分析 grant (28001018)."""
    return await make_sandbox(
        seed=31, videos=60, tasks=4, creators=8, apps=3, apps_without_capability=frozenset({3})
    )


def _apps_env(sandbox: SandboxServer, database_url: str, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "apps.toml"
    path.write_text(render_apps_file(sandbox.apps))
    env = cli_env(sandbox, database_url, unset=("DOUYIN_CLIENT_KEY", "DOUYIN_CLIENT_SECRET"))
    return {**env, **secret_env(sandbox.apps), "TASKBOX_APPS_FILE": str(path)}


@pytest.mark.wall_clock  # the CLI runs in a subprocess
async def test_the_cli_syncs_an_apps_file_and_the_app_without_the_grant_fails_alone(
    engine: AsyncEngine, database_url: str, three_apps: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    env = _apps_env(three_apps, database_url, tmp_path)
    dates, now = clock.recent_dates(2), clock()
    first, second, third = three_apps.apps
    done = await run_cli(*backfill_args(dates), env=env)
    assert done.status == 1, done  # one app failed: the others are done
    lines = done.stdout.splitlines()
    assert "3 apps" in lines[0] and "2 done" in lines[0] and "1 failed" in lines[0], done
    assert any(third.app_id in line and "28001018" in line for line in lines), done
    for app in (first, second):
        await assert_table_is_truth(engine, three_apps, dates, now, app_id=app.app_id,
                                    app=app.client_key)  # fmt: skip
    assert await _rows_of(engine, third.app_id) == 0
    peaks = three_apps.stats()["apps"]
    assert all(p["daily_data_peak_per_second"] <= 10 for p in peaks.values())

    # --app picks some; the two done already resume nothing new and change nothing.
    picked = await run_cli(*backfill_args(dates, "--app", second.app_id), env=env)
    assert picked.status == 0, picked
    assert second.app_id in picked.stdout and first.app_id not in picked.stdout

    plan = await run_cli(*backfill_args(dates, "--dry-run"), env=env)
    assert plan.status == 0, plan
    assert all(f"app {a.app_id}:" in plan.stdout for a in three_apps.apps), plan


@pytest.mark.wall_clock  # the CLI runs in a subprocess
@pytest.mark.parametrize(
    ("content", "extra", "fragment"),
    [
        ("[[app]]\nid = 'tt_x'\n", {}, "client_secret: missing"),
        ("[[app]]\nid = 'tt_x'\nclient_secret_env = 'NOPE'\n", {}, "NOPE is not set"),
        ("[[app]\n", {}, "not valid TOML"),
        ("[[app]]\nid = 'tt_x'\nclient_secret = 's3cret'\n", {}, "use client_secret_env"),
    ],
)
async def test_a_bad_apps_file_is_one_line_and_exit_2(
    database_url: str,
    tmp_path: Path,
    content: str,
    extra: dict[str, str],
    fragment: str,
    clock: Clock,
) -> None:
    path = tmp_path / "apps.toml"
    path.write_text(content)
    env = {**cli_env(None, database_url), **extra}
    result = await run_cli(*backfill_args(clock.recent_dates(1), "--apps", str(path)), env=env)
    assert result.status == 2, result
    assert len(result.err_lines) == 1 and fragment in result.stderr, result
    assert str(path) in result.stderr and "s3cret" not in result.stderr


@pytest.mark.wall_clock  # the CLI runs in a subprocess
async def test_app_without_an_apps_file_is_refused(database_url: str, clock: Clock) -> None:
    env = cli_env(None, database_url)
    result = await run_cli(*backfill_args(clock.recent_dates(1), "--app", "tt_x"), env=env)
    assert result.status == 2 and "needs an apps file" in result.stderr, result


@pytest.mark.wall_clock  # the CLI runs in a subprocess
async def test_sigterm_stops_every_app_resumably_and_the_same_command_finishes(
    engine: AsyncEngine, database_url: str, three_apps: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """SIGTERM reaches every app running: each finishes its partitions in flight and records its
    run 'interrupted'; exit 143. The same command then resumes each app's own run."""
    three_apps.sandbox.set_faults(Faults(seed=1, latency_min=0.1, latency_max=0.2))
    env = _apps_env(three_apps, database_url, tmp_path)
    dates = clock.recent_dates(3)
    args = backfill_args(dates, "--page-size", "10", "--concurrency", "2", "--app")
    picked = [*args, three_apps.apps[0].app_id, "--app", three_apps.apps[1].app_id]
    async with spawned(*picked, env=env) as cli:

        async def some_done() -> bool:
            assert cli.running, await cli.wait()
            return await done_partitions(engine) >= 2

        await wait_until(some_done, what="partitions to be done")
        cli.send(signal.SIGTERM)
        stopped = await cli.wait(60)
    assert stopped.status == 143, stopped
    assert "Traceback" not in stopped.stderr, stopped
    first = await runs(engine)
    assert {r.status for r in first} == {"interrupted"} and len(first) == 2, first
    assert not [p for p in await partitions(engine) if p.status == "running"]
    three_apps.sandbox.set_faults(Faults())
    now = clock()
    again = await run_cli(*picked, env=env)
    assert again.status == 0, again
    second = [r for r in await runs(engine) if r.id not in {f.id for f in first}]
    assert {r.status for r in second} == {"succeeded"}
    assert sum(r.partitions_skipped for r in second) == sum(r.partitions_done for r in first)
    for app in three_apps.apps[:2]:
        await assert_table_is_truth(engine, three_apps, dates, now, app_id=app.app_id,
                                    app=app.client_key)  # fmt: skip


@pytest.mark.wall_clock  # the CLI runs in a subprocess
async def test_nightly_with_an_apps_file_syncs_each_app_it_picks(
    engine: AsyncEngine, database_url: str, three_apps: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    env = _apps_env(three_apps, database_url, tmp_path)
    first, second, _ = three_apps.apps
    today = clock.today
    args = ["nightly", "--lookback-days", "2", "--today", today.isoformat()]
    done = await run_cli(*args, "--app", first.app_id, "--app", second.app_id, env=env)
    assert done.status == 0, done
    assert "2 apps" in done.stdout.splitlines()[0] and "2 done" in done.stdout, done
    dates, now = clock.recent_dates(2), clock()
    for app in (first, second):
        await assert_table_is_truth(engine, three_apps, dates, now, app_id=app.app_id,
                                    app=app.client_key)  # fmt: skip
    async with engine.connect() as conn:
        kinds = (await conn.execute(select(sync_runs.c.kind, sync_runs.c.app_id))).all()
    assert sorted(kinds) == [("nightly", first.app_id), ("nightly", second.app_id)]


async def test_more_partitions_under_way_than_writers_never_wedge(
    engine: AsyncEngine, database_url: str, make_sandbox: MakeSandbox, clock: Clock
) -> None:
    """Slow answers put every partition of two apps under way (16) for 4 writer connections
    and a budget of two pages: first pages are read only by partitions that hold a connection,
    so rows are never all leased to partitions waiting for one (the fleet wedged so once: every
    connection's next page waiting for rows, every row held by a page waiting for a
    connection)."""
    slow = Faults(latency_min=0.3, latency_max=0.6)
    shops = [
        await make_sandbox(seed=31 + i, videos=400, tasks=4, creators=20, faults=slow)
        for i in range(2)
    ]
    dates, now = clock.recent_dates(2), clock()
    apps = [_app(shop, database_url, f"tt_{i}") for i, shop in enumerate(shops)]
    db = create_engine(database_url, pool_size=2)  # 2 lock connections + 4 overflow writers
    try:
        options = dataclasses.replace(OPTIONS, concurrency=8, buffer_rows=2 * OPTIONS.page_size)
        # A hang guard, not a timing: this takes ~4 s; wedged, it waited ~90 s for the HTTP
        # timeouts of unread bodies to give leases back.
        result = await asyncio.wait_for(
            run_fleet(db, apps, options, planner.plan(dates, now)), timeout=60
        )
    finally:
        await db.dispose()
    assert [a.outcome for a in result.apps] == [Outcome.DONE, Outcome.DONE]
    for i, shop in enumerate(shops):
        await assert_table_is_truth(engine, shop, dates, now, app_id=f"tt_{i}")
