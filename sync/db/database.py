"""Engines, migrations, the schema-version check, and the database's edge for errors: the one
place where SQLAlchemy's, asyncpg's and the socket's errors become ours (`translate`, used
through `translate_errors` and `connection`), telling a lost connection (an outage:
`DatabaseUnavailable`) from an error of the work (`DatabaseError`). The only module that knows
Alembic."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from sync.db import codecs
from sync.errors import (
    ApiError,
    DatabaseConnectError,
    DatabaseError,
    DatabaseUnavailable,
    SchemaAheadError,
    SchemaBehindError,
    TaskboxError,
)
from sync.settings import redact_database_url

# The Alembic scripts live at the top of the repository (alembic.ini and `alembic` use them there);
# a wheel carries them inside the package as sync/migrations (pyproject.toml maps them in). So:
# the package's own copy when installed from a wheel, else the checkout's (editable installs,
# `python -m sync` and the tests run from the repository).
_PACKAGED_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
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


POOL_OVERFLOW = 4

# Every session's settings. The keepalives are the server's side of the socket: a run's advisory
# lock lives as long as its session, and when a worker's machine vanishes (no FIN, no RST) the
# server would keep the session, and the lock, until the kernel's keepalive gives up: two hours
# by default. With these the server probes an idle client after 60 s and drops it after three
# unanswered probes 10 s apart, so the app's next run, on another machine, gets the lock ~90 s
# after the machine went. Any user may set them for its own session; over a Unix socket they
# are ignored.
SERVER_SETTINGS = {
    "jit": "off",  # the bulk statements are short and JIT start-up dominates
    "application_name": "taskbox-sync",
    "tcp_keepalives_idle": "60",
    "tcp_keepalives_interval": "10",
    "tcp_keepalives_count": "3",
}


def create_engine(url: str, *, pool_size: int = 5, pool_timeout: float = 30.0) -> AsyncEngine:
    """An asyncpg engine with at most `pool_size` + 4 connections, each session with
    SERVER_SETTINGS."""
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=POOL_OVERFLOW,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        connect_args={"server_settings": SERVER_SETTINGS},
    )
    event.listen(engine.sync_engine, "connect", _install_codecs)
    return engine


def _install_codecs(dbapi_connection: Any, _record: object) -> None:
    """Every connection takes Unix seconds and decimal text for timestamptz and numeric (see
    `sync.db.codecs`: the bulk path copies pages straight into the table with them)."""
    dbapi_connection.run_async(codecs.install)


def describe_connect_error(url: str, exc: BaseException) -> str:
    """A one-line reason for a failed connection, without the password."""
    inner = getattr(exc, "orig", None) or exc
    reason = str(inner).strip().splitlines()[0] if str(inner).strip() else type(inner).__name__
    return f"cannot connect to {redact_database_url(url)}: {reason}"


# What stops a command at its start: a server that is not there, a wrong password or database.
_CONNECT_ERRORS = (OSError, DBAPIError)


@contextlib.contextmanager
def _connecting(url: str) -> Iterator[None]:
    """At a command's start, a database that cannot be used is a settings problem (exit 2), not
    an outage to wait out: nothing was done yet."""
    try:
        yield
    except _CONNECT_ERRORS as exc:
        raise DatabaseConnectError(describe_connect_error(url, exc)) from None


def _upgrade(connection: Connection, cfg: Config, revision: str) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _downgrade(connection: Connection, cfg: Config, revision: str) -> None:
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@functools.cache
def _revisions() -> frozenset[str]:
    """Every revision this version's migrations know (the scripts are read once a process)."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return frozenset(r.revision for r in scripts.walk_revisions())


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _ahead(current: str | None) -> SchemaAheadError | None:
    """The error for a schema at a revision this version's migrations do not contain."""
    if current is None or current in _revisions():
        return None
    return SchemaAheadError(
        f"database schema is at {current}, a revision this version of taskbox-sync does not "
        f"know (its newest is {head_revision()}): a newer taskbox-sync migrated it; "
        "upgrade taskbox-sync (nothing was changed)"
    )


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the schema (alembic upgrade) through the given engine; SchemaAheadError, and
    nothing changed, if a newer version migrated it past what this one knows."""
    with _connecting(str(engine.url)):
        async with engine.begin() as conn:
            ahead = _ahead(await conn.run_sync(_current_revision))
            if ahead is not None:
                raise ahead
            await conn.run_sync(_upgrade, alembic_config(), revision)


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_downgrade, alembic_config(), revision)


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to work on a database whose schema is not at this version's head."""
    with _connecting(str(engine.url)):
        async with engine.connect() as conn:
            current = await conn.run_sync(_current_revision)
    head = head_revision()
    ahead = _ahead(current)
    if ahead is not None:
        raise ahead
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
        with _connecting(url):
            async with admin.connect() as conn:
                exists = await conn.scalar(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
                )
                if not exists:
                    await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


# -- the edge: foreign errors become ours, and which of them are outages -----------------

# SQLSTATEs of a connection that is gone: class 08 (connection exception: refused, lost,
# 08003 "connection was closed in the middle of operation") and the server going down or not
# up yet (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now).
_OUTAGE_SQLSTATE_CLASS = "08"
_OUTAGE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
# asyncpg's words for a connection whose socket is closed (InterfaceError), or whose server
# said goodbye just before the statement was sent (InternalClientError 'not connected').
_CLOSED = ("connection is closed", "connection was closed", "not connected")


def _first_line(exc: BaseException) -> str:
    if isinstance(exc, DatabaseUnavailable):
        return exc.reason
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


