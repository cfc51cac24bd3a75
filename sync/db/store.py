"""The bulk path: stage one partition's pages with binary COPY, then merge them into
video_daily_earnings inside the caller's transaction. The one module that talks to asyncpg
directly (COPY); its errors go through the database edge's one translation.

How a partition flows (every step on one connection, in one transaction the caller owns):

    writer = await PartitionWriter.open(conn, app_id)  # empty staging table, bigger work_mem
    await writer.add_written(records)                  # dedupe in Python, COPY (binary)
    ...
    counts = await writer.merge(day, start, end, run_id=run_id)
    # the caller records the partition in the ledger, then commits both together

Choices, each measured (see `MergeCounts` for what is counted):

* Staging is one TEMP table per session, created on first use and kept `ON COMMIT DELETE ROWS`:
  no catalog churn per partition (a table per partition writes ~30 catalog rows each time), and
  the rows vanish at commit (cheap in-place truncation) or rollback (MVCC). If the transaction
  that created the table rolls back, the table goes with it and the next `open` creates it again.
* Repeats are removed in Python before COPY, so the staging table always holds unique keys and
  the merge needs no DISTINCT ON sort: within a page the last occurrence is kept; a key already
  staged by an earlier page is deleted from staging before the page's COPY (rare: offset paging
  shifted). The set operations run in C and cost ~2 % of the COPY. What a writer remembers of
  earlier pages is the keys' 64-bit hashes in an array, 8 bytes a row: with answers at the
  platform's 0.5-3 s some 30 partitions are open at once, and a set of key tuples (~180 bytes a
  row, 7 MB for a 40,000-row partition) made that the largest part of the process. A hash seen
  before only names candidates: their exact keys are deleted from staging, and the DELETE's count
  says how many were really repeated. (Appending, below, leaves repeats to the table's key.)
* The merge is one statement (`sync.db.store_sql.merge_sql`): a FULL JOIN of the staging table
  with the partition's stored rows classifies each key as new, changed, gone or unchanged, keeps
  only the first three for the UPDATE, INSERT and DELETE that follow. A FULL JOIN can only be a hash
  or merge join, so no stale estimate can turn it into a nested loop: the first version (three
  statements with NOT EXISTS) chose a nested loop over a never-analysed table and took minutes.
  Unchanged rows are never touched: INSERT … ON CONFLICT DO UPDATE WHERE … would still *lock*
  them (writing xmax, dirtying and WAL-logging the page); the full-join form re-syncs an
  unchanged 100k-row partition in ~0.25 s where the three statements took ~0.8-1.0 s.
* Staged raw: publish_time as Unix seconds (bigint), which the merge converts (to_timestamp);
  expected_profit as numeric, from the mapper's int or decimal text through the connection's
  codec (`sync.db.codecs`). asyncpg's binary COPY spends ~1 us a row on an aware datetime and
  ~1.4 us on a Decimal, so the COPY of a 10,000-row page went from ~55-65 ms to ~18-25 ms of
  client CPU. (The profit used to be staged as text: ~0.15 us a row less in the process for a
  staged page, but every row of an appended page paid ~0.25 us more, its int written out as
  text and read back by the codec.)
* A partition with nothing stored in its scope (a backfill into an empty table, a new billing
  date) needs no join: one EXISTS probe, then a plain INSERT … SELECT in a savepoint, ~7-8 us a
  row of server CPU against ~10-12 for the full merge. A unique violation (a staged key stored
  outside the window: its publish time moved) rolls the savepoint back and the full merge runs.
* `append_to` goes further for such a scope: each page is copied straight into the table as it
  comes (binary COPY, in video order, with the connection's codecs of `sync.db.codecs`, which
  take Unix seconds and decimal text), so a backfill's inserts spread over the run instead of
  waiting for each partition's end, the merge has nothing left to do, and no staging hop is paid:
  COPY inserts in batches (heap_multi_insert: one WAL record per batch of tuples, not per row),
  where INSERT … SELECT from staging inserted row by row after the staging COPY and a DELETE …
  RETURNING. The bench's *ceiling* (1 M new rows) went from 13.6-16 s of PostgreSQL CPU to
  7.1-8.0 s, for ~3 s more in the process (the codecs, the sort, 24 columns instead of 21). In
  video order because the server's inserts into the key's index then follow one another (~1.5 us
  a row of server CPU less, for ~0.3 us of sorting). A key repeated across pages, or stored
  outside the window, raises AppendConflict; the caller syncs the partition again the usual way.
* Measured on this project's 2-core box (PostgreSQL 15): new rows are bound by the server: heap
  + two indexes + WAL (~550 bytes of WAL a row) cost ~7-9 us a row; an unchanged partition
  costs the FULL JOIN only (~4-6 us a row), and writes nothing.
* synchronous_commit stays on: this is a money mirror, a lost commit would be a silent hole.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.db import database
from sync.db import store_sql as sql
from sync.db.schema import RECORD_COLUMNS
from sync.db.store_sql import STAGE_TABLE, WRITTEN_COLUMNS
from sync.errors import AppendConflict, DatabaseError, DatabaseUnavailable

Record = Sequence[Any]
"""One mapped row: values in sync.db.schema.RECORD_COLUMNS order (`add_page`), or followed by
its app, answer time and run (WRITTEN_COLUMNS, `add_written`)."""
Key = tuple[int, int]
"""(video_id, task_id): the billing date is the partition's (merge refuses strays)."""

