"""Billing dates in, publish-time windows out: the units of work of a sync, and nothing else.

The API serves one billing date per call, filtered by a video publish-time range whose ends may be
at most 30 days apart and no older than 90 days. A billing date's publish range runs from the
oldest second the API still accepts to the last second of that (China-time) day; it is cut into
windows anchored at its end, so that runs on the same day plan the same windows except the oldest.

Pure: no clock, no I/O. `now` is always passed in, as Unix seconds. Dates the API cannot serve
raise DateRangeError, which says which bound is wrong and why; the caller names the bounds in the
message (the CLI by its flags, `--from`, `--to`, `--today`, `--lookback-days`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass

from sync.errors import DateBound, DateProblem, DateRangeError

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
DAY = 86400
MAX_WINDOW_SPAN = 30 * DAY  # the API refuses end - start above this
MAX_LOOKBACK = 90 * DAY  # the API refuses a start older than this
DEFAULT_MARGIN = (
    600  # seconds of safety on the 90-day reach: clock skew between us and the platform
)
MAX_NIGHTLY_LOOKBACK = 89  # days: today - 89 is the oldest date a nightly run can always serve

_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """A publish-time range, both ends inclusive, in Unix seconds."""

    start: int
    end: int

    @property
    def span(self) -> int:
        """`end - start`: the quantity the API limits to 30 days (a one-second window has 0)."""
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Partition:
    """One billing date and one window: the unit of work and of the ledger."""

    billing_date: dt.date
    window: Window


def shanghai_today(now: float) -> dt.date:
    """The platform's calendar day (Asia/Shanghai) at Unix time `now`."""
    return dt.datetime.fromtimestamp(now, SHANGHAI).date()


def earliest_start(now: float, margin: int = DEFAULT_MARGIN) -> int:
    """The oldest publish time to ask for: 90 days back from `now`, plus the safety margin."""
    if margin < 0:
        raise ValueError(f"margin must be >= 0 seconds, got {margin}")
    return math.ceil(now) - MAX_LOOKBACK + margin


def day_end(d: dt.date) -> int:
    """The last second of day `d` in Asia/Shanghai, as Unix seconds."""
    nxt = d + dt.timedelta(days=1)
    return int(dt.datetime(nxt.year, nxt.month, nxt.day, tzinfo=SHANGHAI).timestamp()) - 1


def windows_for(billing_date: dt.date, now: float, margin: int = DEFAULT_MARGIN) -> list[Window]:
    """The publish range of `billing_date` cut into adjacent windows, newest first.

    Each window has `end - start <= MAX_WINDOW_SPAN - 1`; the oldest is clipped at
    `earliest_start`. Empty when the whole range is beyond the API's reach.
    """
    low = earliest_start(now, margin)
    end = day_end(billing_date)
    windows: list[Window] = []
    while end >= low:
        start = max(low, end - (MAX_WINDOW_SPAN - 1))
        windows.append(Window(start, end))
        end = start - 1
    return windows


def window_rank(partition: Partition) -> int:
    """Which window of its billing date `partition` is, 0 for the newest (see windows_for): the
    windows of one rank on neighbouring dates cover nearly the same videos."""
    return (day_end(partition.billing_date) - partition.window.end) // MAX_WINDOW_SPAN


def earliest_billing_date(now: float, margin: int = DEFAULT_MARGIN) -> dt.date:
    """The oldest billing date with a non-empty publish range (the day holding earliest_start)."""
    return shanghai_today(earliest_start(now, margin))


def check_billing_dates(
    first: dt.date, last: dt.date, now: float, *, margin: int = DEFAULT_MARGIN
) -> list[dt.date]:
    """Every date from `first` to `last` inclusive, or DateRangeError if the API cannot serve
    one of them (the dates reversed, `last` not yet closed, `first` beyond the 90-day reach)."""
    if first > last:
        raise DateRangeError(DateBound.FIRST, DateProblem.REVERSED, first, last)
    latest = shanghai_today(now) - dt.timedelta(days=1)
    if last > latest:
        raise DateRangeError(DateBound.LAST, DateProblem.NOT_YET, last, latest)
    oldest = earliest_billing_date(now, margin)
    if first < oldest:
        raise DateRangeError(DateBound.FIRST, DateProblem.BEYOND_REACH, first, oldest)
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def nightly_dates(today: dt.date, lookback_days: int) -> tuple[dt.date, dt.date]:
    """The nightly run's range: `today - lookback_days` to yesterday, inclusive; DateRangeError
    when `lookback_days` is not 1 to MAX_NIGHTLY_LOOKBACK."""
    if not 1 <= lookback_days <= MAX_NIGHTLY_LOOKBACK:
        raise DateRangeError(
            DateBound.LOOKBACK, DateProblem.LOOKBACK, lookback_days, MAX_NIGHTLY_LOOKBACK
        )
    return today - dt.timedelta(days=lookback_days), today - dt.timedelta(days=1)


def parse_date(text: str) -> dt.date:
    """A strict `YYYY-MM-DD` date (ASCII digits, a real day); ValueError for anything else."""
    if _DATE.fullmatch(text):
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"expected a date as YYYY-MM-DD, got {text!r}")


@dataclass(frozen=True)
class Plan:
    """The partitions of a run, ordered by billing date, then window newest first."""

    partitions: tuple[Partition, ...]

    @property
    def billing_dates(self) -> tuple[dt.date, ...]:
        """The distinct billing dates, oldest first."""
        return tuple(sorted({p.billing_date for p in self.partitions}))

    @property
    def min_calls(self) -> int:
        """The fewest API calls the run can take: every window needs at least one page."""
        return len(self.partitions)

    def min_seconds(self, qps: float) -> float:
        """The fewest seconds the minimum calls take at `qps` calls per second."""
        if not qps > 0:
            raise ValueError(f"qps must be above 0, got {qps}")
        return self.min_calls / qps


def plan(dates: Sequence[dt.date], now: float, margin: int = DEFAULT_MARGIN) -> Plan:
    """The partitions for `dates` (duplicates ignored) at time `now`."""
    return Plan(
        tuple(Partition(d, w) for d in sorted(set(dates)) for w in windows_for(d, now, margin))
    )


def shanghai_text(ts: int) -> str:
    """Unix seconds as China time, `YYYY-MM-DD HH:MM:SS`."""
    return dt.datetime.fromtimestamp(ts, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def describe(plan: Plan, qps: float) -> list[str]:
    """Lines for `--dry-run`: each billing date's windows in China time, then the totals."""
    lines: list[str] = []
    for billing_date, group in itertools.groupby(plan.partitions, lambda p: p.billing_date):
        windows = [p.window for p in group]
        lines.append(f"{billing_date}: {len(windows)} window{'s' if len(windows) != 1 else ''}")
        lines.extend(
            f"  {shanghai_text(w.start)} .. {shanghai_text(w.end)} (China time)" for w in windows
        )
    dates = len(plan.billing_dates)
    lines.append(
        f"total: {dates} billing date{'s' if dates != 1 else ''}, "
        f"{len(plan.partitions)} partitions, at least {plan.min_calls} calls, "
        f"at least {_duration(plan.min_seconds(qps))} at {qps:g} QPS"
    )
    return lines
