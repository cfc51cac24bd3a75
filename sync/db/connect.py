"""Opening the database a command works on: DATABASE_URL, or the embedded server."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db.database import check_schema, create_engine, migrate
from sync.db.embedded import start_embedded
from sync.settings import Settings

log = logging.getLogger(__name__)


async def resolve_database_url(settings: Settings) -> tuple[str, bool]:
    """The asyncpg URL to use and whether it is the embedded server (started here if so)."""
    if settings.database_url is not None:
        return settings.database_url.reveal(), False
    url = await asyncio.to_thread(start_embedded, settings.data_dir)
    print(
        f"taskbox-sync: DATABASE_URL unset, using embedded PostgreSQL with data in "
        f"{settings.data_dir / 'pg'}",
        file=sys.stderr,
    )
    return url, True


@asynccontextmanager
async def open_engine(
    settings: Settings, *, check: bool = True, pool_size: int = 5, pool_timeout: float = 30.0
) -> AsyncIterator[AsyncEngine]:
    """An engine on a database whose schema is current; the embedded one migrates itself."""
    url, embedded = await resolve_database_url(settings)
    engine = create_engine(url, pool_size=pool_size, pool_timeout=pool_timeout)
    try:
        if embedded:
            await migrate(engine)
        elif check:
            await check_schema(engine)
        yield engine
    finally:
        await engine.dispose()
