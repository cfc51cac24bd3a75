"""Engines, migrations and the schema-version check. The only module that knows Alembic."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sync.errors import DatabaseError, SchemaBehindError
from sync.settings import redact_database_url

# The Alembic scripts live at the top of the repository (alembic.ini and `alembic` use them there);
# a wheel carries them inside the package as sync/migrations (pyproject.toml maps them in). So:
# the package's own copy when installed from a wheel, else the checkout's (editable installs,
# `python -m sync` and the tests run from the repository).
_PACKAGED_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATIONS_DIR = (
    _PACKAGED_MIGRATIONS
    if _PACKAGED_MIGRATIONS.is_dir()
    else _PACKAGED_MIGRATIONS.parent.parent / "migrations"
)


def alembic_config(url: str | None = None) -> Config:
    """Alembic's config without alembic.ini: the CLI passes the URL from the settings."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def create_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """An asyncpg engine. JIT is off: the bulk statements are short and JIT start-up dominates."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=4,
        pool_pre_ping=True,
        connect_args={"server_settings": {"jit": "off", "application_name": "taskbox-sync"}},
    )


def describe_connect_error(url: str, exc: BaseException) -> str:
    """A one-line reason for a failed connection, without the password."""
    inner = getattr(exc, "orig", None) or exc
    reason = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return f"cannot connect to {redact_database_url(url)}: {reason}"


_CONNECT_ERRORS = (OSError, OperationalError, DBAPIError, socket.gaierror, asyncio.TimeoutError)


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _downgrade(connection: Connection, cfg: Config, revision: str) -> None:
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the schema (alembic upgrade) through the given engine."""
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade, alembic_config(), revision)
    except _CONNECT_ERRORS as exc:
        raise DatabaseError(describe_connect_error(str(engine.url), exc)) from None


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade, alembic_config(), revision)


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to work on a database whose schema is not at this version's head."""
    try:
        async with engine.connect() as conn:
            current = await conn.run_sync(_current_revision)
    except _CONNECT_ERRORS as exc:
        raise DatabaseError(describe_connect_error(str(engine.url), exc)) from None
    head = head_revision()
    if current != head:
        have = current or "empty"
        raise SchemaBehindError(
            f"database schema is at {have}, this version needs {head}: "
            "run `taskbox-sync migrate` first"
        )


async def ensure_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url` if it is missing; return its URL."""
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            exists = await conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except _CONNECT_ERRORS as exc:
        raise DatabaseError(describe_connect_error(url, exc)) from None
    finally:
        await admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)
