"""Planning: billing dates to publish-time windows, at the edges of the API's limits; the
planner's refusals as plain date errors, and the CLI naming its flags in them."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from sync.cli.main import main
from sync.errors import SettingsError
from sync.planner import (
    DEFAULT_MARGIN,
    MAX_LOOKBACK,
    MAX_WINDOW_SPAN,
    SHANGHAI,
    DateBound,
    DateProblem,
    DateRangeError,
    Partition,
    Plan,
    Window,
    check_billing_dates,
    day_end,
    describe,
    earliest_billing_date,
    earliest_start,
    nightly_dates,
    parse_date,
    plan,
    shanghai_today,
    window_rank,
    windows_for,
)

D = dt.date


def _at(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> float:
    """Unix seconds of a Shanghai wall-clock time."""
    return dt.datetime(y, m, d, hh, mm, ss, tzinfo=SHANGHAI).timestamp()


NOW = _at(2026, 11, 15, 9, 30, 0) + 0.25  # a mid-morning run, with a fraction of a second


def _assert_tiling(windows: list[Window], low: int, high: int) -> None:
    """Newest first, adjacent, within the span limit, covering [low, high] exactly once."""
    assert windows == sorted(windows, reverse=True)
    assert windows[0].end == high
    assert windows[-1].start == low
    for newer, older in itertools.pairwise(windows):
        assert older.end == newer.start - 1
    for w in windows:
        assert 0 <= w.span <= MAX_WINDOW_SPAN - 1
    assert sum(w.end - w.start + 1 for w in windows) == high - low + 1


def test_day_end_is_last_shanghai_second() -> None:
    """day_end is midnight of the next Shanghai day minus one second."""
    assert day_end(D(2026, 10, 31)) == int(_at(2026, 11, 1)) - 1
    assert day_end(D(2026, 2, 28)) == int(_at(2026, 3, 1)) - 1
    assert day_end(D(2026, 12, 31)) == int(_at(2027, 1, 1)) - 1
    assert dt.datetime.fromtimestamp(day_end(D(2026, 10, 31)), dt.UTC).hour == 15


def test_earliest_start_never_before_90_days() -> None:
    """earliest_start is 90 days back from the ceiling of now, plus the margin, never earlier."""
    assert earliest_start(NOW) == int(NOW) + 1 - MAX_LOOKBACK + DEFAULT_MARGIN
    assert earliest_start(NOW, margin=0) >= NOW - MAX_LOOKBACK
    with pytest.raises(ValueError):
        earliest_start(NOW, margin=-1)


def test_yesterday_tiles_whole_range() -> None:
    """Yesterday's range is covered by adjacent windows of at most 30 days, newest first."""
    yesterday = shanghai_today(NOW) - dt.timedelta(days=1)
    windows = windows_for(yesterday, NOW)
    assert len(windows) == 3
    _assert_tiling(windows, earliest_start(NOW), day_end(yesterday))
    assert windows[0].span == MAX_WINDOW_SPAN - 1
    assert all(w.start >= NOW - MAX_LOOKBACK for w in windows)


@pytest.mark.parametrize("billing_date", [D(2026, 10, 31), D(2026, 9, 30), D(2026, 8, 20)])
def test_month_end_dates_tile(billing_date: dt.date) -> None:
    """Month-end and older billing dates still tile [earliest_start, day_end] exactly."""
    windows = windows_for(billing_date, NOW)
    _assert_tiling(windows, earliest_start(NOW), day_end(billing_date))


def test_february_month_end() -> None:
    """2026-02-28 (no leap day) ends at 2026-03-01 00:00 Shanghai minus one second."""
    now = _at(2026, 3, 2, 8, 0, 0)
    windows = windows_for(D(2026, 2, 28), now)
    assert windows[0].end == int(_at(2026, 3, 1)) - 1
    _assert_tiling(windows, earliest_start(now), day_end(D(2026, 2, 28)))


def test_windows_stable_within_a_day() -> None:
    """Two runs on the same day plan the same windows except the oldest start."""
    later = NOW + 6 * 3600
    a = windows_for(D(2026, 11, 14), NOW)
    b = windows_for(D(2026, 11, 14), later)
    assert a[:-1] == b[:-1]
    assert a[-1].end == b[-1].end and b[-1].start > a[-1].start


def test_sweep_every_servable_date() -> None:
    """At many times of day, every servable date tiles its range and never reaches past 90 days."""
    for hours in range(0, 72, 7):
        now = NOW + hours * 3600 + 0.5
        today = shanghai_today(now)
        for back in range(1, 92):
            d = today - dt.timedelta(days=back)
            windows = windows_for(d, now)
            if d < earliest_billing_date(now):
                assert windows == []
                continue
            _assert_tiling(windows, earliest_start(now), day_end(d))
            assert windows[-1].start >= now - MAX_LOOKBACK


def test_one_second_window() -> None:
    """When earliest_start equals day_end the range is one window of one second."""
    d = D(2026, 9, 1)
    now = day_end(d) + MAX_LOOKBACK - DEFAULT_MARGIN
    assert earliest_start(now) == day_end(d)
    assert windows_for(d, now) == [Window(day_end(d), day_end(d))]
    assert windows_for(d, now + 1) == []


