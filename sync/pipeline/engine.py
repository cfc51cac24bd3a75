"""A sync run's life: the run lock, the ledger's run row, the workers, signals, and the end.

    SyncRun(db, api, options, plan).execute()
      take the app's run lock ─► mark stale runs, resume filter, record the run
      ─► N workers, each taking partitions from one queue (`pipeline.partition`)
      ─► record the outcome ─► give the lock back

The run is handed its parts: a database engine and a daily-data client (`sync.api.connect`, which
owns the app's token source and its 10 QPS limiter). So one process can run several apps, each
with its own credentials and limiter, and tests pass their own parts. `run_app` opens the client
from the settings for the common case.

Many workers keep enough requests in flight when answers are slow (each answer leases its rows
from the run's budget only when its body is read: `pipeline.budget`); the budget keeps memory flat
when answers are fast, and then serves older partitions first.

A lost database connection is an outage, not a failure of the partition (`pipeline.outage`): the
run pauses (no new attempt, no API request), waits up to --db-outage-timeout, takes its run lock
back, and starts the partitions in flight again; past the limit it stops as interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.api.client import DailyDataClient
from sync.api.connect import open_daily_data
from sync.api.tokens import TokenFactory, token_provider
from sync.db import database, ledger
from sync.db.counts import RunCounts
from sync.db.statuses import RunStatus
from sync.errors import (
    ApiError,
    CredentialsError,
    DatabaseUnavailable,
    RunLockedError,
    TaskboxError,
)
from sync.pipeline.budget import FirstPageGuess, RowBudget
from sync.pipeline.fetcher import PageFlow, PageQuery
from sync.pipeline.outage import Backoff, DatabaseGate
from sync.pipeline.partition import PartitionWork
from sync.pipeline.progress import LogProgress, ProgressWatcher, RunProgress
from sync.pipeline.run_lock import RunLock
from sync.pipeline.runs import FailedPartition, RunNotes, RunOptions, RunResult
from sync.pipeline.starts import Starts
from sync.planner import Partition, Plan
from sync.settings import Settings

log = logging.getLogger(__name__)


class SyncRun:
    """One nightly or backfill invocation for one app, built from the parts it is handed."""

    def __init__(
        self,
        db: AsyncEngine,
        api: DailyDataClient,
        options: RunOptions,
        plan: Plan,
        *,
        app_id: str,
        progress_interval: float | None = None,
        outage_backoff: Backoff | None = None,
        budget: RowBudget | None = None,
        alone: bool = True,
        progress: ProgressWatcher | None = None,
    ) -> None:
        """`budget`: the rows in memory, shared with other apps' runs in a fleet (default: one
        of its own from the options). `alone`: the only run of its process, which installs the
        SIGINT/SIGTERM handlers; a fleet's runs (alone=False) leave signals to the fleet (it
        calls `stop`). `progress`: told of the run's progress (default: a line in the log every
        `progress_interval` seconds, naming the app when not alone)."""
        self.db = db
        self.api = api
        self.options = options
        self.plan = plan
        self.app_id = app_id  # the client key (not secret), or "access-token"
        self.counts = RunCounts(partitions_total=len(plan.partitions))
        self.failed: list[FailedPartition] = []
        self.notes = RunNotes()
        self.run_id = 0
        self._stopping: int | None = None  # the signal that asked us to stop
        self._fatal: ApiError | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._progress = progress or LogProgress(progress_interval, named=not alone)
        # Closed while the database is away: workers wait before each attempt, fetchers stop
        # before each request, the run end waits to be recorded (`pipeline.outage`).
        self._gate = DatabaseGate(
            self._recover, limit=options.db_outage_timeout, backoff=outage_backoff
        )
        self._lock = RunLock(db, app_id)
        self._stop_error: TaskboxError | None = None  # why the run stopped short
        self._impatient = False  # a signal came while the database was away: no more waiting
        self._budget = budget
        self._alone = alone

    # -- the run --------------------------------------------------------------------------

    async def execute(self) -> RunResult:
        with database.quiet_orphaned_disconnects():
            return await self._execute()

    async def _execute(self) -> RunResult:
        started = time.monotonic()
        calls_before = self.api.stats.api_calls, self.api.stats.throttled, self.api.stats.retries
        watcher: asyncio.Task[None] | None = None
        try:
            try:
                await self._gate.run(self._lock.take)
            except DatabaseUnavailable as exc:
                raise exc.ended("nothing was recorded; run the same command again") from None
            try:
                await self.api.check_token()  # refused credentials end here, before any record
            except CredentialsError:
                raise
            except ApiError as exc:  # passing (5xx, timeout): the data calls retry it
                log.warning("first token request failed (%s); continuing with retries", exc)
            params = self.options.params(self.plan.billing_dates)
            try:
                todo = await self._gate.run(lambda: self._begin(params))
            except DatabaseUnavailable as exc:
                raise exc.ended(
                    "the run did not start; run the same command again (it resumes)"
                ) from None
            watcher = asyncio.create_task(
                self._lock.watch(self._lock_lost, paused=lambda: self._gate.down)
            )
            status, error = await self._work(todo)
            elapsed = time.monotonic() - started
            stats = self.api.stats
            self.counts.took_calls(
                stats.api_calls - calls_before[0],
                stats.throttled - calls_before[1],
                stats.retries - calls_before[2],
                elapsed,
            )
            status, error = await self._finish(status, error)
        finally:
            if watcher is not None:
                self._lock.stop_watching()
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await self._gate.close()
            await self._lock.release()
        return RunResult(
            self.run_id,
            status,
            self.counts,
            self.failed,
            elapsed,
            error,
            self._stopping,
            self._stop_error,
            self.notes,
        )

    async def _begin(self, params: dict[str, Any]) -> list[Partition]:
        """Mark stale runs, find what to resume and record the run: on the lock's connection,
        whose own lock must not count as another live run."""
        conn = self._lock.conn
        assert conn is not None
        async with database.translate_errors(conn):
            await ledger.mark_stale_runs(conn, self.app_id)
            self.counts.partitions_skipped = 0
            todo = await self._resume_filter(conn, params)
            self.run_id = await ledger.start_run(conn, self.options.kind, self.app_id, params)
            await conn.commit()
        return todo

    def _lock_lost(self) -> None:
        """The run lock's connection died: no partition commits until the lock is ours again
        (the gate's probe takes it back, or finds it taken and stops the run)."""
        self._gate.report(DatabaseUnavailable("the connection holding the run lock was lost"))

    async def _recover(self) -> None:
        """The gate's probe: the database takes writes again and this run holds its lock."""
        await database.probe(self.db)
        if self._lock.held:
            await self._lock.keep(self.run_id)

    async def _finish(self, status: RunStatus, error: str | None) -> tuple[RunStatus, str | None]:
        """Record the run's outcome through a fresh connection; the final status and error.

        Waits through an outage unless the run already stopped for one (or for a signal during
        one): then one try, and if the database is still away the next run marks this one
        'interrupted' (mark_stale_runs).
        """
        # Workers stopped by a fatal error, a signal or an outage leave their partition
        # 'running'.
        reason = error or "stopped"

        async def record() -> None:
            async with database.connection(self.db) as conn, conn.begin():
                await ledger.abandon_partitions(conn, self.run_id, reason)
                await ledger.finish_run(conn, self.run_id, status, self.counts, error)

        stopped = self._gate.failure
        if stopped is not None or self._impatient:
            try:
                await record()
                recorded = True
            except DatabaseUnavailable:
                recorded = False
            if isinstance(stopped, DatabaseUnavailable):
                self._stop_error = stopped.ended(_interrupted_note(self.run_id, recorded))
                error = str(self._stop_error)
            return status, error
        try:
            await self._gate.run(record)
        except DatabaseUnavailable as exc:  # the work is done (or stopped); its end is not written
            self._stop_error = exc.ended(_interrupted_note(self.run_id, False))
            return RunStatus.INTERRUPTED, str(self._stop_error)
        except RunLockedError as exc:
            self._stop_error = exc
            return RunStatus.INTERRUPTED, str(exc)
        return status, error

    async def _resume_filter(
        self, conn: AsyncConnection, params: dict[str, Any]
    ) -> list[Partition]:
        """The planned partitions minus those an unfinished identical run already completed."""
        if self.options.restart:
            return list(self.plan.partitions)
        previous = await ledger.find_resumable_run(
            conn, self.options.kind, params, app_id=self.app_id
        )
        if previous is None:
            return list(self.plan.partitions)
        done = await ledger.done_windows(conn, previous)
        todo = []
        for p in self.plan.partitions:
            done_start = done.get((p.billing_date, p.window.end))
            # A done window that started no later covered at least as much publish time.
            if done_start is not None and done_start <= p.window.start:
                self.counts.partitions_skipped += 1
            else:
                todo.append(p)
        if self.counts.partitions_skipped:
            log.info(
                "resuming run %d: %d partitions already done, %d to go",
                previous,
                self.counts.partitions_skipped,
                len(todo),
            )
        return todo

    async def _work(self, todo: list[Partition]) -> tuple[RunStatus, str | None]:
        queue: asyncio.Queue[tuple[int, Partition]] = asyncio.Queue()
        for item in enumerate(todo):
            queue.put_nowait(item)
        options = self.options
        limiter = self.api.limiter  # the client's: early asks go only in its spare slots
        work = PartitionWork(
            self.db,
            self.api,
            self.app_id,
            options,
            PageQuery(
                options.page_size, options.max_pages, options.douyin_id, options.agency_client_key
            ),
            PageFlow(
                self._budget or RowBudget(max(options.buffer_rows, options.page_size)),
                FirstPageGuess(options.page_size),
                Starts(limiter.qps, options.concurrency),
                ready=self._gate.check,
                spare=limiter.spare,
                lull=limiter.lull,
            ),
            self._gate,
            self.run_id,
            self.counts,
            self.failed,
            self.notes,
        )
        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM) if self._alone else ():
            try:
                loop.add_signal_handler(signum, self.stop, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests): no signal handling
        progress = RunProgress(self.app_id, self.counts, len(todo))
        try:
            self._progress.run_started(progress)
            workers = min(options.concurrency, max(len(todo), 1))
            self._workers = [asyncio.create_task(self._worker(queue, work)) for _ in range(workers)]
            results = await asyncio.gather(*self._workers, return_exceptions=True)
            for r in results:
                ours = isinstance(r, asyncio.CancelledError) or r is self._gate.failure
                if isinstance(r, BaseException) and not ours:
                    raise r
        finally:
            progress.end()
            self._progress.run_ended(progress)
            for signum in installed:
                loop.remove_signal_handler(signum)
        if self._fatal is not None:
            return RunStatus.FAILED, str(self._fatal)
        failure = self._gate.failure
        if isinstance(failure, TaskboxError):  # the database stayed away, or the lock was taken
            self._stop_error = failure
            return RunStatus.INTERRUPTED, str(failure)
        if failure is not None:
            raise failure
        if self._stopping is not None:
            return RunStatus.INTERRUPTED, f"stopped by signal {signal.Signals(self._stopping).name}"
        if self.failed:
            return RunStatus.PARTIAL, f"{len(self.failed)} partitions failed"
        return RunStatus.SUCCEEDED, None

    def stop(self, signum: int) -> None:
        """A signal: the first finishes the partitions in flight and takes no new ones; a second
        (or one while the database is away) stops now, rolling them back."""
        if self._stopping is None and not self._gate.down:
            log.warning("signal %d: finishing partitions in flight, taking no new ones", signum)
            self._stopping = signum
        else:  # a second signal, or one while the database is away: stop now, rolling back
            if self._gate.down:
                log.warning("signal %d while the database is unavailable: stopping now", signum)
                self._impatient = True
            else:
                log.warning("second signal: rolling back partitions in flight")
            self._stopping = self._stopping or signum
            self._cancel_workers()

    def _stop_all(self, exc: ApiError) -> None:
        if self._fatal is None:
            self._fatal = exc
            log.error("stopping the run: %s", exc)
            self._cancel_workers()

    def _cancel_workers(self) -> None:
        current = asyncio.current_task()
        for task in self._workers:
            if task is not current:
                task.cancel()

    # -- workers --------------------------------------------------------------------------

    async def _worker(
        self, queue: asyncio.Queue[tuple[int, Partition]], work: PartitionWork
    ) -> None:
        try:
            while self._stopping is None and self._fatal is None:
                await self._gate.ready()  # no new partition while the database is away
                try:
                    place, partition = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    await work.sync(partition, place)
                except ApiError as exc:  # only a fatal one comes out of a partition
                    self._stop_all(exc)
                    return
        except BaseException as exc:
            if exc is self._gate.failure:  # past the limit: roll back what is in flight, now
                self._cancel_workers()
            raise


def _interrupted_note(run_id: int, recorded: bool) -> str:
    where = (
        "recorded 'interrupted'"
        if recorded
        else "the next run records it 'interrupted' (the database was still away)"
    )
    return (
        f"run {run_id} stopped, partitions in flight rolled back, {where}; "
        "run the same command again: it resumes"
    )


async def run_app(
    db: AsyncEngine,
    settings: Settings,
    options: RunOptions,
    plan: Plan,
    *,
    progress_interval: float | None = None,
    outage_backoff: Backoff | None = None,
    tokens: TokenFactory = token_provider,
    progress: ProgressWatcher | None = None,
) -> RunResult:
    """One run for the app `settings` name, with a client of its own for the run's length;
    `progress` is told of its progress (default: log lines)."""
    options = options.for_app(settings.agency_client_key)
    async with open_daily_data(
        settings,
        timeouts=options.timeouts,
        retry=options.retry,
        max_connections=2 * options.concurrency + 4,
        tokens=tokens,
    ) as api:
        run = SyncRun(
            db,
            api,
            options,
            plan,
            app_id=settings.recorded_app,
            progress_interval=progress_interval,
            outage_backoff=outage_backoff,
            progress=progress,
        )
        return await run.execute()
