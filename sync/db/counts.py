"""The counters of a run and of a partition attempt, as the ledger stores them.

`RunCounts` is the one counters object of a run: the engine adds to it, the live progress line
and the closing summary read it, and `ledger.finish_run` stores it. `PartitionStats` is what one
partition attempt did; a done partition joins the run's totals through `RunCounts.add`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sync.db.store import ForeignKey, MergeCounts

FOREIGN_SAMPLES = 5  # keys of other apps a run keeps to show in its summary


@dataclass(slots=True)
class PartitionStats:
    """What one partition attempt did, as stored in sync_partitions.

    The fetch side counts pages and rows as they are staged; `merged` adds what the merge did.
    """

    pages: int = 0
    api_calls: int = 0
    rows_fetched: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    rejected: int = 0
    repeated: int = 0
    sanitized: int = 0
    foreign: int = 0
    last_log_id: str | None = None
    foreign_keys: tuple[ForeignKey, ...] = ()

    def merged(self, counts: MergeCounts) -> None:
        """Take the merge's outcome (sync.db.store)."""
        self.inserted, self.updated = counts.inserted, counts.updated
        self.unchanged, self.removed = counts.unchanged, counts.removed
        self.repeated = counts.repeated
        self.foreign, self.foreign_keys = counts.foreign, counts.foreign_keys

    def columns(self) -> dict[str, Any]:
        """The sync_partitions columns these stats fill."""
        return {
            "pages": self.pages,
            "api_calls": self.api_calls,
            "rows_fetched": self.rows_fetched,
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "rows_unchanged": self.unchanged,
            "rows_removed": self.removed,
            "rows_rejected": self.rejected,
            "rows_repeated": self.repeated,
            "texts_sanitized": self.sanitized,
            "rows_foreign": self.foreign,
            "last_log_id": self.last_log_id,
        }


@dataclass(slots=True)
class RunCounts:
    """The one set of counters of a run: the ledger stores it (sync_runs), the live progress line
    and the closing summary read it.

    Partition and row totals grow as partitions finish (`add`); `pages` and `rows_read` as pages
    are staged, attempts that were rolled back included (they are what the progress line shows);
    the request counters come from the API client's counts at the end (`took_calls`), and
    `api_calls` also live, page by page.
    """

    partitions_total: int = 0
    partitions_done: int = 0
    partitions_failed: int = 0
    partitions_skipped: int = 0
    rows_fetched: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_unchanged: int = 0
    rows_removed: int = 0
    rows_rejected: int = 0
    rows_foreign: int = 0
    api_calls: int = 0
    throttled: int = 0
    retries: int = 0
    qps_used: float | None = None
    pages: int = 0  # live only, not stored
    rows_read: int = 0  # live only, not stored
    foreign_keys: list[ForeignKey] = field(default_factory=list)  # a few, for the summary

    def add(self, stats: PartitionStats) -> None:
        """A partition is done: its rows join the run's totals."""
        self.partitions_done += 1
        self.rows_fetched += stats.rows_fetched
        self.rows_inserted += stats.inserted
        self.rows_updated += stats.updated
        self.rows_unchanged += stats.unchanged
        self.rows_removed += stats.removed
        self.rows_rejected += stats.rejected
        self.rows_foreign += stats.foreign
        room = FOREIGN_SAMPLES - len(self.foreign_keys)
        self.foreign_keys.extend(stats.foreign_keys[: max(room, 0)])

    def page_read(self, rows: int, requests: int) -> None:
        """A page was staged after `requests` requests (retries included)."""
        self.pages += 1
        self.rows_read += rows
        self.api_calls += requests

    def took_calls(self, api_calls: int, throttled: int, retries: int, elapsed: float) -> None:
        """The run's requests as the API client counted them (failed pages' requests too)."""
        self.api_calls, self.throttled, self.retries = api_calls, throttled, retries
        self.qps_used = round(api_calls / elapsed, 3) if elapsed else None

    @classmethod
    def summed(cls, runs: Iterable[RunCounts]) -> RunCounts:
        """The counters of several runs added up (a fleet's total): every count; the rate and
        the samples stay empty."""
        total = cls()
        counted = [f.name for f in fields(cls) if f.type in ("int", int)]
        for counts in runs:
            for name in counted:
                setattr(total, name, getattr(total, name) + getattr(counts, name))
        return total

    def columns(self) -> dict[str, Any]:
        """The sync_runs columns these counters fill."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _LIVE_ONLY}


_LIVE_ONLY = frozenset({"pages", "rows_read", "foreign_keys"})
