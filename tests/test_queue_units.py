"""The queue's pure parts: a job's keys and arguments, what a failed job becomes (agreeing with
the commands' exit statuses), the China-time cron, and the conninfo procrastinate is given."""

from __future__ import annotations

import datetime as dt
import signal

import pytest
from psycopg.conninfo import conninfo_to_dict

from sync import planner
from sync.cli.exits import exit_status
from sync.db.counts import RunCounts
from sync.db.statuses import RunStatus
from sync.errors import (
    CapabilityError,
    CredentialsError,
    DatabaseUnavailable,
    JobFailed,
    JobInterrupted,
    RunLockedError,
    SettingsError,
    TaskboxError,
    TransportError,
)
from sync.pipeline.runs import RunResult
from sync.queue.connect import SCHEMA, conninfo
from sync.queue.retry import MAX_ATTEMPTS, retry_delay, run_error
from sync.queue.schedule import MAX_DELAY, check_cron, due
from sync.queue.specs import JobSpec

D1, D2 = dt.date(2026, 3, 1), dt.date(2026, 3, 7)


def test_a_job_locks_its_app_and_queues_once_per_app_kind_and_dates() -> None:
    """Jobs of one app share the lock (one runs at a time); the queueing lock tells apart
    kinds and dates, so only an identical job is refused while one waits."""
    a = JobSpec("tt_a", "nightly", D1, D2)
    assert (
        a.lock
        == JobSpec("tt_a", "backfill", D1, D1).lock
        != JobSpec("tt_b", "nightly", D1, D2).lock
    )
    assert a.queueing_lock == JobSpec("tt_a", "nightly", D1, D2).queueing_lock
    assert a.queueing_lock != JobSpec("tt_a", "backfill", D1, D2).queueing_lock
    assert a.queueing_lock != JobSpec("tt_a", "nightly", D1, D1).queueing_lock
    assert JobSpec.from_kwargs(a.kwargs()) == a


def test_a_job_with_bad_arguments_is_a_settings_error() -> None:
    """Arguments that are not a sync job's fail the job as one line, never a KeyError."""
    with pytest.raises(SettingsError, match="not a sync job"):
        JobSpec.from_kwargs({"app": "tt_a"})
    with pytest.raises(SettingsError, match="nightly or backfill"):
        JobSpec("tt_a", "weekly", D1, D2)


def _result(status: RunStatus, **kw: object) -> RunResult:
    return RunResult(7, status, RunCounts(), [], 1.0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (DatabaseUnavailable("gone"), True),  # exit 69
        (RunLockedError("held"), True),  # exit 75
        (TransportError("reset", endpoint="x"), True),
        (JobInterrupted("SIGTERM"), True),  # exit 143
        (CredentialsError("refused", endpoint="oauth", err_no=10013), False),  # exit 2
        (CapabilityError("no grant", endpoint="x", err_no=28001018), False),  # exit 1
        (SettingsError("bad apps file"), False),  # exit 2
        (JobFailed("run 7 partial"), False),  # exit 1
    ],
)
def test_a_job_is_retried_for_passing_causes_only(error: TaskboxError, retried: bool) -> None:
    """Retried: what the commands exit 69, 75, 130/143 for (or a passing API fault); failed:
    what they exit 1 or 2 for."""
    assert (retry_delay(error, 0) is not None) is retried
    if not isinstance(error, TransportError | JobInterrupted):
        assert (exit_status(error) in (69, 75)) is retried


def test_backoff_grows_and_attempts_end() -> None:
    """A signal's job goes back at once; a held lock waits 2, 4, 8 … s; an outage 30, 60 …;
    after MAX_ATTEMPTS attempts the job fails."""
    assert retry_delay(JobInterrupted("x"), 3) == 0
    assert [retry_delay(RunLockedError("x"), a) for a in range(4)] == [2, 4, 8, 16]
    assert retry_delay(DatabaseUnavailable("x"), 1) == 60
    assert retry_delay(RunLockedError("x"), MAX_ATTEMPTS - 1) is None


