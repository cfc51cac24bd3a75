"""Prometheus metrics of sync runs, written for node_exporter's textfile collector.

    write_metrics(path, outcomes, db)
      the ledger: each app's last successful run (per kind), its dates nearing the 90-day edge
      still incomplete ─► this run's figures per app ─► `AppMetrics` ─► a fresh registry
      ─► prometheus_client.write_to_textfile: a temporary file beside `path`, then a rename

`nightly`/`backfill --metrics-file PATH` call it once the apps' runs are over; a worker calls it
per job. The last success of an app that did not succeed this time is the ledger's (its last
successful run's finish), so it keeps its value whatever the old file held. `registry_of` and
`write_textfile` are pure of the database: values in, text out. The names, labels and alert
rules are in the README (*Metrics*).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync import planner
from sync.db import database, status, status_rules
from sync.db.schema import sync_runs
from sync.db.statuses import RunStatus
from sync.errors import DatabaseError, DatabaseUnavailable
from sync.pipeline.fleet import AppOutcome

log = logging.getLogger(__name__)

PREFIX = "taskbox_sync"
NEAR_EDGE_DAYS = status_rules.WARN_DAYS_LEFT  # an incomplete date this close to leaving the reach


@dataclasses.dataclass(frozen=True, slots=True)
class RunFigures:
    """What one app's run did (absent when no run started: locked, credentials refused)."""

    duration: float
    rows_inserted: int
    rows_updated: int
    rows_removed: int
    api_calls: int
    throttled: int
    failed_partitions: int


@dataclasses.dataclass(frozen=True, slots=True)
class AppMetrics:
    """One app's metrics: this run's outcome and figures, and what the ledger knows."""

    app_id: str
    kind: str  # nightly | backfill: the run's
    outcome: str  # done | partial | failed | locked | interrupted
    ended_at: float  # Unix seconds: when this run (or its attempt) ended
    run: RunFigures | None
    last_success: dict[str, float]  # per kind: the last successful run's finish, Unix seconds
    dates_near_edge: int | None  # incomplete dates within NEAR_EDGE_DAYS of the edge; None: unread


def figures_of(outcome: AppOutcome) -> RunFigures | None:
    """The run figures of an app's outcome, if a run started."""
    result = outcome.result
    if result is None:
        return None
    c = result.counts
    return RunFigures(
        duration=result.elapsed,
        rows_inserted=c.rows_inserted,
        rows_updated=c.rows_updated,
        rows_removed=c.rows_removed,
        api_calls=c.api_calls,
        throttled=c.throttled,
        failed_partitions=c.partitions_failed,
    )


def registry_of(apps: Sequence[AppMetrics]) -> CollectorRegistry:
    """A fresh registry holding the apps' metrics (nothing else: no process or GC collectors)."""
    registry = CollectorRegistry(auto_describe=True)

    def gauge(name: str, doc: str, *labels: str) -> Gauge:
        return Gauge(f"{PREFIX}_{name}", doc, ["app_id", *labels], registry=registry)

    last_success = gauge(
        "last_success_timestamp_seconds",
        "When the app's last successful run of this kind finished (from the ledger).",
        "kind",
    )
    outcome = gauge("run_outcome", "1 for how the app's latest run ended.", "kind", "outcome")
    ended = gauge("run_end_timestamp_seconds", "When the app's latest run ended.", "kind")
    duration = gauge("run_duration_seconds", "How long the app's latest run took.", "kind")
    rows = gauge("run_rows", "Rows the app's latest run changed, by change.", "kind", "change")
    calls = gauge("run_api_calls", "Requests the app's latest run sent.", "kind")
    throttled = gauge("run_throttled", "Throttled answers the app's latest run met.", "kind")
    failed = gauge(
        "run_failed_partitions", "Partitions the app's latest run could not sync.", "kind"
    )
    near_edge = gauge(
        "dates_near_edge_unsynced",
        f"Billing dates not completely synced that leave the API's 90-day reach within "
        f"{NEAR_EDGE_DAYS} days: their data is about to be lost.",
    )
    for app in apps:
        for kind, at in sorted(app.last_success.items()):
            last_success.labels(app.app_id, kind).set(at)
        outcome.labels(app.app_id, app.kind, app.outcome).set(1)
        ended.labels(app.app_id, app.kind).set(app.ended_at)
        if app.dates_near_edge is not None:
            near_edge.labels(app.app_id).set(app.dates_near_edge)
        run = app.run
        if run is None:
            continue
        duration.labels(app.app_id, app.kind).set(run.duration)
        for change, n in (
            ("inserted", run.rows_inserted),
            ("updated", run.rows_updated),
            ("removed", run.rows_removed),
        ):
            rows.labels(app.app_id, app.kind, change).set(n)
        calls.labels(app.app_id, app.kind).set(run.api_calls)
        throttled.labels(app.app_id, app.kind).set(run.throttled)
        failed.labels(app.app_id, app.kind).set(run.failed_partitions)
    return registry


