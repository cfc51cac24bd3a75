"""A database outage under a run (issue #18): PostgreSQL stopped and started again around a
real run, on a scratch cluster these tests own (never the machine's shared server).

* shorter than --db-outage-timeout: the run waits, sends no API call meanwhile, goes on where it
  was and ends exit 0, exact, with no partition failed and no attempt spent;
* longer: exit 69 with one line naming the cause, no traceback; the next run resumes, exact;
* down before the run: one line, exit 2, nothing called;
* at precise points (the lock's connection at start, a partition's commit, the run's end, the
  lock's release; a ledger function is wrapped only to stop the server at that moment);
* the talents audit: recorded when the database returns, printed past the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.api.retry import RetryPolicy
from sync.cli import talent_audit as talents_audit
from sync.cli import talents as talents_cmd
from sync.cli.exits import EXIT_LOCKED, EXIT_UNAVAILABLE, run_exit_status
from sync.cli.main import main
from sync.db import database, ledger, locks
from sync.db.database import create_engine, migrate
from sync.db.schema import talent_operations
from sync.errors import DatabaseUnavailable, RunLockedError
from sync.sandbox import Faults, SandboxServer
from sync.sandbox.rosters import Cooperation
from sync.settings import normalize_database_url
from tests.helpers import (
    CliResult,
    Clock,
    MakeSandbox,
    api_calls,
    assert_done_partitions_hold_rows,
    assert_no_rule_breaks,
    assert_table_is_truth,
    backfill_args,
    cli_env,
    done_partitions,
    partitions,
    run_cli,
    run_sync,
    runs,
    sandbox_settings,
    spawned,
    use_env,
    wait_until,
)
from tests.scratch_pg import ScratchCluster

DATES = 3
PAGE_SIZE = 10  # ~210 rows a date in 3 windows: ~60 calls a run, ~6 s at 10 QPS
CONCURRENCY = 4
STOP_AFTER = 15  # daily-data calls before the server stops
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARNING) ")


@pytest.fixture(scope="module")
def cluster() -> Iterator[ScratchCluster]:
    """A PostgreSQL of this module's own: initdb, start (fsync off: ~1 s)."""
    pg = ScratchCluster()
    try:
        pg.init()
        pg.start()
        asyncio.run(_create_template(pg))
        yield pg
    finally:
        pg.destroy()


TEMPLATE = "outage_template"


