"""The status screens as one JSON document (`status --format json`): the same objects the text
screens draw (sync.db.status_types), with stable keys documented in the README.

Conventions: dates are `YYYY-MM-DD`; moments are ISO 8601 in China time with their offset
(`2026-03-15T04:30:12+08:00`); counts are integers; a missing value is null. Every document
carries `version` (raised only when a key changes meaning or goes away; new keys may appear)
and `kind` (status, check, run, lateness).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Sequence
from dataclasses import fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sync import planner
from sync.db.status_types import (
    AppStatus,
    CheckReport,
    PartitionInfo,
    RunInfo,
    StatusReport,
)

JSON_VERSION = 1

if TYPE_CHECKING:  # the queue's types only: status --format json loads no procrastinate
    from sync.queue.status import QueueReport


def moment(value: dt.datetime | None) -> str | None:
    """A moment as ISO 8601 in China time, to the second."""
    if value is None:
        return None
    return value.astimezone(planner.SHANGHAI).isoformat(timespec="seconds")


def _unix_moment(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, planner.SHANGHAI).isoformat()


def _value(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return moment(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)  # qps_used: a rate, not money
    return value


def run_document(run: RunInfo) -> dict[str, Any]:
    """A run: the columns of sync_runs, and its duration in seconds once finished."""
    doc = {f.name: _value(getattr(run, f.name)) for f in fields(RunInfo)}
    took = None if run.finished_at is None else (run.finished_at - run.started_at)
    doc["duration_seconds"] = None if took is None else round(took.total_seconds(), 3)
    return doc


def partition_document(partition: PartitionInfo) -> dict[str, Any]:
    """A partition attempt: the columns of sync_partitions (the window in China time)."""
    doc = {f.name: _value(getattr(partition, f.name)) for f in fields(PartitionInfo)}
    doc["window_start"] = _unix_moment(partition.window_start)
    doc["window_end"] = _unix_moment(partition.window_end)
    return doc


def _optional_run(run: RunInfo | None) -> dict[str, Any] | None:
    return None if run is None else run_document(run)


def app_document(app: AppStatus) -> dict[str, Any]:
    """One app's status."""
    return {
        "app_id": app.app_id,
        "ok": app.ok,
        "problems": list(app.problems),
        "attention": list(app.attention),
        "running": app.running,
        "last_nightly": _optional_run(app.last_nightly),
        "last_run": _optional_run(app.last_run),
        "rows": app.rows,
        "rows_foreign": app.rows_foreign,
        "incomplete_dates": [
            {"billing_date": i.billing_date.isoformat(), "days_left": i.days_left}
            | {"reason": i.reason}
            for i in app.incomplete
        ],
        "failed_partitions": [partition_document(p) for p in app.failures],
        "recent_dates": [
            {"billing_date": d.billing_date.isoformat(), "last_full_sync": moment(d.last_synced_at)}
            | {"rows": d.rows}
            for d in app.dates
        ],
    }


def status_document(report: StatusReport) -> dict[str, Any]:
    """`status --format json`: the apps, the recent runs and the verdict."""
    return {
        "version": JSON_VERSION,
        "kind": "status",
        "today": report.today.isoformat(),
        "ok": report.ok,
        "problems": list(report.problems),
        "apps": [app_document(a) for a in report.apps],
        "runs": [run_document(r) for r in report.runs],
    }


def check_document(report: CheckReport) -> dict[str, Any]:
    """`status --check --format json`: the verdict, overall and per app."""
    return {
        "version": JSON_VERSION,
        "kind": "check",
        "today": report.today.isoformat(),
        "ok": report.ok,
        "problems": list(report.problems),
        "apps": [
            {"app_id": a.app_id, "ok": a.ok, "problems": list(a.problems)} for a in report.apps
        ],
    }


def run_detail_document(run: RunInfo, partitions: Sequence[PartitionInfo]) -> dict[str, Any]:
    """`status --run ID --format json`: the run and its partitions."""
    return {
        "version": JSON_VERSION,
        "kind": "run",
        "run": run_document(run),
        "partitions": [partition_document(p) for p in partitions],
    }


def dumps(document: dict[str, Any]) -> str:
    """The document as JSON text (UTF-8 text kept as is, two-space indent)."""
    return json.dumps(document, ensure_ascii=False, indent=2)


def queue_document(report: QueueReport) -> dict[str, Any]:
    """The job queue (#16): workers alive, and per app its waiting, running and failed jobs."""

    def job(j: Any) -> dict[str, Any]:
        return {f.name: _value(getattr(j, f.name)) for f in fields(j)}

    return {
        "workers_alive": report.workers_alive,
        "apps": [
            {
                "app_id": a.app_id,
                "waiting": [job(j) for j in a.waiting],
                "running": [job(j) for j in a.running],
                "failed": [job(j) for j in a.failed],
            }
            for a in report.apps
        ],
    }
