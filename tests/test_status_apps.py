"""`status` with several apps in one database: each app's dates, failures, rows and runs are its
own; `--app` narrows; `--check` names the apps that need attention.

The ledgers are built as in test_status (rows carry the database's clock: `wall_clock`)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync import planner
from sync.cli.main import main
from sync.cli.status_text import render_status
from sync.db import ledger, locks, status
from sync.db.counts import RunCounts
from sync.db.statuses import PartitionStatus, RunStatus
from sync.errors import SettingsError
from tests.helpers import Clock, cli_env, use_env
from tests.test_status import partition, run, store_rows, sync_fully

pytestmark = pytest.mark.wall_clock
RECENT = dt.timedelta(days=3)  # a billing date this far back has several windows


def edge_dates(today: dt.date) -> list[dt.date]:
    """The 7 dates nearest to leaving the reach, oldest first (the ones `check` judges)."""
    return [today - dt.timedelta(days=i) for i in range(89, 82, -1)]


async def two_apps(conn: AsyncConnection, clock: Clock) -> tuple[int, int]:
    """App a synced its edge dates and RECENT fully. App b missed the oldest edge date (its one
    window) and the oldest window of RECENT: a's partitions cover both. Both last nightly runs
    succeeded; their ids."""
    now, edge, recent = clock.start, edge_dates(clock.today), clock.today - RECENT
    a = await run(conn, app="a")
    await sync_fully(conn, a, now, *edge, recent)
    b = await run(conn, app="b")
    await sync_fully(conn, b, now, *edge[1:])
    *newer, _oldest = planner.windows_for(recent, now)
    for window in newer:
        await partition(conn, b, recent, window)
    assert newer  # the date needs more than one window
    return a, b


async def test_incomplete_dates_do_not_mix_apps(engine: AsyncEngine, clock: Clock) -> None:
    """Another app's done partitions cover nothing for an app: a is complete, b misses a date
    at the edge and a window of a recent date (which a synced), and only b is flagged."""
    today, edge, recent = clock.today, edge_dates(clock.today), clock.today - RECENT
    async with engine.begin() as conn:
        await two_apps(conn, clock)
        of_a = await status.incomplete_dates(conn, today, edge[0], app_id="a")
        of_b = await status.incomplete_dates(conn, today, edge[0], app_id="b")
        checked = await status.check(conn, today)
        report = await status.collect_status(conn, today)
    synced = {*edge, recent}
    assert [i.billing_date for i in of_a if i.billing_date in synced] == []
    missing = {i.billing_date: i.reason for i in of_b if i.billing_date in synced}
    assert missing.keys() == {edge[0], recent}
    assert missing[edge[0]] == "never synced"
    assert missing[recent].startswith("publish times before")
    incomplete = 89 - 6  # the reach's dates, less b's six complete ones
    leaves = f"{edge[0]} leaves the API's reach in 1 day"
    assert checked == (False, [f"app b: {incomplete} billing dates incomplete, {leaves}"])
    assert [a.app_id for a in report.apps] == ["a", "b"]
    assert [a.ok for a in report.apps] == [True, False]
    assert report.problems == [
        f"app b: billing date {edge[0]} is incomplete and leaves the API's reach in 1 day: "
        "never synced"
    ]


async def test_rows_failures_and_runs_are_per_app(engine: AsyncEngine, clock: Clock) -> None:
    """Date summaries and stored rows count each app's own rows; b's later success on the same
    window does not make good a's failure; the recent runs narrow to the given apps."""
    now, today = clock.start, clock.today
    day = today - dt.timedelta(days=3)
    window = planner.windows_for(day, now)[0]
    async with engine.begin() as conn:
        a = await run(conn, RunStatus.PARTIAL, app="a")
        failed = await partition(conn, a, day, window, PartitionStatus.FAILED, err_no=9)
        b = await run(conn, app="b")
        await partition(conn, b, day, window)
        await store_rows(conn, day, 3, "a")
        await store_rows(conn, day, 2, "b", task=2)
        summary_a = await status.billing_date_summary(conn, [day], app_id="a")
        summary_b = await status.billing_date_summary(conn, [day], app_id="b")
        failures_a = await status.unrecovered_failures(conn, app_id="a")
        failures_b = await status.unrecovered_failures(conn, app_id="b")
        rows = [await status.stored_rows(conn, app) for app in ("a", "b", "c")]
        only_b = await status.recent_runs(conn, apps=["b"])
        both = await status.recent_runs(conn)
    assert [(s.rows, s.last_synced_at is None) for s in summary_a] == [(3, True)]
    assert [(s.rows, s.last_synced_at is None) for s in summary_b] == [(2, False)]
    assert [(f.id, f.app_id, f.err_no) for f in failures_a] == [(failed, "a", 9)]
    assert failures_b == []
    assert rows == [3, 2, 0]
    assert [r.id for r in only_b] == [b]
    assert [(r.id, r.app_id) for r in both] == [(b, "b"), (a, "a")]


