"""What a run shows while it works, as data: each run hands its live figures (`RunProgress`) to
a watcher the caller passes in (`ProgressWatcher`); drawing them is the caller's.

    SyncRun ─ run_started(RunProgress) ─► watcher ─ snapshot() when it likes ─► a bar, a line
            ─ run_ended(RunProgress) ───►

`LogProgress`, the default watcher, logs a line every 10 seconds (naming the app when several
run): what a run off a terminal, or with `--log-format json`, shows. The command line draws a
bar on a terminal (`sync.cli.progress_bar`). Figures, not text, cross the boundary: calls done
of the plan's minimum, partitions, rows, rates and an estimate of the time left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Protocol

from sync.db.counts import RunCounts

log = logging.getLogger("sync.pipeline.progress")

LOG_INTERVAL = 10.0  # seconds between two progress lines in the log


@dataclasses.dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """One run's figures at one moment."""

    app_id: str
    calls: int  # requests sent, retries included
    min_calls: int  # the plan's minimum for the partitions this run syncs (a page each)
    partitions_total: int
    partitions_finished: int  # done, failed or skipped (done by the run it resumes)
    partitions_failed: int
    partitions_skipped: int
    pages: int
    rows: int  # rows read, attempts rolled back included
    elapsed: float  # seconds since the run's work began
    finished: bool = False

    @property
    def expected_calls(self) -> int:
        """The calls the run will have made, as far as can be known: the plan's minimum until
        partitions turn out to need more pages, and exactly the calls made once finished."""
        if self.finished:
            return self.calls
        unfinished = self.partitions_total - self.partitions_finished
        return max(self.min_calls, self.calls + unfinished)

    @property
    def call_rate(self) -> float:
        return self.calls / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def row_rate(self) -> float:
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left: the larger of the calls still expected at the call rate and the
        partitions left at the rate partitions finish; None before any figure to go by."""
        if self.finished:
            return 0.0
        guesses = []
        if self.calls and self.elapsed > 0:
            guesses.append((self.expected_calls - self.calls) / self.call_rate)
        synced = self.partitions_finished - self.partitions_skipped
        if synced > 0:
            left = self.partitions_total - self.partitions_finished
            guesses.append(left * self.elapsed / synced)
        return max(guesses) if guesses else None

    @staticmethod
    def summed(snapshots: list[ProgressSnapshot], app_id: str = "total") -> ProgressSnapshot:
        """Several runs' figures added up (a fleet's total); elapsed is the longest."""
        return ProgressSnapshot(
            app_id,
            sum(s.calls for s in snapshots),
            sum(s.min_calls for s in snapshots),
            sum(s.partitions_total for s in snapshots),
            sum(s.partitions_finished for s in snapshots),
            sum(s.partitions_failed for s in snapshots),
            sum(s.partitions_skipped for s in snapshots),
            sum(s.pages for s in snapshots),
            sum(s.rows for s in snapshots),
            max((s.elapsed for s in snapshots), default=0.0),
            all(s.finished for s in snapshots),
        )

    def line(self) -> str:
        """The figures as one log line."""
        return (
            f"partitions {self.partitions_finished}/{self.partitions_total} "
            f"(failed {self.partitions_failed}) · pages {self.pages} · rows {self.rows:,} · "
            f"{self.call_rate:.1f} req/s · {self.row_rate:,.0f} rows/s"
        )


class RunProgress:
    """One run's live figures: its counters (`RunCounts`, which the run keeps adding to) and the
    plan's minimum of calls, read as a `ProgressSnapshot`."""

    def __init__(self, app_id: str, counts: RunCounts, min_calls: int) -> None:
        self.app_id = app_id
        self.counts = counts
        self.min_calls = min_calls
        self.started = time.monotonic()
        self.ended: float | None = None

    def end(self) -> None:
        self.ended = time.monotonic()

    def snapshot(self) -> ProgressSnapshot:
        c = self.counts
        elapsed = (self.ended if self.ended is not None else time.monotonic()) - self.started
        return ProgressSnapshot(
            self.app_id,
            c.api_calls,
            self.min_calls,
            c.partitions_total,
            c.partitions_done + c.partitions_failed + c.partitions_skipped,
            c.partitions_failed,
            c.partitions_skipped,
            c.pages,
            c.rows_read,
            elapsed,
            self.ended is not None,
        )


class ProgressWatcher(Protocol):
    """What a run tells about its progress: when its work starts (from then on the watcher may
    read `run.snapshot()` whenever it likes) and when it ends."""

    def run_started(self, run: RunProgress) -> None: ...

    def run_ended(self, run: RunProgress) -> None: ...


class LogProgress:
    """Logs each run's figures every `interval` seconds while it works; `named` puts the app in
    each line (when several apps run in one process)."""

    def __init__(self, interval: float | None = None, *, named: bool = False) -> None:
        self.interval = interval if interval is not None else LOG_INTERVAL
        self.named = named
        self._tasks: dict[RunProgress, asyncio.Task[None]] = {}

    async def _loop(self, run: RunProgress) -> None:
        prefix = f"app {run.app_id}: " if self.named else ""
        while True:
            await asyncio.sleep(self.interval)
            log.info("%sprogress: %s", prefix, run.snapshot().line())

    def run_started(self, run: RunProgress) -> None:
        self._tasks[run] = asyncio.get_running_loop().create_task(self._loop(run))

    def run_ended(self, run: RunProgress) -> None:
        task = self._tasks.pop(run, None)
        if task is not None:
            task.cancel()
