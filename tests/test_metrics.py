"""Metrics (#17): `--metrics-file PATH` writes the Prometheus text format for node_exporter's
textfile collector, atomically, per app: the last success (from the ledger, kept when a run
fails), the run's duration, rows, calls, throttled answers, failed partitions, and the dates
about to leave the 90-day reach unsynced. Read back with prometheus_client's own parser."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.db.database import create_engine
from sync.metrics import AppMetrics, RunFigures, write_metrics, write_textfile
from sync.pipeline.fleet import FleetApp, run_fleet
from sync.pipeline.runs import RunOptions
from sync.sandbox import SandboxServer
from sync.sandbox.credentials import AppCredentials
from sync.settings import Secret
from tests.helpers import (
    Clock,
    MakeSandbox,
    backfill_args,
    cli_env,
    run_cli,
    runs,
    sandbox_settings,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def read_metrics(path: Path) -> Samples:
    """Every sample of the file: (name, labels) -> value, parsed by prometheus_client."""
    samples: Samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge", family
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((f"taskbox_sync_{name}", frozenset(labels.items())))


@pytest.fixture
async def sandbox(make_sandbox: MakeSandbox) -> SandboxServer:
    """~60 rows a billing date: runs of a second."""
    return await make_sandbox(seed=5, videos=80, tasks=4, creators=10)


@pytest.mark.wall_clock
async def test_a_backfill_writes_its_metrics_and_a_failed_run_keeps_the_last_success(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock, tmp_path: Path
) -> None:
    """After a backfill the file holds the app's run figures as the ledger has them and its last
    success; a later run refused by the platform rewrites the file atomically (a new file
    renamed over it: a hard link to the old one still reads the old text, no temporary file is
    left), with outcome failed and the last success still the ledger's."""
    path = tmp_path / "taskbox.prom"
    env = cli_env(sandbox, database_url)
    app = sandbox.config.client_key
    done = await run_cli(
        *backfill_args(clock.recent_dates(2), "--metrics-file", str(path)), env=env
    )
    assert done.status == 0, done
    (run,) = await runs(engine)
    samples = read_metrics(path)
    key = {"app_id": app, "kind": "backfill"}
    assert value(samples, "last_success_timestamp_seconds", **key) == pytest.approx(
        run.finished_at.timestamp()
    )
    assert value(samples, "run_outcome", **key, outcome="done") == 1
    duration = value(samples, "run_duration_seconds", **key)
    assert duration is not None and 0 < duration < 60
    for change in ("inserted", "updated", "removed"):
        got = value(samples, "run_rows", **key, change=change)
        assert got == getattr(run, f"rows_{change}"), change
    assert value(samples, "run_rows", **key, change="inserted") == run.rows_fetched > 0
    assert value(samples, "run_api_calls", **key) == run.api_calls > 0
    assert value(samples, "run_throttled", **key) == 0
    assert value(samples, "run_failed_partitions", **key) == 0
    # Never synced, the 7 oldest dates the API still serves are about to be lost.
    assert value(samples, "dates_near_edge_unsynced", app_id=app) == 7

    old = tmp_path / "old.prom"
    os.link(path, old)
    before = path.read_text()
    env["DOUYIN_CLIENT_SECRET"] = "not-the-secret-0042"
    refused = await run_cli(
        *backfill_args(clock.recent_dates(2), "--metrics-file", str(path)), env=env
    )
    assert refused.status == 2, refused
    assert old.read_text() == before and os.stat(old).st_ino != os.stat(path).st_ino
    assert sorted(os.listdir(tmp_path)) == ["old.prom", "taskbox.prom"]
    samples = read_metrics(path)
    assert value(samples, "run_outcome", **key, outcome="failed") == 1
    assert value(samples, "last_success_timestamp_seconds", **key) == pytest.approx(
        run.finished_at.timestamp()
    )
    assert value(samples, "run_duration_seconds", **key) is None  # no run started


