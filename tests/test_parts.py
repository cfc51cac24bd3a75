"""A run is built from the parts it is handed: the database, the API client (its token source and
limiter) and the options. Tests and callers swap parts without patching anything."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.api.client import ApiCaller, DailyDataClient
from sync.api.http import Timeouts, new_session
from sync.api.limiter import RequestLimiter, Slot
from sync.api.retry import RetryPolicy
from sync.api.tokens import StaticToken, token_provider
from sync.errors import CredentialsError
from sync.pipeline.engine import SyncRun
from sync.pipeline.runs import RunOptions
from sync.sandbox import SandboxServer
from sync.settings import Secret
from tests.helpers import Clock, assert_table_is_truth, sandbox_settings


class CountingLimiter(RequestLimiter):
    """The real limiter, counting the requests it let go."""

    def __init__(self) -> None:
        super().__init__(10.0)
        self.let_go = 0

    async def acquire(self) -> Slot:
        slot = await super().acquire()
        self.let_go += 1
        return slot


async def test_a_run_uses_the_client_it_is_handed(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """Every request of the run goes through the handed client's limiter and token source; the
    run's counters are that client's requests; the table ends exact."""
    dates = clock.recent_dates(2)
    now = clock()
    limiter = CountingLimiter()
    async with new_session(Timeouts()) as session:
        tokens = token_provider(sandbox_settings(sandbox, database_url), session)
        caller = ApiCaller(session, limiter, tokens)
        api = DailyDataClient(caller, sandbox.base_url)
        run = SyncRun(
            engine,
            api,
            RunOptions(kind="backfill", page_size=25, concurrency=4),
            planner.plan(dates, now),
            app_id="handed-parts",
        )
        result = await run.execute()
    assert result.status == "succeeded", result.failed
    assert result.counts.api_calls == limiter.let_go == api.stats.api_calls > 0
    total = await assert_table_is_truth(engine, sandbox, dates, now)
    assert result.counts.rows_fetched == total


async def test_refused_credentials_stop_before_anything_is_recorded(
    sandbox: SandboxServer, engine: AsyncEngine, clock: Clock
) -> None:
    """A client whose token the platform refuses ends the run with CredentialsError at once."""
    async with new_session(Timeouts()) as session:
        caller = ApiCaller(
            session,
            RequestLimiter(10.0),
            _RefusingTokens(),
            policy=RetryPolicy(attempts=2, base=0.01, cap=0.02),
        )
        run = SyncRun(
            engine,
            DailyDataClient(caller, sandbox.base_url),
            RunOptions(kind="backfill"),
            planner.plan(clock.recent_dates(1), clock()),
            app_id="refused",
        )
        with pytest.raises(CredentialsError):
            await run.execute()
    assert run.run_id == 0  # no run row was written


class _RefusingTokens(StaticToken):
    def __init__(self) -> None:
        super().__init__(Secret("unused"), endpoint="query_task_video_daily_data")

    async def get(self) -> str:
        raise CredentialsError("client_key or client_secret refused", endpoint="oauth/client_token")
