"""Sync jobs on the queue (#16), with real `python -m sync worker` processes against the sandbox
and PostgreSQL: one job per app at a time whichever worker runs it, a SIGKILLed worker's job
finished by another with the table exact, SIGTERM's 143, the cron's tick enqueued once by
several scheduling workers, identical jobs refused, and retries for passing causes only."""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.db import locks
from sync.sandbox import Faults, SandboxServer
from sync.sandbox.apps_file import render_apps_file, secret_env
from tests.helpers import (
    Cli,
    Clock,
    MakeSandbox,
    assert_table_is_truth,
    cli_env,
    done_partitions,
    partitions,
    run_cli,
    runs,
    spawned,
    wait_until,
)

pytestmark = pytest.mark.wall_clock  # workers run in subprocesses: the wall clock

STALL = "3"  # --stall-timeout of the tests' workers: a dead worker's job moves on quickly


@pytest.fixture
async def fleet(make_sandbox: MakeSandbox) -> SandboxServer:
    """Three small apps."""
    return await make_sandbox(seed=41, videos=40, tasks=4, creators=8, apps=3)


def _env(sandbox: SandboxServer, database_url: str, tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "apps.toml"
    path.write_text(render_apps_file(sandbox.apps))
    env = cli_env(sandbox, database_url, unset=("DOUYIN_CLIENT_KEY", "DOUYIN_CLIENT_SECRET"))
    return {**env, **secret_env(sandbox.apps), "TASKBOX_APPS_FILE": str(path)}


@contextlib.asynccontextmanager
async def _workers(env: dict[str, str], count: int, *flags: str) -> AsyncIterator[list[Cli]]:
    """`count` worker processes named w1, w2, …; killed if the test leaves them running."""
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                spawned("worker", "--name", f"w{i}", "--stall-timeout", STALL, *flags, env=env)
            )
            for i in range(1, count + 1)
        ]


