"""What a run is asked to do (`RunOptions`) and what it did (`RunResult`, with its `RunNotes`):
plain values."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import date
from typing import Any

from sync.api.http import Timeouts
from sync.api.retry import RetryPolicy
from sync.db.counts import RunCounts
from sync.db.statuses import RunStatus
from sync.errors import TaskboxError
from sync.pipeline.defaults import DEFAULT_BUFFER_ROWS as DEFAULT_BUFFER_ROWS
from sync.pipeline.defaults import DEFAULT_CONCURRENCY as DEFAULT_CONCURRENCY
from sync.pipeline.outage import DEFAULT_OUTAGE_TIMEOUT


@dataclasses.dataclass(frozen=True, slots=True)
class RunOptions:
    """What one invocation syncs and how hard it pushes."""

    kind: str  # nightly | backfill
    page_size: int = 10_000
    concurrency: int = DEFAULT_CONCURRENCY
    buffer_rows: int = DEFAULT_BUFFER_ROWS
    douyin_id: str | None = None
    agency_client_key: str | None = None
    restart: bool = False
    max_pages: int = 10_000
    partition_attempts: int = 3
    db_outage_timeout: float = DEFAULT_OUTAGE_TIMEOUT  # seconds to wait for a lost database
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)

    def for_app(self, agency_client_key: str | None) -> RunOptions:
        """These options for an app whose apps-file entry sets an agency filter (a flag given
        on the command line wins)."""
        if agency_client_key and not self.agency_client_key:
            return dataclasses.replace(self, agency_client_key=agency_client_key)
        return self

    @property
    def scope(self) -> str:
        """The API filters, as stored in the ledger ('' = everything)."""
        parts = []
        if self.douyin_id:
            parts.append(f"douyin_id={self.douyin_id}")
        if self.agency_client_key:
            parts.append(f"agency_client_key={self.agency_client_key}")
        return ";".join(parts)

    def params(self, dates: Sequence[date]) -> dict[str, Any]:
        """What identifies a run for resuming: same kind, dates and scope."""
        return {
            "dates": [dates[0].isoformat(), dates[-1].isoformat()] if dates else [],
            "scope": self.scope,
            "page_size": self.page_size,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class FailedPartition:
    billing_date: date
    window_start: int
    window_end: int
    err_no: int | None
    error: str
    log_id: str | None


NOTE_EXAMPLES = 3  # examples kept of each kind of note, for the summary


@dataclasses.dataclass(slots=True)
class RunNotes:
    """What a run stored as sent and needs no one's attention (negative amounts, other dates:
    `sync.records.mapper`'s notes): counted by kind, with a few examples and the log_id of the
    answer each came in. Shown once, in the run's summary, never logged page by page."""

    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: dict[str, list[tuple[str, str | None]]] = dataclasses.field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, counts: dict[str, int], texts: dict[str, list[str]], log_id: str | None) -> None:
        """A page's notes (counts and texts by kind), from the answer `log_id`."""
        for kind, n in counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        for kind, kind_texts in texts.items():
            kept = self.examples.setdefault(kind, [])
            kept.extend((text, log_id) for text in kind_texts[: NOTE_EXAMPLES - len(kept)])

    def merge(self, other: RunNotes) -> None:
        """Another's notes (a done partition's) join these."""
        for kind, n in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        for kind, found in other.examples.items():
            kept = self.examples.setdefault(kind, [])
            kept.extend(found[: NOTE_EXAMPLES - len(kept)])


@dataclasses.dataclass(slots=True)
class RunResult:
    run_id: int
    status: RunStatus  # final: never running
    counts: RunCounts
    failed: list[FailedPartition]
    elapsed: float
    error: str | None = None
    signal_number: int | None = None
    stop_error: TaskboxError | None = None  # why the run stopped short: outage, lock taken
    notes: RunNotes = dataclasses.field(default_factory=RunNotes)  # of the done partitions
