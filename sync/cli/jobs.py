"""The job commands nightly and backfill: their flags, and their handlers.

The flags are built from light modules only (`taskbox-sync nightly --help` and usage errors
load neither the database nor the HTTP stack); a handler imports the run's modules.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync import planner
from sync.cli import argtypes
from sync.cli.flags import add_apps_file_flag, add_database_flag, add_outage_flag
from sync.errors import DateBound, DateRangeError, SettingsError
from sync.logs import configure_logging
from sync.pipeline.defaults import (
    DEFAULT_APPS_AT_ONCE,
    DEFAULT_BUFFER_ROWS,
    DEFAULT_CONCURRENCY,
    FLEET_BUFFER_ROWS,
)
from sync.settings import MAX_QPS, Settings

if TYPE_CHECKING:  # the parser is built from this module: the run's modules load in handlers
    from sqlalchemy.ext.asyncio import AsyncEngine

    from sync.apps import AppConfig
    from sync.cli.progress_bar import TerminalProgress
    from sync.db.vault import Sealer
    from sync.pipeline.fleet import AppOutcome, FleetApp, FleetResult
    from sync.pipeline.runs import RunOptions, RunResult

MAX_CONCURRENCY = 64
log = logging.getLogger(__name__)


def _add_sync_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--douyin-id", help="only this creator's videos (API filter)")
    p.add_argument("--agency-client-key", help="only this agency's videos (API filter)")
    p.add_argument("--qps", type=argtypes.qps, help=f"requests per second, at most {MAX_QPS:g}")
    p.add_argument("--page-size", type=argtypes.int_in(1, 10_000, "a page size"), default=10_000)
    p.add_argument(
        "--concurrency",
        type=argtypes.int_in(1, MAX_CONCURRENCY, "a number of partitions in flight"),
        default=DEFAULT_CONCURRENCY,
        help="partitions in flight (each holds a database connection once its first answer is "
        "in, until it commits)",
    )
    p.add_argument(
        "--buffer-rows",
        type=argtypes.int_in(1_000, 10_000_000, "a number of rows"),
        help="rows held in memory at once, fetched but not yet written (~1.5 KB each; default "
        f"{DEFAULT_BUFFER_ROWS}, with an apps file {FLEET_BUFFER_ROWS}, shared by its apps)",
    )
    add_apps_file_flag(p, "sync every app of this apps file (TOML)")
    p.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="ID",
        help="only this app of the apps file (repeatable)",
    )
    p.add_argument(
        "--apps-at-once",
        type=argtypes.int_in(1, 256, "a number of apps"),
        default=DEFAULT_APPS_AT_ONCE,
        help=f"apps synced at the same time (default {DEFAULT_APPS_AT_ONCE})",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; call and write nothing")
    p.add_argument("--restart", action="store_true", help="do not resume an unfinished run")
    add_outage_flag(p)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument(
        "--metrics-file",
        type=argtypes.metrics_path,
        metavar="PATH",
        help="write Prometheus metrics there after the run (node_exporter's textfile collector "
        "reads *.prom)",
    )
    add_database_flag(p)


def register_nightly(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `nightly` to the CLI's subparsers."""
    p = sub.add_parser("nightly", help="re-sync the last N billing dates (for cron)")
    p.add_argument(
        "--lookback-days",
        type=argtypes.lookback_days,
        default=7,
        metavar="N|auto",
        help="billing dates to re-sync (1-89, default 7); auto: the lookback the ledger's "
        "re-syncs measured (status --lateness), 7 while there is too little history",
    )
    p.add_argument(
        "--today",
        type=argtypes.date,
        metavar="YYYY-MM-DD",
        help="the day to count back from (default: today in China time)",
    )
    _add_sync_flags(p)
    p.set_defaults(handler=cmd_nightly)


