"""A worker's metrics file (`worker --metrics-file`): every app's latest job of each kind.

After each job the file is written again (atomically, by `sync.metrics`), holding the latest
outcome of every app and kind this worker has run, so one file per worker serves node_exporter's
textfile collector. Each job reads the ledger for its own app only; the others' figures are kept
from their own jobs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from sync.metrics import AppMetrics, collect, write_textfile
from sync.pipeline.fleet import AppOutcome

log = logging.getLogger(__name__)


class JobMetrics:
    """The metrics file of one worker; `record` after every job."""

    def __init__(self, path: Path, db: AsyncEngine) -> None:
        self.path = path
        self._db = db
        self._latest: dict[tuple[str, str], AppMetrics] = {}  # (kind, app id) -> its metrics
        self._lock = asyncio.Lock()

    async def record(self, kind: str, outcome: AppOutcome) -> None:
        """Note this job's outcome and write the file; a failure to write is a warning (the
        job's outcome stands)."""
        async with self._lock:
            (metrics,) = await collect(self._db, [outcome], kind, now=time.time())
            self._latest[kind, outcome.app_id] = metrics
            try:
                write_textfile(self.path, [self._latest[k] for k in sorted(self._latest)])
            except OSError as exc:
                log.warning(
                    "metrics file %s: cannot write it (%s)",
                    self.path,
                    exc.strerror or type(exc).__name__,
                )
