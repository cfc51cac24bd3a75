"""Our notes on procrastinate's jobs (`procrastinate.taskbox_job_notes`, migration 0005): the
worker that took a job last, and why its last attempt failed. procrastinate keeps neither;
`status` shows both. Notes are a courtesy: one that cannot be written (the database away) is
logged and the job goes on."""

from __future__ import annotations

import logging

from procrastinate import App
from procrastinate.exceptions import ConnectorException

log = logging.getLogger(__name__)

_TAKEN = """
INSERT INTO taskbox_job_notes (job_id, worker) VALUES (%(job_id)s, %(worker)s)
ON CONFLICT (job_id) DO UPDATE SET worker = EXCLUDED.worker, noted_at = now()
"""
_FAILED = """
INSERT INTO taskbox_job_notes (job_id, error) VALUES (%(job_id)s, %(error)s)
ON CONFLICT (job_id) DO UPDATE SET error = EXCLUDED.error, noted_at = now()
"""
ERROR_CHARS = 500


async def taken(app: App, job_id: int, worker: str) -> None:
    """Job `job_id` runs on `worker` now."""
    try:
        await app.connector.execute_query_async(_TAKEN, job_id=job_id, worker=worker)
    except ConnectorException as exc:
        log.warning("job %d: could not note its worker (%s)", job_id, type(exc).__name__)


async def failed(app: App, job_id: int, error: str) -> None:
    """Job `job_id`'s attempt failed with `error` (a message of ours: never a secret)."""
    try:
        await app.connector.execute_query_async(_FAILED, job_id=job_id, error=error[:ERROR_CHARS])
    except ConnectorException as exc:
        log.warning("job %d: could not note its error (%s)", job_id, type(exc).__name__)
