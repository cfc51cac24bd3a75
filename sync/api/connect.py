"""Opening the API for one app: an HTTP session, the app's token source and its own limiter,
put together as the client a run is handed (`sync.pipeline.engine.SyncRun` takes it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sync.api.client import ApiCaller, DailyDataClient
from sync.api.http import Timeouts, new_session
from sync.api.limiter import RequestLimiter
from sync.api.retry import RetryPolicy
from sync.api.tokens import token_provider
from sync.settings import Settings


@asynccontextmanager
async def open_daily_data(
    settings: Settings,
    *,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
    max_connections: int = 32,
) -> AsyncIterator[DailyDataClient]:
    """The daily-data client of the app `settings` name, under a limiter of its own at
    `settings.qps`; the session closes on the way out.

    The platform counts 10 QPS per app, so each app gets its own limiter: two apps' clients
    never share one (and one app's clients must not be opened twice at once).
    """
    session = new_session(timeouts or Timeouts(), max_connections=max_connections)
    try:
        caller = ApiCaller(
            session,
            RequestLimiter(settings.qps),
            token_provider(settings, session),
            policy=retry,
        )
        yield DailyDataClient(caller, settings.open_base_url)
    finally:
        await session.close()
