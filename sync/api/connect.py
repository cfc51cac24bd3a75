"""Opening the API for one app: the app's token source and its own limiter over an HTTP session,
put together as the client a run is handed (`sync.pipeline.engine.SyncRun` takes it).

One app opens its own session (`open_daily_data`); a fleet opens one session for every app and
builds each app's client on it (`daily_data_client`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from sync.api.client import ApiCaller, DailyDataClient
from sync.api.http import Timeouts, new_session
from sync.api.limiter import RequestLimiter
from sync.api.retry import RetryPolicy
from sync.api.tokens import TokenFactory, token_provider
from sync.settings import Settings


def daily_data_client(
    settings: Settings,
    session: aiohttp.ClientSession,
    *,
    retry: RetryPolicy | None = None,
    tokens: TokenFactory = token_provider,
) -> DailyDataClient:
    """The daily-data client of the app `settings` name, on `session`, under a limiter of its
    own at `settings.qps`, its token source from `tokens` (provider mode passes its own).

    The platform counts 10 QPS per app, so each app gets its own limiter: two apps' clients
    never share one (and one app's clients must not be built twice at once).
    """
    caller = ApiCaller(
        session, RequestLimiter(settings.qps), tokens(settings, session), policy=retry
    )
    return DailyDataClient(caller, settings.open_base_url)


@asynccontextmanager
async def open_daily_data(
    settings: Settings,
    *,
    timeouts: Timeouts | None = None,
    retry: RetryPolicy | None = None,
    max_connections: int = 32,
    tokens: TokenFactory = token_provider,
) -> AsyncIterator[DailyDataClient]:
    """`daily_data_client` on a session of its own, closed on the way out."""
    session = new_session(timeouts or Timeouts(), max_connections=max_connections)
    try:
        yield daily_data_client(settings, session, retry=retry, tokens=tokens)
    finally:
        await session.close()
