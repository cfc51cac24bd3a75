"""How late data really lands: from re-syncs the ledger recorded to a measured nightly lookback.

Pure: no clock, no I/O. The ledger's reading (sync.db.lateness) hands in `Resync` facts; this
module turns them into a distribution by age and a suggested lookback.

A *re-sync* is a run syncing a billing date that an earlier run had already synced (the first
sync of each publish window of a date is not one: every row of it is new). Its *age* is the
run's day (China time) minus the billing date: a nightly run on day T syncs T-1 at age 1 and
T-N at age N, so a lookback of N days catches a change seen at ages 1..N. The rows a re-sync
found changed (inserted, updated or removed) are counted at its age: the change happened since
the date's previous sync, at the latest at that age, so counting it there errs on the longer
side.

The suggestion is the smallest lookback whose ages hold at least COVERAGE of all changes seen,
within 1..MAX_LOOKBACK. It needs history: fewer than MIN_NIGHTS nightly runs with re-syncs, or
no change seen at all, and it is FALLBACK_DAYS, saying why. Runs only see the ages they
re-sync: when changes were still seen at the oldest age looked at, later ones may exist that no
run looked for (`at_edge`), and a wider run now and then shows them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction

COVERAGE = Fraction(999, 1000)  # the share of the changes seen the lookback must catch
MIN_NIGHTS = 7  # nightly runs with re-syncs needed before the measurement is used
FALLBACK_DAYS = 7  # the lookback when there is too little history
MIN_LOOKBACK = 1
MAX_LOOKBACK = 89  # the oldest date a nightly run can always serve is today - 89


@dataclass(frozen=True, slots=True)
class Resync:
    """A billing date re-synced by a run: the run's day (China time), whether it was a nightly
    run, and the rows it found changed (inserted + updated + removed)."""

    billing_date: dt.date
    run_day: dt.date
    nightly: bool
    changed: int

    @property
    def age(self) -> int:
        """Days from the billing date to the run's day (at least 1)."""
        return max((self.run_day - self.billing_date).days, 1)


@dataclass(frozen=True, slots=True)
class AgeCount:
    """At one age (days after the billing date): how many date re-syncs looked there, and the
    rows they found changed."""

    age: int
    resyncs: int
    changed: int


@dataclass(frozen=True, slots=True)
class Lateness:
    """The measurement of one app: the distribution by age (ages looked at, youngest first),
    the nightly runs it rests on, and the suggestion."""

    ages: tuple[AgeCount, ...]
    nights: int  # distinct days with a nightly run that re-synced something
    changes: int  # rows found changed by all re-syncs
    measured: int | None  # the smallest lookback catching COVERAGE of them, if any changed
    lookback_days: int  # what `nightly --lookback-days auto` uses
    enough: bool  # whether lookback_days is the measurement (else FALLBACK_DAYS)
    reason: str  # one sentence: what the suggestion rests on, or why it is the fallback
    at_edge: bool  # changes were seen at the oldest age any run looked at

    @property
    def oldest_age(self) -> int | None:
        """The oldest age any re-sync looked at."""
        return self.ages[-1].age if self.ages else None


def distribution(resyncs: Iterable[Resync]) -> tuple[AgeCount, ...]:
    """Re-syncs and changed rows per age, for the ages some re-sync looked at, youngest first."""
    seen: dict[int, tuple[int, int]] = {}
    for r in resyncs:
        count, changed = seen.get(r.age, (0, 0))
        seen[r.age] = (count + 1, changed + r.changed)
    return tuple(AgeCount(age, n, c) for age, (n, c) in sorted(seen.items()))


def smallest_lookback(ages: Iterable[AgeCount], coverage: Fraction = COVERAGE) -> int | None:
    """The smallest age N such that the changes seen at ages <= N are at least `coverage` of
    all changes seen; None when none were seen."""
    counted = sorted((a.age, a.changed) for a in ages)
    total = sum(c for _, c in counted)
    if total == 0:
        return None
    running = 0
    for age, changed in counted:
        running += changed
        if running >= coverage * total:
            return age
    raise AssertionError("unreachable: the running sum reaches the total")


def _clamp(days: int) -> int:
    return min(max(days, MIN_LOOKBACK), MAX_LOOKBACK)


def measure(
    resyncs: Iterable[Resync],
    *,
    coverage: Fraction = COVERAGE,
    min_nights: int = MIN_NIGHTS,
    fallback: int = FALLBACK_DAYS,
) -> Lateness:
    """The distribution of `resyncs` (one app's) and the lookback it suggests."""
    facts = list(resyncs)
    ages = distribution(facts)
    nights = len({r.run_day for r in facts if r.nightly})
    changes = sum(a.changed for a in ages)
    measured = smallest_lookback(ages, coverage)
    at_edge = bool(ages) and ages[-1].changed > 0
    share = f"{float(coverage) * 100:g} %"
    if nights < min_nights:
        lookback, enough = fallback, False
        reason = (
            f"too little history: {_plural(nights, 'nightly run')} with re-syncs, "
            f"{min_nights} needed; the default {fallback} days"
        )
    elif measured is None:
        lookback, enough = fallback, False
        reason = (
            f"no change seen after a date's first sync in {_plural(nights, 'night')}; "
            f"the default {fallback} days"
        )
    else:
        lookback, enough = _clamp(measured), True
        reason = (
            f"{share} of {_plural(changes, 'changed row')} were seen within "
            f"{_plural(measured, 'day')} of their billing date, over {_plural(nights, 'night')}"
        )
    return Lateness(ages, nights, changes, measured, lookback, enough, reason, at_edge)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def widest(measurements: Iterable[Lateness]) -> int:
    """The lookback that serves every app of a fleet (they share one plan): the largest of
    their suggestions; FALLBACK_DAYS for none."""
    return max((m.lookback_days for m in measurements), default=FALLBACK_DAYS)