# Hash joins of a 100k-row partition fit in memory at 64 MB instead of spilling in batches.
WORK_MEM = "64MB"
_key_of = itemgetter(*(RECORD_COLUMNS.index(c) for c in sql.IDS))
_date_of = itemgetter(RECORD_COLUMNS.index("billing_date"))
_video_of = itemgetter(RECORD_COLUMNS.index("video_id"))
_APP = WRITTEN_COLUMNS.index("app_id")
_RUN = WRITTEN_COLUMNS.index("last_run_id")


@dataclass(frozen=True, slots=True)
class ForeignKey:
    """A key the partition's answer listed that another app's row holds: left where it is."""

    video_id: int
    task_id: int
    stored_app: str
    log_id: str | None  # of the page that listed it


@dataclass(frozen=True, slots=True)
class MergeCounts:
    """What one partition's merge did.

    staged: records handed to add_written; repeated: of those, how many a later record with the same
    key replaced (so staged - repeated distinct rows were merged, and
    inserted + updated + unchanged + foreign == staged - repeated); removed: rows deleted by the
    mirror; foreign: keys another app's rows hold (never moved), a few of them in foreign_keys.
    Unchanged includes rows a later answer of the same run had already written.
    """

    staged: int
    repeated: int
    inserted: int
    updated: int
    unchanged: int
    removed: int
    foreign: int = 0
    foreign_keys: tuple[ForeignKey, ...] = ()


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    """The database edge's one translation (`database.translate`), with what the bulk path was
    doing put before the driver's words; an outage stays an outage."""
    try:
        yield
    except Exception as exc:
        error = database.translate(exc)
        if error is None or error is exc:
            raise
        if isinstance(error, DatabaseUnavailable):
            raise error from exc
        raise DatabaseError(f"{action}: {error}") from exc


def _row_count(status: str) -> int:
    """The count at the end of a command tag such as 'DELETE 12'."""
    return int(status.rsplit(" ", 1)[-1])


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


