"""Jobs whose worker died: found by the worker's silence, put back in the queue.

Every worker writes a heartbeat (procrastinate's `procrastinate_workers.last_heartbeat`). A job
still 'doing' whose worker has been silent for longer than the stall timeout (or was pruned)
was left by a worker that was killed or lost its machine; `recover_stalled` puts it back to
wait, at once, in one statement that locks the rows it changes (two workers recovering at the
same moment never both take the same job). The worker that takes it resumes its run: the
partitions the dead worker committed are skipped; the dead session's advisory lock went with
its connection (a machine gone: when PostgreSQL's TCP keepalive gives up on the socket, ~90 s
with the keepalives every session sets, `sync.db.database.SERVER_SETTINGS`; until then the new
run finds the lock held and the job waits and tries again).
"""

from __future__ import annotations

import asyncio
import logging

from procrastinate import App

log = logging.getLogger(__name__)

# procrastinate_retry_job_v2 is procrastinate's own retry (the one its workers call), in the
# version pyproject.toml pins.
_RECOVER = """
WITH stalled AS (
    SELECT job.id FROM procrastinate_jobs job
      LEFT JOIN procrastinate_workers w ON w.id = job.worker_id
     WHERE job.status = 'doing'
       AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => %(timeout)s))
       FOR UPDATE OF job SKIP LOCKED
)
SELECT id FROM stalled, LATERAL procrastinate_retry_job_v2(id, now(), NULL, NULL, NULL) AS r
"""


async def recover_stalled(app: App, stall_timeout: float) -> list[int]:
    """Put back every job left 'doing' by a worker silent for `stall_timeout` seconds; their
    ids."""
    rows = await app.connector.execute_query_all_async(_RECOVER, timeout=float(stall_timeout))
    return sorted(int(r["id"]) for r in rows)


async def keep_recovering(app: App, stall_timeout: float, interval: float) -> None:
    """Recover stalled jobs every `interval` seconds until cancelled."""
    while True:
        try:
            for job_id in await recover_stalled(app, stall_timeout):
                log.warning(
                    "job %d: its worker sent no heartbeat for %g s; queued again (it resumes)",
                    job_id,
                    stall_timeout,
                )
        except Exception as exc:
            log.warning("stalled jobs: could not look (%s); trying again", _first_line(exc))
        await asyncio.sleep(interval)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
