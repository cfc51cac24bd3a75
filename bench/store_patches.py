"""The storage-side experiments of `bench.experiments` (raw staging, plain insert, no nested
loops): wrappers around sync.store, applied in the scenario's process only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

RAW_STAGE = "taskbox_stage_raw"
PT, EP = 10, 19  # publish_time and expected_profit in sync.schema.RECORD_COLUMNS


def raw_record(record: Sequence[Any]) -> tuple[Any, ...]:
    """A record of the engine's mapper in the raw staging form (Unix seconds, profit as text)."""
    values = list(record)
    pt, ep = values[PT], values[EP]
    values[PT] = None if pt is None else int(pt.timestamp())
    values[EP] = None if ep is None else str(ep)
    return tuple(values)


def raw_stage_sql(columns: Sequence[str], target: str, stage: str) -> str:
    cast_in = {
        "publish_time": "extract(epoch FROM publish_time)::bigint AS publish_time",
        "expected_profit": "expected_profit::text AS expected_profit",
    }
    cast_out = {
        "publish_time": "to_timestamp(publish_time) AS publish_time",
        "expected_profit": "expected_profit::numeric AS expected_profit",
    }
    raw = ", ".join(cast_in.get(c, c) for c in columns)
    view = ", ".join(cast_out.get(c, c) for c in columns)
    return (
        f"CREATE TEMP TABLE {RAW_STAGE} ON COMMIT DELETE ROWS AS "
        f"SELECT {raw} FROM {target} WITH NO DATA; "
        f"CREATE TEMP VIEW {stage} AS SELECT {view} FROM {RAW_STAGE}"
    )


class RawCopy:
    """The writer's asyncpg connection, with COPY sent to the raw staging table."""

    def __init__(self, apg: Any) -> None:
        self._apg = apg

    def __getattr__(self, name: str) -> Any:
        return getattr(self._apg, name)

    async def copy_records_to_table(self, table: str, *, records: Any, columns: Any) -> Any:
        rows = list(records)
        if rows and isinstance(rows[0][PT], dt.datetime):  # a page of the engine's own mapper
            rows = [raw_record(r) for r in rows]
        return await self._apg.copy_records_to_table(RAW_STAGE, records=rows, columns=columns)


def plain_insert_merge(original: Callable[..., Any]) -> Callable[..., Any]:
    from sync import store
    from sync.schema import RECORD_COLUMNS, video_daily_earnings

    target = video_daily_earnings.name
    cols = ", ".join(RECORD_COLUMNS)
    insert = (
        f"INSERT INTO {target} ({cols}, first_synced_at, last_synced_at, last_run_id) "
        f"SELECT $1, {', '.join(RECORD_COLUMNS[1:])}, now(), now(), $2 FROM {store.STAGE_TABLE} "
        "ORDER BY video_id, task_id"
    )
    nothing_stored = (
        f"SELECT NOT EXISTS (SELECT 1 FROM {target} "
        "WHERE billing_date = $1 AND publish_time BETWEEN $2 AND $3)"
    )

    async def merge(
        self: Any,
        billing_date: dt.date,
        window_start: int,
        window_end: int,
        *,
        run_id: int,
        douyin_id: str | None = None,
        mirror: bool = True,
    ) -> Any:
        apg = self._apg
        start = dt.datetime.fromtimestamp(window_start, dt.UTC)
        end = dt.datetime.fromtimestamp(window_end, dt.UTC)
        fresh = douyin_id is None and not self._merged and self._dates <= {billing_date}
        if fresh and await apg.fetchval(nothing_stored, billing_date, start, end):
            try:
                async with apg.transaction():  # a savepoint inside the partition's transaction
                    status = await apg.execute(insert, billing_date, run_id)
            except asyncpg.UniqueViolationError:
                pass  # a row stored outside this window: the full merge sorts it out
            else:
                self._merged = True
                inserted = int(status.rsplit(" ", 1)[-1])
                distinct = self._staged - self._repeated
                return store.MergeCounts(
                    self._staged, self._repeated, inserted, 0, distinct - inserted, 0
                )
        return await original(
            self,
            billing_date,
            window_start,
            window_end,
            run_id=run_id,
            douyin_id=douyin_id,
            mirror=mirror,
        )

    return merge


def no_nestloop(original: Callable[..., Any]) -> Callable[..., Any]:
    async def merge(self: Any, *args: Any, **kwargs: Any) -> Any:
        await self._apg.execute("SET LOCAL enable_nestloop = off")
        return await original(self, *args, **kwargs)

    return merge
