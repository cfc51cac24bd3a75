"""Plain helpers of the test suite (its fixtures are in tests/conftest.py): the test's clock, a
sync run in process, the CLI as a real subprocess, waiting, and the ledger and the table read back
and compared with the sandbox's truth."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync import planner
from sync.db import ledger, locks
from sync.db.database import create_engine
from sync.db.schema import sync_partitions, sync_runs, video_daily_earnings
from sync.pipeline.engine import run_app
from sync.pipeline.runs import RunOptions, RunResult
from sync.sandbox import SandboxServer
from sync.settings import Secret, Settings

REPO = Path(__file__).resolve().parent.parent
MakeSandbox = Callable[..., Awaitable[SandboxServer]]  # the `make_sandbox` fixture

# -- the clock --------------------------------------------------------------------------------

PINNED = dt.datetime(2026, 3, 15, 12, 0, 0, tzinfo=planner.SHANGHAI).timestamp()
"""Noon in Shanghai: a test that starts here never meets a day boundary."""


class Clock:
    """A test's "now", in Unix seconds: anchored at `start`, flowing with real time unless
    frozen; `advance` jumps. The sandbox takes it as its clock and the plan reads it for `now`,
    so the platform and the client agree on the day; the dates are the start's, fixed."""

    def __init__(self, start: float = PINNED, *, frozen: bool = False) -> None:
        self.start = start
        self.frozen = frozen
        self.offset = 0.0
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        flow = 0.0 if self.frozen else time.monotonic() - self._t0
        return self.start + self.offset + flow

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    @property
    def today(self) -> dt.date:
        """The platform's day (Asia/Shanghai) when the test started."""
        return planner.shanghai_today(self.start)

    @property
    def yesterday(self) -> dt.date:
        """The newest billing date the platform serves (data is T+1)."""
        return self.today - dt.timedelta(days=1)

    def recent_dates(self, count: int, *, skip: int = 0) -> list[dt.date]:
        """`count` billing dates ending `skip` days before yesterday, oldest first."""
        last = self.yesterday - dt.timedelta(days=skip)
        return [last - dt.timedelta(days=i) for i in reversed(range(count))]


# -- the sandbox and a run in process ---------------------------------------------------------

# Rejections that would mean the client broke the platform's rules (must never appear).
RULE_BREAKS = {"invalid_param", "start_too_early", "page_size_too_large", "throttled"}


def sandbox_settings(sandbox: SandboxServer, database_url: str, **changes: Any) -> Settings:
    """Settings that point every endpoint at the sandbox, with its credentials."""
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


async def run_sync(
    settings: Settings,
    dates: list[dt.date],
    *,
    now: float,
    kind: str = "backfill",
    plan: planner.Plan | None = None,
    **options: Any,
) -> RunResult:
    """One run in this process, planned at `now` (the test's clock) unless `plan` is given."""
    assert settings.database_url is not None
    db = create_engine(settings.database_url.reveal(), pool_size=24)
    try:
        the_plan = plan or planner.plan(dates, now)
        return await run_app(db, settings, RunOptions(kind=kind, **options), the_plan)
    finally:
        await db.dispose()


def api_calls(sandbox: SandboxServer, endpoint: str | None = None) -> int:
    """Requests the sandbox answered: on one endpoint, or on all of them."""
    endpoints: dict[str, Any] = sandbox.stats()["endpoints"]
    if endpoint is not None:
        return int(endpoints.get(endpoint, {}).get("calls", 0))
    return sum(int(e["calls"]) for e in endpoints.values())


def assert_no_rule_breaks(sandbox: SandboxServer) -> None:
    rejected = sandbox.stats()["rejected"]
    broken = {k: v for k, v in rejected.items() if k in RULE_BREAKS}
    assert not broken, f"the client broke the platform's rules: {broken}"


# -- the CLI ----------------------------------------------------------------------------------

