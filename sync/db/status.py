"""What `taskbox-sync status` shows: queries over the ledger and the problems they reveal.

Nothing here prints: sync.cli.status draws the tables. Times are in China time (Asia/Shanghai),
the platform's clock.

When is a billing date completely synced? When the done partitions of full scope (scope '', no
API filter), from any runs, cover its whole publish range without a gap: from the last second
of that China-time day back to the oldest publish time the run could ask for (planner's
`earliest_start` at that run's start, plus COVERAGE_SLACK). This catches a date whose newest
window was synced but whose older windows failed or were never reached (an interrupted run).
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
class StatusReport:
    """Everything `status` shows."""

    today: dt.date
    runs: list[RunInfo]
    dates: list[DateSummary]
    incomplete: list[IncompleteDate]
    failures: list[PartitionInfo]
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


async def recent_runs(conn: AsyncConnection, limit: int = 10) -> list[RunInfo]:
    """The latest runs, newest first."""
    result = await conn.execute(select(sync_runs).order_by(sync_runs.c.id.desc()).limit(limit))
    return [_run(r) for r in result]


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


async def billing_date_summary(
    conn: AsyncConnection, dates: Sequence[dt.date]
) -> list[DateSummary]:
    """Per date (oldest first): the last finish of a done full-scope partition, stored rows."""
    wanted = sorted(set(dates))
    if not wanted:
        return []
    p, v = sync_partitions, video_daily_earnings
    synced = await conn.execute(
        select(p.c.billing_date, func.max(p.c.finished_at))
        .where(p.c.billing_date.in_(wanted), p.c.status == PartitionStatus.DONE, p.c.scope == "")
        .group_by(p.c.billing_date)
    )
    last = {d: at for d, at in synced}
    counted = await conn.execute(
        select(v.c.billing_date, func.count())
        .where(v.c.billing_date.in_(wanted))
        .group_by(v.c.billing_date)
    )
    rows = {d: int(n) for d, n in counted}
    return [DateSummary(d, last.get(d), rows.get(d, 0)) for d in wanted]


async def unrecovered_failures(
    conn: AsyncConnection, earliest_date: dt.date | None = None
) -> list[PartitionInfo]:
    """The latest failed partition per (billing date, window end, scope) that no later done
    partition of the same date, end and scope, starting no later, has made good."""
    failed, later = sync_partitions.alias("failed"), sync_partitions.alias("later")
    same_key = and_(
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
        .where(failed.c.status == failure, ~select(later.c.id).where(same_key, superseded).exists())
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
    conn: AsyncConnection, today: dt.date, earliest_date: dt.date
) -> list[IncompleteDate]:
    """Billing dates in [earliest_date, today - 1] never completely synced (see the module's
    docstring for the rule), oldest first."""
    last = today - dt.timedelta(days=1)
    if earliest_date > last:
        return []
    p, r = sync_partitions, sync_runs
    result = await conn.execute(
        select(p.c.billing_date, p.c.window_start, p.c.window_end, r.c.started_at)
        .select_from(p.join(r, r.c.id == p.c.run_id))
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
    failed = {f.billing_date: f for f in await unrecovered_failures(conn, earliest_date)}
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


def _date_problems(incomplete: Sequence[IncompleteDate]) -> list[str]:
    return [
        f"billing date {i.billing_date} is incomplete and leaves the API's reach in "
        f"{i.days_left} day{'' if i.days_left == 1 else 's'}: {i.reason}"
        for i in incomplete
        if i.days_left <= WARN_DAYS_LEFT
    ]


async def _nightly_problems(conn: AsyncConnection, today: dt.date, max_age: int) -> list[str]:
    query = select(sync_runs).where(sync_runs.c.kind == "nightly").order_by(sync_runs.c.id.desc())
    runs = [_run(r) for r in await conn.execute(query.limit(2))]
    if runs and runs[0].status is RunStatus.RUNNING:
        if await locks.lock_held_elsewhere(conn, runs[0].app_id):
            runs = runs[1:]  # in progress: judge the one before it
        else:
            return [f"the last nightly run ({runs[0].id}) stopped without finishing"]
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


async def check(
    conn: AsyncConnection, today: dt.date, *, max_nightly_age_days: int = 2
) -> tuple[bool, list[str]]:
    """(ok, problems) for monitoring: a problem is an incomplete date with at most
    WARN_DAYS_LEFT days left in the reach, or a last nightly run that did not succeed (or is
    missing, or older than `max_nightly_age_days`). A nightly run in progress is not judged."""
    earliest = today - dt.timedelta(days=planner.MAX_NIGHTLY_LOOKBACK)
    problems = _date_problems(await incomplete_dates(conn, today, earliest))
    problems += await _nightly_problems(conn, today, max_nightly_age_days)
    return not problems, problems


async def collect_status(
    conn: AsyncConnection, today: dt.date, *, runs: int = 10, recent_days: int = 7
) -> StatusReport:
    """Everything `status` shows, for `today` (China time); `ok` and `problems` as in check."""
    earliest = today - dt.timedelta(days=planner.MAX_NIGHTLY_LOOKBACK)
    dates = [today - dt.timedelta(days=i) for i in range(recent_days, 0, -1)]
    incomplete = await incomplete_dates(conn, today, earliest)
    problems = _date_problems(incomplete) + await _nightly_problems(conn, today, 2)
    return StatusReport(
        today=today,
        runs=await recent_runs(conn, runs),
        dates=await billing_date_summary(conn, dates),
        incomplete=incomplete,
        failures=await unrecovered_failures(conn, earliest),
        ok=not problems,
        problems=problems,
    )


def _excerpt(value: str, limit: int) -> str:
    """An error's text for a one-line message: whitespace collapsed, at most `limit` characters."""
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
