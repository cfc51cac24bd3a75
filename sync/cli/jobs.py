"""The job commands: nightly, backfill, status, demo (and the talent commands' registration)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sync import planner
from sync.apps import AppConfig, load_apps_file, secrets_of_apps, settings_for
from sync.cli.exits import fleet_exit_status, run_exit_status
from sync.cli.summary import render_fleet, render_result
from sync.db.connect import open_engine
from sync.errors import DateBound, DateRangeError, SettingsError
from sync.logs import configure_logging
from sync.pipeline.engine import run_app
from sync.pipeline.fleet import (
    DEFAULT_APPS_AT_ONCE,
    FLEET_BUFFER_ROWS,
    POOL_TIMEOUT,
    FleetApp,
    FleetResult,
    pool_size,
    run_fleet,
)
from sync.pipeline.outage import DEFAULT_OUTAGE_TIMEOUT
from sync.pipeline.runs import DEFAULT_BUFFER_ROWS, DEFAULT_CONCURRENCY, RunOptions, RunResult
from sync.settings import MAX_QPS, Settings, parse_qps

MAX_CONCURRENCY = 64


def _int_in(lo: int, hi: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} from {lo} to {hi}, got {value}")
        return value

    return parse


def outage_seconds(text: str) -> float:
    """--db-outage-timeout: seconds, 0 (do not wait) to a day."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 86_400:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 86400, got {text!r}")
    return value


def add_outage_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db-outage-timeout",
        type=outage_seconds,
        default=DEFAULT_OUTAGE_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for a lost database before stopping "
        f"(default {DEFAULT_OUTAGE_TIMEOUT:g})",
    )


def _date(text: str) -> dt.date:
    """--from, --to, --today: a strict YYYY-MM-DD date."""
    try:
        return planner.parse_date(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _qps(text: str) -> float:
    try:
        return parse_qps(text, "--qps")
    except Exception as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--qps: ")) from None


def _add_sync_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--douyin-id", help="only this creator's videos (API filter)")
    p.add_argument("--agency-client-key", help="only this agency's videos (API filter)")
    p.add_argument("--qps", type=_qps, help=f"requests per second, at most {MAX_QPS:g}")
    p.add_argument("--page-size", type=_int_in(1, 10_000, "a page size"), default=10_000)
    p.add_argument(
        "--concurrency",
        type=_int_in(1, MAX_CONCURRENCY, "a number of partitions in flight"),
        default=DEFAULT_CONCURRENCY,
        help="partitions in flight (each holds a database connection once its first answer is "
        "in, until it commits)",
    )
    p.add_argument(
        "--buffer-rows",
        type=_int_in(1_000, 10_000_000, "a number of rows"),
        help="rows held in memory at once, fetched but not yet written (~1.5 KB each; default "
        f"{DEFAULT_BUFFER_ROWS}, with an apps file {FLEET_BUFFER_ROWS}, shared by its apps)",
    )
    p.add_argument(
        "--apps",
        dest="apps_file",
        type=Path,
        metavar="FILE",
        help="sync every app of this apps file (TOML; default: $TASKBOX_APPS_FILE)",
    )
    p.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="ID",
        help="only this app of the apps file (repeatable)",
    )
    p.add_argument(
        "--apps-at-once",
        type=_int_in(1, 256, "a number of apps"),
        default=DEFAULT_APPS_AT_ONCE,
        help=f"apps synced at the same time (default {DEFAULT_APPS_AT_ONCE})",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; call and write nothing")
    p.add_argument("--restart", action="store_true", help="do not resume an unfinished run")
    add_outage_flag(p)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL, else embedded)")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add the job commands to the CLI's subparsers."""
    p = sub.add_parser("nightly", help="re-sync the last N billing dates (for cron)")
    p.add_argument("--lookback-days", type=_int_in(1, 89, "a number of days"), default=7)
    p.add_argument(
        "--today",
        type=_date,
        metavar="YYYY-MM-DD",
        help="the day to count back from (default: today in China time)",
    )
    _add_sync_flags(p)
    p.set_defaults(handler=cmd_nightly)

    p = sub.add_parser("backfill", help="sync billing dates FROM..TO inclusive")
    p.add_argument("--from", dest="date_from", type=_date, required=True, metavar="YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", type=_date, required=True, metavar="YYYY-MM-DD")
    _add_sync_flags(p)
    p.set_defaults(handler=cmd_backfill)

    from sync.cli import demo  # each command registers its own flags
    from sync.cli import queue as queue_cmd
    from sync.cli import status as status_cmd
    from sync.cli import talents as talents_cmd

    status_cmd.register(sub)
    demo.register(sub)
    talents_cmd.register(sub)
    queue_cmd.register(sub)  # worker, enqueue (#16)


# How each command's flags name the bounds of its dates in the planner's messages.
_BACKFILL_NAMES = {DateBound.FIRST: "--from", DateBound.LAST: "--to"}
_NIGHTLY_NAMES = {
    DateBound.FIRST: "billing date",
    DateBound.LAST: "billing date",
    DateBound.LOOKBACK: "--lookback-days",
}


