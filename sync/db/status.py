"""What `taskbox-sync status` shows: queries over the ledger and the problems they reveal.

Nothing here prints: sync.cli.status draws the tables. Times are in China time (Asia/Shanghai),
the platform's clock.

When is a billing date completely synced? When the done partitions of full scope (scope '', no
API filter), from any runs, cover its whole publish range without a gap: from the last second
of that China-time day back to the oldest publish time the run could ask for (planner's
`earliest_start` at that run's start, plus COVERAGE_SLACK). This catches a date whose newest
window was synced but whose older windows failed or were never reached (an interrupted run).

Every answer is an app's: several apps share one database, and one app's partitions never make
good, cover or count for another's (the apps are those of the ledger's runs, plus any the
caller names, e.g. an apps file's that never ran).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from sync import planner
from sync.db import ledger, locks
from sync.db.schema import sync_partitions, sync_runs, video_daily_earnings
from sync.db.statuses import PartitionStatus, RunStatus
from sync.errors import SettingsError

REACH_DAYS = 90  # a billing date leaves the API's reach this many days after itself
WARN_DAYS_LEFT = 7  # an incomplete date this close to leaving the reach is a problem
COVERAGE_SLACK = 3600  # seconds: a run's oldest window may start this much after earliest_start
ERROR_WIDTH = 60


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A sync_runs row."""

    id: int
    kind: str
    app_id: str
    params: dict[str, Any]
    status: RunStatus
    started_at: dt.datetime
    finished_at: dt.datetime | None
    partitions_total: int
    partitions_done: int
    partitions_failed: int
    partitions_skipped: int
    rows_fetched: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_removed: int
    rows_rejected: int
    rows_foreign: int
    api_calls: int
    throttled: int
    retries: int
    qps_used: Decimal | None
    error: str | None


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """A sync_partitions row, its window in Unix seconds."""

    id: int
    run_id: int
    billing_date: dt.date
    window_start: int
    window_end: int
    scope: str
    status: PartitionStatus
    attempts: int
    pages: int
    api_calls: int
    rows_fetched: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_removed: int
    rows_rejected: int
    rows_repeated: int
    texts_sanitized: int
    last_log_id: str | None
    err_no: int | None
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    # Last, with defaults: added with the apps, after code that builds these by position.
    app_id: str = ""
    rows_foreign: int = 0


@dataclass(frozen=True, slots=True)
class DateSummary:
    """A billing date: when a full-scope partition of it last succeeded, and its stored rows."""

    billing_date: dt.date
    last_synced_at: dt.datetime | None
    rows: int


@dataclass(frozen=True, slots=True)
class IncompleteDate:
    """A billing date never completely synced, and the days until it leaves the API's reach."""

    billing_date: dt.date
    days_left: int
    reason: str


@dataclass(frozen=True, slots=True)
class AppStatus:
    """One app: its last nightly run and last run (either may be running), whether a run of it
    is in progress (its run lock is held), its incomplete dates (oldest, the nearest to leaving
    the reach, first), unrecovered failures, recent dates, stored rows, the keys its last run
    found held by another app's rows, and its problems: `problems` one a line for the status
    screen, `attention` the same in short for `--check`."""

    app_id: str
    last_nightly: RunInfo | None
    last_run: RunInfo | None
    running: bool
    incomplete: list[IncompleteDate]
    failures: list[PartitionInfo]
    dates: list[DateSummary]
    rows: int
    rows_foreign: int
    problems: list[str]
    attention: list[str]

    @property
    def ok(self) -> bool:
        """Whether the app needs no attention."""
        return not self.problems


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Everything `status` shows: the apps (by id), the recent runs of those apps; `problems`
    are the apps' problems, each led by "app ID: "."""

    today: dt.date
    apps: list[AppStatus]
    runs: list[RunInfo]
    ok: bool
    problems: list[str]


def _run(row: Any) -> RunInfo:
    m = dict(row._mapping)
    m["status"] = RunStatus(m["status"])
    return RunInfo(**{f.name: m[f.name] for f in fields(RunInfo)})


def _partition(row: Any) -> PartitionInfo:
    m = dict(row._mapping)
    m["status"] = PartitionStatus(m["status"])
    m["window_start"] = ledger.to_unix(m["window_start"])
    m["window_end"] = ledger.to_unix(m["window_end"])
    return PartitionInfo(**{f.name: m[f.name] for f in fields(PartitionInfo)})


