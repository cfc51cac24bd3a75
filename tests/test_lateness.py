"""The measured lookback: the pure measurement (sync.lateness) on plain facts, then the ledger's
re-syncs over simulated nights of late settlement in the sandbox, `status --lateness` and
`nightly --lookback-days auto`.

The ledger records a run's start with the database's clock, which a test cannot move; the
nights here are simulated (the sandbox's and the plan's clock jump a day), so after each
nightly run the test dates the run's start to its night."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import lateness, planner
from sync.cli.lateness import render_app, resolve_auto
from sync.db import ledger
from sync.db.counts import PartitionStats
from sync.db.lateness import app_lateness, resyncs
from sync.lateness import AgeCount, Resync, measure, smallest_lookback
from sync.sandbox import SandboxServer
from sync.settings import Secret, Settings
from tests.helpers import Clock, MakeSandbox, cli_env, run_cli, run_sync, runs, sandbox_settings

DAY = 86400
D = dt.date(2026, 3, 1)


def _resync(age: int, changed: int, *, night: int = 0, nightly: bool = True) -> Resync:
    """A re-sync at `age` days of a billing date, run on day D + night."""
    run_day = D + dt.timedelta(days=night)
    return Resync(run_day - dt.timedelta(days=age), run_day, nightly, changed)


def _nights(n: int, *ages: tuple[int, int]) -> list[Resync]:
    """`n` nights, each re-syncing (age, changed) for every pair given."""
    return [_resync(age, changed, night=k) for k in range(n) for age, changed in ages]


# -- the pure measurement -------------------------------------------------------------------


def test_the_distribution_counts_resyncs_and_changes_per_age() -> None:
    """Per age: the re-syncs that looked there and the rows they found changed, youngest first;
    a run on the billing date itself counts as age 1."""
    facts = [_resync(2, 10), _resync(2, 5, night=1), _resync(5, 0), _resync(0, 3)]
    assert lateness.distribution(facts) == (
        AgeCount(1, 1, 3),
        AgeCount(2, 2, 15),
        AgeCount(5, 1, 0),
    )


@pytest.mark.parametrize(
    ("at_two", "at_six", "expected"),
    [(999, 1, 2), (998, 2, 6), (1000, 0, 2), (0, 5, 6), (0, 0, None)],
)
def test_the_smallest_lookback_catches_at_least_999_in_1000(
    at_two: int, at_six: int, expected: int | None
) -> None:
    """The smallest age holding >= 99.9 % of the changes: a tail of exactly 0.1 % is left out,
    one just above it is not; no change at all measures nothing."""
    ages = [AgeCount(2, 1, at_two), AgeCount(4, 1, 0), AgeCount(6, 1, at_six)]
    assert smallest_lookback(ages) == expected


def test_enough_nights_give_the_measured_lookback() -> None:
    """Seven nightly runs with re-syncs: the suggestion is the measurement, with its reason."""
    m = measure(_nights(7, (2, 100), (3, 40), (4, 0)))
    assert (m.measured, m.lookback_days, m.enough, m.nights, m.changes) == (3, 3, True, 7, 980)
    assert (
        m.reason
        == "99.9 % of 980 changed rows were seen within 3 days of their billing date, over 7 nights"
    )
    assert (m.oldest_age, m.at_edge) == (4, False)


def test_too_little_history_falls_back_to_seven_days() -> None:
    """Six nights (backfills do not count as nights), or nights without a change: 7 days, and
    the reason says why."""
    few = measure([*_nights(6, (2, 100)), _resync(30, 5, night=9, nightly=False)])
    assert (few.lookback_days, few.enough, few.nights, few.measured) == (7, False, 6, 30)
    assert few.reason.startswith("too little history: 6 nightly runs with re-syncs, 7 needed")
    quiet = measure(_nights(10, (2, 0), (5, 0)))
    assert (quiet.lookback_days, quiet.enough, quiet.measured) == (7, False, None)
    assert quiet.reason.startswith("no change seen after a date's first sync in 10 nights")
    assert measure([]).lookback_days == lateness.FALLBACK_DAYS


def test_the_suggestion_is_bounded_and_flags_changes_at_the_edge() -> None:
    """A measurement beyond 89 days is 89 (the farthest a nightly run reaches); changes seen at
    the oldest age re-synced are flagged: later ones would go unseen."""
    m = measure([*_nights(7, (2, 1)), _resync(90, 5, night=8, nightly=False)])
    assert (m.measured, m.lookback_days, m.at_edge, m.oldest_age) == (90, 89, True, 90)
    assert measure(_nights(7, (1, 1))).lookback_days == 1


def test_a_fleet_takes_the_widest_suggestion() -> None:
    """Apps sharing one plan get the largest of their lookbacks (7 with none)."""
    short, wide = measure(_nights(7, (2, 9))), measure(_nights(7, (2, 9), (12, 9)))
    assert lateness.widest([short, wide]) == 12
    assert lateness.widest([]) == 7


# -- the ledger over simulated nights -----------------------------------------------------------


def _truth(sandbox: SandboxServer, day: dt.date, now: float) -> dict[Any, Any]:
    """The rows the platform reports for `day` over the publish range reachable at `now`."""
    rows = sandbox.truth(day, planner.earliest_start(now), planner.day_end(day))
    return {(r["video_id"], r["task_id"]): r for r in rows}


def _rows_changed(before: dict[Any, Any], after: dict[Any, Any]) -> int:
    """Rows added, removed or with other values between two answers."""
    return len(before.keys() ^ after.keys()) + sum(
        before[k] != after[k] for k in before.keys() & after.keys()
    )


async def _night(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A nightly run (lookback 7) at the clock's now, its start dated to that night."""
    now = clock()
    first, last = planner.nightly_dates(planner.shanghai_today(now), 7)
    dates = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    settings = sandbox_settings(sandbox, database_url)
    result = await run_sync(settings, dates, now=now, kind="nightly")
    assert result.status == "succeeded", result.failed
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE sync_runs SET started_at = to_timestamp(:t) WHERE id = :id"),
            {"t": now, "id": result.run_id},
        )