def nightly_dates(today: dt.date, lookback_days: int, now: float) -> list[dt.date]:
    """The billing dates of a nightly (--today, --lookback-days), refused in the flags' words."""
    try:
        first, last = planner.nightly_dates(today, lookback_days)
        return planner.check_billing_dates(first, last, now)
    except DateRangeError as exc:
        # The dates come from two flags: say which produced the date refused.
        flags = {
            DateBound.FIRST: f"--today {today} --lookback-days {lookback_days}: ",
            DateBound.LAST: f"--today {today}: ",
        }.get(exc.bound, "")
        raise SettingsError(flags + exc.worded(_NIGHTLY_NAMES)) from None


def backfill_dates(first: dt.date, last: dt.date, now: float) -> list[dt.date]:
    """The billing dates of a backfill (--from, --to), refused in the flags' words."""
    try:
        return planner.check_billing_dates(first, last, now)
    except DateRangeError as exc:
        raise SettingsError(exc.worded(_BACKFILL_NAMES)) from None


def cmd_nightly(args: argparse.Namespace, settings: Settings) -> int:
    now = time.time()
    today: dt.date = args.today or planner.shanghai_today(now)
    return _sync("nightly", args, settings, nightly_dates(today, args.lookback_days, now), now)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    now = time.time()
    return _sync("backfill", args, settings, backfill_dates(args.date_from, args.date_to, now), now)


def options_from(kind: str, args: argparse.Namespace) -> RunOptions:
    return RunOptions(
        kind=kind,
        page_size=args.page_size,
        concurrency=args.concurrency,
        buffer_rows=args.buffer_rows or DEFAULT_BUFFER_ROWS,
        douyin_id=args.douyin_id or None,
        agency_client_key=args.agency_client_key or None,
        restart=args.restart,
        db_outage_timeout=args.db_outage_timeout,
    )


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value, for the log scrubber."""
    values = [settings.client_secret, settings.access_token, settings.app_secret]
    out = [v.reveal() for v in values if v]
    if settings.database_url is not None:
        from sqlalchemy.engine import make_url

        password = make_url(settings.database_url.reveal()).password
        if password:
            out.append(str(password))
    return out


def _sync(
    kind: str, args: argparse.Namespace, settings: Settings, dates: list[Any], now: float
) -> int:
    if settings.apps_file is not None:
        return _sync_apps(kind, args, settings, settings.apps_file, dates, now)
    if args.app:
        raise SettingsError("--app: needs an apps file (--apps FILE or TASKBOX_APPS_FILE)")
    configure_logging(args.log_format, secrets=secrets_of(settings))
    plan = planner.plan(dates, now)
    options = options_from(kind, args)
    if args.dry_run:
        for line in planner.describe(plan, settings.qps):
            print(line)
        return 0
    settings.require_daily_data_credentials()
    result = asyncio.run(run_sync(settings, options, plan))
    print(render_result(result))
    if result.stop_error is not None:  # the database stayed away, or the lock was taken
        raise result.stop_error  # the CLI prints it as the one line, with its exit status
    return run_exit_status(result)


def _sync_apps(
    kind: str,
    args: argparse.Namespace,
    settings: Settings,
    apps_file: Path,
    dates: list[Any],
    now: float,
) -> int:
    """The apps of an apps file (those --app names, else all), in one process."""
    apps = load_apps_file(apps_file).select(args.app)
    configure_logging(args.log_format, secrets=secrets_of(settings) + secrets_of_apps(apps))
    plan = planner.plan(dates, now)
    options = options_from(kind, args)
    if args.buffer_rows is None:
        options = dataclasses.replace(options, buffer_rows=FLEET_BUFFER_ROWS)
    if args.dry_run:
        for line in describe_apps(plan, apps, settings):
            print(line)
        return 0
    fleet = [FleetApp(app.id, settings_for(settings, app)) for app in apps]
    result = asyncio.run(run_apps(settings, fleet, options, plan, args.apps_at_once))
    print(render_fleet(result))
    return fleet_exit_status(result)


def describe_apps(plan: planner.Plan, apps: Sequence[AppConfig], settings: Settings) -> list[str]:
    """The dry run of several apps: one line per app, then the plan they share."""
    lines = [f"{len(apps)} apps, each with this plan under its own limiter:"]
    for app in apps:
        qps = app.qps or settings.qps
        lines.append(
            f"  app {app.id}: {len(plan.partitions)} partitions, at least {plan.min_calls} calls,"
            f" ~{plan.min_seconds(qps):.0f}s at {qps:g} QPS ({app.auth})"
        )
    return lines + planner.describe(plan, settings.qps)


async def run_apps(
    settings: Settings,
    apps: Sequence[FleetApp],
    options: RunOptions,
    plan: planner.Plan,
    apps_at_once: int,
) -> FleetResult:
    """Several apps over one database pool: a lock connection per app running, and writers.
    Partitions take a connection only to write, so waiting for one is normal: no pool timeout
    short enough to fail a partition."""
    at_once = min(apps_at_once, len(apps))
    pool = pool_size(at_once, options.concurrency)
    async with open_engine(settings, pool_size=pool, pool_timeout=POOL_TIMEOUT) as db:
        return await run_fleet(db, apps, options, plan, apps_at_once=at_once)


async def run_sync(settings: Settings, options: RunOptions, plan: planner.Plan) -> RunResult:
    async with open_engine(settings, pool_size=options.concurrency + 2) as db:
        return await run_app(db, settings, options, plan)