async def _jobs(engine: AsyncEngine) -> list[Any]:
    """The queue's sync jobs with their app, state, attempts and noted worker, oldest first."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT j.id, j.args->>'app' AS app, j.args->>'kind' AS kind, j.status::text,"
                " j.attempts, n.worker, n.error FROM procrastinate.procrastinate_jobs j"
                " LEFT JOIN procrastinate.taskbox_job_notes n ON n.job_id = j.id"
                " WHERE j.task_name = 'taskbox.sync' ORDER BY j.id"
            )
        )
        return list(result.all())


async def _registered_workers(engine: AsyncEngine, count: int) -> bool:
    """Whether at least `count` workers are registered with the queue (procrastinate's table)."""
    async with engine.connect() as conn:
        found = await conn.scalar(text("SELECT count(*) FROM procrastinate.procrastinate_workers"))
    return int(found or 0) >= count


async def _all_succeeded(engine: AsyncEngine, workers: list[Cli], count: int) -> None:
    async def done() -> bool:
        for w in workers:
            assert w.running, await w.wait(1)
        jobs = await _jobs(engine)
        assert not [j for j in jobs if j.status == "failed"], jobs
        return len(jobs) == count and all(j.status == "succeeded" for j in jobs)

    await wait_until(done, limit=120, interval=0.2, what=f"{count} jobs to succeed")


async def _stop(workers: list[Cli]) -> None:
    for w in workers:
        w.send(signal.SIGTERM)
    for w in workers:
        stopped = await w.wait(30)
        assert stopped.status == 143 and "Traceback" not in stopped.stderr, stopped


def _backfill(dates: list[dt.date], *extra: str) -> list[str]:
    return ["enqueue", "backfill", "--from", str(dates[0]), "--to", str(dates[-1]), *extra]


async def test_two_workers_never_run_two_jobs_of_one_app_at_once(
    engine: AsyncEngine, database_url: str, fleet: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """Two jobs per app for three apps, two workers of two jobs each: the ledger's runs of one
    app never overlap, every app's table is the platform's, no app above 10 requests in any
    second."""
    fleet.set_faults(Faults(seed=2, latency_min=0.2, latency_max=0.6))
    env = _env(fleet, database_url, tmp_path)
    dates = clock.recent_dates(4)
    for part in (dates[:2], dates[2:]):
        queued = await run_cli(*_backfill(part), env=env)
        assert queued.status == 0 and queued.stdout.count("deferred as job") == 3, queued
    async with _workers(env, 2, "--concurrency", "2") as workers:
        await _all_succeeded(engine, workers, 6)
        await _stop(workers)
    by_app: dict[str, list[Any]] = {}
    for run in await runs(engine):
        assert run.status == "succeeded", run
        by_app.setdefault(run.app_id, []).append(run)
    assert sorted(by_app) == sorted(a.app_id for a in fleet.apps)
    for app_runs in by_app.values():
        first, second = sorted(app_runs, key=lambda r: r.started_at)
        assert first.finished_at <= second.started_at, (first, second)
    workers_used = {j.worker for j in await _jobs(engine)}
    assert workers_used <= {"w1", "w2"}
    now = clock()
    for app in fleet.apps:
        await assert_table_is_truth(
            engine, fleet, dates, now, app_id=app.app_id, app=app.client_key
        )
        assert fleet.stats(app.client_key)["daily_data_peak_per_second"] <= 10


async def test_a_killed_workers_job_is_finished_by_another_and_the_table_is_exact(
    engine: AsyncEngine, database_url: str, fleet: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """Three workers; the one running a 30-date backfill is SIGKILLed after some partitions
    committed: after the stall timeout another takes the job, its run skips what the dead one
    committed, and the table equals the platform's."""
    fleet.set_faults(Faults(seed=3, latency_min=0.3, latency_max=0.8))
    env = _env(fleet, database_url, tmp_path)
    app = fleet.apps[0]
    dates = clock.recent_dates(30)
    queued = await run_cli(*_backfill(dates, "--app", app.app_id), env=env)
    assert queued.status == 0, queued
    async with _workers(env, 3) as workers:

        async def some_done() -> bool:
            return await done_partitions(engine) >= 5

        await wait_until(some_done, limit=60, what="partitions to be committed")
        (job,) = await _jobs(engine)
        victim = workers[int(job.worker.removeprefix("w")) - 1]
        victim.send(signal.SIGKILL)
        assert (await victim.wait(10)).status == -signal.SIGKILL
        others = [w for w in workers if w is not victim]
        await _all_succeeded(engine, others, 1)
        (job,) = await _jobs(engine)
        assert job.worker != victim.args[2] and job.attempts == 2, job  # killed, then done
        await _stop(others)
    first, second = await runs(engine)
    assert first.status == "interrupted" and second.status == "succeeded", (first, second)
    done_first = [p for p in await partitions(engine, first.id) if p.status == "done"]
    assert second.partitions_skipped == len(done_first) >= 5  # what the dead worker committed
    await assert_table_is_truth(
        engine, fleet, dates, clock(), app_id=app.app_id, app=app.client_key
    )


async def test_sigterm_puts_the_job_back_and_exits_143(
    engine: AsyncEngine, database_url: str, fleet: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """SIGTERM mid-job: the run finishes its partitions in flight and is recorded interrupted,
    the worker exits 143, the job waits again; the next worker resumes it to an exact table."""
    fleet.set_faults(Faults(seed=4, latency_min=0.3, latency_max=0.8))
    env = _env(fleet, database_url, tmp_path)
    app = fleet.apps[1]
    dates = clock.recent_dates(20)
    assert (await run_cli(*_backfill(dates, "--app", app.app_id), env=env)).status == 0
    async with _workers(env, 1) as (worker,):

        async def some_done() -> bool:
            assert worker.running, await worker.wait(1)
            return await done_partitions(engine) >= 3

        await wait_until(some_done, limit=60, what="partitions to be committed")
        worker.send(signal.SIGTERM)
        stopped = await worker.wait(60)
    assert stopped.status == 143 and "Traceback" not in stopped.stderr, stopped
    (job,) = await _jobs(engine)
    assert job.status == "todo" and job.attempts == 1 and "SIGTERM" in job.error, job
    (run,) = await runs(engine)
    assert run.status == "interrupted"
    async with _workers(env, 1) as workers:
        await _all_succeeded(engine, workers, 1)
        await _stop(workers)
    first, second = await runs(engine)
    done_first = [p for p in await partitions(engine, first.id) if p.status == "done"]
    assert second.status == "succeeded" and second.partitions_skipped == len(done_first) >= 3
    await assert_table_is_truth(
        engine, fleet, dates, clock(), app_id=app.app_id, app=app.client_key
    )


async def test_three_scheduling_workers_enqueue_the_cron_tick_once(
    engine: AsyncEngine, database_url: str, fleet: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """Three workers started with the same --schedule: the tick is deferred once, its nightly
    once per app, and each app's nightly syncs yesterday."""
    env = _env(fleet, database_url, tmp_path)
    # A tick two minutes ago (workers defer a tick up to 10 minutes late), the next in an hour.
    minute = dt.datetime.fromtimestamp(time.time() - 120, planner.SHANGHAI).minute
    flags = ("--schedule", f"{minute} * * * *", "--lookback-days", "1")
    async with _workers(env, 3, *flags) as workers:
        # All three up (registered with the queue, their signal handlers in place) before any
        # is stopped: on a busy machine two can finish the jobs while the third still imports,
        # and a SIGTERM then ends that one by the signal's default action, not with its 143.
        await wait_until(
            lambda: _registered_workers(engine, 3), limit=60, interval=0.2, what="3 workers up"
        )
        await _all_succeeded(engine, workers, 3)
        await _stop(workers)
    async with engine.connect() as conn:
        defers = await conn.scalar(
            text("SELECT count(*) FROM procrastinate.procrastinate_periodic_defers")
        )
        ticks = await conn.scalar(
            text(
                "SELECT count(*) FROM procrastinate.procrastinate_jobs"
                " WHERE task_name = 'taskbox.nightly_tick'"
            )
        )
    assert (defers, ticks) == (1, 1)
    jobs = await _jobs(engine)
    assert sorted(j.app for j in jobs) == sorted(a.app_id for a in fleet.apps)
    assert {j.kind for j in jobs} == {"nightly"}
    for app in fleet.apps:
        await assert_table_is_truth(
            engine, fleet, [clock.yesterday], clock(), app_id=app.app_id, app=app.client_key
        )


async def test_an_identical_job_is_refused_while_one_waits(
    engine: AsyncEngine, database_url: str, fleet: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """enqueue twice: the second is refused per app, naming the job that waits; other dates
    are another job; status lists the waiting jobs; an unknown --app is exit 2."""
    env = _env(fleet, database_url, tmp_path)
    first = await run_cli("enqueue", "nightly", "--lookback-days", "2", env=env)
    assert first.status == 0 and first.stdout.count("deferred as job") == 3, first
    again = await run_cli("enqueue", "nightly", "--lookback-days", "2", env=env)
    assert again.status == 0 and again.stdout.count("refused, job") == 3, again
    assert "(waiting) is the same work" in again.stdout
    other = await run_cli(
        "enqueue", "nightly", "--lookback-days", "3", "--app", fleet.apps[0].app_id, env=env
    )
    assert other.stdout.count("deferred as job") == 1, other
    assert len(await _jobs(engine)) == 4
    shown = await run_cli("status", env=env)
    assert shown.status == 0 and "Job queue (0 workers alive)" in shown.stdout, shown
    assert shown.stdout.count("waiting job") == 4, shown
    unknown = await run_cli("enqueue", "nightly", "--app", "tt_nope", env=env)
    assert unknown.status == 2 and "tt_nope" in unknown.stderr and len(unknown.err_lines) == 1


async def test_a_held_lock_is_retried_and_refused_credentials_fail_the_job(
    engine: AsyncEngine, database_url: str, fleet: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """App 1's run lock held elsewhere: its job waits and is retried with backoff, then done
    once the lock is free; app 2's secret refused (10013): its job fails at once, not retried,
    and status shows why."""
    env = _env(fleet, database_url, tmp_path)
    one, two = fleet.apps[0], fleet.apps[1]
    env[f"SBX_APP_{two.number:04d}_CLIENT_SECRET"] = "wrong"
    dates = clock.recent_dates(2)
    for app in (one, two):
        assert (await run_cli(*_backfill(dates, "--app", app.app_id), env=env)).status == 0
    async with engine.connect() as holder:
        assert await locks.acquire_run_lock(holder, one.app_id)
        await holder.commit()
        async with _workers(env, 2) as workers:

            async def settled() -> bool:
                jobs = {j.app: j for j in await _jobs(engine)}
                return jobs[two.app_id].status == "failed" and jobs[one.app_id].attempts >= 1

            await wait_until(settled, limit=60, what="a failure and a retry")
            jobs = {j.app: j for j in await _jobs(engine)}
            assert jobs[two.app_id].attempts == 1 and "10013" in jobs[two.app_id].error  # once
            assert jobs[one.app_id].status == "todo" and "in progress" in jobs[one.app_id].error
            shown = await run_cli("status", env=env)
            assert "2 workers alive" in shown.stdout and "failed job" in shown.stdout, shown
            assert "wrong" not in shown.stdout
            await locks.release_run_lock(holder, one.app_id)
            await holder.commit()

            async def retried() -> bool:
                return {j.app: j.status for j in await _jobs(engine)}[one.app_id] == "succeeded"

            await wait_until(retried, limit=60, what="the retry to succeed")
            await _stop(workers)
    await assert_table_is_truth(
        engine, fleet, dates, clock(), app_id=one.app_id, app=one.client_key
    )


async def test_a_workers_metrics_file_holds_every_apps_latest_job(
    engine: AsyncEngine, database_url: str, fleet: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """`worker --metrics-file`: after the jobs of three apps, the file (read back with the
    client library's parser) holds each app's latest job: done, its rows and calls, and its
    last success."""
    from prometheus_client.parser import text_string_to_metric_families

    env = _env(fleet, database_url, tmp_path)
    dates = clock.recent_dates(2)
    assert (await run_cli(*_backfill(dates), env=env)).status == 0
    metrics = tmp_path / "taskbox_worker.prom"
    async with _workers(env, 1, "--concurrency", "3", "--metrics-file", str(metrics)) as workers:
        await _all_succeeded(engine, workers, 3)

        async def written() -> bool:
            text = metrics.read_text() if metrics.exists() else ""
            return all(a.app_id in text for a in fleet.apps)

        await wait_until(written, limit=30, what="the metrics file")
        await _stop(workers)
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    outcome = {
        s.labels["app_id"]: s.labels["outcome"]
        for s in families["taskbox_sync_run_outcome"].samples
        if s.value == 1
    }
    assert outcome == {a.app_id: "done" for a in fleet.apps}
    inserted = {
        s.labels["app_id"]: s.value
        for s in families["taskbox_sync_run_rows"].samples
        if s.labels["change"] == "inserted"
    }
    by_app = {r.app_id: r.rows_inserted for r in await runs(engine)}
    assert inserted == by_app and all(inserted.values())
    successes = families["taskbox_sync_last_success_timestamp_seconds"].samples
    assert {s.labels["app_id"] for s in successes} == set(by_app)
    assert all(s.labels["kind"] == "backfill" and s.value > 0 for s in successes)
