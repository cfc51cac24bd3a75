"""The suite's shared fixtures: a real PostgreSQL (TEST_DATABASE_URL, else the embedded server)
with a fresh database per test cloned from a migrated template, the test's clock, sandboxes
served on 127.0.0.1, an HTTP session, and the logging set-up restored after a command."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.db.database import create_engine, migrate
from sync.db.embedded import start_embedded
from sync.sandbox import SandboxConfig, SandboxServer
from sync.settings import normalize_database_url
from tests.helpers import Clock, MakeSandbox, plain_url

# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An asyncpg URL of a database from which test databases are created."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return normalize_database_url(url)
    return start_embedded(Path(tmp_path_factory.mktemp("embedded")))


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _admin_execute(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(plain_url(admin_url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _create_template(admin: str, name: str) -> None:
    await _admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}"')
    await _admin_execute(admin, f'CREATE DATABASE "{name}"')
    engine = create_engine(_with_database(admin, name))
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> Iterator[str]:
    """A database migrated to head once per session, cloned for every test."""
    name = f"taskbox_tpl_{os.getpid()}"
    asyncio.run(_create_template(admin_url, name))
    yield name
    asyncio.run(_admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _scratch_database(
    admin_url: str, prefix: str, template: str | None
) -> AsyncIterator[str]:
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    clone = f' TEMPLATE "{template}"' if template else ""
    await _admin_execute(admin_url, f'CREATE DATABASE "{name}"{clone}')
    yield _with_database(admin_url, name)
    await _admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(admin_url: str, template_db: str) -> AsyncIterator[str]:
    """The asyncpg URL of a fresh, migrated database that only this test uses."""
    async for url in _scratch_database(admin_url, "taskbox_t_", template_db):
        yield url


@pytest.fixture
async def empty_database_url(admin_url: str) -> AsyncIterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    async for url in _scratch_database(admin_url, "taskbox_e_", None):
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on the test's database."""
    eng = create_engine(database_url)
    yield eng
    await eng.dispose()


# -- the clock --------------------------------------------------------------------------------

MIDNIGHT_GUARD = 60.0
"""Seconds a wall-clock test needs clear of Shanghai midnight (its CLI calls that judge 'today'
take a few seconds)."""


def wait_for_midnight(now: float, guard: float = MIDNIGHT_GUARD) -> float:
    """Seconds to wait at `now` so that the next `guard` seconds hold no Shanghai midnight."""
    left = planner.day_end(planner.shanghai_today(now)) + 1 - now
    return left + 1.0 if left < guard else 0.0


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> Clock:
    """The test's "now" (see helpers.Clock): pinned at noon in Shanghai on a fixed day, so no
    test meets a day boundary; the sandbox, the plan and the dates all take it.

    A test marked `wall_clock` gets the wall clock instead: its CLI runs in a subprocess, which
    has no seam for "now", or its ledger rows carry the database's clock. It starts clear of
    Shanghai midnight (waiting it out when closer than MIDNIGHT_GUARD), so the day the
    test computed its dates from is still the day when its commands judge them."""
    if request.node.get_closest_marker("wall_clock") is None:
        return Clock()
    time.sleep(wait_for_midnight(time.time()))
    return Clock(time.time())


# -- the sandbox and HTTP ---------------------------------------------------------------------


@pytest.fixture
async def make_sandbox(clock: Clock) -> AsyncIterator[MakeSandbox]:
    """Start sandboxes on 127.0.0.1: `await make_sandbox(**SandboxConfig fields)`; the clock is
    the test's unless given. They stop when the test ends."""
    async with AsyncExitStack() as stack:

        async def make(**config: Any) -> SandboxServer:
            config.setdefault("clock", clock)
            return await stack.enter_async_context(SandboxServer(SandboxConfig(**config)))

        yield make


@pytest.fixture
async def sandbox(make_sandbox: MakeSandbox) -> SandboxServer:
    """A live sandbox with a small catalog (~210 rows a billing date: with pages of 20-50, many
    pages each). A module needing another catalog overrides this fixture with make_sandbox."""
    return await make_sandbox(seed=3, videos=300, tasks=8, creators=30)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session."""
    async with aiohttp.ClientSession() as s:
        yield s


# -- logging ----------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The root logger's handlers and level, and those of `sync` and `bench`, as they were: for
    tests that run a command in process (it configures logging)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("sync", "bench")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)
