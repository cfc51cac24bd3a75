"""`status --format json` after real syncs of two apps: one JSON document on stdout with the
same content as the text screens (all apps, `--app`, `--check`, `--run`), its keys as the
README documents them, and `--check`'s exit statuses unchanged.

The CLI reads the wall clock, so these tests' `clock` is the wall clock (marked `wall_clock`)."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db.schema import video_daily_earnings
from sync.sandbox import SandboxServer
from tests.helpers import (
    REPO,
    CliResult,
    Clock,
    MakeSandbox,
    cli_env,
    partitions,
    run_cli,
    run_sync,
    runs,
    sandbox_settings,
)

pytestmark = pytest.mark.wall_clock

README = (REPO / "README.md").read_text()
RUN_KEYS = {
    *("id", "kind", "app_id", "params", "status", "started_at", "finished_at"),
    *("partitions_total", "partitions_done", "partitions_failed", "partitions_skipped"),
    *("rows_fetched", "rows_inserted", "rows_updated", "rows_unchanged", "rows_removed"),
    *("rows_rejected", "rows_foreign", "api_calls", "throttled", "retries", "qps_used"),
    *("error", "duration_seconds"),
}
APP_KEYS = {
    *("app_id", "ok", "problems", "attention", "running", "last_nightly", "last_run", "rows"),
    *("rows_foreign", "incomplete_dates", "failed_partitions", "recent_dates"),
}


@pytest.fixture
async def healthy(make_sandbox: MakeSandbox) -> SandboxServer:
    return await make_sandbox(seed=41, videos=120, tasks=4, creators=10)


@pytest.fixture
async def refused(make_sandbox: MakeSandbox) -> SandboxServer:
    """An app without the data-analysis grant: its nightly run fails (28001018)."""
    return await make_sandbox(seed=42, videos=60, tasks=3, capability=False)


@pytest.fixture
async def synced(
    healthy: SandboxServer, refused: SandboxServer, database_url: str, clock: Clock
) -> dict[str, str]:
    """Two apps synced for real: tt_a's dates nearest the reach's edge and its last two days
    (nothing needs attention), tt_b's nightly run refused; the CLI's environment."""
    now = clock()
    edge = [clock.today - dt.timedelta(days=i) for i in range(89, 82, -1)]
    a = sandbox_settings(healthy, database_url, app="tt_a")
    assert (await run_sync(a, edge, now=now)).status == "succeeded"
    nightly = await run_sync(a, clock.recent_dates(2), now=now, kind="nightly")
    assert nightly.status == "succeeded"
    b = sandbox_settings(refused, database_url, app="tt_b")
    assert (await run_sync(b, clock.recent_dates(2), now=now, kind="nightly")).status == "failed"
    return cli_env(healthy, database_url)


async def _json(*args: str, env: dict[str, str]) -> tuple[CliResult, dict[str, Any]]:
    """The command's result and its stdout parsed as one JSON document (nothing on stderr)."""
    result = await run_cli("status", *args, "--format", "json", env=env)
    assert result.err_lines == [], result
    return result, json.loads(result.stdout)


def _table_section(text: str, title: str) -> list[str]:
    """The lines of a section of the text screen, below its title, header and rule."""
    block = text.split(f"\n{title}\n", 1)[1].split("\n\n", 1)[0]
    return block.splitlines()[2:]


async def test_status_json_has_the_text_screens_content(
    synced: dict[str, str], engine: AsyncEngine, clock: Clock
) -> None:
    """`status --format json` is one document with the text screen's verdict, problems, apps,
    runs, dates and failures, under the documented keys."""
    text = await run_cli("status", env=synced)
    result, doc = await _json(env=synced)
    assert result.status == text.status == 0
    assert (doc["version"], doc["kind"], doc["today"]) == (1, "status", clock.today.isoformat())
    verdict = text.stdout.splitlines()[0].rsplit(": ", 1)[1]
    assert doc["ok"] is (verdict == "OK") is False
    shown = [line[4:] for line in text.stdout.splitlines() if line.startswith("  ! ")]
    assert doc["problems"] == shown and shown

    apps = {a["app_id"]: a for a in doc["apps"]}
    assert list(apps) == ["tt_a", "tt_b"]
    for app in apps.values():
        assert set(app) == APP_KEYS
        assert app["problems"] == [
            p.removeprefix(f"app {app['app_id']}: ")
            for p in doc["problems"]
            if p.startswith(f"app {app['app_id']}: ")
        ]
    a, b = apps["tt_a"], apps["tt_b"]
    assert (a["ok"], a["problems"], a["running"]) == (True, [], False)
    assert a["last_nightly"]["status"] == "succeeded" and a["last_nightly"]["kind"] == "nightly"
    assert b["last_nightly"]["status"] == "failed" and "28001018" in b["last_nightly"]["error"]
    assert any("ended failed" in p for p in b["problems"])
    async with engine.connect() as conn:
        stored = await conn.scalar(
            select(func.count()).where(video_daily_earnings.c.app_id == "tt_a")
        )
    assert a["rows"] == stored and stored > 0 and b["rows"] == 0

    line = {row.split()[0]: row.split() for row in _table_section(text.stdout, "Apps")}
    for app_id, app in apps.items():
        assert int(line[app_id][-1]) == app["rows"]
        # ... incomplete, nearest leaves ("-" or "DATE in N days"), failed, rows
        incomplete = line[app_id][-7 if app["incomplete_dates"] else -4]
        assert len(app["incomplete_dates"]) == int(incomplete)
    assert len(b["incomplete_dates"]) == 89
    assert b["incomplete_dates"][0] == {
        "billing_date": (clock.today - dt.timedelta(days=89)).isoformat(),
        "days_left": 1,
        "reason": "never synced",
    }

    recorded = list(reversed(await runs(engine)))
    assert [r["id"] for r in doc["runs"]] == [r.id for r in recorded]
    for got, row in zip(doc["runs"], recorded, strict=True):
        assert set(got) == RUN_KEYS
        assert got["status"] == row.status and got["rows_inserted"] == row.rows_inserted
        assert dt.datetime.fromisoformat(got["started_at"]) == row.started_at.replace(microsecond=0)
        assert got["started_at"].endswith("+08:00")
    assert [d["billing_date"] for d in a["recent_dates"]] == [
        (clock.today - dt.timedelta(days=i)).isoformat() for i in range(7, 0, -1)
    ]
    assert [d["rows"] > 0 for d in a["recent_dates"]] == [False] * 5 + [True] * 2
    assert a["failed_partitions"] == b["failed_partitions"] == []


