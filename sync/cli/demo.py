"""`taskbox-sync demo`: the main job end to end with no account and no setup.

Embedded PostgreSQL (a database of its own, so demo rows never mix with real ones) + the sandbox
in process, serving several apps + migrate + a backfill of every billing date the API lets us
see, for every app in one process (the last one as a service provider's merchant, its tokens
from the provider's) + a check of each app's rows against its own truth + the status summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import time
from typing import Any

from sqlalchemy import func, select

from sync import planner
from sync.api.http import Timeouts, new_session
from sync.apps import AppConfig, Auth, settings_for
from sync.cli.apps import authorize_app, token_factory
from sync.cli.exits import fleet_exit_status
from sync.cli.jobs import terminal_progress
from sync.cli.status_text import render_status
from sync.cli.summary import render_fleet
from sync.db import database
from sync.db.connect import resolve_database_url
from sync.db.database import create_engine, ensure_database, migrate
from sync.db.schema import video_daily_earnings
from sync.db.status import collect_status
from sync.db.vault import Sealer, new_key
from sync.errors import SettingsError
from sync.logs import configure_logging
from sync.pipeline.defaults import DEMO_APPS
from sync.pipeline.fleet import POOL_TIMEOUT, FleetApp, pool_size, run_fleet
from sync.pipeline.runs import RunOptions
from sync.sandbox import SandboxConfig, SandboxServer
from sync.sandbox.credentials import AppCredentials
from sync.settings import ProviderSettings, Secret, Settings

DEMO_DATABASE = "taskbox_demo"

WARM_DATES = planner.MAX_LOOKBACK // planner.DAY  # the API's reach, the dates the demo syncs
WARM_ROWS = 1_000_000  # at most ~600 MB of rendered rows


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    if not 2 <= args.apps <= 64 or args.videos < 0:
        raise SettingsError("demo: --apps from 2 to 64 and --videos from 0, please")
    configure_logging(args.log_format)
    return asyncio.run(
        run_demo(
            settings, videos=args.videos, seed=args.seed, apps=args.apps, log_format=args.log_format
        )
    )


async def run_demo(
    settings: Settings,
    *,
    videos: int,
    seed: int,
    apps: int = DEMO_APPS,
    log_format: str = "text",
) -> int:
    server_url, embedded = await resolve_database_url(settings)
    url = await ensure_database(server_url, DEMO_DATABASE) if embedded else server_url
    # Every date rendered before the run when it fits (~600 bytes a row): rendered lazily, a
    # date's first request holds the shared event loop ~5 ms, which delays the sandbox's arrival
    # stamps of other requests and makes its busiest second read 11 where ours left 10.
    warm = apps * videos * WARM_DATES <= WARM_ROWS
    cache = apps * (WARM_DATES + 2) if warm else SandboxConfig.cache_dates
    config = SandboxConfig(seed=seed, videos=videos, apps=apps, cache_dates=cache)
    async with SandboxServer(config) as sandbox:
        if warm:
            for app in sandbox.apps:
                sandbox.warm(app=app.client_key)
        print(f"sandbox: serving {sandbox.base_url} ({apps} apps of {videos} videos, seed {seed})")
        base = settings.replace(
            open_base_url=sandbox.base_url, developer_base_url=sandbox.base_url, access_token=None
        )
        configs = [
            AppConfig(
                id=app.app_id,
                client_key=app.client_key,
                client_secret=Secret(app.client_secret),
                app_secret=Secret(app.app_secret),
                talents_app_id=app.app_id,
            )
            for app in sandbox.apps[:-1]
        ]
        configs.append(_provider_merchant(sandbox))
        fleet = [FleetApp(app.id, settings_for(base, app)) for app in configs]
        now = time.time()
        dates = _visible_dates(now)
        plan = planner.plan(dates, now)
        print(
            f"plan: {len(dates)} billing dates ({dates[0]} .. {dates[-1]}), "
            f"{len(plan.partitions)} partitions and at least {plan.min_calls} calls per app, "
            f"~{plan.min_seconds(base.qps):.0f}s at {base.qps:g} QPS (each app its own)"
        )
        options = RunOptions(kind="backfill")
        db = create_engine(
            url, pool_size=pool_size(apps, options.concurrency), pool_timeout=POOL_TIMEOUT
        )
        try:
            await migrate(db)
            sealer = Sealer(settings.secret_key or Secret(new_key()))
            async with new_session(Timeouts()) as session:
                merchant = configs[-1]
                refresh_token = sandbox.authorize(merchant.id)  # the merchant grants us
                await authorize_app(
                    db, session, base.open_base_url, merchant, sealer, refresh_token
                )
            print(
                f"provider: app {merchant.id} is a service provider's merchant: its refresh "
                "token stored sealed, its tokens from the provider's component token"
            )
            bar = terminal_progress(log_format, apps=apps, plan=plan)
            async with bar or contextlib.nullcontext():
                result = await run_fleet(
                    db,
                    fleet,
                    options,
                    plan,
                    apps_at_once=apps,
                    tokens=token_factory(sealer, db),
                    progress=bar,
                )
            print(render_fleet(result))
            mismatches = 0
            for app in sandbox.apps:
                bad = await _verify(db, sandbox, app, plan, now)
                mismatches += bad
                peak = sandbox.stats(app.client_key)["daily_data_peak_per_second"]
                verdict = (
                    f"{bad} billing dates differ from its truth"
                    if bad
                    else f"equals its truth for all {len(dates)} dates"
                )
                print(f"verify: app {app.app_id}: {verdict}; busiest second {peak} requests")
            async with database.connection(db) as conn:
                report = await collect_status(conn, planner.shanghai_today(now))
                print(render_status(report))
        finally:
            await db.dispose()
    return 1 if mismatches else fleet_exit_status(result)


def _provider_merchant(sandbox: SandboxServer) -> AppConfig:
    """The sandbox's last app, synced as its service provider's merchant (`auth = "provider"`):
    the ticket as given here; a real provider reads it from a file its receiver rewrites."""
    app = sandbox.apps[-1]
    provider = ProviderSettings(
        component_appid=sandbox.provider.component_appid,
        component_secret=Secret(sandbox.provider.component_appsecret),
        ticket=Secret(sandbox.component_ticket()),
    )
    return AppConfig(
        id=app.app_id, auth=Auth.PROVIDER, provider=provider, talents_app_id=app.app_id
    )


def _visible_dates(now: float) -> list[dt.date]:
    """Every billing date the API can serve now: the oldest in reach .. yesterday."""
    last = planner.shanghai_today(now) - dt.timedelta(days=1)
    return planner.check_billing_dates(planner.earliest_billing_date(now), last, now)


async def _verify(
    db: Any, sandbox: SandboxServer, app: AppCredentials, plan: planner.Plan, now: float
) -> int:
    """Billing dates whose row count for the app differs from what the sandbox would return.

    Only rows published within the API's reach count: an earlier demo's rows whose publish time
    has since passed the 90-day edge stay in the table (no window covers them, so the mirror
    never removes them), and the platform no longer reports them."""
    start = planner.earliest_start(now)
    v = video_daily_earnings
    async with database.connection(db) as conn:
        rows = await conn.execute(
            select(v.c.billing_date, func.count())
            .where(v.c.app_id == app.app_id)
            .where(v.c.publish_time >= dt.datetime.fromtimestamp(start, dt.UTC))
            .group_by(v.c.billing_date)
        )
        counts = {d: n for d, n in rows}
    bad = 0
    for d in plan.billing_dates:
        expected = len(sandbox.truth(d, start, planner.day_end(d), app=app.client_key))
        if counts.get(d, 0) != expected:
            bad += 1
    return bad
