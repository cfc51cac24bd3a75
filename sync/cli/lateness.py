"""The measured lookback on the command line: `status --lateness` (text and JSON) and the
resolution of `nightly --lookback-days auto` into a number before anything is planned.

The measurement is sync.lateness's (pure), read from the ledger by sync.db.lateness.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from sync import lateness
from sync.cli.status_json import JSON_VERSION
from sync.cli.tables import table
from sync.db import database
from sync.db.connect import open_engine
from sync.db.lateness import app_lateness
from sync.lateness import Lateness
from sync.settings import Settings


@dataclass(frozen=True, slots=True)
class LatenessReport:
    """What `status --lateness` shows: each app's measurement, for `today` (China time)."""

    today: dt.date
    apps: list[tuple[str, Lateness]]


async def collect_lateness(
    conn: AsyncConnection, today: dt.date, app_ids: Sequence[str]
) -> LatenessReport:
    """The apps' measurements."""
    return LatenessReport(today, [(a, await app_lateness(conn, a)) for a in app_ids])


async def resolve_auto(settings: Settings, app_ids: Sequence[str]) -> tuple[int, str]:
    """`--lookback-days auto` for these apps (one plan for all): the widest of their suggested
    lookbacks, and one line saying what it rests on."""
    async with open_engine(settings) as db, database.connection(db) as conn:
        measured = [(a, await app_lateness(conn, a)) for a in app_ids]
    days = lateness.widest(m for _, m in measured)
    if len(measured) == 1:
        return days, f"--lookback-days auto: {_days(days)} ({measured[0][1].reason})"
    each = "; ".join(
        f"{a} {m.lookback_days}{'' if m.enough else ' (default)'}" for a, m in measured
    )
    return days, f"--lookback-days auto: {_days(days)}, the widest of the apps' ({each})"


# -- text -------------------------------------------------------------------------------------


def _percent_down(part: int, whole: int) -> str:
    """A share rounded down to 0.1 %: a running share below 99.9 % never shows as 99.9 %."""
    return "-" if whole == 0 else f"{1000 * part // whole / 10:.1f} %"


def _days(n: int) -> str:
    return f"{n} day{'' if n == 1 else 's'}"


def render_app(app_id: str, m: Lateness) -> str:
    """One app: its suggestion and why, its ages as a table, and a note when changes were still
    seen at the oldest age any run looked at."""
    verdict = "suggested" if m.enough else "(the default: too little to measure)"
    lines = [f"app {app_id}: lookback {_days(m.lookback_days)} {verdict}", f"  {m.reason}"]
    if not m.ages:
        lines.append("  no re-sync recorded yet: a date counts once a later run syncs it again")
        return "\n".join(lines)
    cells: list[tuple[object, ...]] = []
    running = 0
    for a in m.ages:
        running += a.changed
        share = _percent_down(a.changed, m.changes)
        cells.append((a.age, a.resyncs, a.changed, share, _percent_down(running, m.changes)))
    headers = ("age (days)", "re-syncs", "rows changed", "share", "within age")
    lines.append(table(headers, cells, right=range(5)))
    if m.at_edge and m.oldest_age is not None:
        wider = min(max(m.oldest_age * 4, 30), lateness.MAX_LOOKBACK)
        lines.append(
            f"note: rows still changed at age {m.oldest_age}, the oldest any run re-synced; later "
            f"changes go unseen: run `nightly --lookback-days {wider}` now and then to look further"
        )
    return "\n".join(lines)


def render_lateness(report: LatenessReport) -> str:
    """The lateness screen: every app's measurement."""
    share = f"{float(lateness.COVERAGE) * 100:g} %"
    head = (
        f"taskbox-sync lateness for {report.today} (China time): how many days after its "
        f"billing date\na date's rows still changed, and the smallest lookback that caught "
        f"{share} of the changes"
    )
    if not report.apps:
        return head + "\n\nno apps recorded\n"
    return "\n\n".join([head, *(render_app(a, m) for a, m in report.apps)]) + "\n"


# -- JSON ----------------------------------------------------------------------------------


def app_document(app_id: str, m: Lateness) -> dict[str, Any]:
    """One app's measurement as JSON values (keys documented in the README)."""
    return {
        "app_id": app_id,
        "lookback_days": m.lookback_days,
        "measured_days": m.measured,
        "enough_history": m.enough,
        "reason": m.reason,
        "nights": m.nights,
        "rows_changed": m.changes,
        "oldest_age": m.oldest_age,
        "changes_at_oldest_age": m.at_edge,
        "ages": [{"age": a.age, "resyncs": a.resyncs, "rows_changed": a.changed} for a in m.ages],
    }


def lateness_document(report: LatenessReport) -> dict[str, Any]:
    """`status --lateness --format json`."""
    return {
        "version": JSON_VERSION,
        "kind": "lateness",
        "today": report.today.isoformat(),
        "coverage": float(lateness.COVERAGE),
        "min_nights": lateness.MIN_NIGHTS,
        "fallback_days": lateness.FALLBACK_DAYS,
        "apps": [app_document(a, m) for a, m in report.apps],
    }
