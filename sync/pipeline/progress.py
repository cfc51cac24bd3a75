"""What a run shows while it works: one live line on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import TextIO

from sync.db.counts import RunCounts

log = logging.getLogger("sync.pipeline.progress")


class Progress:
    """Reports a run's counters every `interval` seconds until stopped."""

    def __init__(
        self,
        counters: RunCounts,
        *,
        stream: TextIO | None = None,
        interval: float | None = None,
        label: str | None = None,
    ) -> None:
        """`label` names the run in each line (an app of several): those runs log their lines,
        one app each, instead of redrawing one terminal line between them."""
        self.counters = counters
        self.stream = stream or sys.stderr
        self.label = label
        self.live = self.stream.isatty() and label is None
        self.interval = interval if interval is not None else (0.5 if self.live else 10.0)
        self._started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def line(self) -> str:
        c = self.counters
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return (
            f"partitions {c.partitions_done + c.partitions_failed + c.partitions_skipped}"
            f"/{c.partitions_total} (failed {c.partitions_failed}) · pages {c.pages} · "
            f"rows {c.rows_read:,} · {c.api_calls / elapsed:.1f} req/s · "
            f"{c.rows_read / elapsed:,.0f} rows/s"
        )

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.live:
                self.stream.write("\r\x1b[K" + self.line())
                self.stream.flush()
            else:
                log.info("%sprogress: %s", f"app {self.label}: " if self.label else "", self.line())

    def start(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
