"""The queue's commands: `worker` (run jobs, optionally enqueue the nightly on a cron) and
`enqueue nightly|backfill` (defer one job per app); and the queue's lines of `status`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from typing import Any

from sync import planner
from sync.apps import load_apps_file, secrets_of_apps
from sync.cli.flags import add_apps_file_flag, add_database_flag
from sync.cli.jobs import (
    _date,
    _int_in,
    add_outage_flag,
    backfill_dates,
    metrics_path,
    nightly_dates,
    secrets_of,
)
from sync.db.connect import open_engine
from sync.errors import SettingsError
from sync.logs import configure_logging
from sync.pipeline.runs import RunOptions
from sync.queue import JobSpec, WorkerConfig, enqueue, queue_app, serve
from sync.queue.schedule import check_cron
from sync.queue.status import QueueReport
from sync.queue.worker import DEFAULT_STALL_TIMEOUT, app_ids
from sync.settings import Settings

MAX_WORKER_JOBS = 64
DEFAULT_WORKER_JOBS = 8


def _common(p: argparse.ArgumentParser) -> None:
    add_apps_file_flag(p, "the apps file (TOML)", otherwise="without one, the app of DOUYIN_*")
    add_database_flag(p)


def _seconds(lo: float, hi: float) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not lo <= value <= hi:  # also refuses nan
            raise argparse.ArgumentTypeError(
                f"expected seconds from {lo:g} to {hi:g}, got {text!r}"
            )
        return value

    return parse


def register_worker(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "worker", help="run sync jobs from the job queue (as many workers as you like)"
    )
    p.add_argument(
        "--concurrency",
        type=_int_in(1, MAX_WORKER_JOBS, "a number of jobs"),
        default=DEFAULT_WORKER_JOBS,
        help=f"jobs (apps) run at once by this worker (default {DEFAULT_WORKER_JOBS})",
    )
    p.add_argument(
        "--schedule",
        metavar="CRON",
        help="also enqueue the nightly of every app on this cron, China time (e.g. '30 4 * * *')",
    )
    p.add_argument(
        "--lookback-days",
        type=_int_in(1, 89, "a number of days"),
        default=7,
        help="the nightly's lookback that --schedule enqueues (default 7)",
    )
    p.add_argument(
        "--stall-timeout",
        type=_seconds(2, 3600),
        default=DEFAULT_STALL_TIMEOUT,
        metavar="SECONDS",
        help="a job whose worker sent no heartbeat this long goes back to the queue "
        f"(default {DEFAULT_STALL_TIMEOUT:g})",
    )
    p.add_argument(
        "--db-connections",
        type=_int_in(2, 1000, "a number of connections"),
        metavar="N",
        help="database connections of the worker's runs (default: one per job + 16 writers; "
        "at least one per job + 1); the pool may open 4 more, and the queue 3",
    )
    p.add_argument("--name", help="the worker's name in status (default: host:pid)")
    p.add_argument(
        "--metrics-file",
        type=metrics_path,
        metavar="PATH",
        help="Prometheus metrics of every app's latest job, written again after each job "
        "(node_exporter's textfile collector: a *.prom file in a folder that exists)",
    )
    add_outage_flag(p)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    _common(p)
    p.set_defaults(handler=cmd_worker)


def register_enqueue(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("enqueue", help="put sync jobs on the job queue: one per app")
    kinds = p.add_subparsers(dest="kind", required=True, parser_class=type(p))
    k = kinds.add_parser("nightly", help="re-sync the last N billing dates")
    k.add_argument("--lookback-days", type=_int_in(1, 89, "a number of days"), default=7)
    k.add_argument("--today", type=_date, metavar="YYYY-MM-DD")
    k = kinds.add_parser("backfill", help="sync billing dates FROM..TO inclusive")
    k.add_argument("--from", dest="date_from", type=_date, required=True, metavar="YYYY-MM-DD")
    k.add_argument("--to", dest="date_to", type=_date, required=True, metavar="YYYY-MM-DD")
    for k in kinds.choices.values():
        k.add_argument("--app", action="append", default=[], metavar="ID", help="only this app")
        _common(k)
        k.set_defaults(handler=cmd_enqueue)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    apps = load_apps_file(settings.apps_file).apps if settings.apps_file else ()
    if not apps:
        settings.require_daily_data_credentials()
    configure_logging(args.log_format, secrets=secrets_of(settings) + secrets_of_apps(apps))
    config = WorkerConfig(
        concurrency=args.concurrency,
        stall_timeout=args.stall_timeout,
        schedule=check_cron(args.schedule) if args.schedule else None,
        lookback_days=args.lookback_days,
        db_connections=args.db_connections,
        metrics_file=args.metrics_file,
        options=RunOptions(kind="nightly", db_outage_timeout=args.db_outage_timeout),
        **({"name": args.name} if args.name else {}),
    )
    return asyncio.run(serve(settings, config))


def job_specs(args: argparse.Namespace, settings: Settings, now: float) -> list[JobSpec]:
    """One job per app: the apps of the file (those --app names), else the one app."""
    if args.kind == "nightly":
        today: dt.date = args.today or planner.shanghai_today(now)
        dates = nightly_dates(today, args.lookback_days, now)
    else:
        dates = backfill_dates(args.date_from, args.date_to, now)
    if settings.apps_file is not None:
        ids = [a.id for a in load_apps_file(settings.apps_file, secrets=False).select(args.app)]
    elif args.app:
        raise SettingsError("--app: needs an apps file (--apps FILE or TASKBOX_APPS_FILE)")
    else:
        ids = app_ids(settings)
    return [JobSpec(app, args.kind, dates[0], dates[-1]) for app in ids]


def cmd_enqueue(args: argparse.Namespace, settings: Settings) -> int:
    specs = job_specs(args, settings, time.time())

    async def run() -> list[str]:
        async with open_engine(settings, pool_size=1) as db:
            app = queue_app(db.url.render_as_string(hide_password=False), pool_size=2)
            async with app.open_async():
                return [d.describe() for d in await enqueue(app, specs)]

    for line in asyncio.run(run()):
        print(line)
    return 0


# -- status ---------------------------------------------------------------------------------


def _when(moment: dt.datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(planner.SHANGHAI).strftime("%m-%d %H:%M:%S")


def render_queue(report: QueueReport, now: dt.datetime) -> str:
    """The queue's part of the status screen: a line per app with jobs, and the workers."""
    lines = [f"\nJob queue ({report.workers_alive} workers alive)"]
    if not report.apps:
        lines.append("no jobs waiting, running or failed lately")
    for app in report.apps:
        parts = []
        for job in app.running:
            parts.append(f"running job {job.id} {job.kind} {job.dates} on {job.worker or '?'}")
        for job in app.waiting:
            due = "" if job.due is None or job.due <= now else f", due {_when(job.due)}"
            retry = f", attempt {job.attempts + 1}" if job.attempts else ""
            parts.append(f"waiting job {job.id} {job.kind} {job.dates}{retry}{due}")
        for job in app.failed[-3:]:
            parts.append(f"failed job {job.id} {job.kind} {job.dates}: {job.error or '?'}")
        if len(app.failed) > 3:
            parts.append(f"{len(app.failed) - 3} more failed")
        lines.append(f"  {app.app_id}: " + "; ".join(parts))
    return "\n".join(lines)