def register_backfill(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `backfill` to the CLI's subparsers."""
    p = sub.add_parser("backfill", help="sync billing dates FROM..TO inclusive")
    p.add_argument(
        "--from", dest="date_from", type=argtypes.date, required=True, metavar="YYYY-MM-DD"
    )
    p.add_argument("--to", dest="date_to", type=argtypes.date, required=True, metavar="YYYY-MM-DD")
    _add_sync_flags(p)
    p.set_defaults(handler=cmd_backfill)


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
    # a number before anything is planned: the planner reads none
    if args.lookback_days == argtypes.AUTO:
        import asyncio

        args.lookback_days, args.lookback_note = asyncio.run(_measured_lookback(args, settings))
    return _sync("nightly", args, settings, nightly_dates(today, args.lookback_days, now), now)


async def _measured_lookback(args: argparse.Namespace, settings: Settings) -> tuple[int, str]:
    """`--lookback-days auto`: the lookback measured for the apps this run syncs (the apps
    file's, those --app names; else the one app of the settings), and what it rests on."""
    from sync.apps import load_apps_file
    from sync.cli.lateness import resolve_auto

    if settings.apps_file is not None:
        ids = [app.id for app in load_apps_file(settings.apps_file, secrets=False).select(args.app)]
    else:
        ids = [settings.recorded_app]
    return await resolve_auto(settings, ids)


def _lookback_note(args: argparse.Namespace) -> None:
    """Say what `--lookback-days auto` chose (in the log's format), if it was used."""
    note = getattr(args, "lookback_note", None)
    if note:
        log.info("%s", note)


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    now = time.time()
    return _sync("backfill", args, settings, backfill_dates(args.date_from, args.date_to, now), now)


def options_from(kind: str, args: argparse.Namespace) -> RunOptions:
    from sync.pipeline.runs import RunOptions

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
    values.append(settings.secret_key)
    if settings.provider is not None:
        values += [settings.provider.component_secret, settings.provider.ticket]
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
    import asyncio

    from sync.cli.exits import run_exit_status
    from sync.cli.summary import render_result

    if settings.apps_file is not None:
        return _sync_apps(kind, args, settings, settings.apps_file, dates, now)
    if args.app:
        raise SettingsError("--app: needs an apps file (--apps FILE or TASKBOX_APPS_FILE)")
    configure_logging(args.log_format, secrets=secrets_of(settings))
    _lookback_note(args)
    plan = planner.plan(dates, now)
    options = options_from(kind, args)
    if args.dry_run:
        for line in planner.describe(plan, settings.qps):
            print(line)
        return 0
    settings.require_daily_data_credentials()
    bar = terminal_progress(args.log_format, apps=1, plan=plan)
    result = asyncio.run(
        run_sync(settings, options, plan, progress=bar, metrics_file=args.metrics_file)
    )
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
    import asyncio

    from sync.apps import load_apps_file, secrets_of_apps, settings_for
    from sync.cli.exits import fleet_exit_status
    from sync.cli.summary import render_fleet
    from sync.pipeline.fleet import FleetApp

    apps = load_apps_file(apps_file).select(args.app)
    configure_logging(args.log_format, secrets=secrets_of(settings) + secrets_of_apps(apps))
    _lookback_note(args)
    plan = planner.plan(dates, now)
    options = options_from(kind, args)
    if args.buffer_rows is None:
        options = dataclasses.replace(options, buffer_rows=FLEET_BUFFER_ROWS)
    if args.dry_run:
        for line in describe_apps(plan, apps, settings):
            print(line)
        return 0
    from sync.cli.apps import provider_sealer

    sealer = provider_sealer(settings, apps)  # a missing key: refused before any call
    fleet = [FleetApp(app.id, settings_for(settings, app)) for app in apps]
    bar = terminal_progress(args.log_format, apps=len(fleet), plan=plan)
    result = asyncio.run(
        run_apps(
            settings,
            fleet,
            options,
            plan,
            args.apps_at_once,
            progress=bar,
            metrics_file=args.metrics_file,
            sealer=sealer,
        )
    )
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
    *,
    progress: TerminalProgress | None = None,
    metrics_file: Path | None = None,
    sealer: Sealer | None = None,
) -> FleetResult:
    """Several apps over one database pool: a lock connection per app running, and writers.
    Partitions take a connection only to write, so waiting for one is normal: no pool timeout
    short enough to fail a partition. `progress`: bars drawn while it runs; `metrics_file`:
    written once every app is over."""
    from sync.cli.apps import token_factory
    from sync.db.connect import open_engine
    from sync.pipeline.fleet import POOL_TIMEOUT, pool_size, run_fleet

    at_once = min(apps_at_once, len(apps))
    pool = pool_size(at_once, options.concurrency)
    async with open_engine(settings, pool_size=pool, pool_timeout=POOL_TIMEOUT) as db:
        tokens = token_factory(sealer, db)
        async with progress or contextlib.nullcontext():
            result = await run_fleet(
                db, apps, options, plan, apps_at_once=at_once, progress=progress, tokens=tokens
            )
        if metrics_file is not None:
            from sync.metrics import write_metrics

            await write_metrics(metrics_file, result.apps, db, kind=options.kind)
        return result


async def run_sync(
    settings: Settings,
    options: RunOptions,
    plan: planner.Plan,
    *,
    progress: TerminalProgress | None = None,
    metrics_file: Path | None = None,
) -> RunResult:
    """One app's run. `progress`: a bar drawn while it runs; `metrics_file`: written after it,
    also when it could not start (locked, credentials refused)."""
    from sync.db.connect import open_engine
    from sync.errors import TaskboxError
    from sync.pipeline.engine import run_app
    from sync.pipeline.fleet import AppOutcome

    async with open_engine(settings, pool_size=options.concurrency + 2) as db:
        try:
            async with progress or contextlib.nullcontext():
                result = await run_app(db, settings, options, plan, progress=progress)
        except TaskboxError as exc:
            if metrics_file is not None:
                outcome = AppOutcome(settings.recorded_app, None, exc)
                await _write_metrics(metrics_file, outcome, db, options.kind)
            raise
        if metrics_file is not None:
            outcome = AppOutcome(settings.recorded_app, result, result.stop_error)
            await _write_metrics(metrics_file, outcome, db, options.kind)
        return result


async def _write_metrics(path: Path, outcome: AppOutcome, db: AsyncEngine, kind: str) -> None:
    from sync.metrics import write_metrics

    await write_metrics(path, [outcome], db, kind=kind)


def terminal_progress(log_format: str, *, apps: int, plan: planner.Plan) -> TerminalProgress | None:
    """Bars on the terminal, when stderr is one and the log is text; else None (the pipeline
    logs progress lines)."""
    if log_format != "text" or not sys.stderr.isatty():
        return None
    from sync.cli.progress_bar import TerminalProgress

    return TerminalProgress(apps=apps, min_calls=plan.min_calls)
