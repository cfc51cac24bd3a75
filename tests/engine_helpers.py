"""Helpers for engine tests: run a sync against a sandbox and compare the table with its truth."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.db.database import create_engine
from sync.db.schema import video_daily_earnings
from sync.pipeline.engine import run_app
from sync.pipeline.runs import RunOptions, RunResult
from sync.sandbox import SandboxServer
from sync.settings import Secret, Settings

# Rejections that would mean the client broke the platform's rules (must never appear).
RULE_BREAKS = {"invalid_param", "start_too_early", "page_size_too_large", "throttled"}


def sandbox_settings(sandbox: SandboxServer, database_url: str, **changes: Any) -> Settings:
    cfg = sandbox.config
    settings = Settings(
        database_url=Secret(database_url),
        client_key=cfg.client_key,
        client_secret=Secret(cfg.client_secret),
        open_base_url=sandbox.base_url,
        developer_base_url=sandbox.base_url,
        app_id=cfg.app_id,
        app_secret=Secret(cfg.app_secret),
    )
    return replace(settings, **changes)


def yesterday() -> dt.date:
    return planner.shanghai_today(time.time()) - dt.timedelta(days=1)


def recent_dates(count: int, *, skip: int = 0) -> list[dt.date]:
    last = yesterday() - dt.timedelta(days=skip)
    return [last - dt.timedelta(days=i) for i in reversed(range(count))]


async def run_sync(
    settings: Settings,
    dates: list[dt.date],
    *,
    kind: str = "backfill",
    plan: planner.Plan | None = None,
    now: float | None = None,
    **options: Any,
) -> RunResult:
    assert settings.database_url is not None
    db = create_engine(settings.database_url.reveal(), pool_size=24)
    try:
        the_plan = plan or planner.plan(dates, now if now is not None else time.time())
        return await run_app(db, settings, RunOptions(kind=kind, **options), the_plan)
    finally:
        await db.dispose()


def _row_as_truth(row: Any) -> dict[str, Any]:
    doc = dict(row._mapping)
    publish = doc.pop("publish_time")
    doc["publish_time"] = None if publish is None else int(publish.timestamp())
    data_date = doc.pop("data_date")
    doc["date"] = None if data_date is None else data_date.isoformat()
    return doc


_COMPARED = [
    c
    for c in video_daily_earnings.c
    if c.name not in ("billing_date", "extra", "first_synced_at", "last_synced_at", "last_run_id")
]


def _storable(value: Any) -> Any:
    """What PostgreSQL can hold of a text: NUL and lone surrogates replaced (as the mapper does)."""
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


async def table_rows(engine: AsyncEngine, billing_date: dt.date) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(
            select(*_COMPARED).where(video_daily_earnings.c.billing_date == billing_date)
        )
        return [_row_as_truth(r) for r in result]


def _key(doc: dict[str, Any]) -> tuple[int, int]:
    return (doc["video_id"], doc["task_id"])


async def assert_table_is_truth(
    engine: AsyncEngine,
    sandbox: SandboxServer,
    dates: list[dt.date],
    now: float,
    **filters: Any,
) -> int:
    """Every billing date's rows equal the sandbox's answer over the reachable publish range."""
    total = 0
    start = planner.earliest_start(now)
    for d in dates:
        truth = sandbox.truth(d, start, planner.day_end(d), **filters)
        expected = {_key(t): {k: _storable(v) for k, v in t.items()} for t in truth}
        actual_rows = await table_rows(engine, d)
        actual = {_key(r): {k: _storable(v) for k, v in r.items()} for r in actual_rows}
        assert len(actual_rows) == len(actual), f"{d}: duplicate keys in the table"
        missing = expected.keys() - actual.keys()
        extra = actual.keys() - expected.keys()
        assert not missing, f"{d}: {len(missing)} rows missing"
        assert not extra, f"{d}: {len(extra)} rows the platform does not report"
        for key, want in expected.items():
            assert actual[key] == want, f"{d} {key}: {actual[key]} != {want}"
        total += len(expected)
    return total


def assert_no_rule_breaks(sandbox: SandboxServer) -> None:
    rejected = sandbox.stats()["rejected"]
    broken = {k: v for k, v in rejected.items() if k in RULE_BREAKS}
    assert not broken, f"the client broke the platform's rules: {broken}"