async def test_collect_status_lists_every_app(engine: AsyncEngine, clock: Clock) -> None:
    """One line per app of the ledger and per named app that never ran; a run in progress
    (its lock held) is shown; foreign keys show only when some app has them; `only` narrows
    everything to its apps and an unknown one is a SettingsError naming it."""
    today = clock.today
    async with engine.connect() as conn, engine.connect() as live, conn.begin():
        a, b = await two_apps(conn, clock)
        foreign = await ledger.start_run(conn, "backfill", "b", {"kind": "backfill"})
        counts = RunCounts(partitions_total=1, rows_foreign=4)
        await ledger.finish_run(conn, foreign, RunStatus.SUCCEEDED, counts, None)
        assert await locks.acquire_run_lock(live, "a")
        report = await status.collect_status(conn, today, apps=["c", "a"])
        narrowed = await status.collect_status(conn, today, apps=["c"], only=["b", "b"])
        await locks.release_run_lock(live, "a")
        with pytest.raises(SettingsError, match=r"unknown app 'zz'.*apps: a, b, c"):
            await status.collect_status(conn, today, apps=["c"], only=["b", "zz"])
    app_a, app_b, app_c = report.apps
    assert (app_a.app_id, app_a.running, app_a.last_run and app_a.last_run.id) == ("a", True, a)
    assert (app_b.running, app_b.rows_foreign, app_b.last_nightly and app_b.last_nightly.id) == (
        False,
        4,
        b,
    )
    assert (app_c.last_run, app_c.rows, len(app_c.incomplete)) == (None, 0, 89)
    assert "app c: no finished nightly run is recorded" in report.problems
    assert [x.app_id for x in narrowed.apps] == ["b"]
    assert {r.app_id for r in narrowed.runs} == {"b"}
    assert all(p.startswith("app b: ") for p in narrowed.problems)

    lines = render_status(report).splitlines()
    head = lines.index("Apps") + 1
    assert lines[head].split()[-1] == "foreign"
    by_app = {line.split()[0]: line for line in lines[head + 2 : head + 5]}
    assert by_app.keys() == {"a", "b", "c"}
    assert " yes " in by_app["a"] and by_app["b"].endswith(" 4") and by_app["c"].endswith(" -")
    assert f"nightly succeeded (run {b})" not in by_app["b"]  # a backfill ran last
    assert f"backfill succeeded (run {foreign})" in by_app["b"]
    alone = render_status(narrowed).splitlines()
    assert alone[alone.index("Apps") + 1].split()[-1] == "foreign"  # b's own foreign keys


async def test_status_command_per_app(
    engine: AsyncEngine,
    database_url: str,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    """`status --app b` shows b alone; `--app` with an unknown app is one line and exit 2;
    `status --check` is one line naming only the app that needs attention, exit 1;
    `status --run ID` shows the run's app."""
    async with engine.begin() as conn:
        a, b = await two_apps(conn, clock)
    use_env(monkeypatch, cli_env(None, database_url))

    async def status_cli(*args: str) -> tuple[int, list[str], list[str]]:
        code = await asyncio.to_thread(main, ["status", *args])
        out, err = capsys.readouterr()
        return code, out.splitlines(), err.splitlines()

    code, out, err = await status_cli("--app", "b")
    assert (code, err) == (0, [])
    head = out.index("Apps") + 1
    assert [line.split()[0] for line in out[head + 2 : out.index("", head)]] == ["b"]
    runs = out.index("Recent runs") + 1
    assert [line.split()[:4] for line in out[runs + 2 : out.index("", runs)]] == [
        [str(b), "nightly", "succeeded", "b"]
    ]
    assert all(" a " not in line for line in out)

    code, out, err = await status_cli("--app", "b", "--app", "zz")
    assert (code, out) == (2, [])
    assert len(err) == 1 and "unknown app 'zz'" in err[0] and "apps: a, b" in err[0]

    code, out, err = await status_cli("--check")
    assert (code, err) == (1, [])
    (line,) = out
    assert line.startswith("PROBLEM: app b: ") and "app a" not in line
    assert (await status_cli("--check", "--app", "a"))[:2] == (0, ["OK"])

    code, out, err = await status_cli("--run", str(a))
    assert (code, err) == (0, [])
    assert out[2].split()[:4] == [str(a), "nightly", "succeeded", "a"]
    assert any(line.startswith("app a; params ") for line in out)
    code, out, err = await status_cli("--run", str(a), "--app", "b")
    assert code == 2 and len(err) == 1 and "of app a" in err[0]


async def test_many_apps_keep_the_screen_to_a_line_each(engine: AsyncEngine, clock: Clock) -> None:
    """Past a handful of apps the per-date tables (a line per app and date) give way to a line
    saying how to see them; the Apps table still has every app."""
    today = planner.shanghai_today(clock())
    names = [f"tt_{i}" for i in range(8)]
    async with engine.connect() as conn:
        many = render_status(await status.collect_status(conn, today, apps=names))
        few = render_status(await status.collect_status(conn, today, apps=names[:2]))
    assert all(name in many for name in names)
    assert "Recent billing dates" not in many and "status --app ID" in many
    assert "Recent billing dates" in few