# Variables of the developer's shell that would change what the CLI does.
CLEARED = (
    "DATABASE_URL", "DOUYIN_CLIENT_KEY", "DOUYIN_CLIENT_SECRET", "DOUYIN_ACCESS_TOKEN",
    "DOUYIN_OPEN_BASE_URL", "DOUYIN_DEVELOPER_BASE_URL", "DOUYIN_APP_ID", "DOUYIN_APP_SECRET",
    "TASKBOX_QPS", "TASKBOX_ALLOW_INSECURE_HTTP", "TASKBOX_SECRET_KEY", "TASKBOX_APPS_FILE",
)  # fmt: skip


def cli_env(
    sandbox: SandboxServer | None,
    database_url: str,
    *,
    unset: tuple[str, ...] = (),
    **values: str,
) -> dict[str, str]:
    """The environment of a CLI run: the database, the sandbox's URL and credentials (client
    and mini-app), then `values` laid over them and `unset` removed."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["DATABASE_URL"] = database_url
    env["PYTHONUNBUFFERED"] = "1"
    # The embedded server must never be started by accident (a test that drops DATABASE_URL).
    env["TASKBOX_DATA_DIR"] = str(REPO / ".no-embedded-in-tests")
    if sandbox is not None:
        cfg = sandbox.config
        env["DOUYIN_OPEN_BASE_URL"] = env["DOUYIN_DEVELOPER_BASE_URL"] = sandbox.base_url
        env["DOUYIN_CLIENT_KEY"], env["DOUYIN_CLIENT_SECRET"] = cfg.client_key, cfg.client_secret
        env["DOUYIN_APP_ID"], env["DOUYIN_APP_SECRET"] = cfg.app_id, cfg.app_secret
    env.update(values)
    for name in unset:
        env.pop(name, None)
    return env


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Make `env` (a `cli_env`) this process's environment until the test ends: for commands
    run in process (`sync.cli.main.main`)."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)


def backfill_args(dates: list[dt.date], *extra: str) -> list[str]:
    """`backfill --from FIRST --to LAST` for `dates`, then `extra`."""
    return ["backfill", "--from", dates[0].isoformat(), "--to", dates[-1].isoformat(), *extra]


@dataclass(frozen=True, slots=True)
class CliResult:
    status: int
    stdout: str
    stderr: str
    args: tuple[str, ...] = ()

    @property
    def err_lines(self) -> list[str]:
        """The non-blank lines of stderr."""
        return [line for line in self.stderr.splitlines() if line.strip()]

    def __str__(self) -> str:
        return f"exit {self.status}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class Cli:
    """A running `python -m sync` process whose output is collected as it comes."""

    def __init__(
        self, proc: asyncio.subprocess.Process, args: tuple[str, ...], stdin: bytes | None = None
    ) -> None:
        self.proc = proc
        self.args = args
        self._output = asyncio.ensure_future(proc.communicate(stdin))

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
            self.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
            self.args,
        )  # fmt: skip


@contextlib.asynccontextmanager
async def spawned(*args: str, env: dict[str, str], stdin: str | None = None) -> AsyncIterator[Cli]:
    """`python -m sync ARGS` in the checkout (`stdin` its standard input, else none), killed
    (by its pid) if the test leaves while it still runs."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sync", *args, env=env, cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    cli = Cli(proc, args, None if stdin is None else stdin.encode())
    try:
        yield cli
    finally:
        if cli.running:
            cli.send(signal.SIGKILL)
            with contextlib.suppress(Exception):
                await cli.wait(10)


async def run_cli(
    *args: str, env: dict[str, str], limit: float = 90.0, stdin: str | None = None
) -> CliResult:
    async with spawned(*args, env=env, stdin=stdin) as cli:
        return await cli.wait(limit)


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


# -- the database -----------------------------------------------------------------------------


