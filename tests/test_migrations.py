"""The schema is owned by Alembic, and the models agree with the migrations."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db.database import check_schema, create_engine, downgrade, head_revision, migrate
from sync.db.schema import metadata
from sync.errors import SchemaAheadError, SchemaBehindError


def _diff(connection: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    """Autogenerate finds no difference between sync.db.schema and the migrated database."""
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_downgrade_to_base_then_upgrade(engine: AsyncEngine) -> None:
    """Every migration can be undone and redone."""
    await downgrade(engine, "base")
    async with engine.connect() as conn:
        assert await conn.run_sync(_tables) <= {"alembic_version"}
    await migrate(engine)
    async with engine.connect() as conn:
        tables = await conn.run_sync(_tables)
    assert {"video_daily_earnings", "sync_runs", "sync_partitions", "talent_operations"} <= tables
    await check_schema(engine)


async def test_the_earnings_indexes_deduplicate_and_0006_had_them_not(engine: AsyncEngine) -> None:
    """Revision 0007 gives the app and task indexes PostgreSQL's default deduplication back;
    down to 0006 they opt out again."""
    query = text(
        "SELECT relname, coalesce(array_to_string(reloptions, ','), '') FROM pg_class"
        " WHERE relname LIKE 'ix_video_daily_earnings_%' ORDER BY relname"
    )

    async def options() -> dict[str, str]:
        async with engine.connect() as conn:
            return {name: opts for name, opts in (await conn.execute(query)).all()}

    indexes = (
        "ix_video_daily_earnings_app_id_billing_date",
        "ix_video_daily_earnings_task_id_billing_date",
    )
    assert {name: (await options())[name] for name in indexes} == dict.fromkeys(indexes, "")
    await downgrade(engine, "0006")
    assert {name: (await options())[name] for name in indexes} == dict.fromkeys(
        indexes, "deduplicate_items=off"
    )
    await migrate(engine)
    assert {name: (await options())[name] for name in indexes} == dict.fromkeys(indexes, "")


async def test_check_schema_refuses_unmigrated_database(empty_database_url: str) -> None:
    """A database behind head is refused with a message that says to run migrate."""
    eng = create_engine(empty_database_url)
    try:
        with pytest.raises(SchemaBehindError, match="run `taskbox-sync migrate`"):
            await check_schema(eng)
        await migrate(eng)
        await check_schema(eng)
    finally:
        await eng.dispose()


def test_single_head() -> None:
    """The migration history has one head."""
    assert head_revision() == "0007"


async def test_a_schema_migrated_by_a_newer_version_is_refused_untouched(
    engine: AsyncEngine,
) -> None:
    """A revision this version does not know (a newer taskbox-sync migrated the database):
    migrate and check_schema refuse it with SchemaAheadError and change nothing."""
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'f00d'"))
    with pytest.raises(SchemaAheadError, match=r"f00d.*upgrade taskbox-sync"):
        await migrate(engine)
    with pytest.raises(SchemaAheadError, match="does not know"):
        await check_schema(engine)
    async with engine.connect() as conn:
        assert await conn.scalar(text("SELECT version_num FROM alembic_version")) == "f00d"
        assert "video_daily_earnings" in await conn.run_sync(_tables)


_RUN = (
    "INSERT INTO sync_runs (id, kind, app_key, params, status, started_at)"
    " OVERRIDING SYSTEM VALUE VALUES (:id, 'backfill', :app, '{}', 'succeeded', now())"
)
_ROW = (
    "INSERT INTO video_daily_earnings (billing_date, video_id, task_id, first_synced_at,"
    " last_synced_at, last_run_id) VALUES ('2026-03-01', :video, 1, now(), now(), :run)"
)
_PARTITION = (
    "INSERT INTO sync_partitions (run_id, billing_date, window_start, window_end, status,"
    " started_at) VALUES (:run, '2026-03-01', now(), now(), 'done', now())"
)


@pytest.mark.parametrize("apps", [("key_a", "key_b"), ("key_only",)])
async def test_existing_rows_get_the_app_of_the_run_that_wrote_them(
    engine: AsyncEngine, apps: tuple[str, ...]
) -> None:
    """A database filled through the schema before apps (0001): after the upgrade each row,
    partition and talent operation carries an app: the one of its run; rows whose run is gone
    the ledger's only app, else 'unknown'."""
    await downgrade(engine, "0001")
    async with engine.begin() as conn:
        for run_id, app in enumerate(apps, 1):
            await conn.execute(text(_RUN), {"id": run_id, "app": app})
            await conn.execute(text(_PARTITION), {"run": run_id})
            await conn.execute(text(_ROW), {"video": run_id, "run": run_id})
        await conn.execute(text(_ROW), {"video": 99, "run": None})  # its run was deleted
        await conn.execute(
            text(
                "INSERT INTO talent_operations (task_id, douyin_id, operation, ok, outcome)"
                " VALUES (1, 'd', 'add', true, 'ok')"
            )
        )
    await migrate(engine)
    async with engine.connect() as conn:
        rows = dict((await conn.execute(text(
            "SELECT video_id, app_id FROM video_daily_earnings"))).all())  # fmt: skip
        partitions = (await conn.execute(text(
            "SELECT run_id, app_id FROM sync_partitions ORDER BY run_id"))).all()  # fmt: skip
        talents = await conn.scalar(text("SELECT app_id FROM talent_operations"))
        runs = (await conn.execute(text("SELECT id, app_id FROM sync_runs ORDER BY id"))).all()
    assert runs == list(enumerate(apps, 1))
    assert partitions == list(enumerate(apps, 1))
    only = apps[0] if len(apps) == 1 else None
    assert rows == {**{i: app for i, app in enumerate(apps, 1)}, 99: only or "unknown"}
    assert talents == only
    await check_schema(engine)
