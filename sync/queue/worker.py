"""`taskbox-sync worker`: a procrastinate worker that runs sync jobs with the engine.

    serve(settings, config)
      our database pool, one HTTP session, one row budget ─► JobRunner
      procrastinate's worker: up to `concurrency` jobs at once from the queue 'sync' (and, with
      --schedule, 'schedule'), a heartbeat every few seconds
      beside it: stalled jobs put back (`stalled`), and with --schedule the cron's ticks
      (`schedule`)
      SIGTERM/SIGINT ─► no job is taken any more; every run finishes its partitions in flight and
      its job goes back to the queue (it resumes elsewhere); exit 128 + the signal

A job's outcome is `retry.run_error`'s: a success, or an error whose class says whether
procrastinate runs it again (`retry.SyncRetry`). Each outcome is one log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from procrastinate import App, JobContext
from procrastinate.exceptions import ConnectorException
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.api.http import new_session
from sync.api.provider import ProviderTokens
from sync.api.tokens import TokenFactory, token_provider
from sync.apps import load_apps_file
from sync.db.connect import open_engine
from sync.db.vault import PostgresVault, Sealer
from sync.errors import DatabaseUnavailable, TaskboxError
from sync.pipeline.defaults import DEFAULT_STALL_TIMEOUT
from sync.pipeline.fleet import POOL_TIMEOUT, AppOutcome, pool_size
from sync.pipeline.runs import RunOptions
from sync.queue import notes
from sync.queue.connect import SCHEDULE_QUEUE, SYNC_QUEUE, SYNC_TASK, TICK_TASK, queue_app
from sync.queue.enqueue import enqueue
from sync.queue.job_metrics import JobMetrics
from sync.queue.retry import SyncRetry, retry_delay, run_error
from sync.queue.runner import JobRunner
from sync.queue.schedule import keep_scheduling
from sync.queue.specs import JobSpec
from sync.queue.stalled import keep_recovering
from sync.settings import Settings

log = logging.getLogger(__name__)

QUEUE_POOL = 3  # procrastinate's connections: its listener, and short queries (fetch, finish, beat)
POLL_INTERVAL = 1.0  # seconds between looks at the queue: a job whose app's lock was released
# starts within it (procrastinate's notifications wake workers for new jobs only)


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker runs: jobs at once, the stall timeout, its name, the schedule (a cron in
    China time, or None) and the nightly lookback it enqueues, and every run's options."""

    concurrency: int = 1
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    name: str = dataclasses.field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    schedule: str | None = None
    lookback_days: int = 7
    db_connections: int | None = None  # the runs' pool (None: a lock connection a job + 16)
    options: RunOptions = dataclasses.field(default_factory=lambda: RunOptions(kind="nightly"))
    metrics_file: Path | None = None  # rewritten after every job (`job_metrics`)

    @property
    def heartbeat(self) -> float:
        return max(0.5, min(10.0, self.stall_timeout / 6))


def app_ids(settings: Settings) -> list[str]:
    """The apps this worker knows: its apps file's, else its one app."""
    if settings.apps_file is not None:
        return [a.id for a in load_apps_file(settings.apps_file).apps]
    return [settings.recorded_app]


class _Worker:
    """The tasks (bound to this worker's runner and queue app) and the signal handling."""

    def __init__(
        self, app: App, runner: JobRunner, config: WorkerConfig, metrics: JobMetrics | None = None
    ) -> None:
        self.app = app
        self.runner = runner
        self.config = config
        self.metrics = metrics
        self.task: asyncio.Task[None] | None = None
        self.signal_number: int | None = None
        self.worker_id: int | None = None  # procrastinate's id of this worker (from a job)

    async def sync_job(self, context: JobContext, /, **kwargs: Any) -> str:
        spec = JobSpec.from_kwargs(kwargs)
        job_id = int(context.job.id or 0)
        self.worker_id = context.job.worker_id or self.worker_id
        await notes.taken(self.app, job_id, self.config.name)
        log.info(
            "job %d: %s: started (attempt %d)", job_id, spec.describe(), context.job.attempts + 1
        )
        try:
            result = await self.runner.run(spec)
            error = run_error(result)
        except TaskboxError as exc:
            error = exc
            await self._metrics(spec, AppOutcome(spec.app_id, None, exc))
        else:
            await self._metrics(spec, AppOutcome(spec.app_id, result, result.stop_error))
            if error is None:
                counts = result.counts
                line = (
                    f"run {result.run_id} succeeded: {counts.partitions_done} partitions done, "
                    f"{counts.partitions_skipped} skipped, {counts.rows_fetched} rows fetched"
                )
                log.info("job %d: %s: %s", job_id, spec.describe(), line)
                return line
        await notes.failed(self.app, job_id, str(error))
        delay = retry_delay(error, context.job.attempts)
        then = "fails" if delay is None else f"runs again in {delay:g} s"
        log.warning("job %d: %s: %s; it %s", job_id, spec.describe(), error, then)
        raise error

    async def _metrics(self, spec: JobSpec, outcome: AppOutcome) -> None:
        if self.metrics is not None:
            await self.metrics.record(spec.kind, outcome)

    async def nightly_tick(self, timestamp: int, lookback_days: int) -> str:
        today = planner.shanghai_today(timestamp)
        first, last = planner.nightly_dates(today, lookback_days)
        planner.check_billing_dates(first, last, time.time())
        specs = [JobSpec(app, "nightly", first, last) for app in app_ids(self.runner.settings)]
        done = await enqueue(self.app, specs)
        for deferral in done:
            log.info("schedule: %s", deferral.describe())
        deferred = sum(d.job_id is not None for d in done)
        return f"{deferred} deferred, {len(done) - deferred} refused"

    def register(self) -> None:
        self.app.task(name=SYNC_TASK, queue=SYNC_QUEUE, pass_context=True, retry=SyncRetry())(
            self.sync_job
        )
        self.app.task(name=TICK_TASK, queue=SCHEDULE_QUEUE)(self.nightly_tick)

    async def keep_heartbeat(self) -> None:
        """Beat while runs are in progress, until cancelled. procrastinate's worker stops its
        heartbeat as soon as it is asked to stop, before its jobs end; runs that finish their
        partitions after SIGTERM must not look stalled meanwhile (another worker would take
        their jobs while they still hold them)."""
        while True:
            await asyncio.sleep(self.config.heartbeat)
            if self.worker_id is not None and self.runner.running:
                with contextlib.suppress(ConnectorException):  # the database away: next time
                    await self.app.job_manager.update_heartbeat(self.worker_id)

    def stop(self, signum: int) -> None:
        """First signal: take no job any more, let the runs finish their partitions in flight;
        a second: the runs roll theirs back."""
        if self.signal_number is None:
            log.warning("signal %d: taking no more jobs; runs finish their partitions", signum)
            self.signal_number = signum
            if self.task is not None:
                self.task.cancel()  # procrastinate's worker then waits for its jobs
        self.runner.stop(signum)