def write_textfile(path: Path, apps: Sequence[AppMetrics]) -> None:
    """Write the apps' metrics to `path` atomically (prometheus_client writes a temporary file
    in the same folder, then renames it over `path`)."""
    write_to_textfile(str(path), registry_of(apps))


async def last_successes(conn: AsyncConnection, apps: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per app, per kind: when its last successful run finished (Unix seconds)."""
    r = sync_runs
    result = await conn.execute(
        select(r.c.app_id, r.c.kind, func.max(r.c.finished_at))
        .where(r.c.app_id.in_(list(apps)), r.c.status == RunStatus.SUCCEEDED)
        .group_by(r.c.app_id, r.c.kind)
    )
    out: dict[str, dict[str, float]] = {}
    for app_id, kind, finished in result:
        if finished is not None:
            out.setdefault(app_id, {})[kind] = finished.timestamp()
    return out


async def dates_near_edge(conn: AsyncConnection, app_id: str, today: dt.date) -> int:
    """The app's incomplete billing dates that leave the reach within NEAR_EDGE_DAYS days."""
    earliest = today - dt.timedelta(days=planner.MAX_NIGHTLY_LOOKBACK)
    incomplete = await status.incomplete_dates(conn, today, earliest, app_id=app_id)
    return sum(1 for d in incomplete if d.days_left <= NEAR_EDGE_DAYS)


async def collect(
    db: AsyncEngine, outcomes: Sequence[AppOutcome], kind: str, *, now: float
) -> list[AppMetrics]:
    """The apps' metrics: their outcomes, with what the ledger knows. A ledger that cannot be
    read (the database went away) leaves those values out, with a warning."""
    ids = [o.app_id for o in outcomes]
    today = planner.shanghai_today(now)
    successes: dict[str, dict[str, float]] = {}
    near: dict[str, int] = {}
    try:
        async with database.connection(db) as conn:
            successes = await last_successes(conn, ids)
            for app_id in ids:
                near[app_id] = await dates_near_edge(conn, app_id, today)
    except (DatabaseUnavailable, DatabaseError) as exc:
        log.warning("metrics: the ledger could not be read (%s); written without it", exc)
    return [
        AppMetrics(
            app_id=o.app_id,
            kind=kind,
            outcome=str(o.outcome),
            ended_at=now,
            run=figures_of(o),
            last_success=successes.get(o.app_id, {}),
            dates_near_edge=near.get(o.app_id),
        )
        for o in outcomes
    ]


async def write_metrics(
    path: Path,
    outcomes: Sequence[AppOutcome],
    db: AsyncEngine,
    *,
    kind: str,
    now: float | None = None,
) -> list[AppMetrics]:
    """Write the metrics of these apps' runs of `kind` to `path` (node_exporter's textfile
    collector reads `*.prom`), reading the ledger through `db`; what was written."""
    apps = await collect(db, outcomes, kind, now=time.time() if now is None else now)
    write_textfile(path, apps)
    return apps
