"""`taskbox-sync demo`: the main job end to end with no account and no setup.

Embedded PostgreSQL (a database of its own, so demo rows never mix with real ones) + the sandbox
in process + migrate + a backfill of every billing date the API lets us see + a check of the
table against the sandbox's truth + the status summary.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time
from typing import Any

from sqlalchemy import func, select

from sync import planner
from sync.cli.exits import run_exit_status
from sync.cli.status import render_status
from sync.cli.summary import render_result
from sync.db import database
from sync.db.connect import resolve_database_url
from sync.db.database import create_engine, ensure_database, migrate
from sync.db.schema import video_daily_earnings
from sync.db.status import collect_status
from sync.logs import configure_logging
from sync.pipeline.engine import run_app
from sync.pipeline.runs import RunOptions
from sync.sandbox import SandboxConfig, SandboxServer
from sync.settings import Secret, Settings

DEMO_DATABASE = "taskbox_demo"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("demo", help="backfill from the built-in sandbox into embedded Postgres")
    p.add_argument("--videos", type=int, default=2000, help="sandbox size (default 2000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--database-url", help="use this PostgreSQL instead of the embedded one")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    configure_logging(args.log_format)
    return asyncio.run(run_demo(settings, videos=args.videos, seed=args.seed))


async def run_demo(settings: Settings, *, videos: int, seed: int) -> int:
    server_url, embedded = await resolve_database_url(settings)
    url = await ensure_database(server_url, DEMO_DATABASE) if embedded else server_url
    config = SandboxConfig(seed=seed, videos=videos)
    async with SandboxServer(config) as sandbox:
        print(f"sandbox: serving {sandbox.base_url} ({videos} videos, seed {seed})")
        demo_settings = settings.replace(
            open_base_url=sandbox.base_url,
            developer_base_url=sandbox.base_url,
            client_key=config.client_key,
            client_secret=Secret(config.client_secret),
            access_token=None,
            app_id=config.app_id,
            app_secret=Secret(config.app_secret),
        )
        now = time.time()
        dates = _visible_dates(now)
        plan = planner.plan(dates, now)
        print(
            f"plan: {len(dates)} billing dates ({dates[0]} .. {dates[-1]}), "
            f"{len(plan.partitions)} partitions, at least {plan.min_calls} calls, "
            f"~{plan.min_seconds(demo_settings.qps):.0f}s at {demo_settings.qps:g} QPS"
        )
        options = RunOptions(kind="backfill")
        db = create_engine(url, pool_size=options.concurrency + 2)
        try:
            await migrate(db)
            result = await run_app(db, demo_settings, options, plan)
            print(render_result(result))
            mismatches = await _verify(db, sandbox, plan, now)
            stats = sandbox.stats()
            print(
                f"sandbox: {stats['daily_data_peak_per_second']} requests in the busiest second; "
                f"rejected answers: {stats['rejected'] or 'none'}"
            )
            if mismatches:
                print(f"verify: {mismatches} billing dates differ from the sandbox's truth")
            else:
                print(f"verify: the table equals the sandbox's truth for all {len(dates)} dates")
            async with database.connection(db) as conn:
                report = await collect_status(conn, planner.shanghai_today(now))
                print(render_status(report))
        finally:
            await db.dispose()
    return 1 if mismatches else run_exit_status(result)


def _visible_dates(now: float) -> list[dt.date]:
    """Every billing date the API can serve now: the oldest in reach .. yesterday."""
    last = planner.shanghai_today(now) - dt.timedelta(days=1)
    return planner.check_billing_dates(planner.earliest_billing_date(now), last, now)


async def _verify(db: Any, sandbox: SandboxServer, plan: planner.Plan, now: float) -> int:
    """Billing dates whose row count differs from what the sandbox would return."""
    start = planner.earliest_start(now)
    bad = 0
    async with database.connection(db) as conn:
        rows = await conn.execute(
            select(video_daily_earnings.c.billing_date, func.count()).group_by(
                video_daily_earnings.c.billing_date
            )
        )
        counts = {d: n for d, n in rows}
    for d in plan.billing_dates:
        expected = len(sandbox.truth(d, start, planner.day_end(d)))
        if counts.get(d, 0) != expected:
            bad += 1
    return bad
