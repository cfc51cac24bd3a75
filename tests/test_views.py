"""The BI views (migration 0004): their figures against the table after real syncs of two apps,
exact yuan, documented columns, the README's queries and read-only role, and their removal."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Hashable
from decimal import Decimal
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.db.database import alembic_config, downgrade, migrate
from sync.sandbox import SandboxServer
from tests.helpers import REPO, Clock, MakeSandbox, run_sync, sandbox_settings

VIEWS = ("bi_earnings", "bi_task_daily", "bi_creator_daily", "bi_video_daily")
MONEY = {
    "gmv_yuan": "gmv_1d",
    "refund_gmv_yuan": "refund_gmv_1d",
    "billing_gmv_yuan": "billing_gmv_1d",
    "billing_refund_gmv_yuan": "billing_refund_gmv_1d",
    "ad_share_cost_yuan": "ad_share_cost_1d",
    "feed_ad_share_cost_yuan": "feed_ad_share_cost_1d",
}
README = (REPO / "README.md").read_text()


@pytest.fixture
async def shop_a(make_sandbox: MakeSandbox) -> SandboxServer:
    return await make_sandbox(seed=31, videos=160, tasks=5, creators=14)


@pytest.fixture
async def shop_b(make_sandbox: MakeSandbox) -> SandboxServer:
    return await make_sandbox(seed=32, videos=120, tasks=4, creators=11)


async def _sync_both(
    shop_a: SandboxServer, shop_b: SandboxServer, database_url: str, clock: Clock, kind: str
) -> None:
    dates = clock.recent_dates(3)
    for app, sb in (("tt_a", shop_a), ("tt_b", shop_b)):
        settings = sandbox_settings(sb, database_url, app=app)
        result = await run_sync(settings, dates, now=clock(), kind=kind, page_size=50)
        assert result.status == "succeeded", result.failed


async def _rows(conn: AsyncConnection, sql: str) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in await conn.execute(text(sql))]


def _yuan(fen: int | None) -> Decimal | None:
    return None if fen is None else Decimal(fen).scaleb(-2)


def _sum(values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _totals(
    table: list[dict[str, Any]], key: Callable[[dict[str, Any]], Hashable]
) -> dict[Hashable, dict[str, Any]]:
    """The table's rows grouped by `key`: money summed in fen then made yuan, profit summed."""
    groups: dict[Hashable, list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        groups[key(row)].append(row)
    out: dict[Hashable, dict[str, Any]] = {}
    for k, rows in groups.items():
        figures = {name: _yuan(_sum([r[fen] for r in rows])) for name, fen in MONEY.items()}
        figures["expected_profit"] = _sum([r["expected_profit"] for r in rows])
        figures["active_cnt_1d"] = _sum([r["active_cnt_1d"] for r in rows])
        figures["rows"] = rows
        out[k] = figures
    return out


def _assert_money_exact(row: dict[str, Any]) -> None:
    for name in MONEY:
        value = row[name]
        assert value is None or (isinstance(value, Decimal) and value.as_tuple().exponent == -2)


async def _assert_views_match_table(engine: AsyncEngine) -> int:
    """Every view's figures equal those computed here from the table; the rows compared."""
    async with engine.connect() as conn:
        table = await _rows(conn, "SELECT * FROM video_daily_earnings")
        earnings = await _rows(conn, "SELECT * FROM bi_earnings")
        tasks = await _rows(conn, "SELECT * FROM bi_task_daily")
        creators = await _rows(conn, "SELECT * FROM bi_creator_daily")
        videos = await _rows(conn, "SELECT * FROM bi_video_daily")
    assert {r["app_id"] for r in table} == {"tt_a", "tt_b"}

    by_key = {(r["billing_date"], r["video_id"], r["task_id"]): r for r in table}
    assert len(earnings) == len(table)
    for row in earnings:
        _assert_money_exact(row)
        raw = by_key[(row["billing_date"], row["video_id"], row["task_id"])]
        assert row["app_id"] == raw["app_id"]
        assert row["video_id_text"] == str(raw["video_id"])
        assert row["task_id_text"] == str(raw["task_id"])
        assert row["expected_profit"] == raw["expected_profit"]
        for name, fen in MONEY.items():
            assert row[name] == _yuan(raw[fen]), (name, row, raw)

    checks: list[tuple[list[dict[str, Any]], tuple[str, ...], dict[str, Callable[..., Any]]]] = [
        (
            tasks,
            ("app_id", "billing_date", "task_id"),
            {"videos": len, "creators": lambda rs: len({r["douyin_id"] for r in rs} - {None})},
        ),
        (
            creators,
            ("app_id", "billing_date", "douyin_id"),
            {
                "videos": lambda rs: len({r["video_id"] for r in rs}),
                "tasks": lambda rs: len({r["task_id"] for r in rs}),
            },
        ),
        (videos, ("app_id", "billing_date", "video_id"), {"tasks": len}),
    ]
    for view, keys, counts in checks:
        want = _totals(table, lambda r, keys=keys: tuple(r[k] for k in keys))  # type: ignore[misc]
        assert {tuple(r[k] for k in keys) for r in view} == set(want)
        for row in view:
            _assert_money_exact(row)
            expected = want[tuple(row[k] for k in keys)]
            for name in (*MONEY, "expected_profit", "active_cnt_1d"):
                assert row[name] == expected[name], (keys, name, row)
            for name, count in counts.items():
                assert row[name] == count(expected["rows"]), (keys, name, row)
    return len(table)


async def test_the_views_figures_are_the_tables_sums_and_never_stale(
    shop_a: SandboxServer,
    shop_b: SandboxServer,
    database_url: str,
    engine: AsyncEngine,
    clock: Clock,
) -> None:
    """After real syncs of two apps, each view's rows and figures equal sums computed from the
    table (money in exact yuan: Decimal with 2 places); after late settlement and a nightly
    re-sync they follow the table with no refresh."""
    await _sync_both(shop_a, shop_b, database_url, clock, "backfill")
    before = await _assert_views_match_table(engine)
    assert before > 300
    async with engine.connect() as conn:
        old = await conn.scalar(text("SELECT sum(gmv_yuan) FROM bi_task_daily"))
    shop_a.mutate(clock.recent_dates(2), change_fraction=0.3, add=4, remove=3, seed=9)
    await _sync_both(shop_a, shop_b, database_url, clock, "nightly")
    await _assert_views_match_table(engine)
    async with engine.connect() as conn:
        new = await conn.scalar(text("SELECT sum(gmv_yuan) FROM bi_task_daily"))
        fen = await conn.scalar(text("SELECT sum(gmv_1d) FROM video_daily_earnings"))
    assert new != old and new == Decimal(fen).scaleb(-2)


async def test_every_view_and_column_is_documented(engine: AsyncEngine) -> None:
    """Each view has a comment, and so has each of its columns (what BI tools show)."""
    async with engine.connect() as conn:
        for view in VIEWS:
            about = await conn.scalar(text(f"SELECT obj_description('{view}'::regclass)"))
            assert about and "view" in about.lower(), view
            columns = await _rows(
                conn,
                "SELECT a.attname AS name, col_description(a.attrelid, a.attnum) AS about"
                f" FROM pg_attribute a WHERE a.attrelid = '{view}'::regclass AND a.attnum > 0",
            )
            assert len(columns) > 8
            assert [c["name"] for c in columns if not c["about"]] == [], view


def _readme_section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_the_readme_lists_every_view_and_column() -> None:
    """The README's *Views for BI* names each view and each of its columns."""
    section = _readme_section("Views for BI")
    migration = (REPO / "migrations" / "versions" / "0004_bi_views.py").read_text()
    for view in VIEWS:
        assert f"`{view}`" in section, view
    columns = set(re.findall(r'\("([a-z_0-9]+)", "[^"]+", ', migration))
    assert len(columns) > 20
    assert [c for c in sorted(columns) if f"`{c}`" not in section] == []


@pytest.mark.wall_clock  # the queries count days back from the database's current_date
async def test_the_readme_queries_and_read_only_role_work(
    shop_a: SandboxServer,
    shop_b: SandboxServer,
    database_url: str,
    engine: AsyncEngine,
    clock: Clock,
) -> None:
    """The README's example queries run and return rows; its read-only role reads the views
    and is refused the table, the ledger and writes through a view."""
    await _sync_both(shop_a, shop_b, database_url, clock, "backfill")
    section = _readme_section("Views for BI")
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    queries = [b for b in blocks if b.lstrip().upper().startswith(("SELECT", "WITH"))]
    grants = next(b for b in blocks if "GRANT" in b)
    assert len(queries) >= 2
    role = f"bi_reader_{uuid.uuid4().hex[:8]}"
    async with engine.connect() as conn:
        for query in queries:
            assert (await conn.execute(text(query))).all(), query
        await conn.rollback()
        try:
            async with conn.begin():
                dbname = await conn.scalar(text("SELECT current_database()"))
                setup = grants.replace("bi_reader", role).replace("taskbox", f'"{dbname}"')
                for statement in filter(str.strip, setup.split(";")):
                    await conn.execute(text(statement.replace("'…'", "'x'")))
            async with conn.begin() as tx:
                await conn.execute(text(f"SET ROLE {role}"))
                for view in VIEWS:
                    await conn.execute(text(f"SELECT count(*) FROM {view}"))
                await tx.rollback()
            for refused in (
                "SELECT count(*) FROM video_daily_earnings",
                "SELECT count(*) FROM sync_runs",
                "UPDATE bi_earnings SET author = 'x'",
            ):
                async with conn.begin() as tx:
                    await conn.execute(text(f"SET ROLE {role}"))
                    with pytest.raises(Exception, match="permission denied"):
                        await conn.execute(text(refused))
                    await tx.rollback()
        finally:
            async with conn.begin():
                await conn.execute(text(f"DROP OWNED BY {role}"))
                await conn.execute(text(f"DROP ROLE {role}"))


async def test_downgrade_drops_the_views_and_upgrade_brings_them_back(engine: AsyncEngine) -> None:
    """The views' revision undone leaves no view behind (the table stays); redone, all are back."""
    script = ScriptDirectory.from_config(alembic_config()).get_revision("0004")
    assert script is not None and isinstance(script.down_revision, str)

    async def views() -> set[str]:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT table_name FROM information_schema.views WHERE table_name LIKE 'bi%'")
            )
            return set(found.scalars())

    assert await views() == set(VIEWS)
    await downgrade(engine, script.down_revision)
    assert await views() == set()
    await migrate(engine)
    assert await views() == set(VIEWS)
