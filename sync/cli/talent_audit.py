"""The audit of roster changes: one talent_operations row per creator outcome (`Outcome`),
each batch's rows written before the next batch goes, through a database outage (`Audit`); past
the outage limit the rows are printed on stderr instead, for an operator to add."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db import database
from sync.db.schema import talent_operations
from sync.errors import DatabaseUnavailable
from sync.pipeline.outage import DatabaseGate
from sync.talents.roster import Operation, Verdict


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one creator: one printed line and one talent_operations row."""

    douyin_id: str
    ok: bool
    status: Verdict
    reason: str
    error_code: int | None = None
    log_id: str | None = None


@dataclasses.dataclass(slots=True)
class Audit:
    """Writes talent_operations rows, waiting through a database outage (`gate`); past the
    limit the rows are printed instead and `lost` says why."""

    engine: AsyncEngine
    gate: DatabaseGate
    task_id: int
    op: Operation
    third: str | None
    app_id: str
    lost: DatabaseUnavailable | None = None
    printed: int = 0

    def values(self, rows: list[Outcome]) -> list[dict[str, Any]]:
        return [
            {
                "app_id": self.app_id,
                "task_id": self.task_id,
                "douyin_id": o.douyin_id,
                "operation": self.op,
                "ok": o.ok,
                "outcome": o.reason,
                "error_code": o.error_code,
                "log_id": o.log_id,
                "third_appid": self.third,
            }
            for o in rows
        ]

    async def record(self, rows: list[Outcome]) -> None:
        if not rows:
            return
        values = self.values(rows)
        if self.lost is None:
            tries = 0

            async def write() -> None:
                nonlocal tries
                tries += 1
                await insert_rows(self.engine, values, again=tries > 1)

            try:
                await self.gate.run(write)
                return
            except DatabaseUnavailable as exc:
                self.lost = exc
        self.print(values)

    def print(self, values: list[dict[str, Any]]) -> None:
        """One JSON object per row on stderr, for an operator to add to talent_operations."""
        at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        for v in values:
            row = {"table": "talent_operations", "created_at": at, **v}
            row["task_id"] = str(v["task_id"])  # a 64-bit id: exact in any JSON reader
            print(json.dumps(row, ensure_ascii=False), file=sys.stderr, flush=True)
            self.printed += 1


async def insert_rows(engine: AsyncEngine, values: list[dict[str, Any]], *, again: bool) -> None:
    """Insert audit rows; `again` after an outage hit the last try, whose commit may have
    happened: rows of an answer (log_id) already there are not written twice."""
    async with database.connection(engine) as conn, conn.begin():
        if again:
            t = talent_operations
            keys = [v for v in values if v["log_id"] is not None]
            if keys:
                match = or_(
                    *(
                        and_(
                            t.c.task_id == v["task_id"],
                            t.c.douyin_id == v["douyin_id"],
                            t.c.operation == v["operation"],
                            t.c.log_id == v["log_id"],
                        )
                        for v in keys
                    )
                )
                found = await conn.execute(select(t.c.douyin_id, t.c.log_id).where(match))
                done = {(r.douyin_id, r.log_id) for r in found}
                values = [v for v in values if (v["douyin_id"], v["log_id"]) not in done]
        if values:
            await conn.execute(insert(talent_operations), values)
