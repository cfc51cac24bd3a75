"""The partition worker: one partition from its first page to its ledger entry, with attempts.

    fetch page 1 (no connection held) ─► ledger "running"
      ─► fetch page k+1 ─┐   (pipelined: while page k is written)
         map + COPY page k ◄┘
         merge + mirror delete + the run still ours? + ledger "done"  ── one transaction

A partition takes a database connection only once its first answer is there: with answers at
0.5-3 s most partitions of a fleet are waiting on the platform, and they must not hold the
shared pool while they wait. Before its commit a partition checks, in its own transaction, that
its run is still 'running' (`ledger.claim_run`): a run whose lock was lost and taken over by
another run (which marks this one 'interrupted') can no longer commit.

An attempt that fails in passing (a retryable API error that outlived its request's retries, a
database error, an append conflict, a torn read) is rolled back and the partition starts again
from its first page on a fresh connection, up to `RunOptions.partition_attempts`. A permanent
API error fails the partition at once; a fatal one is raised to the run. A lost database is not
an attempt at all: the partition waits for it (`pipeline.outage`) and starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.api.client import DailyDataClient, Page
from sync.db import database, ledger
from sync.db.counts import PartitionStats, RunCounts
from sync.db.store import PartitionWriter
from sync.errors import (
    ApiError,
    AppendConflict,
    DatabaseError,
    DatabaseUnavailable,
    FatalError,
    PermanentError,
    RunLockedError,
    TaskboxError,
)
from sync.pipeline.fetcher import PageFlow, PageQuery, WriterGate, partition_pages
from sync.pipeline.outage import DatabaseGate
from sync.pipeline.runs import FailedPartition, RunNotes, RunOptions
from sync.planner import Partition
from sync.records.mapper import map_page

log = logging.getLogger("sync.pipeline.engine")


@dataclasses.dataclass(slots=True)
class PartitionWork:
    """What every partition of one run shares: its parts, and where outcomes are counted."""

    db: AsyncEngine
    api: DailyDataClient
    app_id: str
    options: RunOptions
    query: PageQuery
    flow: PageFlow
    gate: DatabaseGate
    run_id: int
    counts: RunCounts
    failed: list[FailedPartition]
    notes: RunNotes  # the run's: a done partition's notes join them
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    async def sync(self, p: Partition, place: int) -> None:
        """Sync one partition: done, or failed and recorded so; a fatal API error is raised."""
        pid: int | None = None
        stats = PartitionStats()
        error: TaskboxError | None = None
        attempts = self.options.partition_attempts
        attempt = 1
        lost = False  # an outage hit the commit that recorded the partition
        while True:
            since = await self.gate.ready()
            stats, notes = PartitionStats(), RunNotes()
            try:
                gate = WriterGate()
                pages = partition_pages(
                    self.api, p, self.query, self.flow, self._on_page(stats),
                    priority=place, gate=gate,
                )  # fmt: skip
                # A connection per attempt from the pool (one the database dropped is replaced),
                # taken once the first answer is in and before its rows are leased (WriterGate);
                # the pages closed at the end: leases go back at once.
                async with (
                    contextlib.aclosing(pages),
                    _first_answer(pages, gate) as first,
                    database.connection(self.db) as conn,
                ):
                    gate.open.set()
                    ahead = _after(await first.page(), pages)
                    async with conn.begin():
                        entry = pid
                        if entry is None and lost:
                            entry = await ledger.running_partition(
                                conn, self.run_id, p.billing_date, p.window.start, p.window.end
                            )
                        if entry is None:
                            lost = True  # until the commit returns, recorded or not: unknown
                            entry = await self._start(conn, p)
                        elif attempt > 1:
                            await ledger.partition_retry(conn, entry)
                    pid, lost = entry, False
                    async with conn.begin():
                        done = await self._attempt(conn, p, ahead, pid, stats, notes, attempt)
                if done:
                    self.counts.add(stats)
                    self.notes.merge(notes)
                    return
                error = None  # a torn read: read the partition again (logged by the attempt)
            except DatabaseUnavailable as exc:
                self.gate.report(exc, since)
                continue  # not an attempt of the partition's own
            except RunLockedError as exc:  # the run was taken over: it stops, rolled back
                # The run's one reason, the gate's: the lock's watcher may have failed it first
                # with an error of its own, and the engine stops quietly only on the gate's.
                raise self.gate.fail(exc) from None
            except ApiError as exc:
                error = exc
                if isinstance(exc, FatalError):
                    raise
                if isinstance(exc, PermanentError):
                    break
            except AppendConflict as exc:  # rare: sync it again with the full merge, at once
                error = exc
            except DatabaseError as exc:  # translated by database.connection
                error = exc
                await asyncio.sleep(self.options.retry.backoff(attempt, self.rng))
            if attempt >= attempts:
                break
            attempt += 1
            if error is not None:
                log.warning("%s: %s; attempt %d of %d", label(p), error, attempt, attempts)
        assert error is not None
        await self._fail(p, pid, stats, error)

    async def _start(self, conn: AsyncConnection, p: Partition) -> int:
        w = p.window
        return await ledger.start_partition(
            conn, self.run_id, p.billing_date, w.start, w.end, self.options.scope
        )

    async def _attempt(
        self,
        conn: AsyncConnection,
        p: Partition,
        pages: AsyncGenerator[Page, None],
        pid: int,
        stats: PartitionStats,
        notes: RunNotes,
        attempt: int,
    ) -> bool:
        """Fetch, stage and merge one partition inside the caller's transaction; True when done.

        A key repeated across pages means the data moved while we paged (offset paging can
        then skip rows too): unless this is the last attempt, return False so the partition
        rolls back and is read again.
        """
        last = attempt >= self.options.partition_attempts
        writer = await PartitionWriter.open(conn, self.app_id)
        if attempt == 1 and not last:  # appending; a conflict must leave a retry
            writer.append_to(
                p.billing_date, p.window.start, p.window.end,
                run_id=self.run_id, douyin_id=self.options.douyin_id,
            )  # fmt: skip
        async for page in pages:
            await self._stage_page(page, writer, p, stats, notes)
            del page  # copied: not held while the next page is awaited
        if writer.repeated:
            log.warning(
                "%s: %d keys repeated across pages (data changed while paging)%s",
                label(p),
                writer.repeated,
                "" if last else "; re-reading",
            )
            if not last:
                return False
        # Never delete on the strength of an answer we could not fully read: rows rejected,
        # a torn read (offset paging may have skipped rows), or a filter we cannot scope.
        mirror = not (stats.rejected or writer.repeated or self.options.agency_client_key)
        merged = await writer.merge(
            p.billing_date,
            p.window.start,
            p.window.end,
            run_id=self.run_id,
            douyin_id=self.options.douyin_id,
            mirror=mirror,
        )
        stats.merged(merged)
        if merged.foreign:
            keys = "; ".join(
                f"video {k.video_id} task {k.task_id} (app {k.stored_app}, log_id={k.log_id})"
                for k in merged.foreign_keys
            )
            log.warning(
                "%s: %d rows listed for app %s are stored under another app, left there: %s",
                label(p),
                merged.foreign,
                self.app_id,
                keys,
            )
        await ledger.claim_run(conn, self.run_id)  # still ours: else nothing of it commits
        await ledger.partition_done(conn, pid, stats)
        return True

    async def _stage_page(
        self,
        page: Page,
        writer: PartitionWriter,
        p: Partition,
        stats: PartitionStats,
        notes: RunNotes,
    ) -> None:
        """Map a page and hand its records to the writer. A page with rows rejected or values
        dropped is logged; its notes (negative amounts, …) are only counted, for the summary."""
        mapped = map_page(page.items, p.billing_date, (self.app_id, page.answered_at, self.run_id))
        stats.rows_fetched += len(page.items)
        stats.rejected += mapped.rejected
        stats.sanitized += mapped.sanitized
        if mapped.warning_count:
            log.warning(
                "%s page log_id=%s: %d rows rejected, %d values stored as NULL: %s",
                label(p),
                page.log_id,
                mapped.rejected,
                mapped.warning_count - mapped.rejected,
                "; ".join(mapped.warnings),
            )
        if mapped.notes:
            notes.add(mapped.notes, mapped.note_texts, page.log_id)
        await writer.add_written(mapped.records, log_id=page.log_id)

    def _on_page(self, stats: PartitionStats) -> Callable[[Page, int], None]:
        def seen(page: Page, sent: int) -> None:
            stats.api_calls += sent
            stats.pages += 1
            stats.last_log_id = page.log_id
            self.counts.page_read(len(page.items), sent)

        return seen

    async def _fail(
        self, p: Partition, pid: int | None, stats: PartitionStats, error: TaskboxError
    ) -> None:
        """Count and record a failed partition, through an outage too: the failure is kept."""
        w = p.window
        err_no = getattr(error, "err_no", None)
        log_id = getattr(error, "log_id", None) or stats.last_log_id
        self.failed.append(
            FailedPartition(p.billing_date, w.start, w.end, err_no, str(error), log_id)
        )
        self.counts.partitions_failed += 1
        log.error("%s failed: %s", label(p), error)

        async def record() -> None:
            nonlocal pid
            async with database.connection(self.db) as conn, conn.begin():
                if pid is None:
                    pid = await self._start(conn, p)
                await ledger.partition_failed(conn, pid, stats, err_no, str(error), log_id)

        try:
            await self.gate.run(record)
        except DatabaseError as exc:
            if exc is self.gate.failure:
                raise
            # The next run marks the partition failed instead.
            log.error("%s: cannot record the failure: %s", label(p), first_line(exc))


class _FirstPage:
    """The reading of a partition's first page, started before its connection is taken."""

    __slots__ = ("_held", "task")

    def __init__(self, pages: AsyncGenerator[Page, None]) -> None:
        self._held: list[Page | None] = []
        self.task = asyncio.ensure_future(self._read(pages))

    async def _read(self, pages: AsyncGenerator[Page, None]) -> None:
        # Kept here, not as the task's result: a finished task keeps its result as long as the
        # task lives, and a page held past its writer is outside the row budget.
        self._held.append(await anext(pages, None))

    async def page(self) -> Page | None:
        """The first page (None if the window had none), handed over once."""
        await self.task
        return self._held.pop()