def _is_gone(error: BaseException) -> bool:
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, OSError):  # refused, reset, unreachable, timed out (TimeoutError)
        return True
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str) and (
        state.startswith(_OUTAGE_SQLSTATE_CLASS) or state in _OUTAGE_SQLSTATES
    ):
        return True
    closed_words = any(t in str(error) for t in _CLOSED)
    return closed_words and isinstance(error, asyncpg.InterfaceError | asyncpg.InternalClientError)


def outage_reason(exc: BaseException) -> str | None:
    """The driver's first line if the error means the database connection is gone (refused,
    reset, closed, the server shutting down or starting up), else None: an error of the work.

    Follows SQLAlchemy's `orig`, then `__cause__` (store.py's DatabaseError wraps asyncpg's),
    then `__context__`: a rollback that fails after the connection died ("another operation
    is in progress") is part of the outage that its context names. Never into an ApiError:
    aiohttp's connection errors are OSErrors too.
    """
    gone: BaseException | None = None
    for error in _chain(exc):
        if isinstance(error, DatabaseUnavailable) or _is_gone(error):
            gone = error  # the deepest one: the words of the first error that met it
    return None if gone is None else _first_line(gone)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error and every error it carries (orig, cause, context), outermost first."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        error = todo.pop(0)
        if id(error) in seen or isinstance(error, ApiError):
            continue
        seen.add(id(error))
        yield error
        links = [getattr(error, "orig", None), error.__cause__]
        if not error.__suppress_context__:
            links.append(error.__context__)
        todo.extend(e for e in links if isinstance(e, BaseException))


_ORPHAN = "Future exception was never retrieved"


@contextlib.contextmanager
def quiet_orphaned_disconnects() -> Iterator[None]:
    """While a run lasts, keep asyncpg's orphaned result futures out of the log.

    When the server ends a session (a restart) just as a COPY starts, asyncpg raises 'not
    connected' to us and then fails the result future it had already made, which nobody
    awaits: asyncio would log that with a traceback. The error already reached the engine as
    an outage; other unretrieved exceptions still go to the loop's handler.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if context.get("message") == _ORPHAN and error is not None and outage_reason(error):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield
    finally:
        loop.set_exception_handler(previous)


# The driver's and SQLAlchemy's own errors, and the socket's (OSError: always an outage).
_DRIVER_ERRORS = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)


def translate(exc: BaseException) -> TaskboxError | None:
    """Our error for `exc`, the one translation of the database's errors:

    - the connection is gone (`outage_reason`) → DatabaseUnavailable, even under our own
      DatabaseError (sync.db.store wraps asyncpg's);
    - any other error of ours → itself;
    - any other error of asyncpg, SQLAlchemy or the socket → DatabaseError (its first line);
    - anything else → None: a bug, to be shown as it is.
    """
    reason = outage_reason(exc)
    if reason is not None:
        return exc if isinstance(exc, DatabaseUnavailable) else DatabaseUnavailable(reason)
    if isinstance(exc, TaskboxError):
        return exc
    if isinstance(exc, _DRIVER_ERRORS):
        return DatabaseError(_first_line(exc))
    return None


@contextlib.asynccontextmanager
async def translate_errors(conn: AsyncConnection | None = None) -> AsyncIterator[None]:
    """Errors inside become ours (`translate`); `conn`, if given, is looked at when an error
    is not plainly an outage (its socket may have closed under it) and discarded after an
    outage (a dead connection must not go back to the pool)."""
    try:
        yield
    except Exception as exc:
        error = translate(exc)
        gone = isinstance(error, DatabaseUnavailable)
        if not gone and conn is not None and await _closed_under(conn):
            error = DatabaseUnavailable(f"connection closed by the server ({_first_line(exc)})")
        if error is None:
            raise
        if isinstance(error, DatabaseUnavailable) and conn is not None:
            await discard(conn)
        if error is exc:
            raise
        raise error from exc


async def _closed_under(conn: AsyncConnection) -> bool:
    """Whether the connection's socket is closed. A server that ends its sessions (a restart)
    sends each a goodbye, then closes it: a statement sent in between fails as a protocol
    state error ("another operation is in progress") a moment before asyncpg sees the close."""
    await asyncio.sleep(0.05)
    try:
        if conn.closed or conn.invalidated:
            return conn.invalidated
        raw = await conn.get_raw_connection()
    except Exception:
        return False
    driver = raw.driver_connection
    return driver is not None and bool(driver.is_closed())


@contextlib.asynccontextmanager
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection whose errors are ours (`translate_errors`): a lost or refused one
    raises DatabaseUnavailable, any other error of the database DatabaseError."""
    async with translate_errors():
        conn = await engine.connect()
        try:
            async with translate_errors(conn):  # while the connection is still open to look at
                yield conn
        finally:
            if not conn.closed:
                await conn.close()


async def discard(conn: AsyncConnection) -> None:
    """Drop a connection that may be dead without raising: its session, and any lock the
    session held, end with it."""
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()


async def probe(engine: AsyncEngine) -> None:
    """Whether the database takes writes again: DatabaseUnavailable if it does not (not
    reachable, or a standby still in recovery after a failover)."""
    try:
        async with engine.connect() as conn:
            standby = await conn.scalar(text("SELECT pg_is_in_recovery()"))
    except _DRIVER_ERRORS as exc:
        # Anything that stops a connection counts here (an error after a failover, say): the
        # gate keeps waiting and names it if the limit passes.
        raise DatabaseUnavailable(outage_reason(exc) or _first_line(exc)) from exc
    if standby:
        raise DatabaseUnavailable("the server is a standby in recovery (read-only)")
