"""What `taskbox-sync status` reads: queries over the ledger, assembled into the status data
objects (sync.db.status_types) with the judgement of sync.db.status_rules.

Nothing here prints: sync.cli.status_text and status_json draw the objects. Times are in China
time (Asia/Shanghai), the platform's clock.

Every answer is an app's: several apps share one database, and one app's partitions never make
good, cover or count for another's (the apps are those of the ledger's runs, plus any the
caller names, e.g. an apps file's that never ran).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sync import planner
from sync.db import ledger, locks
from sync.db import status_rules as rules
from sync.db.schema import sync_partitions, sync_runs, video_daily_earnings
from sync.db.status_rules import choose_apps, days_left
from sync.db.status_types import (
    AppCheck,
    AppStatus,
    CheckReport,
    DateSummary,
    IncompleteDate,
    PartitionInfo,
    RunInfo,
    StatusReport,
    partition_info,
    run_info,
)
from sync.db.statuses import PartitionStatus

__all__ = [  # the data objects and rules callers used to find here
    "AppStatus",
    "CheckReport",
    "DateSummary",
    "IncompleteDate",
    "PartitionInfo",
    "RunInfo",
    "StatusReport",
    "choose_apps",
    "days_left",
]


async def ledger_apps(conn: AsyncConnection) -> list[str]:
    """The apps of the runs in the ledger, sorted."""
    result = await conn.execute(select(sync_runs.c.app_id).distinct().order_by(sync_runs.c.app_id))
    return list(result.scalars())


async def recent_runs(
    conn: AsyncConnection, limit: int = 10, *, apps: Sequence[str] | None = None
) -> list[RunInfo]:
    """The latest runs (of `apps`, else of every app), newest first."""
    query = select(sync_runs).order_by(sync_runs.c.id.desc()).limit(limit)
    if apps is not None:
        query = query.where(sync_runs.c.app_id.in_(apps))
    return [run_info(r) for r in await conn.execute(query)]


async def last_runs(
    conn: AsyncConnection, app_id: str, *, kind: str | None = None, limit: int = 1
) -> list[RunInfo]:
    """The app's latest runs (of `kind`, else of any), newest first."""
    query = select(sync_runs).where(sync_runs.c.app_id == app_id)
    if kind is not None:
        query = query.where(sync_runs.c.kind == kind)
    query = query.order_by(sync_runs.c.id.desc()).limit(limit)
    return [run_info(r) for r in await conn.execute(query)]


async def run_detail(
    conn: AsyncConnection, run_id: int
) -> tuple[RunInfo, list[PartitionInfo]] | None:
    """A run and its partitions (by billing date, newest window first); None if unknown."""
    row = (await conn.execute(select(sync_runs).where(sync_runs.c.id == run_id))).first()
    if row is None:
        return None
    p = sync_partitions
    result = await conn.execute(
        select(p)
        .where(p.c.run_id == run_id)
        .order_by(p.c.billing_date, p.c.window_end.desc(), p.c.id)
    )
    return run_info(row), [partition_info(r) for r in result]


async def stored_rows(conn: AsyncConnection, app_id: str) -> int:
    """The rows of the app in video_daily_earnings."""
    v = video_daily_earnings
    return int(await conn.scalar(select(func.count()).where(v.c.app_id == app_id)) or 0)


async def billing_date_summary(
    conn: AsyncConnection, dates: Sequence[dt.date], *, app_id: str
) -> list[DateSummary]:
    """Per date (oldest first), of the app: the last finish of a done full-scope partition, and
    its stored rows."""
    wanted = sorted(set(dates))
    if not wanted:
        return []
    p, v = sync_partitions, video_daily_earnings
    synced = await conn.execute(
        select(p.c.billing_date, func.max(p.c.finished_at))
        .where(p.c.app_id == app_id, p.c.billing_date.in_(wanted))
        .where(p.c.status == PartitionStatus.DONE, p.c.scope == "")
        .group_by(p.c.billing_date)
    )
    last = {d: at for d, at in synced}
    counted = await conn.execute(
        select(v.c.billing_date, func.count())
        .where(v.c.app_id == app_id, v.c.billing_date.in_(wanted))
        .group_by(v.c.billing_date)
    )
    rows = {d: int(n) for d, n in counted}
    return [DateSummary(d, last.get(d), rows.get(d, 0)) for d in wanted]


async def unrecovered_failures(
    conn: AsyncConnection, earliest_date: dt.date | None = None, *, app_id: str
) -> list[PartitionInfo]:
    """The app's latest failed partition per (billing date, window end, scope) that no later
    done partition of the app with the same date, end and scope, starting no later, has made
    good."""
    failed, later = sync_partitions.alias("failed"), sync_partitions.alias("later")
    same_key = and_(
        later.c.app_id == failed.c.app_id,
        later.c.billing_date == failed.c.billing_date,
        later.c.window_end == failed.c.window_end,
        later.c.scope == failed.c.scope,
        later.c.id > failed.c.id,
    )
    done, failure = PartitionStatus.DONE, PartitionStatus.FAILED
    made_good = and_(later.c.status == done, later.c.window_start <= failed.c.window_start)
    superseded = or_(made_good, later.c.status == failure)  # the later failure is shown
    query = (
        select(failed)
        .where(failed.c.app_id == app_id, failed.c.status == failure)
        .where(~select(later.c.id).where(same_key, superseded).exists())
        .order_by(failed.c.billing_date, failed.c.window_end.desc(), failed.c.scope)
    )
    if earliest_date is not None:
        query = query.where(failed.c.billing_date >= earliest_date)
    return [partition_info(r) for r in await conn.execute(query)]