async def test_status_json_for_one_app_and_one_run(
    synced: dict[str, str], engine: AsyncEngine
) -> None:
    """`--app` narrows the document as it narrows the screen; `--run ID` gives the run and its
    partitions with their windows in China time."""
    _, doc = await _json("--app", "tt_b", env=synced)
    assert [a["app_id"] for a in doc["apps"]] == ["tt_b"]
    assert {r["app_id"] for r in doc["runs"]} == {"tt_b"}
    assert all(p.startswith("app tt_b: ") for p in doc["problems"])

    nightly = next(r for r in await runs(engine) if r.app_id == "tt_a" and r.kind == "nightly")
    _, detail = await _json("--run", str(nightly.id), env=synced)
    assert detail["kind"] == "run" and detail["run"]["id"] == nightly.id
    stored = sorted(await partitions(engine, nightly.id), key=lambda p: p.id)
    got = sorted(detail["partitions"], key=lambda p: p["id"])
    assert [p["id"] for p in got] == [p.id for p in stored]
    for p, row in zip(got, stored, strict=True):
        assert dt.datetime.fromisoformat(p["window_end"]) == row.window_end
        assert p["window_start"].endswith("+08:00")
        assert (p["billing_date"], p["status"], p["rows_inserted"]) == (
            row.billing_date.isoformat(),
            "done",
            row.rows_inserted,
        )
    unknown = await run_cli("status", "--run", "999999", "--format", "json", env=synced)
    assert unknown.status == 2 and unknown.stdout == "" and len(unknown.err_lines) == 1


async def test_check_json_keeps_the_exit_statuses(synced: dict[str, str]) -> None:
    """`--check --format json` exits as `--check` does (1 when an app needs attention, 0 when
    none does) and carries the same problems, overall and per app."""
    text = await run_cli("status", "--check", env=synced)
    result, doc = await _json("--check", env=synced)
    assert text.status == result.status == 1
    assert text.stdout.strip() == "PROBLEM: " + "; ".join(doc["problems"])
    assert (doc["kind"], doc["ok"]) == ("check", False)
    assert [(a["app_id"], a["ok"]) for a in doc["apps"]] == [("tt_a", True), ("tt_b", False)]
    assert doc["apps"][1]["problems"] == [p.removeprefix("app tt_b: ") for p in doc["problems"]]

    fine_text = await run_cli("status", "--check", "--app", "tt_a", env=synced)
    fine, fine_doc = await _json("--check", "--app", "tt_a", env=synced)
    assert (fine_text.status, fine_text.stdout.strip()) == (0, "OK")
    assert fine.status == 0
    assert fine_doc["ok"] is True and fine_doc["problems"] == []


async def test_usage_errors_are_one_line(synced: dict[str, str]) -> None:
    """An unknown format, or two modes at once, is one line on stderr and exit 2."""
    for args in (("--format", "yaml"), ("--check", "--lateness")):
        result = await run_cli("status", *args, env=synced)
        assert result.status == 2 and len(result.err_lines) == 1, result


def test_the_readme_documents_every_key() -> None:
    """Every key of the status, check, run and lateness documents is named in the README."""
    section = README.split("### `status --format json`", 1)[1].split("\n## ", 1)[0]
    keys = RUN_KEYS | APP_KEYS | {"version", "kind", "today", "ok", "problems", "apps", "runs"}
    keys |= {"billing_date", "days_left", "reason", "last_full_sync", "window_start", "window_end"}
    keys |= {"lookback_days", "measured_days", "enough_history", "nights", "rows_changed"}
    keys |= {"oldest_age", "changes_at_oldest_age", "ages", "age", "resyncs", "coverage"}
    keys |= {"min_nights", "fallback_days", "run", "partitions"}
    missing = sorted(k for k in keys if not re.search(rf"`{k}`", section))
    assert missing == []
