"""Helpers for end-to-end CLI tests: `python -m sync …` as a real subprocess against an
in-process sandbox (served by the test's event loop, so every wait here is asynchronous) and a
real PostgreSQL database."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db import ledger, locks
from sync.db.schema import sync_partitions, sync_runs, video_daily_earnings
from sync.sandbox import SandboxServer

REPO = Path(__file__).resolve().parent.parent

# Variables of the developer's shell that would change what the CLI does.
_CLEARED = (
    "DATABASE_URL",
    "DOUYIN_CLIENT_KEY",
    "DOUYIN_CLIENT_SECRET",
    "DOUYIN_ACCESS_TOKEN",
    "DOUYIN_OPEN_BASE_URL",
    "DOUYIN_DEVELOPER_BASE_URL",
    "DOUYIN_APP_ID",
    "DOUYIN_APP_SECRET",
    "TASKBOX_QPS",
    "TASKBOX_ALLOW_INSECURE_HTTP",
)


@dataclass(frozen=True, slots=True)
class CliResult:
    status: int
    stdout: str
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        """The non-blank lines of stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __str__(self) -> str:
        return f"exit {self.status}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def cli_env(
    sandbox: SandboxServer | None,
    database_url: str,
    *,
    unset: tuple[str, ...] = (),
    **values: str,
) -> dict[str, str]:
    """The environment of a CLI run: the database, the sandbox's URL and credentials, then
    `values` laid over them and `unset` removed."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    # The embedded server must never be started by accident (a test that drops DATABASE_URL).
    env["TASKBOX_DATA_DIR"] = str(REPO / ".no-embedded-in-tests")
    if sandbox is not None:
        env["DOUYIN_OPEN_BASE_URL"] = sandbox.base_url
        env["DOUYIN_DEVELOPER_BASE_URL"] = sandbox.base_url
        env["DOUYIN_CLIENT_KEY"] = sandbox.config.client_key
        env["DOUYIN_CLIENT_SECRET"] = sandbox.config.client_secret
    env.update(values)
    for name in unset:
        env.pop(name, None)
    return env


class Cli:
    """A running `python -m sync` process whose output is collected as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.started = time.monotonic()
        self._output = asyncio.ensure_future(proc.communicate())

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def send(self, signum: int) -> None:
        """Send a signal to this process (and only this one), if it still runs."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    async def ended_within(self, seconds: float) -> bool:
        """Wait up to `seconds` for the process to end; whether it did."""
        done, _ = await asyncio.wait({self._output}, timeout=seconds)
        return bool(done)

    async def wait(self, limit: float = 60.0) -> CliResult:
        """The exit status and output; the process is killed after `limit` seconds."""
        if not await self.ended_within(limit):
            self.send(signal.SIGKILL)
            _, err = await self._output
            raise AssertionError(
                f"the CLI did not finish within {limit}s:\n{err.decode(errors='replace')}"
            )
        out, err = self._output.result()
        assert self.proc.returncode is not None
        return CliResult(
            self.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )


def backfill_args(dates: list[dt.date], *extra: str) -> list[str]:
    """`backfill --from FIRST --to LAST` for `dates`, then `extra`."""
    return ["backfill", "--from", dates[0].isoformat(), "--to", dates[-1].isoformat(), *extra]


async def start_cli(*args: str, env: dict[str, str]) -> Cli:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sync",
        *args,
        env=env,
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Cli(proc)


@contextlib.asynccontextmanager
async def spawned(*args: str, env: dict[str, str]) -> AsyncIterator[Cli]:
    """A CLI process that is killed (by its pid) if the test leaves while it still runs."""
    cli = await start_cli(*args, env=env)
    try:
        yield cli
    finally:
        if cli.running:
            cli.send(signal.SIGKILL)
            with contextlib.suppress(Exception):
                await cli.wait(10)


async def run_cli(*args: str, env: dict[str, str], limit: float = 90.0) -> CliResult:
    async with spawned(*args, env=env) as cli:
        return await cli.wait(limit)


# -- the sandbox --------------------------------------------------------------------------


def api_calls(sandbox: SandboxServer, endpoint: str | None = None) -> int:
    """Requests the sandbox answered: on one endpoint, or on all of them."""
    endpoints: dict[str, Any] = sandbox.stats()["endpoints"]
    if endpoint is not None:
        return int(endpoints.get(endpoint, {}).get("calls", 0))
    return sum(int(e["calls"]) for e in endpoints.values())


# -- the database -------------------------------------------------------------------------


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    *,
    limit: float = 30.0,
    interval: float = 0.02,
    what: str = "a condition",
) -> float:
    """Poll `check` until it is true; the seconds it took. AssertionError after `limit` s."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > limit:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - started


async def runs(engine: AsyncEngine) -> list[Any]:
    """Every sync_runs row, oldest first."""
    async with engine.connect() as conn:
        return list((await conn.execute(select(sync_runs).order_by(sync_runs.c.id))).all())


async def run_row(engine: AsyncEngine, run_id: int) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(sync_runs).where(sync_runs.c.id == run_id))).one()


async def partitions(engine: AsyncEngine, run_id: int | None = None) -> list[Any]:
    """sync_partitions rows (of one run, or all), oldest first."""
    query = select(sync_partitions).order_by(sync_partitions.c.id)
    if run_id is not None:
        query = query.where(sync_partitions.c.run_id == run_id)
    async with engine.connect() as conn:
        return list((await conn.execute(query)).all())


async def done_partitions(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(select(func.count()).where(sync_partitions.c.status == "done"))
    return int(count or 0)


async def stored_dates(engine: AsyncEngine) -> set[dt.date]:
    async with engine.connect() as conn:
        result = await conn.execute(select(video_daily_earnings.c.billing_date).distinct())
        return set(result.scalars())


async def rows_in_window(engine: AsyncEngine, billing_date: dt.date, start: int, end: int) -> int:
    """Stored rows of a billing date whose publish time lies in [start, end] (Unix seconds)."""
    v = video_daily_earnings
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).where(
                v.c.billing_date == billing_date,
                v.c.publish_time >= ledger.from_unix(start),
                v.c.publish_time <= ledger.from_unix(end),
            )
        )
    return int(count or 0)


async def assert_done_partitions_hold_rows(
    engine: AsyncEngine, sandbox: SandboxServer, rows: list[Any]
) -> int:
    """Every 'done' partition among `rows` has its window's rows in the table, as many as the
    platform reports for that billing date and window; returns how many were checked."""
    checked = 0
    for p in rows:
        if p.status != "done":
            continue
        start, end = ledger.to_unix(p.window_start), ledger.to_unix(p.window_end)
        want = len(sandbox.truth(p.billing_date, start, end))
        have = await rows_in_window(engine, p.billing_date, start, end)
        assert have == want, (
            f"partition {p.id} ({p.billing_date} [{start}..{end}]) is done but the table holds "
            f"{have} of its {want} rows"
        )
        checked += 1
    return checked


async def wait_lock_free(engine: AsyncEngine, app_key: str, limit: float = 15.0) -> float:
    """Wait until no database session holds the app's run lock (a killed process's session
    ends when PostgreSQL notices the closed socket)."""

    async def free() -> bool:
        async with engine.connect() as conn:
            return not await locks.lock_held_elsewhere(conn, app_key)

    return await wait_until(free, limit=limit, what=f"the run lock of {app_key} to be free")