@pytest.fixture
async def two_apps(make_sandbox: MakeSandbox) -> SandboxServer:
    return await make_sandbox(seed=9, videos=40, tasks=3, creators=6, apps=2)


def _credentials(app: AppCredentials) -> dict[str, Any]:
    return {
        "app": app.app_id,
        "client_key": app.client_key,
        "client_secret": Secret(app.client_secret),
    }


async def test_write_metrics_takes_a_fleets_outcomes(
    two_apps: SandboxServer, database_url: str, clock: Clock, tmp_path: Path
) -> None:
    """`write_metrics`, as a worker calls it, writes each app of a fleet apart; syncing the
    dates nearest the edge clears that app's count of dates about to be lost."""
    first, second = two_apps.apps
    apps = [
        FleetApp(a.app_id, sandbox_settings(two_apps, database_url, **_credentials(a)))
        for a in (first, second)
    ]
    now = clock()
    today = planner.shanghai_today(now)
    edge = [today - dt.timedelta(days=89 - i) for i in range(7)]  # the 7 dates nearest the edge
    db = create_engine(database_url, pool_size=8)
    try:
        options = RunOptions(kind="backfill", page_size=50, concurrency=4)
        result = await run_fleet(db, apps[:1], options, planner.plan(edge, now))
        recent = await run_fleet(db, apps[1:], options, planner.plan(clock.recent_dates(1), now))
        path = tmp_path / "fleet.prom"
        written = await write_metrics(path, result.apps + recent.apps, db, kind="backfill", now=now)
    finally:
        await db.dispose()
    assert [a.app_id for a in written] == [first.app_id, second.app_id]
    samples = read_metrics(path)
    assert value(samples, "dates_near_edge_unsynced", app_id=first.app_id) == 0
    assert value(samples, "dates_near_edge_unsynced", app_id=second.app_id) == 7
    for a in (first, second):
        assert value(samples, "run_outcome", app_id=a.app_id, kind="backfill", outcome="done") == 1


def test_the_text_is_prometheus_text_with_the_documented_names(tmp_path: Path) -> None:
    """Values in, text out: every documented metric, typed gauge, with its labels; an app whose
    run never started has no run figures; nothing else in the registry (no process metrics)."""
    apps = [
        AppMetrics(
            "tt_a", "nightly", "done", 1_800_000_000.0,
            RunFigures(12.5, 10, 2, 1, 30, 0, 0), {"nightly": 1_800_000_000.0}, 0,
        ),
        AppMetrics("tt_b", "nightly", "locked", 1_800_000_000.0, None, {}, None),
    ]  # fmt: skip
    path = tmp_path / "x.prom"
    write_textfile(path, apps)
    names = {f.name for f in text_string_to_metric_families(path.read_text())}
    assert names == {
        f"taskbox_sync_{n}"
        for n in (
            "last_success_timestamp_seconds", "run_outcome", "run_end_timestamp_seconds",
            "run_duration_seconds", "run_rows", "run_api_calls", "run_throttled",
            "run_failed_partitions", "dates_near_edge_unsynced",
        )
    }  # fmt: skip
    samples = read_metrics(path)
    assert value(samples, "run_outcome", app_id="tt_b", kind="nightly", outcome="locked") == 1
    assert not [k for k in samples if dict(k[1]).get("app_id") == "tt_b" and "run_rows" in k[0]]
    assert value(samples, "run_rows", app_id="tt_a", kind="nightly", change="updated") == 2


@pytest.mark.parametrize(
    ("path", "fragment"), [("metrics.txt", "ending in .prom"), ("/nonexistent/x.prom", "no such")]
)
async def test_a_bad_metrics_path_is_a_usage_error(path: str, fragment: str, clock: Clock) -> None:
    """A path node_exporter would not read, or in a folder that does not exist, is refused
    before anything runs: exit 2, one line."""
    result = await run_cli(
        *backfill_args(clock.recent_dates(1), "--metrics-file", path), env=cli_env(None, "")
    )
    assert result.status == 2 and len(result.err_lines) == 1, result
    assert fragment in result.err_lines[0], result