class _JobErrorsOnce(logging.Filter):
    """procrastinate logs a failed job with its traceback; ours are expected outcomes, logged
    as one line by the worker, so their records are dropped (a bug's traceback still shows)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, TaskboxError)


async def serve(settings: Settings, config: WorkerConfig) -> int:
    """Run a worker until a signal; its exit status (128 + the signal)."""
    logging.getLogger("procrastinate.worker").addFilter(_JobErrorsOnce())
    options = config.options
    pool = config.db_connections or pool_size(config.concurrency, options.concurrency)
    pool = max(pool, config.concurrency + 1)  # each job's lock connection, and a writer
    async with open_engine(settings, pool_size=pool, pool_timeout=POOL_TIMEOUT) as db:
        app = queue_app(db.url.render_as_string(hide_password=False), pool_size=QUEUE_POOL)
        session = new_session(options.timeouts, max_connections=config.concurrency * 40)
        try:
            async with app.open_async():
                runner = JobRunner(db, settings, options, session, tokens=_tokens(settings, db))
                metrics = JobMetrics(config.metrics_file, db) if config.metrics_file else None
                worker = _Worker(app, runner, config, metrics)
                worker.register()
                return await _run(app, worker, config)
        finally:
            await session.close()


def _tokens(settings: Settings, db: AsyncEngine) -> TokenFactory:
    """Provider apps' tokens through the vault when TASKBOX_SECRET_KEY is set (a provider app's
    job without it fails with a line that names the key)."""
    if not settings.secret_key:
        return token_provider
    return ProviderTokens(PostgresVault(db, Sealer(settings.secret_key)))


async def _run(app: App, worker: _Worker, config: WorkerConfig) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, worker.stop, signum)
    queues = [SYNC_QUEUE] + ([SCHEDULE_QUEUE] if config.schedule else [])
    side = [
        asyncio.create_task(keep_recovering(app, config.stall_timeout, config.heartbeat)),
        asyncio.create_task(worker.keep_heartbeat()),
    ]
    if config.schedule:
        side.append(
            asyncio.create_task(keep_scheduling(app, config.schedule, config.lookback_days))
        )
    log.info(
        "worker %s: %d jobs at once from %s%s",
        config.name,
        config.concurrency,
        " and ".join(queues),
        f"; nightly at '{config.schedule}' China time" if config.schedule else "",
    )
    worker.task = asyncio.create_task(
        app.run_worker_async(
            queues=queues,
            name=config.name,
            concurrency=config.concurrency,
            install_signal_handlers=False,
            fetch_job_polling_interval=POLL_INTERVAL,
            update_heartbeat_interval=config.heartbeat,
            stalled_worker_timeout=config.stall_timeout,
            delete_jobs="never",
        )
    )
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await worker.task
    except ConnectorException as exc:  # the queue's database went away under the worker
        raise DatabaseUnavailable(f"the job queue: {_first_line(exc)}") from None
    finally:
        await cancel_all(side)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    if worker.signal_number is None:  # procrastinate stopped it: its listener or heartbeat
        raise DatabaseUnavailable("the job queue's worker stopped (see the lines above)")
    log.info("worker %s: stopped", config.name)
    return 128 + worker.signal_number


CANCEL_ROUNDS = 5
CANCEL_WAIT = 1.0  # seconds each round waits for the tasks to end


async def cancel_all(
    tasks: list[asyncio.Task[Any]], *, rounds: int = CANCEL_ROUNDS, wait: float = CANCEL_WAIT
) -> None:
    """Cancel `tasks` and wait for them to end, cancelling again each round.

    On Python 3.11 a cancellation that lands as the call a task awaits completes can be lost
    (asyncio.wait_for's race, in psycopg's pool among others): the scheduler then went on to
    sleep until its next tick and a SIGTERMed worker waited for it, up to a cron period (seen
    once in CI: a worker stopped as it started). Tasks still running after the last round are
    left, with a warning, so that the worker exits.
    """
    if not tasks:
        return
    pending = set(tasks)
    for _ in range(rounds):
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait)
        if not pending:
            break
    else:
        log.warning("worker: %d tasks did not stop when cancelled; left behind", len(pending))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: nothing to report from a task told to stop


def _first_line(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__