async def incomplete_dates(
    conn: AsyncConnection,
    today: dt.date,
    earliest_date: dt.date,
    *,
    app_id: str,
    failures: Sequence[PartitionInfo] | None = None,
) -> list[IncompleteDate]:
    """The app's billing dates in [earliest_date, today - 1] never completely synced by its own
    runs (see sync.db.status_rules for the rule), oldest first; a date's reason names its
    unrecovered failure (`failures`, the app's since `earliest_date`: read when not given)."""
    last = today - dt.timedelta(days=1)
    if earliest_date > last:
        return []
    p, r = sync_partitions, sync_runs
    result = await conn.execute(
        select(p.c.billing_date, p.c.window_start, p.c.window_end, r.c.started_at)
        .select_from(p.join(r, r.c.id == p.c.run_id))
        .where(r.c.app_id == app_id, p.c.app_id == app_id)
        .where(
            p.c.billing_date.between(earliest_date, last),
            p.c.status == PartitionStatus.DONE,
            p.c.scope == "",
        )
    )
    done: dict[dt.date, list[rules.DoneWindow]] = {}
    for d, start, end, run_started in result:
        floor = planner.earliest_start(run_started.timestamp()) + rules.COVERAGE_SLACK
        done.setdefault(d, []).append((ledger.to_unix(start), ledger.to_unix(end), floor))
    if failures is None:
        failures = await unrecovered_failures(conn, earliest_date, app_id=app_id)
    return rules.incomplete_dates(today, earliest_date, done, failures)


async def app_status(
    conn: AsyncConnection,
    app_id: str,
    today: dt.date,
    *,
    recent_days: int = 7,
    max_nightly_age_days: int = 2,
) -> AppStatus:
    """One app's status for `today` (China time); `recent_days` dates get a summary (none
    when 0, as for `check`, which needs no row counts)."""
    earliest = today - dt.timedelta(days=planner.MAX_NIGHTLY_LOOKBACK)
    nightly = await last_runs(conn, app_id, kind="nightly", limit=2)
    last = await last_runs(conn, app_id)
    running = await locks.lock_held_elsewhere(conn, app_id)
    failures = await unrecovered_failures(conn, earliest, app_id=app_id)
    incomplete = await incomplete_dates(conn, today, earliest, app_id=app_id, failures=failures)
    judged = rules.nightly_problems(nightly, running, today, max_nightly_age_days)
    dates = [today - dt.timedelta(days=i) for i in range(recent_days, 0, -1)]
    return AppStatus(
        app_id=app_id,
        last_nightly=nightly[0] if nightly else None,
        last_run=last[0] if last else None,
        running=running,
        incomplete=incomplete,
        failures=failures,
        dates=await billing_date_summary(conn, dates, app_id=app_id),
        rows=await stored_rows(conn, app_id) if recent_days else 0,
        rows_foreign=last[0].rows_foreign if last else 0,
        problems=rules.date_problems(incomplete) + judged,
        attention=rules.dates_in_short(incomplete) + judged,
    )


async def chosen_apps(
    conn: AsyncConnection, apps: Sequence[str] | None, only: Sequence[str] | None
) -> list[str]:
    """The apps to show: the ledger's and `apps`, narrowed to `only` (see `choose_apps`)."""
    return choose_apps(await ledger_apps(conn), apps, only)


async def check_report(
    conn: AsyncConnection,
    today: dt.date,
    *,
    apps: Sequence[str] | None = None,
    only: Sequence[str] | None = None,
    max_nightly_age_days: int = 2,
) -> CheckReport:
    """The verdict for monitoring, over every app (see `choose_apps` for `apps` and `only`):
    an app's problems are its incomplete dates when the nearest has at most WARN_DAYS_LEFT days
    left in the reach (one problem: how many, and the nearest), or a last nightly run that did
    not succeed (or is missing, or older than `max_nightly_age_days`). A nightly run in
    progress is not judged. No app at all is a problem too."""
    chosen = await chosen_apps(conn, apps, only)
    if not chosen:
        return CheckReport(today, [], False, [rules.NO_APP])
    checked: list[AppCheck] = []
    for app_id in chosen:
        app = await app_status(
            conn, app_id, today, recent_days=0, max_nightly_age_days=max_nightly_age_days
        )
        checked.append(AppCheck(app_id, app.attention))
    problems = [f"app {a.app_id}: {p}" for a in checked for p in a.problems]
    return CheckReport(today, checked, not problems, problems)


async def check(
    conn: AsyncConnection,
    today: dt.date,
    *,
    apps: Sequence[str] | None = None,
    only: Sequence[str] | None = None,
    max_nightly_age_days: int = 2,
) -> tuple[bool, list[str]]:
    """(ok, problems) of `check_report`, each problem led by "app ID: "."""
    report = await check_report(
        conn, today, apps=apps, only=only, max_nightly_age_days=max_nightly_age_days
    )
    return report.ok, report.problems


async def collect_status(
    conn: AsyncConnection,
    today: dt.date,
    *,
    apps: Sequence[str] | None = None,
    only: Sequence[str] | None = None,
    runs: int = 10,
    recent_days: int = 7,
) -> StatusReport:
    """Everything `status` shows, for `today` (China time), over the apps `choose_apps` gives
    for `apps` and `only`; `ok` and `problems` as in `check`, each date's problem apart."""
    chosen = await chosen_apps(conn, apps, only)
    shown = [await app_status(conn, a, today, recent_days=recent_days) for a in chosen]
    problems = [f"app {a.app_id}: {p}" for a in shown for p in a.problems]
    if not shown:
        problems = [rules.NO_APP]
    return StatusReport(
        today=today,
        apps=shown,
        runs=await recent_runs(conn, runs, apps=chosen),
        ok=not problems,
        problems=problems,
    )