def days_left(billing_date: dt.date, today: dt.date) -> int:
    """Days until `billing_date` leaves the API's 90-day reach (date + 90 days - today)."""
    return (billing_date + dt.timedelta(days=REACH_DAYS) - today).days


# -- queries --------------------------------------------------------------------------------


async def ledger_apps(conn: AsyncConnection) -> list[str]:
    """The apps of the runs in the ledger, sorted."""
    result = await conn.execute(select(sync_runs.c.app_id).distinct().order_by(sync_runs.c.app_id))
    return list(result.scalars())


def choose_apps(
    recorded: Sequence[str], apps: Sequence[str] | None = None, only: Sequence[str] | None = None
) -> list[str]:
    """The apps to show, sorted: those `recorded` in the ledger and the `apps` the caller names,
    narrowed to `only` when given. SettingsError names an app of `only` that is neither."""
    known = sorted({*recorded, *(apps or ())})
    if not only:
        return known
    for app_id in only:
        if app_id not in known:
            listed = ", ".join(known) if known else "none"
            raise SettingsError(
                f"unknown app {app_id!r}: no run of it is recorded (apps: {listed})"
            )
    wanted = set(only)
    return [a for a in known if a in wanted]


async def recent_runs(
    conn: AsyncConnection, limit: int = 10, *, apps: Sequence[str] | None = None
) -> list[RunInfo]:
    """The latest runs (of `apps`, else of every app), newest first."""
    query = select(sync_runs).order_by(sync_runs.c.id.desc()).limit(limit)
    if apps is not None:
        query = query.where(sync_runs.c.app_id.in_(apps))
    return [_run(r) for r in await conn.execute(query)]


async def last_runs(
    conn: AsyncConnection, app_id: str, *, kind: str | None = None, limit: int = 1
) -> list[RunInfo]:
    """The app's latest runs (of `kind`, else of any), newest first."""
    query = select(sync_runs).where(sync_runs.c.app_id == app_id)
    if kind is not None:
        query = query.where(sync_runs.c.kind == kind)
    query = query.order_by(sync_runs.c.id.desc()).limit(limit)
    return [_run(r) for r in await conn.execute(query)]


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
    return _run(row), [_partition(r) for r in result]


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
    return [_partition(r) for r in await conn.execute(query)]


def _covered_from(end: int, windows: list[tuple[int, int, int]]) -> tuple[int, int | None]:
    """Walk done windows (start, end, low) down from `end`: the lowest second reached without a
    gap, and the `low` (oldest second its run could ask for) of the window that reached it."""
    frontier, low = end + 1, None
    while reach := [(s, lo) for s, e, lo in windows if e >= frontier - 1 and s < frontier]:
        frontier, reached = min(reach)
        low = reached
    return frontier, low


