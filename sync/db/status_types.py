"""The data objects of `taskbox-sync status`: what the status queries (sync.db.status) return and
what both renderings draw, the text screen and the JSON document (sync.cli.status_text and
status_json). Plain frozen values, no I/O; rows become them through `run_info` and
`partition_info`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from sync.db import ledger
from sync.db.statuses import PartitionStatus, RunStatus


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A sync_runs row."""

    id: int
    kind: str
    app_id: str
    params: dict[str, Any]
    status: RunStatus
    started_at: dt.datetime
    finished_at: dt.datetime | None
    partitions_total: int
    partitions_done: int
    partitions_failed: int
    partitions_skipped: int
    rows_fetched: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_removed: int
    rows_rejected: int
    rows_foreign: int
    api_calls: int
    throttled: int
    retries: int
    qps_used: Decimal | None
    error: str | None


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """A sync_partitions row, its window in Unix seconds."""

    id: int
    run_id: int
    billing_date: dt.date
    window_start: int
    window_end: int
    scope: str
    status: PartitionStatus
    attempts: int
    pages: int
    api_calls: int
    rows_fetched: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_removed: int
    rows_rejected: int
    rows_repeated: int
    texts_sanitized: int
    last_log_id: str | None
    err_no: int | None
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    # Last, with defaults: added with the apps, after code that builds these by position.
    app_id: str = ""
    rows_foreign: int = 0


@dataclass(frozen=True, slots=True)
class DateSummary:
    """A billing date: when a full-scope partition of it last succeeded, and its stored rows."""

    billing_date: dt.date
    last_synced_at: dt.datetime | None
    rows: int


@dataclass(frozen=True, slots=True)
class IncompleteDate:
    """A billing date never completely synced, and the days until it leaves the API's reach."""

    billing_date: dt.date
    days_left: int
    reason: str


@dataclass(frozen=True, slots=True)
class AppStatus:
    """One app: its last nightly run and last run (either may be running), whether a run of it
    is in progress (its run lock is held), its incomplete dates (oldest, the nearest to leaving
    the reach, first), unrecovered failures, recent dates, stored rows, the keys its last run
    found held by another app's rows, and its problems: `problems` one a line for the status
    screen, `attention` the same in short for `--check`."""

    app_id: str
    last_nightly: RunInfo | None
    last_run: RunInfo | None
    running: bool
    incomplete: list[IncompleteDate]
    failures: list[PartitionInfo]
    dates: list[DateSummary]
    rows: int
    rows_foreign: int
    problems: list[str]
    attention: list[str]

    @property
    def ok(self) -> bool:
        """Whether the app needs no attention."""
        return not self.problems


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Everything `status` shows: the apps (by id), the recent runs of those apps; `problems`
    are the apps' problems, each led by "app ID: "."""

    today: dt.date
    apps: list[AppStatus]
    runs: list[RunInfo]
    ok: bool
    problems: list[str]


@dataclass(frozen=True, slots=True)
class AppCheck:
    """One app as `status --check` judges it: its problems in short (none: the app is fine)."""

    app_id: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What `status --check` answers: each app's verdict, and the problems of all of them, each
    led by "app ID: " (or the one problem that no app is recorded)."""

    today: dt.date
    apps: list[AppCheck]
    ok: bool
    problems: list[str]


def run_info(row: Any) -> RunInfo:
    """A sync_runs row as a RunInfo."""
    m = dict(row._mapping)
    m["status"] = RunStatus(m["status"])
    return RunInfo(**{f.name: m[f.name] for f in fields(RunInfo)})


def partition_info(row: Any) -> PartitionInfo:
    """A sync_partitions row as a PartitionInfo (its window in Unix seconds)."""
    m = dict(row._mapping)
    m["status"] = PartitionStatus(m["status"])
    m["window_start"] = ledger.to_unix(m["window_start"])
    m["window_end"] = ledger.to_unix(m["window_end"])
    return PartitionInfo(**{f.name: m[f.name] for f in fields(PartitionInfo)})
