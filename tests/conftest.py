"""Shared fixtures: a real PostgreSQL (TEST_DATABASE_URL, else the embedded server), a fresh
database per test cloned from a migrated template, and engines on it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db.database import create_engine, migrate
from sync.db.embedded import start_embedded
from sync.settings import normalize_database_url


def _plain(url: str) -> str:
    """asyncpg.connect wants postgresql://, not the SQLAlchemy driver form."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An asyncpg URL of a database from which test databases are created."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return normalize_database_url(url)
    return start_embedded(Path(tmp_path_factory.mktemp("embedded")))


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _create_template(admin: str, name: str) -> None:
    conn = await asyncpg.connect(_plain(admin))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
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


async def _admin_execute(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(_plain(admin_url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


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
    eng = create_engine(database_url)
    yield eng
    await eng.dispose()


def plain_url(url: str) -> str:
    return _plain(url)