class PartitionWriter:
    """Stages one partition's records of one app and merges them into that app's rows; lives
    inside one transaction."""

    def __init__(self, apg: Any, app_id: str) -> None:
        self._apg = apg
        self.app_id = app_id
        self._seen = array("q")  # hash() of every key staged so far
        self._page_starts: list[int] = []  # where each page's hashes begin in _seen
        self._page_log_ids: list[str | None] = []
        self._dates: set[dt.date] = set()
        self._staged = 0
        self._repeated = 0
        self._merged = False
        self._append_scope: tuple[dt.date, int, int, str | None] | None = None
        self._append_run: int | None = None  # the run `append_to` named
        self._appending: dt.date | None = None  # the billing date, once appending
        self._appended = 0

    @classmethod
    async def open(cls, conn: AsyncConnection, app_id: str) -> PartitionWriter:
        """A writer of app `app_id`'s rows on `conn`, whose transaction must be open (the caller
        commits or rolls back)."""
        with _translated("cannot prepare the staging table"):
            # Through SQLAlchemy first: its asyncpg adapter sends BEGIN lazily, on the first
            # statement, and COPY on the raw connection must not run outside the transaction.
            exists = await conn.scalar(text(f"SELECT to_regclass('pg_temp.{STAGE_TABLE}')"))
            raw = await conn.get_raw_connection()
            apg = raw.driver_connection
            if apg is None or not apg.is_in_transaction():
                raise DatabaseError("PartitionWriter needs a connection inside a transaction")
            # Already empty unless an earlier writer used it in this same transaction: a
            # DELETE of nothing is free, where TRUNCATE would rewrite catalog rows each time.
            stage = sql.CREATE_STAGE if exists is None else f"DELETE FROM {STAGE_TABLE}"
            # A billing date new since the last ANALYZE is estimated at one stored row, and the
            # planner then nests a rescan of the whole work set under every stored row: minutes
            # instead of a second. Hash and merge joins are always right for this statement.
            # One round trip for the three (a query without arguments may hold several).
            await apg.execute(
                f"{stage}; SET LOCAL work_mem = '{WORK_MEM}'; SET LOCAL enable_nestloop = off"
            )
        return cls(apg, app_id)

    @property
    def staged(self) -> int:
        """Records received so far."""
        return self._staged

    @property
    def repeated(self) -> int:
        """Records replaced so far by a later record with the same key."""
        return self._repeated

    def append_to(
        self,
        billing_date: dt.date,
        window_start: int,
        window_end: int,
        *,
        run_id: int,
        douyin_id: str | None = None,
    ) -> None:
        """Insert each page into the table as it comes, if nothing is stored in the scope yet
        (looked up when the first page arrives, so the first request does not wait for it).

        A backfill into an empty table then spreads its inserts over the run instead of doing
        them all at the end of each partition (the last partition's merge is the run's tail),
        and the merge has nothing left to do. A page that cannot be appended (a key repeated
        across pages, or stored outside the window) raises AppendConflict: sync the partition
        again without calling this.
        """
        if self._staged or self._merged:
            raise RuntimeError("append_to must come before the first page")
        self._append_scope = (billing_date, window_start, window_end, douyin_id)
        self._append_run = run_id

    @property
    def appending(self) -> bool:
        """Whether pages go into the table as they come (decided at the first page)."""
        return self._appending is not None

    async def _decide_appending(self) -> None:
        assert self._append_scope is not None
        billing_date, window_start, window_end, douyin_id = self._append_scope
        self._append_scope = None
        if await self._scope_is_empty(billing_date, window_start, window_end, douyin_id):
            self._appending = billing_date

    async def add_page(
        self,
        records: Sequence[Record],
        *,
        answered_at: float | None = None,
        log_id: str | None = None,
    ) -> None:
        """`add_written` for records in RECORD_COLUMNS order: each is copied with this writer's
        app, `answered_at` (Unix seconds, default now) and the run `append_to` named (a staged
        row takes the merge's) after it. The engine's mapper adds those itself (`map_page`'s
        `tail`), which spares a page this copy."""
        tail = (self.app_id, time.time() if answered_at is None else answered_at, self._append_run)
        await self.add_written([tuple(r) + tail for r in records], log_id=log_id)

    async def add_written(self, records: Sequence[Record], *, log_id: str | None = None) -> None:
        """Stage a page of records in WRITTEN_COLUMNS order (the mapped row, then the app, when
        the platform answered with it, the run); a later record wins a key.

        Of two answers listing one row, the later one's values stand. `log_id` names the page
        in what the merge reports of it.
        """
        if self._merged:
            raise RuntimeError("this partition was already merged")
        if not records:
            return
        if self._append_scope is not None:
            await self._decide_appending()
        if self._appending is not None:  # copied as they are: they must be of this partition
            app_id, run_id = records[0][_APP], records[0][_RUN]
            if (app_id, run_id) != (self.app_id, self._append_run):
                raise ValueError(f"records of app {app_id} run {run_id} in {self._append_run}")
        self._staged += len(records)
        dates = set(map(_date_of, records))
        if self._appending is not None:
            # Repeats within the page, last wins (a key can only repeat where a video does, and
            # a set of ints costs a third of a set of keys); the table's key finds one from an
            # earlier page: nothing of the page is remembered here.
            rows = records
            if len(set(map(_video_of, records))) != len(records):
                rows = self._last_of_each_key(records)
            await self._append_page(rows, dates)
            self._dates.update(dates)
            return
        keys: list[Key] = list(map(_key_of, records))
        page_keys = set(keys)
        rows = records
        if len(page_keys) != len(keys):
            rows = self._last_of_each_key(records, keys)
        page_hashes = {hash(k): k for k in page_keys}
        seen_before = page_hashes.keys() & self._seen if self._seen else ()
        earlier = [page_hashes[h] for h in seen_before]
        with _translated("cannot stage a page"):
            if earlier:
                videos, tasks = zip(*earlier, strict=True)
                status = await self._apg.execute(sql.DROP_STAGED, list(videos), list(tasks))
                self._repeated += _row_count(status)
            await self._apg.copy_records_to_table(
                STAGE_TABLE, records=rows, columns=WRITTEN_COLUMNS
            )
        self._page_starts.append(len(self._seen))
        self._page_log_ids.append(log_id)
        self._seen.extend(page_hashes)
        self._dates.update(dates)

    def _last_of_each_key(
        self, records: Sequence[Record], keys: list[Key] | None = None
    ) -> Sequence[Record]:
        """The page without records a later one of the same key replaces (counted as repeated)."""
        last = {k: i for i, k in enumerate(keys or map(_key_of, records))}
        if len(last) == len(records):
            return records
        self._repeated += len(records) - len(last)
        return [records[i] for i in sorted(last.values())]

    async def _append_page(self, rows: Sequence[Record], dates: set[dt.date]) -> None:
        """COPY the page straight into the table, in key order (see the module docstring)."""
        assert self._appending is not None
        billing_date = self._appending
        if dates - {billing_date}:
            raise ValueError(f"records of {sorted(dates - {billing_date})} in {billing_date}")
        page = sorted(rows, key=_video_of)
        try:
            with _translated("cannot append a page"):
                status = await self._apg.copy_records_to_table(
                    sql.TARGET, records=page, columns=WRITTEN_COLUMNS
                )
        except DatabaseError as exc:
            if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                raise AppendConflict(
                    "a key of the page is stored already, by an earlier page or outside the window"
                ) from exc
            raise
        self._appended += _row_count(status)

    async def merge(
        self,
        billing_date: dt.date,
        window_start: int,
        window_end: int,
        *,
        run_id: int,
        douyin_id: str | None = None,
        mirror: bool = True,
    ) -> MergeCounts:
        """Upsert the staged rows; with `mirror`, delete the partition's rows no longer listed.

        The window is [window_start, window_end] in Unix seconds, inclusive. With `douyin_id`
        (the partition was fetched with a creator filter) only that creator's rows can be deleted.
        """
        if self._merged:
            raise RuntimeError("this partition was already merged")
        if window_start > window_end:
            raise ValueError(f"window_start {window_start} is after window_end {window_end}")
        strays = self._dates - {billing_date}
        if strays:
            raise ValueError(f"records of {sorted(strays)} staged in a partition of {billing_date}")
        self._merged = True
        start, end = _utc(window_start), _utc(window_end)
        creator = [douyin_id] if douyin_id is not None else []
        distinct = self._staged - self._repeated
        if self._appending is not None:  # every page is in the table already
            if self._appending != billing_date:
                raise ValueError(f"appending to {self._appending}, merging {billing_date}")
            return MergeCounts(self._staged, self._repeated, self._appended, 0, 0, 0)
        if distinct and await self._scope_is_empty(
            billing_date, window_start, window_end, douyin_id
        ):
            with _translated(f"cannot merge billing date {billing_date}"):
                inserted = await self._insert_all(billing_date, run_id)
            if inserted is not None:
                return MergeCounts(self._staged, self._repeated, inserted, 0, 0, 0)
        with _translated(f"cannot merge billing date {billing_date}"):
            statement = sql.merge_sql(creator=bool(creator), mirror=mirror)
            row = await self._apg.fetchrow(
                statement, billing_date, run_id, start, end, self.app_id, *creator
            )
        inserted, updated, removed, foreign = (int(row[i]) for i in range(4))
        sample = tuple(
            ForeignKey(v, t, app, self._log_id_of((v, t)))
            for v, t, app in zip(row[4], row[5], row[6], strict=True)
        )
        return MergeCounts(
            staged=self._staged,
            repeated=self._repeated,
            inserted=inserted,
            updated=updated,
            unchanged=distinct - inserted - updated - foreign,
            removed=removed,
            foreign=foreign,
            foreign_keys=sample,
        )

    def _log_id_of(self, key: Key) -> str | None:
        """The log id of the last page that listed `key` (a few lookups per merge at most)."""
        h = hash(key)
        for i in range(len(self._seen) - 1, -1, -1):
            if self._seen[i] == h:
                return self._page_log_ids[bisect.bisect_right(self._page_starts, i) - 1]
        return None

    async def _scope_is_empty(
        self, billing_date: dt.date, window_start: int, window_end: int, douyin_id: str | None
    ) -> bool:
        """Whether no row is stored for the date in the window (and for the creator, if any)."""
        creator = [douyin_id] if douyin_id is not None else []
        statement = sql.anything_stored_sql(creator=bool(creator))
        with _translated(f"cannot look into billing date {billing_date}"):
            stored = await self._apg.fetchval(
                statement, billing_date, _utc(window_start), _utc(window_end), self.app_id, *creator
            )
        return not stored

    async def _insert_all(self, billing_date: dt.date, run_id: int) -> int | None:
        """Insert every staged row; None (and nothing written) when a key is already stored."""
        try:
            async with self._apg.transaction():  # a savepoint in the partition's transaction
                status = await self._apg.execute(sql.INSERT_ALL, billing_date, run_id, self.app_id)
        except asyncpg.UniqueViolationError:
            return None
        return _row_count(status)