@pytest.mark.wall_clock  # the nights end today: the CLI's nightly run reads the wall clock
async def test_late_settlement_over_simulated_nights_measures_the_lookback(
    make_sandbox: MakeSandbox, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """Ten nights of nightly runs over a sandbox whose rows change 2, 5 and 6 days after their
    billing date: the ledger's re-syncs hold exactly those changes at those ages; the
    suggestion is the 7-day default until 7 nights re-synced, then 2 (one row at age 5 is under
    0.1 %), then 6 once rows change at age 6 too; `status --lateness` shows it (text and JSON)
    and `nightly --lookback-days auto` re-syncs exactly that many dates."""
    nights = Clock(clock.start - 9 * DAY)  # night 9 is today
    sandbox = await make_sandbox(seed=3, videos=300, tasks=8, creators=30, clock=nights)
    app = sandbox.config.client_key
    expected: dict[int, int] = {}

    def mutate(age: int, **change: Any) -> None:
        now = nights()
        day = planner.shanghai_today(now) - dt.timedelta(days=age)
        before = _truth(sandbox, day, now)
        sandbox.mutate([day], **change)
        changed = _rows_changed(before, _truth(sandbox, day, now))
        expected[age] = expected.get(age, 0) + changed

    await _night(sandbox, database_url, engine, nights)  # night 0: every date a first sync
    for night in range(1, 9):
        nights.advance(DAY)
        mutate(2, change_fraction=1.0, seed=night)
        if night == 4:
            mutate(5, change_fraction=0.0, add=1)
        await _night(sandbox, database_url, engine, nights)
        async with engine.connect() as conn:
            m = await app_lateness(conn, app)
        assert m.nights == night
        assert (m.lookback_days, m.enough) == ((7, False) if night < 7 else (2, True))
    assert expected[2] > 1000 * expected[5]  # the one row at age 5 is under 0.1 %

    async with engine.connect() as conn:
        facts = await resyncs(conn, app)
    assert {f.age for f in facts} == {2, 3, 4, 5, 6, 7}
    assert {a.age: a.changed for a in lateness.distribution(facts)} == {
        2: expected[2],
        3: 0,
        4: 0,
        5: expected[5],
        6: 0,
        7: 0,
    }
    assert all(a.resyncs == 8 for a in lateness.distribution(facts))

    nights.advance(DAY)  # night 9: rows of a date six days old change too
    mutate(2, change_fraction=1.0, seed=9)
    mutate(6, change_fraction=0.2, seed=9)
    await _night(sandbox, database_url, engine, nights)
    async with engine.connect() as conn:
        m = await app_lateness(conn, app)
    assert (m.measured, m.lookback_days, m.nights, m.changes) == (6, 6, 9, sum(expected.values()))

    env = cli_env(sandbox, database_url)
    shown = await run_cli("status", "--lateness", env=env)
    assert shown.status == 0, shown
    assert (
        f"app {app}: lookback 6 days suggested\n  99.9 % of {m.changes:,} changed rows"
        in shown.stdout
    )
    as_json = await run_cli("status", "--lateness", "--format", "json", env=env)
    doc = json.loads(as_json.stdout)
    (one,) = doc["apps"]
    assert (doc["kind"], one["app_id"], one["lookback_days"], one["nights"]) == (
        "lateness",
        app,
        6,
        9,
    )
    assert {a["age"]: a["rows_changed"] for a in one["ages"]} == {
        2: expected[2],
        3: 0,
        4: 0,
        5: expected[5],
        6: expected[6],
        7: 0,
    }

    auto = await run_cli("nightly", "--lookback-days", "auto", "--page-size", "1000", env=env)
    assert auto.status == 0, auto
    assert "--lookback-days auto: 6 days (99.9 % of" in auto.stderr
    run = (await runs(engine))[-1]
    today = planner.shanghai_today(nights())
    assert run.kind == "nightly" and run.params["dates"] == [
        (today - dt.timedelta(days=6)).isoformat(),
        (today - dt.timedelta(days=1)).isoformat(),
    ]


@pytest.mark.wall_clock  # the CLI reads the wall clock
async def test_auto_without_history_plans_seven_days_and_says_why(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine
) -> None:
    """`nightly --lookback-days auto` on an empty ledger: 7 days, the reason on stderr; a bad
    value is one line and exit 2."""
    env = cli_env(sandbox, database_url)
    dry = await run_cli("nightly", "--lookback-days", "auto", "--dry-run", env=env)
    assert dry.status == 0, dry
    assert "--lookback-days auto: 7 days (too little history: 0 nightly runs" in dry.stderr
    assert "total: 7 billing dates" in dry.stdout
    assert await runs(engine) == []
    bad = await run_cli("nightly", "--lookback-days", "often", env=env)
    assert bad.status == 2 and len(bad.err_lines) == 1
    assert "expected days from 1 to 89 or 'auto', got 'often'" in bad.stderr


def test_the_screen_shows_ages_shares_and_a_note_at_the_edge() -> None:
    """An app's block: the suggestion and its reason, a row per age with running shares rounded
    down (99.85 % is not shown as 99.9 %), and a note when rows still changed at the oldest age."""
    m = measure([*_nights(7, (2, 285), (3, 0), (4, 0), (5, 0), (6, 0), (7, 0)), _resync(7, 2)])
    shown = render_app("tt_a", m)
    assert shown.splitlines()[:2] == [
        "app tt_a: lookback 7 days suggested",
        "  99.9 % of 1,997 changed rows were seen within 7 days of their billing date, "
        "over 7 nights",
    ]
    assert "         2         7          1995  99.8 %      99.8 %" in shown
    assert "note: rows still changed at age 7, the oldest any run re-synced" in shown
    assert "`nightly --lookback-days 30`" in shown


async def _recorded(engine: AsyncEngine, app: str, changes: dict[int, int], nights: int) -> None:
    """Ledger entries of `nights` nightly runs of `app`, each re-syncing the dates at the ages
    of `changes` (a backfill synced them first) and finding that many rows changed."""
    window = planner.windows_for(D, planner.day_end(D))[0]
    async with engine.begin() as conn:
        for night in range(nights):
            run_day = D + dt.timedelta(days=night)
            for kind, stats in (("backfill", {}), ("nightly", changes)):
                run_id = await ledger.start_run(conn, kind, app, {"night": night})
                for age in changes:
                    day = run_day - dt.timedelta(days=age)
                    pid = await ledger.start_partition(
                        conn, run_id, day, window.start, window.end, ""
                    )
                    changed = PartitionStats(updated=stats.get(age, 0))
                    await ledger.partition_done(conn, pid, changed)
                started = dt.datetime.combine(run_day, dt.time(4, 30), planner.SHANGHAI)
                await conn.execute(
                    text("UPDATE sync_runs SET started_at = :t WHERE id = :id"),
                    {"t": started, "id": run_id},
                )


async def test_auto_for_several_apps_takes_the_widest(
    engine: AsyncEngine, database_url: str
) -> None:
    """Each app is measured on its own runs only; `auto` for a fleet (one plan) is the widest
    of their lookbacks, and its line names each app's."""
    await _recorded(engine, "a", {2: 50, 4: 0}, nights=7)
    await _recorded(engine, "b", {2: 50, 9: 50}, nights=7)
    await _recorded(engine, "c", {3: 5}, nights=3)
    async with engine.connect() as conn:
        measured = {app: await app_lateness(conn, app) for app in "abc"}
    assert {a: m.lookback_days for a, m in measured.items()} == {"a": 2, "b": 9, "c": 7}
    assert measured["a"].nights == 7 and measured["a"].changes == 350
    settings = Settings(database_url=Secret(database_url))
    assert await resolve_auto(settings, ["a"]) == (
        2,
        "--lookback-days auto: 2 days (99.9 % of 350 changed rows were seen within 2 days of "
        "their billing date, over 7 nights)",
    )
    assert await resolve_auto(settings, ["a", "b", "c"]) == (
        9,
        "--lookback-days auto: 9 days, the widest of the apps' (a 2; b 9; c 7 (default))",
    )
