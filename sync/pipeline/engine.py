"""The sync engine: walks the plan's partitions with concurrent workers, pages through each
window under the shared limiter, and commits each partition's rows with its ledger entry.

    plan ──► partition queue ──► N workers (one DB connection each)
                                   │ fetch page k+1 ─┐   (pipelined: while page k is written)
                                   │ map + COPY page k ◄┘
                                   └ merge + mirror delete + ledger "done"  ── one transaction

Many workers keep enough requests in flight when answers are slow (each answer leases its rows
from the run's budget only when its body is read: `pipeline.budget`); the budget keeps memory flat
when answers are fast, and then serves older partitions first.

A lost database connection is an outage, not a failure of the partition (`pipeline.outage`): the run
pauses (no new attempt, no API request), waits up to --db-outage-timeout, takes its run lock
back, and starts the partitions in flight again; past the limit it stops as interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.api.client import ApiCaller, CallStats, DailyDataClient, Page
from sync.api.http import new_session
from sync.api.limiter import RequestLimiter
from sync.api.tokens import token_provider
from sync.db import database, ledger
from sync.db.store import AppendConflict, PartitionWriter
from sync.errors import (
    ApiError,
    ContractError,
    CredentialsError,
    DatabaseError,
    DatabaseUnavailable,
    ErrorClass,
    RunLockedError,
    TaskboxError,
)
from sync.pipeline.budget import FirstPageGuess, RowBudget
from sync.pipeline.fetcher import PageFlow, PageQuery, partition_pages
from sync.pipeline.outage import Backoff, DatabaseGate
from sync.pipeline.progress import Counters, Progress
from sync.pipeline.runs import FailedPartition, RunOptions, RunResult
from sync.pipeline.starts import Starts
from sync.planner import Partition, Plan
from sync.records.mapper import map_page
from sync.settings import Settings

log = logging.getLogger(__name__)


class SyncRun:
    """One nightly or backfill invocation."""

    def __init__(
        self,
        db: AsyncEngine,
        settings: Settings,
        options: RunOptions,
        plan: Plan,
        *,
        progress_interval: float | None = None,
        outage_backoff: Backoff | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.options = options
        self.plan = plan
        self.counts = ledger.RunCounts()
        self.live = Counters(partitions_total=len(plan.partitions))
        self.calls = CallStats()
        self.failed: list[FailedPartition] = []
        self.run_id = 0
        self._stopping: int | None = None  # the signal that asked us to stop
        self._fatal: ApiError | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._progress_interval = progress_interval
        self._query = PageQuery(
            options.page_size, options.max_pages, options.douyin_id, options.agency_client_key
        )
        # Closed while the database is away: workers wait before each attempt, fetchers stop
        # before each request, the run end waits to be recorded (sync.pipeline.outage).
        self._gate = DatabaseGate(
            self._recover, limit=options.db_outage_timeout, backoff=outage_backoff
        )
        self._budget = RowBudget(max(options.buffer_rows, options.page_size))
        self._flow: PageFlow | None = None  # built with the run's limiter
        self._lock_conn: AsyncConnection | None = None  # holds the run lock (its session)
        self._lock_session: ledger.Session | None = None
        self._stop_error: TaskboxError | None = None  # why the run stopped short
        self._impatient = False  # a signal came while the database was away: no more waiting

    @property
    def app_key(self) -> str:
        return self.settings.client_key or "access-token"

    # -- the run --------------------------------------------------------------------------

    async def execute(self) -> RunResult:
        with database.quiet_orphaned_disconnects():
            return await self._execute()

    async def _execute(self) -> RunResult:
        started = time.monotonic()
        session = new_session(
            self.options.timeouts, max_connections=2 * self.options.concurrency + 4
        )
        try:
            try:
                await self._gate.run(self._take_lock)
            except DatabaseUnavailable as exc:
                raise exc.ended("nothing was recorded; run the same command again") from None
            tokens = token_provider(self.settings, session)
            try:
                await tokens.get()  # refused credentials end here, before any run is recorded
            except CredentialsError:
                raise
            except ApiError as exc:  # passing (5xx, timeout): the data calls retry it
                log.warning("first token request failed (%s); continuing with retries", exc)
            limiter = RequestLimiter(self.settings.qps)
            self._flow = PageFlow(
                self._budget,
                FirstPageGuess(self.options.page_size),
                Starts(self.settings.qps, self.options.concurrency),
                ready=self._gate.check,
                spare=limiter.spare,
                lull=limiter.lull,
            )
            caller = ApiCaller(
                session, limiter, tokens, policy=self.options.retry, stats=self.calls
            )
            client = DailyDataClient(caller, self.settings.open_base_url)
            params = self.options.params(self.plan.billing_dates)
            try:
                todo = await self._gate.run(lambda: self._begin(params))
            except DatabaseUnavailable as exc:
                raise exc.ended(
                    "the run did not start; run the same command again (it resumes)"
                ) from None
            status, error = await self._work(todo, client)
            self.counts.api_calls = self.calls.api_calls
            self.counts.throttled = self.calls.throttled
            self.counts.retries = self.calls.retries
            elapsed = time.monotonic() - started
            self.counts.qps_used = round(self.calls.api_calls / elapsed, 3) if elapsed else None
            status, error = await self._finish(status, error)
        finally:
            await self._gate.close()
            await self._release_lock()
            await session.close()
        return RunResult(
            self.run_id,
            status,
            self.counts,
            self.failed,
            elapsed,
            error,
            self._stopping,
            self._stop_error,
        )

    async def _take_lock(self) -> None:
        """The app's run lock, on a connection kept for the run (RunLockedError if taken)."""
        async with database.outages():
            conn = await self.db.connect()
            async with database.outages(conn):
                locked = await ledger.acquire_run_lock(conn, self.app_key)
                holder = await ledger.current_session(conn)
                await conn.commit()
        if not locked:
            await conn.close()
            raise RunLockedError(
                f"another taskbox-sync run for app {self.app_key} is in progress; "
                "try again when it has finished"
            )
        self._lock_conn, self._lock_session = conn, holder

    async def _begin(self, params: dict[str, Any]) -> list[Partition]:
        """Mark stale runs, find what to resume and record the run: on the lock's connection,
        whose own lock must not count as another live run."""
        conn = self._lock_conn
        assert conn is not None
        async with database.outages(conn):
            await ledger.mark_stale_runs(conn, self.app_key)
            self.live.partitions_skipped = 0
            todo = await self._resume_filter(conn, params)
            self.run_id = await ledger.start_run(conn, self.options.kind, self.app_key, params)
            await conn.commit()
        self.counts.partitions_total = len(self.plan.partitions)
        self.counts.partitions_skipped = self.live.partitions_skipped
        return todo

    async def _recover(self) -> None:
        """The gate's probe: the database takes writes again and this run holds its lock."""
        await database.probe(self.db)
        if self._lock_conn is not None:
            await self._relock()

    async def _relock(self) -> None:
        """After an outage: keep the run lock's connection if it lived through it, else take
        the lock again on a new one (a restarted server forgot it with the session).

        If another run took the lock meanwhile, this run stops with RunLockedError (exit 75,
        as for a run refused at start): that run marked this one 'interrupted' when it began
        and owns the app's ledger now; it, or the next run, resumes the work.
        """
        old = self._lock_conn
        assert old is not None
        if await _alive(old):
            return
        self._lock_conn = None
        await database.discard(old)
        async with database.outages():
            conn = await self.db.connect()
            async with database.outages(conn):
                if self._lock_session is not None:
                    locked = await ledger.take_over_run_lock(conn, self.app_key, self._lock_session)
                else:
                    locked = await ledger.acquire_run_lock(conn, self.app_key)
                holder = await ledger.current_session(conn)
                await conn.commit()
        if not locked:
            await database.discard(conn)
            this = f"run {self.run_id} stopped (interrupted)" if self.run_id else "this run stopped"
            raise RunLockedError(
                f"another taskbox-sync run for app {self.app_key} took the run lock while the "
                f"database was unavailable; {this} and that run owns the work now: run this "
                "command again when it has finished"
            )
        self._lock_conn, self._lock_session = conn, holder

    async def _finish(self, status: str, error: str | None) -> tuple[str, str | None]:
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
            return "interrupted", str(self._stop_error)
        except RunLockedError as exc:
            self._stop_error = exc
            return "interrupted", str(exc)
        return status, error

    async def _release_lock(self) -> None:
        """Give the lock back; a connection in doubt is discarded so the lock dies with it."""
        conn, self._lock_conn = self._lock_conn, None
        if conn is None:
            return
        try:
            await conn.rollback()
            await ledger.release_run_lock(conn, self.app_key)
            await conn.commit()
            await conn.close()
        except Exception:  # the database went away: closing the session frees the lock anyway
            await database.discard(conn)

    async def _resume_filter(
        self, conn: AsyncConnection, params: dict[str, Any]
    ) -> list[Partition]:
        """The planned partitions minus those an unfinished identical run already completed."""
        if self.options.restart:
            return list(self.plan.partitions)
        previous = await ledger.find_resumable_run(
            conn, self.options.kind, params, app_key=self.app_key
        )
        if previous is None:
            return list(self.plan.partitions)
        done = await ledger.done_windows(conn, previous)
        todo = []
        for p in self.plan.partitions:
            done_start = done.get((p.billing_date, p.window.end))
            # A done window that started no later covered at least as much publish time.
            if done_start is not None and done_start <= p.window.start:
                self.live.partitions_skipped += 1
            else:
                todo.append(p)
        if self.live.partitions_skipped:
            log.info(
                "resuming run %d: %d partitions already done, %d to go",
                previous,
                self.live.partitions_skipped,
                len(todo),
            )
        return todo

    async def _work(self, todo: list[Partition], client: DailyDataClient) -> tuple[str, str | None]:
        queue: asyncio.Queue[tuple[int, Partition]] = asyncio.Queue()
        for item in enumerate(todo):
            queue.put_nowait(item)
        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread (tests): no signal handling
        progress = Progress(
            self.live, lambda: self.calls.api_calls, interval=self._progress_interval
        )
        try:
            progress.start()
            workers = min(self.options.concurrency, max(len(todo), 1))
            self._workers = [
                asyncio.create_task(self._worker(queue, client)) for _ in range(workers)
            ]
            results = await asyncio.gather(*self._workers, return_exceptions=True)
            for r in results:
                ours = isinstance(r, asyncio.CancelledError) or r is self._gate.failure
                if isinstance(r, BaseException) and not ours:
                    raise r
        finally:
            await progress.stop()
            for signum in installed:
                loop.remove_signal_handler(signum)
        if self._fatal is not None:
            return "failed", str(self._fatal)
        failure = self._gate.failure
        if isinstance(failure, TaskboxError):  # the database stayed away, or the lock was taken
            self._stop_error = failure
            return "interrupted", str(failure)
        if failure is not None:
            raise failure
        if self._stopping is not None:
            return "interrupted", f"stopped by signal {signal.Signals(self._stopping).name}"
        if self.failed:
            return "partial", f"{len(self.failed)} partitions failed"
        return "succeeded", None

    def _on_signal(self, signum: int) -> None:
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
        self, queue: asyncio.Queue[tuple[int, Partition]], client: DailyDataClient
    ) -> None:
        try:
            while self._stopping is None and self._fatal is None:
                await self._gate.ready()  # no new partition while the database is away
                try:
                    place, partition = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await self._partition(client, partition, place)
        except BaseException as exc:
            if exc is self._gate.failure:  # past the limit: roll back what is in flight, now
                self._cancel_workers()
            raise

    async def _partition(self, client: DailyDataClient, p: Partition, place: int) -> None:
        """Sync one partition, with a fresh attempt (and connection) after a passing failure.

        A lost database is not an attempt: the partition waits for it (`pipeline.outage`) and starts
        again from its first page, its transaction having gone with the connection.
        """
        w = p.window
        pid: int | None = None
        stats = ledger.PartitionStats()
        error: TaskboxError | None = None
        attempt = 1
        lost = False  # an outage hit the commit that recorded the partition
        while True:
            since = await self._gate.ready()
            stats = ledger.PartitionStats()
            try:
                # A connection per attempt from the pool: one the database dropped is replaced.
                async with database.connection(self.db) as conn:
                    async with conn.begin():
                        entry = pid
                        if entry is None and lost:
                            entry = await ledger.running_partition(
                                conn, self.run_id, p.billing_date, w.start, w.end
                            )
                        if entry is None:
                            lost = True  # until the commit returns, recorded or not: unknown
                            entry = await ledger.start_partition(
                                conn,
                                self.run_id,
                                p.billing_date,
                                w.start,
                                w.end,
                                self.options.scope,
                            )
                        elif attempt > 1:
                            await ledger.partition_retry(conn, entry)
                    pid, lost = entry, False
                    async with conn.begin():
                        await self._sync_partition(conn, client, p, place, pid, stats, attempt)
            except DatabaseUnavailable as exc:
                self._gate.report(exc, since)
                continue  # not an attempt of the partition's own
            except ApiError as exc:
                error = exc
                if exc.error_class is ErrorClass.FATAL:
                    self._stop_all(exc)
                    raise asyncio.CancelledError from exc
                if exc.error_class is ErrorClass.PERMANENT:
                    break
            except AppendConflict as exc:  # rare: sync it again with the full merge, at once
                error = exc
            except _DATABASE_ERRORS as exc:
                error = exc if isinstance(exc, TaskboxError) else DatabaseError(_first_line(exc))
                await asyncio.sleep(min(2.0**attempt, 10.0))
            else:
                self._count_done(stats)
                return
            if attempt >= self.options.partition_attempts:
                break
            attempt += 1
            log.warning(
                "%s: %s; attempt %d of %d",
                _label(p),
                error,
                attempt,
                self.options.partition_attempts,
            )
        assert error is not None
        err_no = getattr(error, "err_no", None)
        log_id = getattr(error, "log_id", None) or stats.last_log_id
        self.failed.append(
            FailedPartition(p.billing_date, w.start, w.end, err_no, str(error), log_id)
        )
        self.counts.partitions_failed += 1
        self.live.partitions_failed += 1
        log.error("%s failed: %s", _label(p), error)

        async def record() -> None:
            nonlocal pid
            async with database.connection(self.db) as conn, conn.begin():
                if pid is None:
                    pid = await ledger.start_partition(
                        conn, self.run_id, p.billing_date, w.start, w.end, self.options.scope
                    )
                await ledger.partition_failed(conn, pid, stats, err_no, str(error), log_id)

        try:
            await self._gate.run(record)  # through an outage too: the failure is kept
        except _DATABASE_ERRORS as exc:
            if exc is self._gate.failure:
                raise
            # The next run marks the partition failed instead.
            log.error("%s: cannot record the failure: %s", _label(p), _first_line(exc))

    async def _sync_partition(
        self,
        conn: AsyncConnection,
        client: DailyDataClient,
        p: Partition,
        place: int,
        pid: int,
        stats: ledger.PartitionStats,
        attempt: int,
    ) -> None:
        """Fetch, stage and merge one partition inside the caller's transaction.

        A key repeated across pages means the data moved while we paged (offset paging can
        then skip rows too): unless this is the last attempt, raise so the partition rolls
        back and is read again.
        """
        writer = await PartitionWriter.open(conn)
        if attempt == 1 < self.options.partition_attempts:  # a conflict must leave a retry
            writer.append_to(
                p.billing_date, p.window.start, p.window.end,
                run_id=self.run_id, douyin_id=self.options.douyin_id,
            )  # fmt: skip
        assert self._flow is not None
        pages = partition_pages(
            client, p, self._query, self._flow, self._on_page(stats), priority=place
        )
        async with contextlib.aclosing(pages):  # closed now, not when collected: leases go back
            await self._stage_pages(pages, writer, p, stats)
        if writer.repeated:
            log.warning(
                "%s: %d keys repeated across pages (data changed while paging)%s",
                _label(p),
                writer.repeated,
                "; re-reading" if attempt < self.options.partition_attempts else "",
            )
            if attempt < self.options.partition_attempts:
                raise _TornRead
        # Never delete on the strength of an answer we could not fully read: rows rejected,
        # a torn read (offset paging may have skipped rows), or a filter we cannot scope.
        mirror = not (stats.rejected or writer.repeated or self.options.agency_client_key)
        counts = await writer.merge(
            p.billing_date,
            p.window.start,
            p.window.end,
            run_id=self.run_id,
            douyin_id=self.options.douyin_id,
            mirror=mirror,
        )
        stats.inserted, stats.updated = counts.inserted, counts.updated
        stats.unchanged, stats.removed = counts.unchanged, counts.removed
        stats.repeated = counts.repeated
        await ledger.partition_done(conn, pid, stats)

    async def _stage_pages(
        self,
        pages: AsyncGenerator[Page, None],
        writer: PartitionWriter,
        p: Partition,
        stats: ledger.PartitionStats,
    ) -> None:
        """Map each page and hand its records to the writer."""
        async for page in pages:
            try:
                mapped = map_page(page.items, p.billing_date)
            except ContractError as exc:
                exc.log_id = exc.log_id or page.log_id
                raise
            stats.rows_fetched += len(page.items)
            stats.rejected += mapped.rejected
            stats.sanitized += mapped.sanitized
            if mapped.rejected or mapped.anomalies:
                log.warning(
                    "%s page log_id=%s: %d rows rejected; %s",
                    _label(p),
                    page.log_id,
                    mapped.rejected,
                    "; ".join(mapped.anomalies[:3]),
                )
            await writer.add_page(mapped.records)
            self.live.rows += len(page.items)
            del page, mapped  # copied: not held while the next page is awaited

    def _on_page(self, stats: ledger.PartitionStats) -> Callable[[Page, int], None]:
        def seen(page: Page, sent: int) -> None:
            stats.api_calls += sent
            stats.pages += 1
            stats.last_log_id = page.log_id
            self.live.pages += 1

        return seen

    def _count_done(self, stats: ledger.PartitionStats) -> None:
        c = self.counts
        c.partitions_done += 1
        c.rows_fetched += stats.rows_fetched
        c.rows_inserted += stats.inserted
        c.rows_updated += stats.updated
        c.rows_unchanged += stats.unchanged
        c.rows_removed += stats.removed
        c.rows_rejected += stats.rejected
        self.live.partitions_done += 1


_DATABASE_ERRORS = (DatabaseError, SQLAlchemyError, OSError)


async def _alive(conn: AsyncConnection) -> bool:
    """Whether a connection still answers (within 2 s)."""
    if conn.closed or conn.invalidated:
        return False
    try:
        await asyncio.wait_for(conn.scalar(text("SELECT 1")), 2.0)
        await conn.commit()
    except Exception:
        return False
    return True


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


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _TornRead(ApiError):
    """Internal: roll the partition back and read it again."""

    error_class = ErrorClass.RETRYABLE

    def __init__(self) -> None:
        super().__init__("keys repeated across pages", endpoint="query_task_video_daily_data")


def _label(p: Partition) -> str:
    return f"partition {p.billing_date} [{p.window.start}..{p.window.end}]"
