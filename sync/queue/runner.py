"""A worker's runs: each sync job becomes one `SyncRun` of its app, like one app of a fleet.

The worker's jobs share one HTTP session, one database pool and one row budget (as the apps of
`pipeline.fleet` do); each job gets its app's own token, 10 QPS limiter, run lock and ledger
run. The app's credentials come from the worker's apps file, read again for every job (an app
added to the file needs no restart), or, without one, from its `DOUYIN_*` settings. A signal
reaches every run in progress (`stop`): each finishes its partitions in flight, a second
signal rolls them back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.api.connect import daily_data_client
from sync.api.tokens import TokenFactory, token_provider
from sync.apps import load_apps_file, settings_for
from sync.errors import SettingsError
from sync.pipeline.budget import RowBudget
from sync.pipeline.engine import SyncRun
from sync.pipeline.runs import RunOptions, RunResult
from sync.queue.specs import JobSpec
from sync.settings import Settings

log = logging.getLogger(__name__)


def app_settings(settings: Settings, app_id: str) -> Settings:
    """The settings of app `app_id` on this worker: from its apps file, else its one app."""
    if settings.apps_file is not None:
        (app,) = load_apps_file(settings.apps_file).select([app_id])
        return settings_for(settings, app)
    if app_id != settings.recorded_app:
        raise SettingsError(
            f"app {app_id}: not this worker's (it has no apps file; its one app, from "
            f"DOUYIN_*, is {settings.recorded_app}): start it with --apps FILE"
        )
    settings.require_daily_data_credentials()
    return settings


class JobRunner:
    """Runs jobs' syncs over the parts a worker shares; `stop` reaches every run in progress."""

    def __init__(
        self,
        db: AsyncEngine,
        settings: Settings,
        options: RunOptions,
        session: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
        tokens: TokenFactory = token_provider,
    ) -> None:
        self.db = db
        self.tokens = tokens
        self.settings = settings
        self.options = options
        self.session = session
        self.budget = RowBudget(max(options.buffer_rows, options.page_size))
        self.clock = clock
        self.running: set[SyncRun] = set()
        self.stopping: int | None = None

    async def run(self, spec: JobSpec) -> RunResult:
        """The job's run, to its end; a TaskboxError when it could not start (a bad apps file,
        dates gone out of reach, the lock held, credentials refused)."""
        settings = app_settings(self.settings, spec.app_id)
        now = self.clock()
        dates = planner.check_billing_dates(spec.first, spec.last, now)
        options = dataclasses.replace(self.options, kind=spec.kind)
        options = options.for_app(settings.agency_client_key)
        client = daily_data_client(settings, self.session, retry=options.retry, tokens=self.tokens)
        run = SyncRun(
            self.db,
            client,
            options,
            planner.plan(dates, now),
            app_id=spec.app_id,
            budget=self.budget,
            alone=False,
        )
        self.running.add(run)
        try:
            if self.stopping is not None:
                run.stop(self.stopping)  # a signal came while the job was being taken
            return await run.execute()
        finally:
            self.running.discard(run)

    def stop(self, signum: int) -> None:
        """A signal: every run finishes its partitions in flight (a second: rolls them back)."""
        self.stopping = self.stopping or signum
        for run in list(self.running):
            run.stop(signum)
