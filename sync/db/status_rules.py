"""What `taskbox-sync status` judges, apart from reading: when a billing date counts as
completely synced, which dates and runs are problems, and how they are worded. Pure: the
queries (sync.db.status) hand in what they read.

When is a billing date completely synced? When the done partitions of full scope (scope '', no
API filter), from any runs, cover its whole publish range without a gap: from the last second
of that China-time day back to the oldest publish time the run could ask for (planner's
`earliest_start` at that run's start, plus COVERAGE_SLACK). This catches a date whose newest
window was synced but whose older windows failed or were never reached (an interrupted run).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from sync import planner
from sync.db.status_types import IncompleteDate, PartitionInfo, RunInfo
from sync.db.statuses import RunStatus
from sync.errors import SettingsError

REACH_DAYS = 90  # a billing date leaves the API's reach this many days after itself
WARN_DAYS_LEFT = 7  # an incomplete date this close to leaving the reach is a problem
COVERAGE_SLACK = 3600  # seconds: a run's oldest window may start this much after earliest_start
ERROR_WIDTH = 60
NO_APP = "no finished nightly run is recorded"  # the problem when no app is known at all

DoneWindow = tuple[int, int, int]
"""A done full-scope partition: (window start, window end, the oldest second its run could
ask for), in Unix seconds."""


def days_left(billing_date: dt.date, today: dt.date) -> int:
    """Days until `billing_date` leaves the API's 90-day reach (date + 90 days - today)."""
    return (billing_date + dt.timedelta(days=REACH_DAYS) - today).days


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


def covered_from(end: int, windows: Sequence[DoneWindow]) -> tuple[int, int | None]:
    """Walk done windows (start, end, low) down from `end`: the lowest second reached without a
    gap, and the `low` (oldest second its run could ask for) of the window that reached it."""
    frontier, low = end + 1, None
    while reach := [(s, lo) for s, e, lo in windows if e >= frontier - 1 and s < frontier]:
        frontier, reached = min(reach)
        low = reached
    return frontier, low


def incomplete_dates(
    today: dt.date,
    earliest_date: dt.date,
    done: Mapping[dt.date, Sequence[DoneWindow]],
    failures: Sequence[PartitionInfo],
) -> list[IncompleteDate]:
    """The billing dates in [earliest_date, today - 1] that the `done` windows (per date) do not
    cover, oldest first; a date's reason names its unrecovered failure among `failures`."""
    last = today - dt.timedelta(days=1)
    failed = {f.billing_date: f for f in failures}
    out: list[IncompleteDate] = []
    for i in range(max((last - earliest_date).days + 1, 0)):
        d = earliest_date + dt.timedelta(days=i)
        windows = done.get(d)
        if not windows:
            reason = "never synced"
        else:
            frontier, low = covered_from(planner.day_end(d), windows)
            if low is not None and frontier <= low:
                continue
            if low is None:
                reason = "the day's newest window was never synced"
            else:
                reason = f"publish times before {planner.shanghai_text(frontier)} not synced"
        if d in failed:
            f = failed[d]
            code = f" err_no {f.err_no}" if f.err_no is not None else ""
            reason += f"; failed{code}: {excerpt(f.error or '', ERROR_WIDTH)}"
        out.append(IncompleteDate(d, days_left(d, today), reason))
    return out


def _days(n: int) -> str:
    return f"{n} day{'' if n == 1 else 's'}"


def date_problems(incomplete: Sequence[IncompleteDate]) -> list[str]:
    """A problem per incomplete date that has at most WARN_DAYS_LEFT days left in the reach."""
    return [
        f"billing date {i.billing_date} is incomplete and leaves the API's reach in "
        f"{_days(i.days_left)}: {i.reason}"
        for i in incomplete
        if i.days_left <= WARN_DAYS_LEFT
    ]


def dates_in_short(incomplete: Sequence[IncompleteDate]) -> list[str]:
    """One problem for the incomplete dates, if the nearest to leaving the reach is near."""
    if not incomplete or incomplete[0].days_left > WARN_DAYS_LEFT:
        return []
    n, nearest = len(incomplete), incomplete[0]
    return [
        f"{n} billing date{'' if n == 1 else 's'} incomplete, {nearest.billing_date} leaves "
        f"the API's reach in {_days(nearest.days_left)}"
    ]


def nightly_problems(
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
        return [NO_APP]
    run, problems = runs[0], []
    if run.status is not RunStatus.SUCCEEDED:
        why = f": {excerpt(run.error, ERROR_WIDTH)}" if run.error else ""
        problems.append(f"the last nightly run ({run.id}) ended {run.status}{why}")
    started = run.started_at.astimezone(planner.SHANGHAI).date()
    if (today - started).days > max_age:
        problems.append(f"the last nightly run ({run.id}) started on {started}")
    return problems


def excerpt(value: str, limit: int) -> str:
    """An error's text for a one-line message: whitespace collapsed, at most `limit` characters."""
    flat = " ".join(value.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