def test_exact_span_multiple_has_no_sliver() -> None:
    """A range of exactly 60 days of seconds gives two full windows and nothing more."""
    d = D(2026, 11, 14)
    low = day_end(d) - 2 * MAX_WINDOW_SPAN + 1
    now = low + MAX_LOOKBACK - DEFAULT_MARGIN
    windows = windows_for(d, now)
    assert len(windows) == 2
    _assert_tiling(windows, low, day_end(d))


def test_midnight_follows_shanghai_not_utc() -> None:
    """Just after Shanghai midnight (UTC still the day before) today and yesterday are China's."""
    now = _at(2026, 9, 1, 0, 0, 30)
    assert dt.datetime.fromtimestamp(now, dt.UTC).date() == D(2026, 8, 31)
    assert shanghai_today(now) == D(2026, 9, 1)
    assert check_billing_dates(D(2026, 8, 31), D(2026, 8, 31), now) == [D(2026, 8, 31)]
    with pytest.raises(DateRangeError) as info:
        check_billing_dates(D(2026, 9, 1), D(2026, 9, 1), now)
    assert (info.value.bound, info.value.limit) == (DateBound.LAST, D(2026, 8, 31))


def test_check_dates_inclusive_range() -> None:
    """A valid range comes back as every date from first to last."""
    dates = check_billing_dates(D(2026, 10, 30), D(2026, 11, 2), NOW)
    assert dates == [D(2026, 10, 30), D(2026, 10, 31), D(2026, 11, 1), D(2026, 11, 2)]


def test_check_dates_reversed() -> None:
    """A first date after the last is refused: the first bound, with both dates."""
    with pytest.raises(DateRangeError) as info:
        check_billing_dates(D(2026, 11, 2), D(2026, 11, 1), NOW)
    error = info.value
    assert (error.bound, error.problem) == (DateBound.FIRST, DateProblem.REVERSED)
    assert (error.value, error.limit) == (D(2026, 11, 2), D(2026, 11, 1))
    assert str(error) == (
        "first date 2026-11-02 is after last date 2026-11-01; "
        "give a first date on or before last date"
    )
    assert error.worded({DateBound.FIRST: "--from", DateBound.LAST: "--to"}) == (
        "--from 2026-11-02 is after --to 2026-11-01; give a --from on or before --to"
    )


@pytest.mark.parametrize("last", [D(2026, 11, 15), D(2026, 11, 16)])
def test_check_dates_today_or_future(last: dt.date) -> None:
    """Today and later are refused: the data is T+1, the latest date is yesterday."""
    with pytest.raises(DateRangeError) as info:
        check_billing_dates(D(2026, 11, 10), last, NOW)
    error = info.value
    assert (error.bound, error.problem) == (DateBound.LAST, DateProblem.NOT_YET)
    assert (error.value, error.limit) == (last, D(2026, 11, 14))
    assert str(error) == (
        f"last date {last} is not available yet (data is T+1, China time); "
        "the latest billing date is 2026-11-14"
    )


def test_check_dates_90_day_boundary() -> None:
    """The oldest servable date is accepted, the day before it is refused with the limit."""
    oldest = earliest_billing_date(NOW)
    assert windows_for(oldest, NOW) != []
    assert windows_for(oldest - dt.timedelta(days=1), NOW) == []
    assert check_billing_dates(oldest, oldest, NOW) == [oldest]
    before = oldest - dt.timedelta(days=1)
    with pytest.raises(DateRangeError) as info:
        check_billing_dates(before, D(2026, 11, 1), NOW)
    error = info.value
    assert (error.bound, error.problem) == (DateBound.FIRST, DateProblem.BEYOND_REACH)
    assert (error.value, error.limit) == (before, oldest)
    assert error.worded({DateBound.FIRST: "--from"}) == (
        f"--from {before} is beyond the API's 90-day reach; "
        f"the earliest billing date it can serve is {oldest}"
    )
    assert isinstance(error, SettingsError)  # a caller that names nothing still exits 2


def test_boundary_on_exact_second() -> None:
    """A date whose last second is earliest_start is served; one second later it is not."""
    d = D(2026, 9, 1)
    now = day_end(d) + MAX_LOOKBACK - DEFAULT_MARGIN
    assert check_billing_dates(d, d, now) == [d]
    with pytest.raises(DateRangeError) as info:
        check_billing_dates(d, d, now + 1)
    assert (info.value.bound, info.value.limit) == (DateBound.FIRST, D(2026, 9, 2))


def test_nightly_dates() -> None:
    """N days of lookback gives today - N to yesterday; N outside 1..89 is refused."""
    assert nightly_dates(D(2026, 3, 1), 3) == (D(2026, 2, 26), D(2026, 2, 28))
    assert nightly_dates(D(2026, 3, 1), 1) == (D(2026, 2, 28), D(2026, 2, 28))
    for bad in (0, -1, 90):
        with pytest.raises(DateRangeError) as info:
            nightly_dates(D(2026, 3, 1), bad)
        assert (info.value.bound, info.value.value, info.value.limit) == (
            DateBound.LOOKBACK,
            bad,
            89,
        )
        assert (
            str(info.value) == f"lookback days: expected a number of days from 1 to 89, got {bad}"
        )