def test_a_runs_end_becomes_the_jobs_error() -> None:
    """Succeeded: no error; a signal: JobInterrupted; an outage: the outage; failed or
    partial: JobFailed with the run's error."""
    assert run_error(_result(RunStatus.SUCCEEDED)) is None
    stopped = run_error(_result(RunStatus.INTERRUPTED, signal_number=signal.SIGTERM))
    assert isinstance(stopped, JobInterrupted) and "SIGTERM" in str(stopped)
    outage = DatabaseUnavailable("gone")
    assert run_error(_result(RunStatus.INTERRUPTED, stop_error=outage)) is outage
    partial = run_error(_result(RunStatus.PARTIAL, error="2 partitions failed"))
    assert isinstance(partial, JobFailed) and "2 partitions failed" in str(partial)


def _shanghai(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=planner.SHANGHAI).timestamp()


def test_the_cron_is_read_in_china_time() -> None:
    """'30 4 * * *' ticks at 04:30 in Shanghai (20:30 UTC the day before); ticks missed while
    the worker ran are all made up, one missed by more than MAX_DELAY at start is not."""
    now = _shanghai("2026-03-10T04:31:00")
    assert due("30 4 * * *", None, now) == [_shanghai("2026-03-10T04:30:00")]
    assert due("30 4 * * *", None, now + MAX_DELAY) == []
    # A weekday is China's: Tuesday 2026-03-10 04:30 is Monday 20:30 in UTC.
    assert due("30 4 * * 2", None, now) == [_shanghai("2026-03-10T04:30:00")]
    last = _shanghai("2026-03-08T04:30:00")
    assert due("30 4 * * *", last, now) == [
        _shanghai("2026-03-09T04:30:00"),
        _shanghai("2026-03-10T04:30:00"),
    ]
    assert due("30 4 * * *", _shanghai("2026-03-10T04:30:00"), now) == []


@pytest.mark.parametrize("cron", ["30 4 * *", "61 4 * * *", "every night", "* * * * * *"])
def test_a_bad_cron_is_refused(cron: str) -> None:
    """--schedule takes five cron fields; anything else is one line naming the flag."""
    with pytest.raises(SettingsError, match="--schedule"):
        check_cron(cron)


def test_the_queues_conninfo_keeps_the_database_and_sets_the_schema() -> None:
    """Our asyncpg URL (a password with escapes, TLS, a socket directory) becomes libpq's
    conninfo, with the queue's schema first in search_path."""
    info = conninfo_to_dict(
        conninfo("postgresql+asyncpg://sync:p%40ss@db.example:5433/tb?ssl=require")
    )
    assert info["host"] == "db.example" and info["port"] == "5433" and info["dbname"] == "tb"
    assert info["user"] == "sync" and info["password"] == "p@ss" and info["sslmode"] == "require"
    assert info["options"] == f"-c search_path={SCHEMA}"
    local = conninfo_to_dict(conninfo("postgresql+asyncpg://postgres@/tb?host=/tmp/pg"))
    assert local["host"] == "/tmp/pg" and "password" not in local


async def test_a_task_that_loses_its_cancellation_is_cancelled_again() -> None:
    """cancel_all cancels again each round: a side task that swallowed one cancellation (as
    asyncio.wait_for can on Python 3.11) and went to sleep for an hour still ends, and the
    others with it."""
    import asyncio

    from sync.queue.worker import cancel_all

    swallowed = asyncio.Event()

    async def loses_one() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            swallowed.set()
        await asyncio.sleep(3600)

    async def plain() -> None:
        await asyncio.sleep(3600)

    async def fails() -> None:
        raise RuntimeError("told to stop anyway")

    tasks = [asyncio.create_task(loses_one()), asyncio.create_task(plain())]
    tasks.append(asyncio.create_task(fails()))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all(tasks, wait=0.05), timeout=5)
    assert swallowed.is_set()
    assert all(task.done() for task in tasks)
    assert tasks[0].cancelled() and tasks[1].cancelled()


async def test_a_task_that_never_stops_is_left_behind_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task that ignores every cancellation does not hold the worker's exit for ever."""
    import asyncio

    from sync.queue.worker import cancel_all

    released = False

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if released:
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all([task], rounds=3, wait=0.05), timeout=5)
    assert not task.done()
    assert "1 tasks did not stop when cancelled" in caplog.text
    released = True  # the test's own clean-up: now it stops
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
