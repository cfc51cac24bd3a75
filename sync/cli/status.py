"""`taskbox-sync status`: what ran, what is stored, what needs attention (read-only).

The queries are sync.db.status's; this module draws their results as the status screen (a line
per app, then the runs, dates and failures of those apps), the one-run detail (`--run ID`) and
the one monitoring line (`--check`, naming each app that needs attention). `--app ID` narrows
all of it to those apps. Times in China time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sync import planner
from sync.apps import load_apps_file
from sync.cli.tables import table
from sync.db import database, status
from sync.db.connect import open_engine
from sync.db.status import AppStatus, PartitionInfo, RunInfo, StatusReport
from sync.errors import SettingsError
from sync.settings import Settings

ERROR_CELLS = 60  # display cells of an error message in a table (the platform's are Chinese)
DETAILED_APPS = 5  # more apps than this: the per-date tables only with --app
SHOWN_FAILURES = 30  # failed partitions listed on the screen


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("status", help="recent runs, per-date sync state, problems")
    p.add_argument("--run", type=int, metavar="ID", help="one run and its partitions")
    p.add_argument(
        "--check",
        action="store_true",
        help="one line for monitoring; exit 1 when an app's date nears the end of the 90-day "
        "reach or its last nightly run failed (the line names the app)",
    )
    p.add_argument(
        "--app",
        action="append",
        dest="apps",
        metavar="ID",
        help="only this app (as the runs record it; repeatable); an unknown app is exit 2",
    )
    p.add_argument(
        "--apps",
        dest="apps_file",
        type=Path,
        metavar="FILE",
        help="also list this apps file's apps that never ran (default: $TASKBOX_APPS_FILE)",
    )
    p.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else embedded)")
    p.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    path = settings.apps_file
    known = [a.id for a in load_apps_file(path, secrets=False).apps] if path else None
    return asyncio.run(
        _status(settings, run_id=args.run, check_only=args.check, only=args.apps, apps=known)
    )


async def _status(
    settings: Settings,
    *,
    run_id: int | None,
    check_only: bool,
    only: Sequence[str] | None = None,
    apps: Sequence[str] | None = None,
) -> int:
    """`apps`: the ids of apps that may never have run (an apps file's); `only`: --app."""
    today = planner.shanghai_today(time.time())
    async with open_engine(settings) as db, database.connection(db) as conn:
        if run_id is not None:
            detail = await status.run_detail(conn, run_id)
            if detail is None:
                raise SettingsError(f"--run {run_id}: no such run")
            if only and detail[0].app_id not in only:
                named = ", ".join(dict.fromkeys(only))
                raise SettingsError(
                    f"--run {run_id} is a run of app {detail[0].app_id}, not {named}"
                )
            print(render_run_detail(*detail))
            return 0
        if check_only:
            ok, problems = await status.check(conn, today, apps=apps, only=only)
            print(render_check(ok, problems))
            return 0 if ok else 1
        report = await status.collect_status(conn, today, apps=apps, only=only)
        print(render_status(report))
        from sync.cli.queue import queue_section  # the job queue (#16)

        print(await queue_section(conn, only))
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
    *("run", "kind", "status", "app", "started", "took", "done", "failed", "skipped"),
    *("fetched", "inserted", "updated", "removed", "calls", "error"),
)
PARTITION_HEADERS = (
    *("date", "publish window (China time)", "scope", "status", "run", "pages"),
    *("fetched", "inserted", "updated", "removed", "err_no", "log_id", "error"),
)


def _run_cells(r: RunInfo) -> tuple[object, ...]:
    start = (r.id, r.kind, r.status, r.app_id, _time(r.started_at), _duration(r))
    done = (f"{r.partitions_done}/{r.partitions_total}", r.partitions_failed, r.partitions_skipped)
    rows = (r.rows_fetched, r.rows_inserted, r.rows_updated, r.rows_removed, r.api_calls)
    return (*start, *done, *rows, r.error or "")


def render_runs(runs: Sequence[RunInfo]) -> str:
    """The runs as a table, each with its app."""
    if not runs:
        return "no runs recorded"
    cells = [_run_cells(r) for r in runs]
    error = len(RUN_HEADERS) - 1
    return table(RUN_HEADERS, cells, right={0, *range(6, 14)}, limits={error: ERROR_CELLS})


def _partition_cells(p: PartitionInfo) -> tuple[object, ...]:
    window = f"{planner.shanghai_text(p.window_start)} .. {planner.shanghai_text(p.window_end)}"
    start = (p.billing_date, window, p.scope or "-", p.status, p.run_id, p.pages)
    rows = (p.rows_fetched, p.rows_inserted, p.rows_updated, p.rows_removed)
    error = ("-" if p.err_no is None else p.err_no, p.last_log_id or "-")
    return (*start, *rows, *error, p.error or "")