@contextlib.asynccontextmanager
async def _first_answer(
    pages: AsyncGenerator[Page, None], gate: WriterGate
) -> AsyncIterator[_FirstPage]:
    """Start reading `pages`; enter once the first answer is in (its body waits for `gate.open`).
    An error before any answer is raised here, before a connection is taken; the reading is
    finished on the way out, whatever happened."""
    first = _FirstPage(pages)
    answered = asyncio.ensure_future(gate.answered.wait())
    try:
        await asyncio.wait({first.task, answered}, return_when=asyncio.FIRST_COMPLETED)
        if first.task.done():
            first.task.result()
        yield first
    finally:
        answered.cancel()
        first.task.cancel()
        await asyncio.wait({first.task})  # not its cancellation: ours, if any, still propagates
        if not first.task.cancelled():
            first.task.exception()  # seen: never "exception was never retrieved"


async def _after(
    first: Page | None, rest: AsyncGenerator[Page, None]
) -> AsyncGenerator[Page, None]:
    """The pages again, the first (read before a connection was taken) put back in front; no
    frame keeps it once it is handed on."""
    if first is None:
        return
    page, first = first, None
    yield page
    del page
    async for page in rest:
        yield page
        del page


def first_line(exc: BaseException) -> str:
    """The first line of a (driver's) error message, never a multi-line dump."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def label(p: Partition) -> str:
    return f"partition {p.billing_date} [{p.window.start}..{p.window.end}]"
