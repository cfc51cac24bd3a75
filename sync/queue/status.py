"""What the queue holds, per app (read-only, through our own database connection): the jobs
waiting (and when a retry is due), running (on which worker, since when) and failed lately, and
the workers alive. `sync.cli.status` draws it under the status screen."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from sync.queue.connect import SCHEMA, SYNC_TASK

FAILED_DAYS = 7  # failed jobs shown: those that failed within this many days

_JOBS = f"""
SELECT j.id, j.status::text AS status, j.args, j.attempts, j.scheduled_at,
       n.worker, n.error, w.last_heartbeat,
       (SELECT max(e.at) FROM {SCHEMA}.procrastinate_events e WHERE e.job_id = j.id) AS changed_at
  FROM {SCHEMA}.procrastinate_jobs j
  LEFT JOIN {SCHEMA}.taskbox_job_notes n ON n.job_id = j.id
  LEFT JOIN {SCHEMA}.procrastinate_workers w ON w.id = j.worker_id
 WHERE j.task_name = :task AND j.status IN ('todo', 'doing', 'failed')
 ORDER BY j.id
"""
_WORKERS = f"SELECT count(*) FROM {SCHEMA}.procrastinate_workers WHERE last_heartbeat > :since"


@dataclasses.dataclass(frozen=True, slots=True)
class QueuedJob:
    """One sync job: its id and state ('waiting', 'running', 'failed'), what it syncs, its
    attempts so far, when it may start (a retry's backoff), its worker and last error."""

    id: int
    state: str
    app_id: str
    kind: str
    dates: str
    attempts: int
    due: dt.datetime | None
    worker: str | None
    error: str | None
    changed_at: dt.datetime | None


@dataclasses.dataclass(frozen=True, slots=True)
class AppQueue:
    app_id: str
    waiting: list[QueuedJob]
    running: list[QueuedJob]
    failed: list[QueuedJob]


@dataclasses.dataclass(frozen=True, slots=True)
class QueueReport:
    apps: list[AppQueue]
    workers_alive: int


_STATES = {"todo": "waiting", "doing": "running", "failed": "failed"}


def _job(row: Any) -> QueuedJob:
    args: dict[str, Any] = row.args or {}
    first, last = str(args.get("first", "?")), str(args.get("last", "?"))
    return QueuedJob(
        id=int(row.id),
        state=_STATES[row.status],
        app_id=str(args.get("app", "?")),
        kind=str(args.get("kind", "?")),
        dates=first if first == last else f"{first}..{last}",
        attempts=int(row.attempts),
        due=row.scheduled_at,
        worker=row.worker,
        error=row.error,
        changed_at=row.changed_at,
    )


async def queue_status(
    conn: AsyncConnection,
    now: dt.datetime,
    *,
    only: Sequence[str] | None = None,
    stall_timeout: float = 60.0,
) -> QueueReport:
    """The queue's sync jobs per app (those of `only`, if given), failed ones of the last
    FAILED_DAYS days; workers alive: heartbeats within `stall_timeout` of `now`."""
    rows = (await conn.execute(text(_JOBS), {"task": SYNC_TASK})).all()
    since = now - dt.timedelta(days=FAILED_DAYS)
    apps: dict[str, AppQueue] = {}
    for row in rows:
        job = _job(row)
        if only and job.app_id not in only:
            continue
        if job.state == "failed" and (job.changed_at is None or job.changed_at < since):
            continue
        queue = apps.setdefault(job.app_id, AppQueue(job.app_id, [], [], []))
        {"waiting": queue.waiting, "running": queue.running, "failed": queue.failed}[
            job.state
        ].append(job)
    alive = await conn.scalar(text(_WORKERS), {"since": now - dt.timedelta(seconds=stall_timeout)})
    return QueueReport(sorted(apps.values(), key=lambda a: a.app_id), int(alive or 0))