def test_nightly_max_lookback_always_servable() -> None:
    """89 days back is within reach at any time of the day, even at 23:59:59."""
    for now in (_at(2026, 11, 15, 0, 0, 0), _at(2026, 11, 15, 23, 59, 59) + 0.9):
        first, last = nightly_dates(shanghai_today(now), 89)
        assert len(check_billing_dates(first, last, now)) == 89


@pytest.mark.parametrize(
    "text", ["2026-2-28", "20260228", "2026-02-30", "2026-02-28 ", "２０２６-02-28"]
)
def test_parse_date_strict(text: str) -> None:
    """Only YYYY-MM-DD with ASCII digits and a real day is a date; the error shows the text."""
    with pytest.raises(ValueError, match="expected a date as YYYY-MM-DD, got") as info:
        parse_date(text)
    assert repr(text) in str(info.value)


def test_parse_date_ok() -> None:
    """A strict date parses."""
    assert parse_date("2026-02-28") == D(2026, 2, 28)


def test_plan_orders_and_counts() -> None:
    """Partitions go by billing date, then window newest first; minimums follow the count."""
    dates = [D(2026, 11, 14), D(2026, 11, 13), D(2026, 11, 14)]
    p = plan(dates, NOW)
    assert p.billing_dates == (D(2026, 11, 13), D(2026, 11, 14))
    assert [x.billing_date for x in p.partitions] == [D(2026, 11, 13)] * 3 + [D(2026, 11, 14)] * 3
    assert p.partitions[0] == Partition(D(2026, 11, 13), windows_for(D(2026, 11, 13), NOW)[0])
    assert p.min_calls == 6
    assert p.min_seconds(10) == pytest.approx(0.6)
    with pytest.raises(ValueError):
        p.min_seconds(0)


def test_describe_lines() -> None:
    """The dry-run text lists windows in China time and ends with the totals."""
    d = D(2026, 11, 14)
    lines = describe(plan([d], NOW), 10)
    assert lines[0] == "2026-11-14: 3 windows"
    assert lines[1] == "  2026-10-16 00:00:00 .. 2026-11-14 23:59:59 (China time)"
    assert lines[-1] == (
        "total: 1 billing date, 3 partitions, at least 3 calls, at least 0.3 s at 10 QPS"
    )
    assert describe(Plan(()), 2.5)[-1].startswith("total: 0 billing dates, 0 partitions")


# -- the CLI names the flags ------------------------------------------------------------------


def _refusal(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the CLI in process; it must refuse with exit 2 and one line on stderr, returned."""
    status: object
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's own refusals
        status = exc.code
    captured = capsys.readouterr()
    assert status == 2 and captured.out == "", captured
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured
    return lines[0]


def test_cli_names_the_flags_of_a_refused_range(capsys: pytest.CaptureFixture[str]) -> None:
    """backfill words the planner's refusal with --from and --to; nightly says which of --today
    and --lookback-days produced the date refused."""
    line = _refusal(capsys, "backfill", "--from", "2026-11-02", "--to", "2026-11-01")
    assert line == (
        "taskbox-sync: --from 2026-11-02 is after --to 2026-11-01; give a --from on or before --to"
    )
    line = _refusal(capsys, "backfill", "--from", "2000-01-01", "--to", "2000-01-02")
    assert line.startswith("taskbox-sync: --from 2000-01-01 is beyond the API's 90-day reach; ")
    line = _refusal(capsys, "nightly", "--today", "2999-01-02")
    assert line.startswith(
        "taskbox-sync: --today 2999-01-02: billing date 2999-01-01 is not available yet "
        "(data is T+1, China time); the latest billing date is "
    )
    line = _refusal(capsys, "nightly", "--today", "2000-01-08", "--lookback-days", "7")
    assert line.startswith(
        "taskbox-sync: --today 2000-01-08 --lookback-days 7: billing date 2000-01-01 is beyond "
        "the API's 90-day reach; the earliest billing date it can serve is "
    )


def test_cli_refuses_a_malformed_date_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """A date that is not YYYY-MM-DD is refused by the flag that carried it."""
    line = _refusal(capsys, "backfill", "--from", "2024-13-01", "--to", "2024-12-01")
    assert line == (
        "taskbox-sync backfill: argument --from: expected a date as YYYY-MM-DD, "
        "got '2024-13-01' (see --help)"
    )
    assert "argument --today: " in _refusal(capsys, "nightly", "--today", "20240101")


def test_window_rank_counts_a_dates_windows_from_the_newest() -> None:
    """Rank 0 is a date's newest window; neighbouring dates' windows of one rank nearly overlap."""
    for billing_date in (D(2026, 11, 14), D(2026, 10, 1), D(2026, 8, 20)):
        partitions = list(plan([billing_date], NOW).partitions)
        assert [window_rank(p) for p in partitions] == list(range(len(partitions)))
