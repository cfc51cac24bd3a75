"""The benchmark's database: a fresh `taskbox_bench` on the server of DATABASE_URL (else the
embedded one), table resets between scenarios, and what PostgreSQL's processes spend."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from typing import Any

import psutil  # type: ignore[import-untyped]
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from sync.db.connect import resolve_database_url
from sync.db.database import create_engine, ensure_database, migrate
from sync.settings import Settings, normalize_database_url

DEFAULT_NAME = "taskbox_bench"
_XID = 2**32


async def server_url(explicit: str | None) -> tuple[str, bool]:
    """The asyncpg URL of the server to use, and whether it is the embedded one (started here).

    `explicit` (--database-url), else DATABASE_URL, else the embedded server, as the CLI does.
    """
    if explicit:
        return normalize_database_url(explicit), False
    return await resolve_database_url(Settings.from_env())


async def fresh_database(admin_url: str, name: str) -> str:
    """Drop database `name` if it exists, create it again, migrate it; returns its URL."""
    await drop_database(admin_url, name)
    url = await ensure_database(admin_url, name)
    engine = create_engine(url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    return url


async def drop_database(admin_url: str, name: str) -> None:
    admin = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def execute(url: str, *statements: str, autocommit: bool = False) -> list[Any]:
    """Run statements in order; returns the first column of each one's first row (or None)."""
    options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
    engine = create_async_engine(url, **options)
    results: list[Any] = []
    try:
        async with engine.begin() as conn:
            for sql in statements:
                result = await conn.execute(text(sql))
                row = result.first() if result.returns_rows else None
                results.append(None if row is None else row[0])
    finally:
        await engine.dispose()
    return results


async def terminate_backends(url: str) -> int:
    """End every other session on the database of `url` (a killed run's statements go on
    running in the server otherwise); returns how many were ended."""
    (count,) = await execute(
        url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return int(count)


async def checkpoint(url: str) -> None:
    await execute(url, "CHECKPOINT", autocommit=True)


async def settle(url: str) -> None:
    """Vacuum and analyze as autovacuum would between nightly runs, and checkpoint (not part
    of any timing)."""
    await execute(url, "VACUUM ANALYZE video_daily_earnings", "CHECKPOINT", autocommit=True)


async def current_xid(url: str) -> int:
    """A transaction id: rows written after this call have a newer xmin."""
    (xid,) = await execute(url, "SELECT pg_current_xact_id()::text::bigint")
    return int(xid) % _XID


async def versions_since(url: str, xid: int) -> int:
    """Row versions in the table written by transactions after `xid` (inserts and updates)."""
    (count,) = await execute(
        url,
        f"SELECT count(*) FROM video_daily_earnings WHERE xmin::text::bigint > {int(xid)}",
    )
    return int(count)


async def counts_by_date(url: str, dates: Sequence[dt.date], since: int) -> dict[str, int]:
    """Rows per billing date published at or after Unix time `since` (a run's publish range)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT billing_date, count(*) FROM video_daily_earnings "
                    "WHERE billing_date = ANY(:dates) AND publish_time >= to_timestamp(:since) "
                    "GROUP BY billing_date"
                ),
                {"dates": list(dates), "since": since},
            )
            found = {d.isoformat(): int(n) for d, n in result}
    finally:
        await engine.dispose()
    return {d.isoformat(): found.get(d.isoformat(), 0) for d in dates}


async def delete_date(url: str, day: dt.date) -> int:
    (count,) = await execute(
        url,
        f"WITH d AS (DELETE FROM video_daily_earnings WHERE billing_date = '{day.isoformat()}' "
        "RETURNING 1) SELECT count(*) FROM d",
    )
    return int(count)


async def postmaster_pid(url: str) -> int | None:
    """The server's main process, when it runs on this machine (the parent of our backend)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:  # the backend lives as long as the connection
            backend = await conn.scalar(text("SELECT pg_backend_pid()"))
            try:
                return int(psutil.Process(int(backend)).ppid())
            except psutil.Error:
                return None
    finally:
        await engine.dispose()


def database_name(url: str) -> str:
    return make_url(url).database or ""


def _words(cmdline: str) -> list[str]:
    words = cmdline.removeprefix("postgres: ").split()
    if words and words[0].endswith(":"):  # the cluster's name, as in "15/main:"
        words = words[1:]
    return words


def _is_backend(cmdline: str) -> bool:
    words = _words(cmdline)
    return len(words) >= 3 and ("(" in words[2] or words[2] == "[local]")


def counted(cmdline: str, dbname: str) -> bool:
    """Whether a server process works for us: our database's backends and the shared helpers
    (checkpointer, WAL writer...), not the backends of other databases on the same server."""
    words = _words(cmdline)
    if _is_backend(cmdline):
        return words[1] == dbname
    if words[:2] == ["autovacuum", "worker"]:
        return dbname in words
    return True


def server_cpu(postmaster: int | None, dbname: str) -> dict[int, float]:
    """CPU seconds (user + system) of each server process counted for `dbname`, by pid; the
    helpers (checkpointer, WAL writer, autovacuum...) under negative pids."""
    if postmaster is None:
        return {}
    try:
        main = psutil.Process(postmaster)
        procs = [main, *main.children(recursive=True)]
    except psutil.Error:
        return {}
    seen: dict[int, float] = {}
    for proc in procs:
        try:
            if proc.pid != postmaster and not counted(" ".join(proc.cmdline()), dbname):
                continue
            times = proc.cpu_times()
            helper = proc.pid != postmaster and not _is_backend(" ".join(proc.cmdline()))
            seen[-proc.pid if helper else proc.pid] = times.user + times.system
        except psutil.Error:
            continue
    return seen


def cpu_delta(before: dict[int, float], after: dict[int, float], *, helpers: bool = False) -> float:
    """CPU spent between two `server_cpu` snapshots (processes born in between count fully);
    with `helpers`, that of the helpers only."""
    return sum(
        seconds - before.get(pid, 0.0) for pid, seconds in after.items() if not helpers or pid < 0
    )


def process_cpu(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all cores), since boot."""
    t = psutil.cpu_times()
    busy = ("user", "nice", "system", "irq", "softirq", "steal")
    return float(sum(getattr(t, name, 0.0) for name in busy))


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system
