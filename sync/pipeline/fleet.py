"""Several apps in one process: `run_fleet` runs each app's `SyncRun` with the app's own token,
10 QPS limiter, run lock and ledger run, over one HTTP session, one database pool and one row
budget that all of them share.

    run_fleet(db, apps, options, plan)
      one session, one budget ─► up to `apps_at_once` apps at a time, each a SyncRun
      ─► an outcome per app: done, partial, failed, locked (skipped) or interrupted

An app that fails (credentials refused, the 数据分析 grant missing) fails alone; an app whose
lock another process holds is skipped and reported; the others go on. A signal reaches every
app running (finish the partitions in flight) and no app starts after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import signal
import time
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from sync.api.connect import daily_data_client
from sync.api.http import new_session
from sync.api.tokens import TokenFactory, token_provider
from sync.db.statuses import RunStatus
from sync.errors import DatabaseUnavailable, RunLockedError, TaskboxError
from sync.pipeline.budget import RowBudget
from sync.pipeline.defaults import DEFAULT_APPS_AT_ONCE as DEFAULT_APPS_AT_ONCE
from sync.pipeline.defaults import FLEET_BUFFER_ROWS as FLEET_BUFFER_ROWS
from sync.pipeline.engine import SyncRun
from sync.pipeline.outage import Backoff
from sync.pipeline.progress import LogProgress, ProgressWatcher
from sync.pipeline.runs import RunOptions, RunResult
from sync.planner import Plan
from sync.settings import Settings

log = logging.getLogger(__name__)

MAX_SOCKETS = 512  # HTTP connections of the shared session, all apps together
MAX_WRITERS = 16  # database connections for the partitions of all apps together
POOL_TIMEOUT = 3600.0  # partitions wait for a writer's connection: normal, never a failure


def pool_size(apps_at_once: int, concurrency: int) -> int:
    """The database pool a fleet needs: a lock connection per app running, and the writers
    (partitions hold one only from their first answer to their commit)."""
    return apps_at_once + min(concurrency, MAX_WRITERS)


class Outcome(enum.StrEnum):
    """How one app of a fleet ended."""

    DONE = "done"
    PARTIAL = "partial"  # some partitions failed
    FAILED = "failed"  # the run failed, or never started (credentials refused, say)
    LOCKED = "locked"  # skipped: another process holds the app's run lock
    INTERRUPTED = "interrupted"  # a signal or a database outage stopped it (it resumes)


@dataclasses.dataclass(frozen=True, slots=True)
class FleetApp:
    """One app of a fleet: its id (what rows, runs and locks carry) and its settings."""

    app_id: str
    settings: Settings


@dataclasses.dataclass(frozen=True, slots=True)
class AppOutcome:
    """What one app's run did; `result` is None when no run started (`error` says why)."""

    app_id: str
    result: RunResult | None
    error: TaskboxError | None = None

    @property
    def outcome(self) -> Outcome:
        if self.result is None:
            if isinstance(self.error, RunLockedError):
                return Outcome.LOCKED
            if self.error is None or isinstance(self.error, DatabaseUnavailable):
                return Outcome.INTERRUPTED  # never started: a signal came first, or an outage
            return Outcome.FAILED
        return {
            RunStatus.SUCCEEDED: Outcome.DONE,
            RunStatus.PARTIAL: Outcome.PARTIAL,
            RunStatus.FAILED: Outcome.FAILED,
        }.get(self.result.status, Outcome.INTERRUPTED)


@dataclasses.dataclass(frozen=True, slots=True)
class FleetResult:
    """Every app's outcome, in the order the apps were given."""

    apps: list[AppOutcome]
    elapsed: float
    signal_number: int | None = None


class _Fleet:
    """The apps' runs and the one signal handler that reaches all of them."""

    def __init__(self) -> None:
        self.running: set[SyncRun] = set()
        self.stopping: int | None = None

    def stop(self, signum: int) -> None:
        if self.stopping is None:
            log.warning("signal %d: no app starts any more; apps running finish", signum)
        self.stopping = self.stopping or signum
        for run in list(self.running):
            run.stop(signum)


async def run_fleet(
    db: AsyncEngine,
    apps: Sequence[FleetApp],
    options: RunOptions,
    plan: Plan,
    *,
    apps_at_once: int = DEFAULT_APPS_AT_ONCE,
    progress_interval: float | None = None,
    outage_backoff: Backoff | None = None,
    tokens: TokenFactory = token_provider,
    progress: ProgressWatcher | None = None,
) -> FleetResult:
    """Sync every app of `apps` over the same plan; the engine `db` is shared (size its pool for
    `apps_at_once` lock connections plus the writers). `progress` is told of every app's run
    (default: log lines naming the app every `progress_interval` seconds)."""
    started = time.monotonic()
    watcher = progress or LogProgress(progress_interval, named=True)
    fleet = _Fleet()
    slots = asyncio.Semaphore(apps_at_once)
    budget = RowBudget(max(options.buffer_rows, options.page_size))
    sockets = min(MAX_SOCKETS, apps_at_once * (options.concurrency + 4))
    session = new_session(options.timeouts, max_connections=sockets)

    async def one(app: FleetApp) -> AppOutcome:
        async with slots:
            if fleet.stopping is not None:
                return AppOutcome(app.app_id, None)
            try:
                client = daily_data_client(
                    app.settings, session, retry=options.retry, tokens=tokens
                )
                run = SyncRun(
                    db,
                    client,
                    options.for_app(app.settings.agency_client_key),
                    plan,
                    app_id=app.app_id,
                    outage_backoff=outage_backoff,
                    budget=budget,
                    alone=False,
                    progress=watcher,
                )
                fleet.running.add(run)
                try:
                    result = await run.execute()
                finally:
                    fleet.running.discard(run)
            except TaskboxError as exc:  # it never started: locked, credentials refused, …
                log.error("app %s: %s", app.app_id, exc)
                return AppOutcome(app.app_id, None, exc)
            return AppOutcome(app.app_id, result, result.stop_error)

    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, fleet.stop, signum)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread (tests): no signal handling
    try:
        outcomes = await asyncio.gather(*(one(app) for app in apps))
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await session.close()
    return FleetResult(list(outcomes), time.monotonic() - started, fleet.stopping)