async def incomplete_dates(
    conn: AsyncConnection,
    today: dt.date,
    earliest_date: dt.date,
    *,
    app_id: str,
    failures: Sequence[PartitionInfo] | None = None,
) -> list[IncompleteDate]:
    """The app's billing dates in [earliest_date, today - 1] never completely synced by its own
    runs (see the module's docstring for the rule), oldest first; a date's reason names its
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
    done: dict[dt.date, list[tuple[int, int, int]]] = {}
    for d, start, end, run_started in result:
        floor = planner.earliest_start(run_started.timestamp()) + COVERAGE_SLACK
        done.setdefault(d, []).append((ledger.to_unix(start), ledger.to_unix(end), floor))
    if failures is None:
        failures = await unrecovered_failures(conn, earliest_date, app_id=app_id)
    failed = {f.billing_date: f for f in failures}
    out: list[IncompleteDate] = []
    for i in range((last - earliest_date).days + 1):
        d = earliest_date + dt.timedelta(days=i)
        windows = done.get(d)
        if not windows:
            reason = "never synced"
        else:
            frontier, low = _covered_from(planner.day_end(d), windows)
            if low is not None and frontier <= low:
                continue
            if low is None:
                reason = "the day's newest window was never synced"
            else:
                reason = f"publish times before {planner.shanghai_text(frontier)} not synced"
        if d in failed:
            f = failed[d]
            code = f" err_no {f.err_no}" if f.err_no is not None else ""
            reason += f"; failed{code}: {_excerpt(f.error or '', ERROR_WIDTH)}"
        out.append(IncompleteDate(d, days_left(d, today), reason))
    return out


# -- judging --------------------------------------------------------------------------------


def _days(n: int) -> str:
    return f"{n} day{'' if n == 1 else 's'}"


def _date_problems(incomplete: Sequence[IncompleteDate]) -> list[str]:
    return [
        f"billing date {i.billing_date} is incomplete and leaves the API's reach in "
        f"{_days(i.days_left)}: {i.reason}"
        for i in incomplete
        if i.days_left <= WARN_DAYS_LEFT
    ]


def _dates_in_short(incomplete: Sequence[IncompleteDate]) -> list[str]:
    """One problem for the incomplete dates, if the nearest to leaving the reach is near."""
    if not incomplete or incomplete[0].days_left > WARN_DAYS_LEFT:
        return []
    n, nearest = len(incomplete), incomplete[0]
    return [
        f"{n} billing date{'' if n == 1 else 's'} incomplete, {nearest.billing_date} leaves "
        f"the API's reach in {_days(nearest.days_left)}"
    ]


def _nightly_problems(
    nightly: Sequence[RunInfo], running: bool, today: dt.date, max_age: int
) -> list[str]:
    """The problems of an app's last nightly runs (newest first, two), `running` when a run of
    the app holds its lock."""
    runs = list(nightly)
    if runs and runs[0].status is RunStatus.RUNNING:
        if not running:
            return [f"the last nightly run ({runs[0].id}) stopped without finishing"]
        runs = runs[1:]  # in progress: judge the one before it
    if not runs:
        return ["no finished nightly run is recorded"]
    run, problems = runs[0], []
    if run.status is not RunStatus.SUCCEEDED:
        why = f": {_excerpt(run.error, ERROR_WIDTH)}" if run.error else ""
        problems.append(f"the last nightly run ({run.id}) ended {run.status}{why}")
    started = run.started_at.astimezone(planner.SHANGHAI).date()
    if (today - started).days > max_age:
        problems.append(f"the last nightly run ({run.id}) started on {started}")
    return problems


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
    judged = _nightly_problems(nightly, running, today, max_nightly_age_days)
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
        problems=_date_problems(incomplete) + judged,
        attention=_dates_in_short(incomplete) + judged,
    )


async def _apps(
    conn: AsyncConnection, apps: Sequence[str] | None, only: Sequence[str] | None
) -> list[str]:
    return choose_apps(await ledger_apps(conn), apps, only)


async def check(
    conn: AsyncConnection,
    today: dt.date,
    *,
    apps: Sequence[str] | None = None,
    only: Sequence[str] | None = None,
    max_nightly_age_days: int = 2,
) -> tuple[bool, list[str]]:
    """(ok, problems) for monitoring, over every app (see `choose_apps` for `apps` and `only`),
    a problem led by "app ID: ": incomplete dates when the nearest has at most WARN_DAYS_LEFT
    days left in the reach (one problem: how many, and the nearest), or a last nightly run
    that did not succeed (or is missing, or older than `max_nightly_age_days`). A nightly run
    in progress is not judged. No app at all is a problem too."""
    chosen = await _apps(conn, apps, only)
    if not chosen:
        return False, ["no finished nightly run is recorded"]
    problems: list[str] = []
    for app_id in chosen:
        app = await app_status(
            conn, app_id, today, recent_days=0, max_nightly_age_days=max_nightly_age_days
        )
        problems += [f"app {app_id}: {p}" for p in app.attention]
    return not problems, problems


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
    chosen = await _apps(conn, apps, only)
    shown = [await app_status(conn, a, today, recent_days=recent_days) for a in chosen]
    problems = [f"app {a.app_id}: {p}" for a in shown for p in a.problems]
    if not shown:
        problems = ["no finished nightly run is recorded"]
    return StatusReport(
        today=today,
        apps=shown,
        runs=await recent_runs(conn, runs, apps=chosen),
        ok=not problems,
        problems=problems,
    )


def _excerpt(value: str, limit: int) -> str:
    """An error's text for a one-line message: whitespace collapsed, at most `limit` characters."""
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