def plain_url(url: str) -> str:
    """asyncpg.connect wants postgresql://, not the SQLAlchemy driver form."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def runs(engine: AsyncEngine) -> list[Any]:
    """Every sync_runs row, oldest first."""
    async with engine.connect() as conn:
        return list((await conn.execute(select(sync_runs).order_by(sync_runs.c.id))).all())


async def run_row(db: AsyncEngine | AsyncConnection, run_id: int) -> Any:
    """A run's sync_runs row (on a connection: as its transaction sees it)."""
    query = select(sync_runs).where(sync_runs.c.id == run_id)
    if isinstance(db, AsyncConnection):
        return (await db.execute(query)).one()
    async with db.connect() as conn:
        return (await conn.execute(query)).one()


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


async def wait_lock_free(engine: AsyncEngine, app_id: str, limit: float = 15.0) -> float:
    """Wait until no database session holds the app's run lock (a killed process's session
    ends when PostgreSQL notices the closed socket)."""

    async def free() -> bool:
        async with engine.connect() as conn:
            return not await locks.lock_held_elsewhere(conn, app_id)

    return await wait_until(free, limit=limit, what=f"the run lock of {app_id} to be free")


# -- the table against the sandbox's truth ----------------------------------------------------

_COMPARED = [
    c
    for c in video_daily_earnings.c
    if c.name
    not in (
        "billing_date",
        "app_id",
        "extra",
        "first_synced_at",
        "last_synced_at",
        "answered_at",
        "last_run_id",
    )
]


def storable(value: Any) -> Any:
    """What PostgreSQL can hold of a text: NUL and lone surrogates replaced (as the mapper does)."""
    if isinstance(value, str):
        value = value.replace("\x00", "\ufffd")
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in value)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def _row_as_truth(row: Any) -> dict[str, Any]:
    doc = dict(row._mapping)
    publish = doc.pop("publish_time")
    doc["publish_time"] = None if publish is None else int(publish.timestamp())
    data_date = doc.pop("data_date")
    doc["date"] = None if data_date is None else data_date.isoformat()
    return doc


async def table_rows(
    engine: AsyncEngine, billing_date: dt.date, app_id: str | None = None
) -> list[dict[str, Any]]:
    """The stored rows of a billing date (of one app, if given), keyed as the sandbox's truth."""
    query = select(*_COMPARED).where(video_daily_earnings.c.billing_date == billing_date)
    if app_id is not None:
        query = query.where(video_daily_earnings.c.app_id == app_id)
    async with engine.connect() as conn:
        result = await conn.execute(query)
        return [_row_as_truth(r) for r in result]


def row_key(doc: dict[str, Any]) -> tuple[int, int]:
    return (doc["video_id"], doc["task_id"])


async def assert_table_is_truth(
    engine: AsyncEngine,
    sandbox: SandboxServer,
    dates: list[dt.date],
    now: float,
    *,
    app_id: str | None = None,
    **filters: Any,
) -> int:
    """Every billing date's rows (of app `app_id`, if given) equal the sandbox's answer over the
    publish range reachable at `now` (`filters` go to its truth, `app=` naming a sandbox app
    among them); the number of rows compared."""
    total = 0
    start = planner.earliest_start(now)
    for d in dates:
        truth = sandbox.truth(d, start, planner.day_end(d), **filters)
        expected = {row_key(t): {k: storable(v) for k, v in t.items()} for t in truth}
        actual_rows = await table_rows(engine, d, app_id)
        actual = {row_key(r): {k: storable(v) for k, v in r.items()} for r in actual_rows}
        assert len(actual_rows) == len(actual), f"{d}: duplicate keys in the table"
        missing = expected.keys() - actual.keys()
        extra = actual.keys() - expected.keys()
        assert not missing, f"{d}: {len(missing)} rows missing"
        assert not extra, f"{d}: {len(extra)} rows the platform does not report"
        for key, want in expected.items():
            assert actual[key] == want, f"{d} {key}: {actual[key]} != {want}"
        total += len(expected)
    return total


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
