"""`taskbox-sync status`: what ran, what is stored, what needs attention (read-only).

The queries are sync.db.status's; this module draws their results as the status screen, the
one-run detail (`--run ID`) and the one monitoring line (`--check`). Times in China time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Any

from sync import planner
from sync.cli.tables import table
from sync.db import database, status
from sync.db.connect import open_engine
from sync.db.status import DateSummary, IncompleteDate, PartitionInfo, RunInfo, StatusReport
from sync.errors import SettingsError
from sync.settings import Settings

ERROR_CELLS = 60  # display cells of an error message in a table (the platform's are Chinese)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("status", help="recent runs, per-date sync state, problems")
    p.add_argument("--run", type=int, metavar="ID", help="one run and its partitions")
    p.add_argument(
        "--check",
        action="store_true",
        help="one line for monitoring; exit 1 when a date nears the end of the 90-day reach "
        "or the last nightly run failed",
    )
    p.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else embedded)")
    p.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_status(settings, run_id=args.run, check_only=args.check))


async def _status(settings: Settings, *, run_id: int | None, check_only: bool) -> int:
    today = planner.shanghai_today(time.time())
    async with open_engine(settings) as db, database.connection(db) as conn:
        if run_id is not None:
            detail = await status.run_detail(conn, run_id)
            if detail is None:
                raise SettingsError(f"--run {run_id}: no such run")
            print(render_run_detail(*detail))
            return 0
        if check_only:
            ok, problems = await status.check(conn, today)
            print("OK" if ok else "PROBLEM: " + "; ".join(problems))
            return 0 if ok else 1
        report = await status.collect_status(conn, today)
        print(render_status(report))
        return 0


# -- rendering ------------------------------------------------------------------------------


def _time(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(planner.SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _duration(run: RunInfo) -> str:
    if run.finished_at is None:
        return "-"
    seconds = round((run.finished_at - run.started_at).total_seconds())
    minutes, rest = divmod(seconds, 60)
    return f"{minutes // 60}:{minutes % 60:02}:{rest:02}"


RUN_HEADERS = (
    *("run", "kind", "status", "started", "took", "done", "failed", "skipped"),
    *("fetched", "inserted", "updated", "removed", "calls", "error"),
)
PARTITION_HEADERS = (
    *("date", "publish window (China time)", "scope", "status", "run", "pages"),
    *("fetched", "inserted", "updated", "removed", "err_no", "log_id", "error"),
)


def _run_cells(r: RunInfo) -> tuple[object, ...]:
    start = (r.id, r.kind, r.status, _time(r.started_at), _duration(r))
    done = (f"{r.partitions_done}/{r.partitions_total}", r.partitions_failed, r.partitions_skipped)
    rows = (r.rows_fetched, r.rows_inserted, r.rows_updated, r.rows_removed, r.api_calls)
    return (*start, *done, *rows, r.error or "")


def render_runs(runs: Sequence[RunInfo]) -> str:
    """The runs as a table."""
    if not runs:
        return "no runs recorded"
    cells = [_run_cells(r) for r in runs]
    error = len(RUN_HEADERS) - 1
    return table(RUN_HEADERS, cells, right={0, *range(5, 13)}, limits={error: ERROR_CELLS})


def _partition_cells(p: PartitionInfo) -> tuple[object, ...]:
    window = f"{planner.shanghai_text(p.window_start)} .. {planner.shanghai_text(p.window_end)}"
    start = (p.billing_date, window, p.scope or "-", p.status, p.run_id, p.pages)
    rows = (p.rows_fetched, p.rows_inserted, p.rows_updated, p.rows_removed)
    error = ("-" if p.err_no is None else p.err_no, p.last_log_id or "-")
    return (*start, *rows, *error, p.error or "")


def render_partitions(partitions: Sequence[PartitionInfo]) -> str:
    """Partitions as a table (windows in China time)."""
    if not partitions:
        return "none"
    cells = [_partition_cells(p) for p in partitions]
    error = len(PARTITION_HEADERS) - 1
    return table(PARTITION_HEADERS, cells, right=range(4, 10), limits={error: ERROR_CELLS})


def render_run_detail(run: RunInfo, partitions: Sequence[PartitionInfo]) -> str:
    """One run: its summary line, its parameters and API figures, then its partitions."""
    qps = "-" if run.qps_used is None else f"{run.qps_used} calls/s"
    params = json.dumps(run.params, ensure_ascii=False, sort_keys=True)
    about = f"app {run.app_id}; params {params}; throttled {run.throttled}; "
    about += f"retries {run.retries}; {qps}; {run.rows_unchanged} rows unchanged"
    return "\n\n".join([render_runs([run]), about, render_partitions(partitions)])


def render_dates(dates: Sequence[DateSummary]) -> str:
    """Billing dates: last full sync and stored rows."""
    rows = [(d.billing_date, _time(d.last_synced_at), d.rows) for d in dates]
    return table(("billing date", "last full sync", "rows"), rows, right={2})


def render_incomplete(items: Sequence[IncompleteDate]) -> str:
    """Incomplete billing dates, with the days they have left."""
    if not items:
        return "none"
    rows = [(i.billing_date, i.days_left, i.reason) for i in items]
    return table(("billing date", "days left", "reason"), rows, right={1})


def render_status(report: StatusReport) -> str:
    """The whole status screen as plain text."""
    verdict = "OK" if report.ok else "PROBLEMS"
    head = [f"taskbox-sync status for {report.today} (times in China time): {verdict}"]
    never = "Billing dates never completely synced (within the 90-day reach)"
    sections = [
        ("Recent runs", render_runs(report.runs)),
        ("Recent billing dates", render_dates(report.dates)),
        (never, render_incomplete(report.incomplete)),
        ("Failed partitions not yet made good", render_partitions(report.failures)),
    ]
    body = [f"\n{title}\n{text}" for title, text in sections]
    return "\n".join([*head, *(f"  ! {p}" for p in report.problems), *body]) + "\n"
