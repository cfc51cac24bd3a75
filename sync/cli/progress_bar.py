"""A sync's progress on a terminal: a live bar per run (per app of a fleet, and their total),
drawn on stderr with rich from the figures the pipeline hands over (`pipeline.progress`).

    tt_a  ━━━━━━━━━━━━╺━━━━━━━ 49/60 calls 25/36 partitions 17,834 rows 9.7 req/s 3,546 rows/s
      ETA 0:00:02  (one line on a terminal of 120 columns)

Each bar fills with the calls done, out of the plan's minimum (a page per partition) until
partitions turn out to need more pages. Only when stderr is a terminal and the log is text
(`sync.cli.jobs` decides); otherwise the pipeline's log lines show progress. While the bars are
up, log lines print above them. A fleet shows its running apps (at most `SHOWN_APPS`) and a
total; finished apps leave (the summary lists them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from types import TracebackType

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from sync.logs import log_stream
from sync.pipeline.progress import ProgressSnapshot, RunProgress

SHOWN_APPS = 8  # app bars on the screen at once; more running apps are counted in one line
REFRESH = 0.25  # seconds between two redraws
NAME_CELLS = 24
BAR_CELLS = 20


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02}:{rest:02}"


def figures(s: ProgressSnapshot) -> list[str]:
    """The figures beside a bar, a cell each (columns align from bar to bar)."""
    failed = f" ({s.partitions_failed} failed)" if s.partitions_failed else ""
    return [
        f"{s.calls:,}/{s.expected_calls:,} calls",
        f"{s.partitions_finished:,}/{s.partitions_total:,} partitions{failed}",
        f"{s.rows:,} rows",
        f"{s.call_rate:.1f} req/s",
        f"{s.row_rate:,.0f} rows/s",
        "done" if s.finished else f"ETA {_clock(s.eta)}",
    ]


FIGURE_CELLS = 6  # len(figures(...))


class TerminalProgress:
    """A `ProgressWatcher` that draws bars while used as an async context (`async with`).

    `apps`: how many apps the run syncs (one: a bar, no total); `min_calls`: each app's planned
    minimum of calls (the plan's partitions), which counts for the apps not started yet."""

    def __init__(
        self,
        *,
        apps: int,
        min_calls: int,
        console: Console | None = None,
        refresh: float = REFRESH,
    ) -> None:
        self.console = console or Console(file=sys.stderr)
        self.apps = apps
        self.min_calls = min_calls
        self.refresh = refresh
        self._running: dict[RunProgress, None] = {}  # in the order they started
        self._finished: list[ProgressSnapshot] = []
        self._started = time.monotonic()
        self._live: Live | None = None
        self._task: asyncio.Task[None] | None = None
        self._logs: contextlib.ExitStack | None = None

    # -- the watcher ----------------------------------------------------------------------

    def run_started(self, run: RunProgress) -> None:
        self._running[run] = None

    def run_ended(self, run: RunProgress) -> None:
        self._running.pop(run, None)
        self._finished.append(run.snapshot())

    # -- drawing --------------------------------------------------------------------------

    def _row(self, grid: Table, name: str, s: ProgressSnapshot) -> None:
        label = name if len(name) <= NAME_CELLS else name[: NAME_CELLS - 1] + "…"
        bar = ProgressBar(
            total=max(s.expected_calls, 1), completed=s.calls, width=BAR_CELLS
        )  # fmt: skip
        grid.add_row(Text(label), bar, *(Text(cell) for cell in figures(s)))

    def _waiting(self, apps: int) -> ProgressSnapshot:
        """The apps not started yet: their planned minimum, nothing done."""
        n = apps * self.min_calls
        return ProgressSnapshot("", 0, n, n, 0, 0, 0, 0, 0, 0.0)

    def render(self) -> RenderableType:
        """The bars as they stand."""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True)
        for _ in range(FIGURE_CELLS - 1):
            grid.add_column(no_wrap=True, overflow="ellipsis", justify="right")
        grid.add_column(no_wrap=True, overflow="ellipsis")  # the time left
        running = [run.snapshot() for run in self._running]
        if self.apps == 1:
            shown = running or self._finished[-1:]
            for s in shown or [self._waiting(1)]:
                self._row(grid, s.app_id or "starting", s)
            return grid
        for s in running[:SHOWN_APPS]:
            self._row(grid, s.app_id, s)
        if len(running) > SHOWN_APPS:
            grid.add_row(Text(f"… {len(running) - SHOWN_APPS} more apps running"))
        waiting = self.apps - len(running) - len(self._finished)
        parts = [*running, *self._finished] + ([self._waiting(waiting)] if waiting > 0 else [])
        summed = ProgressSnapshot.summed(parts)
        total = dataclasses.replace(summed, elapsed=time.monotonic() - self._started)
        self._row(grid, f"total ({len(self._finished)}/{self.apps} apps)", total)
        return grid

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            if self._live is not None:
                self._live.update(self.render(), refresh=True)

    # -- the context ----------------------------------------------------------------------

    async def __aenter__(self) -> TerminalProgress:
        self._started = time.monotonic()
        self._live = Live(
            self.render(),
            console=self.console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._live.start(refresh=True)
        self._logs = contextlib.ExitStack()
        self._logs.enter_context(log_stream(sys.stderr))  # Live's proxy: lines above the bars
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._logs is not None:  # log lines straight to stderr again
            self._logs.close()
            self._logs = None
        if self._live is not None:  # the final figures stay on the screen
            self._live.update(self.render(), refresh=True)
            self._live.stop()
            self._live = None