def render_partitions(partitions: Sequence[PartitionInfo], *, with_app: bool = False) -> str:
    """Partitions as a table (windows in China time); `with_app` leads each with its app."""
    if not partitions:
        return "none"
    lead = ("app",) if with_app else ()
    cells = [(*((p.app_id,) if with_app else ()), *_partition_cells(p)) for p in partitions]
    headers = (*lead, *PARTITION_HEADERS)
    numbers = range(4 + len(lead), 10 + len(lead))
    return table(headers, cells, right=numbers, limits={len(headers) - 1: ERROR_CELLS})


def render_run_detail(run: RunInfo, partitions: Sequence[PartitionInfo]) -> str:
    """One run: its summary line, its app, parameters and API figures, then its partitions."""
    qps = "-" if run.qps_used is None else f"{run.qps_used} calls/s"
    params = json.dumps(run.params, ensure_ascii=False, sort_keys=True)
    about = f"app {run.app_id}; params {params}; throttled {run.throttled}; "
    about += f"retries {run.retries}; {qps}; {run.rows_unchanged} rows unchanged"
    if run.rows_foreign:
        about += f"; {run.rows_foreign} keys held by another app's rows"
    return "\n\n".join([render_runs([run]), about, render_partitions(partitions)])


def _last(run: RunInfo | None, *, kind: bool) -> str:
    if run is None:
        return "-"
    what = f"{run.kind} {run.status}" if kind else str(run.status)
    return f"{_time(run.started_at)} {what} (run {run.id})"


def _nearest(app: AppStatus) -> str:
    if not app.incomplete:
        return "-"
    first = app.incomplete[0]
    return f"{first.billing_date} in {first.days_left} day{'' if first.days_left == 1 else 's'}"


def render_apps(apps: Sequence[AppStatus]) -> str:
    """One line per app: its last nightly and last run, a run in progress, its incomplete
    dates (the nearest to leaving the reach), unrecovered failures, stored rows, and (when
    any app has some) the keys its last run found held by another app's rows."""
    if not apps:
        return "no apps recorded"
    foreign = any(a.rows_foreign for a in apps)
    headers = ["app", "last nightly", "last run", "running", "incomplete", "nearest leaves"]
    headers += ["failed", "rows", *(["foreign"] if foreign else [])]
    rows = [
        (a.app_id, _last(a.last_nightly, kind=False), _last(a.last_run, kind=True))
        + ("yes" if a.running else "no", len(a.incomplete), _nearest(a), len(a.failures), a.rows)
        + ((a.rows_foreign or "-",) if foreign else ())
        for a in apps
    ]
    return table(headers, rows, right={4, 6, 7, 8})


def render_dates(apps: Sequence[AppStatus]) -> str:
    """The apps' recent billing dates: last full sync and stored rows."""
    rows = [
        (a.app_id, d.billing_date, _time(d.last_synced_at), d.rows) for a in apps for d in a.dates
    ]
    if not rows:
        return "none"
    return table(("app", "billing date", "last full sync", "rows"), rows, right={3})


def render_incomplete(apps: Sequence[AppStatus]) -> str:
    """The apps' incomplete billing dates, with the days they have left."""
    rows = [(a.app_id, i.billing_date, i.days_left, i.reason) for a in apps for i in a.incomplete]
    if not rows:
        return "none"
    return table(("app", "billing date", "days left", "reason"), rows, right={2})


def render_status(report: StatusReport) -> str:
    """The whole status screen as plain text."""
    verdict = "OK" if report.ok else "PROBLEMS"
    head = [f"taskbox-sync status for {report.today} (times in China time): {verdict}"]
    never = "Billing dates never completely synced (within the 90-day reach)"
    failures = [f for a in report.apps for f in a.failures]
    sections = [
        ("Apps", render_apps(report.apps)),
        ("Recent runs", render_runs(report.runs)),
    ]
    if len(report.apps) <= DETAILED_APPS:
        sections += [
            ("Recent billing dates", render_dates(report.apps)),
            (never, render_incomplete(report.apps)),
        ]
    else:  # a line per app and date would bury the apps that need attention
        sections.append(
            ("Billing dates", f"per date for {len(report.apps)} apps: status --app ID (repeatable)")
        )
    failed = render_partitions(failures[:SHOWN_FAILURES], with_app=True)
    if len(failures) > SHOWN_FAILURES:
        failed += f"\n… and {len(failures) - SHOWN_FAILURES} more: status --app ID"
    sections.append(("Failed partitions not yet made good", failed))
    body = [f"\n{title}\n{text}" for title, text in sections]
    return "\n".join([*head, *(f"  ! {p}" for p in report.problems), *body]) + "\n"


def render_check(ok: bool, problems: Sequence[str]) -> str:
    """The one monitoring line: OK, or PROBLEM: and every app's problems ("app ID: ...")."""
    return "OK" if ok else "PROBLEM: " + "; ".join(problems)
