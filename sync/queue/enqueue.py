"""Deferring sync jobs: one per app, an identical job already queued refusing the new one.

A job is refused while an identical one (same app, kind and dates: `JobSpec.queueing_lock`)
waits — procrastinate's queueing lock, a unique index on waiting jobs — or runs: a job that runs
can be put back to wait (a retry, a recovered stall), and it must find no twin waiting then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from procrastinate import App
from procrastinate.exceptions import AlreadyEnqueued

from sync.queue.connect import SYNC_QUEUE, SYNC_TASK
from sync.queue.specs import JobSpec

_TWIN = """
SELECT id, status::text AS status FROM procrastinate_jobs
 WHERE queueing_lock = %(key)s AND status IN ('todo', 'doing')
 ORDER BY id LIMIT 1
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Deferral:
    """What became of one job: deferred as `job_id`, or refused because job `twin` (waiting or
    running) is the same work."""

    spec: JobSpec
    job_id: int | None = None
    twin: int | None = None
    twin_status: str | None = None

    def describe(self) -> str:
        if self.job_id is not None:
            return f"{self.spec.describe()}: deferred as job {self.job_id}"
        state = {"todo": "waiting", "doing": "running"}.get(self.twin_status or "", "queued")
        return f"{self.spec.describe()}: refused, job {self.twin} ({state}) is the same work"


async def _twin(app: App, spec: JobSpec) -> tuple[int, str] | None:
    rows = await app.connector.execute_query_all_async(_TWIN, key=spec.queueing_lock)
    return (int(rows[0]["id"]), str(rows[0]["status"])) if rows else None


async def enqueue(app: App, specs: Sequence[JobSpec]) -> list[Deferral]:
    """Defer a sync job for each spec unless its twin is queued; what became of each."""
    out = []
    for spec in specs:
        twin = await _twin(app, spec)
        if twin is None:
            deferrer = app.configure_task(
                SYNC_TASK, queue=SYNC_QUEUE, lock=spec.lock, queueing_lock=spec.queueing_lock
            )
            try:
                out.append(Deferral(spec, job_id=await deferrer.defer_async(**spec.kwargs())))
                continue
            except AlreadyEnqueued:  # deferred elsewhere since we looked
                twin = await _twin(app, spec)
        out.append(Deferral(spec, twin=twin[0] if twin else None, twin_status=twin and twin[1]))
    return out