async def _admin(pg: ScratchCluster, sql: str) -> None:
    conn = await asyncpg.connect(pg.url())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _create_template(pg: ScratchCluster) -> None:
    await _admin(pg, f'CREATE DATABASE "{TEMPLATE}"')
    engine = create_engine(normalize_database_url(pg.url(TEMPLATE)))
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def db_url(cluster: ScratchCluster) -> AsyncIterator[str]:
    """A fresh migrated database on the scratch cluster (started again if a test left it down)."""
    if not cluster.running:
        await asyncio.to_thread(cluster.start)
    name = f"outage_{uuid.uuid4().hex[:10]}"
    await _admin(cluster, f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    yield normalize_database_url(cluster.url(name))
    if not cluster.running:
        await asyncio.to_thread(cluster.start)
    await _admin(cluster, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def checker(url: str) -> AsyncIterator[AsyncEngine]:
    """An engine for the test's own queries (made after the server is back)."""
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def sandbox(make_sandbox: MakeSandbox) -> SandboxServer:
    """~210 rows a billing date, answers after 20-60 ms."""
    faults = Faults(seed=1, latency_min=0.02, latency_max=0.06)
    return await make_sandbox(seed=7, videos=300, tasks=8, creators=30, faults=faults)


def outage_backfill_args(dates: list[dt.date], *extra: str) -> list[str]:
    page = ("--page-size", str(PAGE_SIZE), "--concurrency", str(CONCURRENCY))
    return backfill_args(dates, *page, *extra)


def restart_later(pg: ScratchCluster, seconds: float) -> threading.Thread:
    """Start the cluster again `seconds` from now, whatever the event loops are doing."""
    timer = threading.Timer(seconds, pg.start)
    timer.start()
    return timer


def assert_no_traceback(result: CliResult) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result


def daily_calls(sb: SandboxServer) -> int:
    return api_calls(sb, "daily_data")


# -- shorter than the limit ----------------------------------------------------------------


@pytest.mark.wall_clock  # the CLI runs in a subprocess
@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_short_outage_is_waited_out_and_the_run_is_exact(
    mode: str, cluster: ScratchCluster, db_url: str, sandbox: SandboxServer, clock: Clock
) -> None:
    """PostgreSQL stopped mid-run (`fast`: sessions told to go, as in a restart; `immediate`:
    dropped, as in a crash or failover) and started 4 s later: the run waits, sends no API call
    while the server is down, then finishes with exit 0, no partition failed, no attempt spent,
    and the table exact."""
    dates = clock.recent_dates(DATES)
    now = clock()
    env = cli_env(sandbox, db_url)
    async with spawned(*outage_backfill_args(dates, "--db-outage-timeout", "60"), env=env) as cli:

        async def going() -> bool:
            assert cli.running, await cli.wait()
            return daily_calls(sandbox) >= STOP_AFTER

        await wait_until(going, what=f"{STOP_AFTER} calls")
        await asyncio.to_thread(cluster.stop, mode)
        at_stop = daily_calls(sandbox)
        await asyncio.sleep(1.0)  # requests already sent are answered
        after_grace = daily_calls(sandbox)
        await asyncio.sleep(2.0)
        before_start = daily_calls(sandbox)
        assert cli.running, await cli.wait()
        await asyncio.to_thread(cluster.start)
        result = await cli.wait(90)
    assert result.status == 0, result
    assert_no_traceback(result)
    # At most the requests in flight when the server went away; none while it stayed down.
    assert after_grace - at_stop <= 2 * CONCURRENCY, (at_stop, after_grace)
    assert before_start == after_grace, (at_stop, after_grace, before_start)
    assert "database unavailable (" in result.stderr, result
    assert re.search(r"database back after \d+\.\d s", result.stderr), result
    assert not [line for line in result.err_lines if not LOG_LINE.match(line)], result

    async with checker(db_url) as engine:
        (run,) = await runs(engine)
        assert run.status == "succeeded", run
        assert run.partitions_failed == 0
        parts = await partitions(engine, run.id)
        assert [p.status for p in parts] == ["done"] * run.partitions_total, parts
        assert {p.attempts for p in parts} == {1}, result  # the outage spent no attempt
        await assert_table_is_truth(engine, sandbox, dates, now)
    assert_no_rule_breaks(sandbox)  # never over 10 calls in a second when the work resumed


# -- past the limit -----------------------------------------------------------------------------


@pytest.mark.wall_clock  # the CLI runs in a subprocess
async def test_long_outage_interrupts_in_one_line_and_the_rerun_resumes(
    cluster: ScratchCluster, db_url: str, sandbox: SandboxServer, clock: Clock
) -> None:
    """With --db-outage-timeout 2 and the server down longer: exit 69, one `taskbox-sync:` line
    naming the cause (the rest are log lines), no traceback; the run is left to the next one,
    which records it 'interrupted', resumes, and leaves the table exact."""
    dates = clock.recent_dates(DATES)
    env = cli_env(sandbox, db_url)
    args = outage_backfill_args(dates)
    async with (
        checker(db_url) as engine,
        spawned(*args, "--db-outage-timeout", "2", env=env) as cli,
    ):

        async def some_done() -> bool:
            assert cli.running, await cli.wait()
            return await done_partitions(engine) >= 2

        await wait_until(some_done, what="2 partitions done")
        await engine.dispose()  # no connection of the test's in the way of a fast stop
        await asyncio.to_thread(cluster.stop, "fast")
        stopped = time.monotonic()
        result = await cli.wait(60)
        took = time.monotonic() - stopped
    assert result.status == EXIT_UNAVAILABLE == 69, result
    assert_no_traceback(result)
    assert 2.0 <= took < 10.0, took
    *logs, last = result.err_lines
    assert all(LOG_LINE.match(line) for line in logs), result
    assert last.startswith("taskbox-sync: database unavailable for 2 s (--db-outage-timeout 2): ")
    assert "partitions in flight rolled back" in last and "it resumes" in last, last
    assert re.search(r"^run \d+: interrupted in", result.stdout, re.M), result

    await asyncio.to_thread(cluster.start)
    async with checker(db_url) as engine:
        (first,) = await runs(engine)
        assert first.status == "running"  # the database was away when the process ended
        assert f"run {first.id} stopped" in last
        now = clock()
        again = await run_cli(*args, env=env)
        assert again.status == 0, again
        first, second = await runs(engine)
        assert first.status == "interrupted" and first.finished_at is not None, first
        first_parts = await partitions(engine, first.id)
        assert not [p for p in first_parts if p.status == "running"]
        done_before = await assert_done_partitions_hold_rows(engine, sandbox, first_parts)
        assert second.status == "succeeded"
        assert second.partitions_skipped == done_before > 0
        await assert_table_is_truth(engine, sandbox, dates, now)
    assert_no_rule_breaks(sandbox)


@pytest.mark.wall_clock  # the CLI runs in a subprocess
async def test_database_down_before_the_run_is_one_line(
    cluster: ScratchCluster, db_url: str, sandbox: SandboxServer, clock: Clock
) -> None:
    """The server down before the run starts: one line naming it, exit 2 (unreachable, as a
    wrong URL would be), no traceback and no API call."""
    await asyncio.to_thread(cluster.stop, "fast")
    result = await run_cli(
        *outage_backfill_args(clock.recent_dates(1)), env=cli_env(sandbox, db_url)
    )
    assert result.status == 2, result
    assert_no_traceback(result)
    assert len(result.err_lines) == 1 and "cannot connect" in result.err_lines[0], result
    assert api_calls(sandbox) == 0


# -- at precise points, in process ------------------------------------------------------------

Wrapped = Callable[..., Awaitable[Any]]


def stop_at(
    monkeypatch: pytest.MonkeyPatch,
    pg: ScratchCluster,
    name: str,
    *,
    call: int = 1,
    after: bool = False,
    back_after: float | None = 1.5,
    then: Callable[[], Awaitable[None]] | None = None,
) -> list[int]:
    """Wrap ledger.`name` (or locks.`name`): at its `call`-th call, stop the server (before the
    call, or `after` it: then the transaction's commit is what fails), and start it `back_after`
    s later."""
    owner = ledger if hasattr(ledger, name) else locks
    original: Wrapped = getattr(owner, name)
    seen = [0]

    async def outage() -> None:
        await asyncio.to_thread(pg.stop, "fast")
        if back_after is not None:
            restart_later(pg, back_after)
        if then is not None:
            await then()

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen[0] += 1
        if seen[0] == call and not after:
            await outage()
        result = await original(*args, **kwargs)
        if seen[0] == call and after:
            await outage()
        return result

    monkeypatch.setattr(owner, name, wrapper)
    return seen


def assert_no_logged_traceback(caplog: pytest.LogCaptureFixture) -> None:
    traced = [r for r in caplog.records if r.exc_info or r.exc_text]
    assert not traced, [(r.name, r.getMessage()) for r in traced]


async def _wait_running(pg: ScratchCluster) -> None:
    async def up() -> bool:
        return await asyncio.to_thread(lambda: pg.running)

    await wait_until(up, limit=30, interval=0.2, what="the cluster to run again")


@pytest.mark.parametrize(
    ("name", "call", "after"),
    [
        ("mark_stale_runs", 1, False),  # start: the lock's connection dies before the run
        ("partition_done", 3, True),  # a partition's commit
        ("finish_run", 1, False),  # the run's end
    ],
    ids=["start", "commit", "run-end"],
)
async def test_outage_at_a_precise_point_is_waited_out(
    name: str,
    call: int,
    after: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cluster: ScratchCluster,
    db_url: str,
    sandbox: SandboxServer,
    clock: Clock,
) -> None:
    """Wherever the server goes away for 1.5 s, the run waits and ends 'succeeded', exact, with
    no partition failed, no attempt spent and nothing logged with a traceback."""
    caplog.set_level(logging.WARNING)
    seen = stop_at(monkeypatch, cluster, name, call=call, after=after)
    dates = clock.recent_dates(2)
    now = clock()
    settings = sandbox_settings(sandbox, db_url)
    result = await run_sync(settings, dates, now=now, page_size=PAGE_SIZE, concurrency=CONCURRENCY)
    assert seen[0] >= call
    assert result.status == "succeeded", result
    assert run_exit_status(result) == 0 and result.stop_error is None
    assert_no_logged_traceback(caplog)
    assert any("database back after" in r.getMessage() for r in caplog.records)
    async with checker(db_url) as engine:
        (run,) = await runs(engine)
        assert run.status == "succeeded" and run.partitions_failed == 0, run
        parts = await partitions(engine, run.id)
        assert [p.status for p in parts] == ["done"] * run.partitions_total
        assert {p.attempts for p in parts} == {1}
        await assert_table_is_truth(engine, sandbox, dates, now)


async def test_outage_at_run_end_past_the_limit_leaves_it_to_the_next_run(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cluster: ScratchCluster,
    db_url: str,
    sandbox: SandboxServer,
    clock: Clock,
) -> None:
    """All work committed, then the server goes for good while the run's end is written: the
    result says interrupted with exit 69 and why; the next run records it 'interrupted', finds
    every partition done and succeeds without a call."""
    caplog.set_level(logging.WARNING)
    stop_at(monkeypatch, cluster, "finish_run", back_after=None)
    dates = clock.recent_dates(2)
    settings = sandbox_settings(sandbox, db_url)
    result = await run_sync(
        settings,
        dates,
        page_size=PAGE_SIZE,
        concurrency=CONCURRENCY,
        db_outage_timeout=1,
        now=clock(),
    )
    assert result.status == "interrupted" and run_exit_status(result) == EXIT_UNAVAILABLE
    assert isinstance(result.stop_error, DatabaseUnavailable)
    assert "the next run records it 'interrupted'" in str(result.stop_error)
    assert_no_logged_traceback(caplog)
    monkeypatch.undo()

    await asyncio.to_thread(cluster.start)
    calls = daily_calls(sandbox)
    now = clock()
    again = await run_sync(settings, dates, now=now, page_size=PAGE_SIZE, concurrency=CONCURRENCY)
    assert again.status == "succeeded"
    assert again.counts.partitions_skipped == again.counts.partitions_total > 0
    assert daily_calls(sandbox) == calls
    async with checker(db_url) as engine:
        first, _ = await runs(engine)
        assert first.status == "interrupted" and first.id == result.run_id
        await assert_table_is_truth(engine, sandbox, dates, now)


async def test_lock_release_without_a_database_is_quiet(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cluster: ScratchCluster,
    db_url: str,
    sandbox: SandboxServer,
    clock: Clock,
) -> None:
    """The server goes as the run gives its lock back: the lock went with the session; the run
    is recorded and its result returned, nothing raised or logged with a traceback."""
    caplog.set_level(logging.WARNING)
    stop_at(monkeypatch, cluster, "release_run_lock", back_after=None)
    settings = sandbox_settings(sandbox, db_url)
    result = await run_sync(settings, clock.recent_dates(1), page_size=PAGE_SIZE, now=clock())
    assert result.status == "succeeded" and run_exit_status(result) == 0
    assert_no_logged_traceback(caplog)


async def test_lock_taken_during_the_outage_stops_the_run_as_locked(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    cluster: ScratchCluster,
    db_url: str,
    sandbox: SandboxServer,
    clock: Clock,
) -> None:
    """The server restarts and another session takes the app's lock before this run can: the
    run does not go on beside it; it stops as interrupted with the 'locked' exit (75)."""
    caplog.set_level(logging.WARNING)
    held: list[asyncpg.Connection] = []
    key = locks.run_lock_key(sandbox.config.client_key)
    taken = asyncio.Event()
    probe = database.probe

    async def after_the_other_run(engine: AsyncEngine) -> None:
        await taken.wait()  # the run's probes see the server only once the lock is taken
        await probe(engine)

    monkeypatch.setattr(database, "probe", after_the_other_run)

    async def other_run_takes_the_lock() -> None:
        await asyncio.to_thread(cluster.start)
        conn = await asyncpg.connect(db_url.replace("+asyncpg", ""))
        held.append(conn)
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)
        taken.set()

    stop_at(
        monkeypatch,
        cluster,
        "partition_done",
        call=2,
        back_after=None,
        then=other_run_takes_the_lock,
    )
    settings = sandbox_settings(sandbox, db_url)
    try:
        result = await run_sync(
            settings,
            clock.recent_dates(2),
            page_size=PAGE_SIZE,
            concurrency=CONCURRENCY,
            now=clock(),
        )
    finally:
        for conn in held:
            await conn.close()
    assert result.status == "interrupted", result
    assert isinstance(result.stop_error, RunLockedError), result
    assert run_exit_status(result) == EXIT_LOCKED
    assert "took the run lock while the database was unavailable" in str(result.stop_error)
    assert_no_logged_traceback(caplog)


async def test_a_stale_session_of_the_same_run_gives_the_lock_back(db_url: str) -> None:
    """After a lost connection the server may keep the old session and its lock for a while:
    the run ends that session (its own, matched by pid and start) and takes the lock; a lock
    held by any other session is left alone."""
    engine = create_engine(db_url)
    try:
        old = await engine.connect()
        assert await locks.acquire_run_lock(old, "app-x")
        old_session = await locks.current_session(old)
        await old.commit()
        async with engine.connect() as new:
            other = locks.Session(old_session.pid, old_session.started - dt.timedelta(hours=1))
            assert not await locks.take_over_run_lock(new, "app-x", other)
            assert await locks.take_over_run_lock(new, "app-x", old_session)
            assert not await locks.lock_held_elsewhere(new, "app-x")
            await locks.release_run_lock(new, "app-x")
            await new.commit()
        await old.invalidate()
        await old.close()
    finally:
        await engine.dispose()


# -- the talents audit --------------------------------------------------------------------------


@pytest.fixture
async def talents_sandbox(
    monkeypatch: pytest.MonkeyPatch, make_sandbox: MakeSandbox, db_url: str, restore_logging: None
) -> SandboxServer:
    """The sandbox and the environment of a talents command (run in process), fast retries."""
    monkeypatch.setattr(talents_cmd, "RETRY_POLICY", RetryPolicy(attempts=3, base=0.001))
    sb = await make_sandbox(videos=50)
    use_env(monkeypatch, cli_env(sb, db_url))
    return sb


def stop_at_accepted_audit(
    monkeypatch: pytest.MonkeyPatch, pg: ScratchCluster, back_after: float | None
) -> list[int]:
    """Stop the server just before the first audit rows of an answer are written."""
    original = talents_audit.insert_rows
    seen = [0]

    async def wrapper(engine: AsyncEngine, values: list[dict[str, Any]], *, again: bool) -> None:
        if any(v["log_id"] for v in values):
            seen[0] += 1
            if seen[0] == 1:
                await asyncio.to_thread(pg.stop, "fast")
                if back_after is not None:
                    restart_later(pg, back_after)
        await original(engine, values, again=again)

    monkeypatch.setattr(talents_audit, "insert_rows", wrapper)
    return seen


def update_calls(sb: SandboxServer) -> int:
    return api_calls(sb, "update_orient_talents")


async def test_talents_audit_waits_for_the_database(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cluster: ScratchCluster,
    db_url: str,
    talents_sandbox: SandboxServer,
) -> None:
    """The server goes after the platform accepted the first batch: the command waits, records
    it when the server is back (once), then sends the next batches; exit 0, 25 rows."""
    sb = talents_sandbox
    task = sb.exclusive_task_ids[0]
    ids = [f"out{i:02d}" for i in range(25)]
    seen = stop_at_accepted_audit(monkeypatch, cluster, back_after=1.5)
    status = await asyncio.to_thread(main, ["talents", "add", "--task-id", str(task), *ids])
    err = capsys.readouterr().err
    assert status == 0, err
    assert update_calls(sb) == 3
    assert seen[0] == 4  # three batches' rows written, the first of them twice tried
    assert "database back after" in err and "Traceback" not in err
    async with checker(db_url) as engine, engine.connect() as conn:
        rows = (await conn.execute(select(talent_operations))).mappings().all()
    assert sorted(r["douyin_id"] for r in rows) == ids  # each once
    assert all(r["ok"] for r in rows)


async def test_talents_audit_past_the_limit_is_printed(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    cluster: ScratchCluster,
    talents_sandbox: SandboxServer,
) -> None:
    """The server stays away past --db-outage-timeout after the first batch was accepted: its
    10 accepted changes (and the 15 ids not sent) are printed as JSON lines of
    talent_operations columns, no further batch is sent, one line names the cause, exit 69."""
    sb = talents_sandbox
    task = sb.exclusive_task_ids[0]
    ids = [f"lost{i:02d}" for i in range(25)]
    stop_at_accepted_audit(monkeypatch, cluster, back_after=None)
    argv = ["talents", "add", "--task-id", str(task), "--db-outage-timeout", "1", *ids]
    status = await asyncio.to_thread(main, argv)
    err = capsys.readouterr().err
    assert status == EXIT_UNAVAILABLE, err
    assert "Traceback" not in err
    assert update_calls(sb) == 1
    printed = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    accepted = [r for r in printed if r["ok"]]
    assert [r["douyin_id"] for r in accepted] == ids[:10]
    assert all(r["table"] == "talent_operations" and r["log_id"] for r in accepted)
    assert all(r["task_id"] == str(task) and r["operation"] == "add" for r in printed)
    assert [r["douyin_id"] for r in printed if not r["ok"]] == ids[10:]
    waiting = {m.douyin_id for m in sb.roster(task) if m.state is Cooperation.WAITING}
    assert set(ids[:10]) <= waiting and not set(ids[10:]) & waiting
    (last,) = [line for line in err.splitlines() if line.startswith("taskbox-sync:")]
    assert last == err.splitlines()[-1]
    assert "database unavailable for 1 s (--db-outage-timeout 1)" in last
    assert "25 audit rows not recorded are printed above" in last
