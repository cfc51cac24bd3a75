"""The queue's commands: `worker` (run jobs, optionally enqueue the nightly on a cron) and
`enqueue nightly|backfill` (defer one job per app); and the queue's lines of `status`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time

from sync import planner
from sync.apps import load_apps_file, secrets_of_apps
from sync.cli.jobs import (
    backfill_dates,
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
from sync.queue.worker import app_ids
from sync.settings import Settings


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
