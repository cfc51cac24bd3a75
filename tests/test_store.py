"""The bulk path against a real PostgreSQL: exact rows, exact counts, no needless row versions."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db.schema import RECORD_COLUMNS
from sync.db.store import MergeCounts, PartitionWriter
from sync.errors import AppendConflict, DatabaseError

APP = "tt_store_app"
DAY = dt.date(2024, 5, 1)
START = 1_714_000_000  # the partition's publish window, inclusive
END = START + 86_400
VIDEO = 7270855478333246754  # above 2**53: a float would round it
TASK = 7_100_000_000_000_000_001


PUBLISHED = RECORD_COLUMNS.index("publish_time")
PROFIT = RECORD_COLUMNS.index("expected_profit")


def at(seconds: int) -> dt.datetime:
    """The stored publish time (timestamptz) of a record's Unix seconds."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def rec(video_id: int, task_id: int = TASK, **values: Any) -> tuple[Any, ...]:
    """A record in RECORD_COLUMNS order, in the mapper's raw form (publish_time as Unix seconds,
    expected_profit as decimal text), with plausible defaults."""
    row: dict[str, Any] = {
        "billing_date": DAY,
        "video_id": video_id,
        "task_id": task_id,
        "douyin_id": "creator-a",
        "author": "作者",
        "client_name": "client",
        "micro_app_title": "mini app",
        "task_name": "task",
        "video_title": f"video {video_id}",
        "video_link": f"https://www.douyin.com/video/{video_id}",
        "publish_time": START + 100,
        "data_date": DAY,
        "active_cnt_1d": 3,
        "gmv_1d": 1000,
        "refund_gmv_1d": 0,
        "billing_gmv_1d": 1000,
        "billing_refund_gmv_1d": 0,
        "ad_share_cost_1d": 10,
        "feed_ad_share_cost_1d": 5,
        "expected_profit": "1.3",
        "extra": None,
    }
    unknown = set(values) - set(row)
    assert not unknown, unknown
    row.update(values)
    assert row["publish_time"] is None or type(row["publish_time"]) is int
    assert row["expected_profit"] is None or type(row["expected_profit"]) in (int, str)
    return tuple(row[c] for c in RECORD_COLUMNS)


def as_stored(record: Sequence[Any]) -> tuple[Any, ...]:
    """A record as the table gives it back: publish_time a UTC datetime, the profit a Decimal."""
    values = list(record)
    if values[PUBLISHED] is not None:
        values[PUBLISHED] = at(values[PUBLISHED])
    if values[PROFIT] is not None:
        values[PROFIT] = Decimal(values[PROFIT])
    return tuple(values)


def stored_record(row: dict[str, Any]) -> tuple[Any, ...]:
    """A stored row's values in RECORD_COLUMNS order."""
    return tuple(row[c] for c in RECORD_COLUMNS)


async def merge(
    engine: AsyncEngine,
    *pages: Sequence[tuple[Any, ...]],
    run_id: int = 1,
    billing_date: dt.date = DAY,
    start: int = START,
    end: int = END,
    douyin_id: str | None = None,
    mirror: bool = True,
) -> MergeCounts:
    async with engine.connect() as conn, conn.begin():
        writer = await PartitionWriter.open(conn, APP)
        for page in pages:
            await writer.add_page(page)
        return await writer.merge(
            billing_date, start, end, run_id=run_id, douyin_id=douyin_id, mirror=mirror
        )


async def rows(
    engine: AsyncEngine, billing_date: dt.date | None = None
) -> dict[int, dict[str, Any]]:
    """Every stored row (of `billing_date` if given) by video id, with its xmin (changes only
    with a new row version)."""
    where = "" if billing_date is None else "WHERE billing_date = :d "
    async with engine.connect() as conn:
        result = await conn.execute(
            text(
                f"SELECT *, xmin::text AS xmin FROM video_daily_earnings {where}ORDER BY video_id"
            ),
            {"d": billing_date},
        )
        return {r.video_id: dict(r._mapping) for r in result}


def counts(**kw: int) -> MergeCounts:
    base = dict(staged=0, repeated=0, inserted=0, updated=0, unchanged=0, removed=0)
    return MergeCounts(**(base | kw))


@pytest.fixture
def plain_inserts(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """What each merge's plain INSERT returned: its row count, or None when the full merge ran
    instead (a merge that never tried it adds nothing)."""
    results: list[int | None] = []
    original = PartitionWriter._insert_all

    async def spy(self: PartitionWriter, billing_date: dt.date, run_id: int) -> int | None:
        result = await original(self, billing_date, run_id)
        results.append(result)
        return result

    monkeypatch.setattr(PartitionWriter, "_insert_all", spy)
    return results


async def count_keys(engine: AsyncEngine, video_id: int) -> int:
    """How many stored rows have this video id (any date, any task)."""
    async with engine.connect() as conn:
        sql = text("SELECT count(*) FROM video_daily_earnings WHERE video_id = :v")
        return int(await conn.scalar(sql, {"v": video_id}) or 0)


async def test_insert_into_empty_table(engine: AsyncEngine) -> None:
    """New records are inserted with every value exact and both sync stamps set."""
    records = [rec(VIDEO), rec(VIDEO + 1, gmv_1d=None, expected_profit=None)]
    assert await merge(engine, records, run_id=7) == counts(staged=2, inserted=2)
    stored = await rows(engine)
    assert [stored_record(stored[v]) for v in (VIDEO, VIDEO + 1)] == list(map(as_stored, records))
    assert stored[VIDEO]["publish_time"] == at(START + 100)
    assert str(stored[VIDEO]["expected_profit"]) == "1.3"
    for row in stored.values():
        assert row["last_run_id"] == 7
        assert row["first_synced_at"] == row["last_synced_at"]


async def test_unchanged_resync_writes_no_row_version(engine: AsyncEngine) -> None:
    """Merging identical data again counts it unchanged and leaves every row version alone."""
    records = [rec(VIDEO + i) for i in range(5)]
    await merge(engine, records, run_id=1)
    before = await rows(engine)
    assert await merge(engine, records, run_id=2) == counts(staged=5, unchanged=5)
    assert await rows(engine) == before  # same xmin, last_synced_at and last_run_id


async def test_changed_figure_updates_only_that_row(engine: AsyncEngine) -> None:
    """One changed figure updates one row: only its xmin, last_synced_at and last_run_id move."""
    await merge(engine, [rec(VIDEO), rec(VIDEO + 1)], run_id=1)
    before = await rows(engine)
    changed = [rec(VIDEO), rec(VIDEO + 1, billing_gmv_1d=999)]
    assert await merge(engine, changed, run_id=2) == counts(staged=2, updated=1, unchanged=1)
    after = await rows(engine)
    assert after[VIDEO] == before[VIDEO]
    moved = after[VIDEO + 1]
    assert moved["billing_gmv_1d"] == 999
    assert moved["xmin"] != before[VIDEO + 1]["xmin"]
    assert moved["last_run_id"] == 2
    assert moved["first_synced_at"] == before[VIDEO + 1]["first_synced_at"]
    assert moved["last_synced_at"] > before[VIDEO + 1]["last_synced_at"]


async def test_mirror_deletes_only_missing_rows_of_the_window(engine: AsyncEngine) -> None:
    """A row missing from the pages is deleted only if it has this date and a publish time
    inside the window; older videos, other dates and unknown publish times are kept."""
    other_day = DAY - dt.timedelta(days=1)
    await merge(
        engine,
        [
            rec(VIDEO),
            rec(VIDEO + 1, publish_time=START),  # missing later, on the window's first second
            rec(VIDEO + 2, publish_time=END),  # missing later, on its last second
            rec(VIDEO + 3, publish_time=START - 1),  # before the window: invisible, not gone
            rec(VIDEO + 4, publish_time=None),
        ],
    )
    await merge(engine, [rec(VIDEO + 5, billing_date=other_day)], billing_date=other_day)
    result = await merge(engine, [rec(VIDEO)], run_id=2)
    assert result == counts(staged=1, unchanged=1, removed=2)
    assert sorted(await rows(engine)) == [VIDEO, VIDEO + 3, VIDEO + 4, VIDEO + 5]


async def test_creator_filter_limits_deletion_to_that_creator(engine: AsyncEngine) -> None:
    """With a douyin_id filter only that creator's rows can be deleted."""
    await merge(
        engine,
        [rec(VIDEO, douyin_id="x"), rec(VIDEO + 1, douyin_id="x"), rec(VIDEO + 2, douyin_id="y")],
    )
    result = await merge(engine, [rec(VIDEO, douyin_id="x")], douyin_id="x", run_id=2)
    assert result == counts(staged=1, unchanged=1, removed=1)
    assert sorted(await rows(engine)) == [VIDEO, VIDEO + 2]


async def test_without_mirror_nothing_is_deleted(engine: AsyncEngine) -> None:
    """mirror=False upserts and deletes nothing."""
    await merge(engine, [rec(VIDEO), rec(VIDEO + 1)])
    assert await merge(engine, [rec(VIDEO)], mirror=False) == counts(staged=1, unchanged=1)
    assert sorted(await rows(engine)) == [VIDEO, VIDEO + 1]


async def test_empty_partition_with_mirror_empties_the_window(engine: AsyncEngine) -> None:
    """No records at all means the platform lists nothing in the window: its rows go."""
    await merge(engine, [rec(VIDEO), rec(VIDEO + 1, publish_time=END + 1)])
    assert await merge(engine) == counts(removed=1)
    assert sorted(await rows(engine)) == [VIDEO + 1]


async def test_repeated_key_last_occurrence_wins(engine: AsyncEngine) -> None:
    """A key repeated within a page or across pages is merged once, from its last record."""
    first = [rec(VIDEO, gmv_1d=1), rec(VIDEO + 1, gmv_1d=1), rec(VIDEO, gmv_1d=2)]
    second = [rec(VIDEO + 1, gmv_1d=3), rec(VIDEO + 2), rec(VIDEO + 1, gmv_1d=4)]
    result = await merge(engine, first, second)
    assert result == counts(staged=6, repeated=3, inserted=3)
    stored = await rows(engine)
    assert {v: r["gmv_1d"] for v, r in stored.items()} == {VIDEO: 2, VIDEO + 1: 4, VIDEO + 2: 1000}


async def test_same_video_under_two_tasks_is_two_rows(engine: AsyncEngine) -> None:
    """The key is (billing date, video, task): one video in two tasks is not a repeat."""
    result = await merge(engine, [rec(VIDEO, task_id=1), rec(VIDEO, task_id=2)])
    assert result == counts(staged=2, inserted=2)


async def test_ids_above_2_53_are_exact(engine: AsyncEngine) -> None:
    """19-digit ids, up to the int64 maximum, survive to the last digit."""
    big = 2**63 - 1
    await merge(engine, [rec(VIDEO, task_id=big), rec(2**53 + 1, task_id=big)])
    async with engine.connect() as conn:
        ids = (
            await conn.execute(
                text(
                    "SELECT video_id::text, task_id::text"
                    " FROM video_daily_earnings v ORDER BY v.video_id"
                )
            )
        ).all()
    assert ids == [(str(2**53 + 1), str(big)), (str(VIDEO), str(big))]


async def test_text_is_stored_verbatim(engine: AsyncEngine) -> None:
    """Quotes, SQL, backslashes, tabs, newlines and emoji are data, stored as given."""
    title = "'); DROP TABLE video_daily_earnings;--"
    author = 'tab\there\nnew line \\N "quoted" 😀 中文'
    await merge(engine, [rec(VIDEO, video_title=title, author=author, task_name="")])
    row = (await rows(engine))[VIDEO]
    assert (row["video_title"], row["author"], row["task_name"]) == (title, author, "")


async def test_decimal_profit_is_exact(engine: AsyncEngine) -> None:
    """expected_profit, as text or as an int, is stored as numeric with every digit: 1.3 is 1.3,
    not 1.30000…044."""
    big = Decimal("12345678901234567890.123456789")
    profits: list[str | int] = ["1.3", str(big), "1.30", "0", "5", 0, 7, 10**30, 123_456_789]
    await merge(engine, [rec(VIDEO + i, expected_profit=p) for i, p in enumerate(profits)])
    async with engine.connect() as conn:
        got = (
            await conn.execute(
                text("SELECT expected_profit::text FROM video_daily_earnings ORDER BY video_id")
            )
        ).scalars()
        assert list(got) == [str(p) for p in profits]
    assert (await rows(engine))[VIDEO + 1]["expected_profit"] == big


async def test_extra_is_jsonb_and_compared_by_value(engine: AsyncEngine) -> None:
    """extra arrives as JSON text, is stored as jsonb, and reformatted JSON is unchanged."""
    await merge(engine, [rec(VIDEO, extra='{"b": 1, "a": [1, 2], "s": "中"}')])
    async with engine.connect() as conn:
        kind, a = (
            await conn.execute(
                text("SELECT jsonb_typeof(extra), extra->'a' FROM video_daily_earnings")
            )
        ).one()
    assert (kind, json.loads(a) if isinstance(a, str) else a) == ("object", [1, 2])
    same = json.dumps({"s": "中", "a": [1, 2], "b": 1}, ensure_ascii=True)
    assert await merge(engine, [rec(VIDEO, extra=same)]) == counts(staged=1, unchanged=1)


async def test_invalid_json_is_a_database_error(engine: AsyncEngine) -> None:
    """A record whose extra is not JSON fails the partition with DatabaseError, nothing stored."""
    with pytest.raises(DatabaseError, match="cannot stage a page"):
        await merge(engine, [rec(VIDEO, extra="{not json")])
    assert await rows(engine) == {}


async def test_nul_in_text_is_a_database_error(engine: AsyncEngine) -> None:
    """PostgreSQL text cannot hold NUL: the mapper must remove it; here it fails loudly."""
    with pytest.raises(DatabaseError, match="cannot stage a page"):
        await merge(engine, [rec(VIDEO, video_title="a\x00b")])
    assert await rows(engine) == {}


async def test_row_outside_the_scope_is_updated_not_inserted(engine: AsyncEngine) -> None:
    """A staged key whose stored copy lies outside the window (its publish time was unknown or
    moved) is matched by key: updated when it differs, unchanged when it does not."""
    await merge(engine, [rec(VIDEO, publish_time=None), rec(VIDEO + 1, publish_time=None)])
    result = await merge(engine, [rec(VIDEO), rec(VIDEO + 1, publish_time=None)], run_id=2)
    assert result == counts(staged=2, updated=1, unchanged=1)
    assert (await rows(engine))[VIDEO]["publish_time"] == at(START + 100)


async def test_empty_scope_is_a_plain_insert(
    engine: AsyncEngine, plain_inserts: list[int | None]
) -> None:
    """With nothing stored in the scope (rows of other dates and outside the window do not
    count) the partition is one plain INSERT: exact rows, counts and stamps; others untouched."""
    other_day = DAY - dt.timedelta(days=1)
    await merge(engine, [rec(VIDEO, billing_date=other_day)], billing_date=other_day)
    await merge(engine, [rec(VIDEO + 9, publish_time=START - 1)], start=START - 10, end=START - 1)
    before = await rows(engine, DAY)
    plain_inserts.clear()
    records = [
        rec(VIDEO, gmv_1d=1),
        rec(VIDEO + 1, publish_time=END, gmv_1d=None, expected_profit=None, author=None),
        rec(VIDEO + 2, expected_profit="12345678901234567890.123456789"),
        rec(VIDEO, gmv_1d=2),  # a repeat: the last occurrence is the one inserted
    ]
    result = await merge(engine, records, run_id=5)
    assert result == counts(staged=4, repeated=1, inserted=3)
    assert plain_inserts == [3]
    stored = await rows(engine, DAY)
    assert stored.pop(VIDEO + 9) == before[VIDEO + 9]  # same day, outside the window: untouched
    expected = {r[1]: as_stored(r) for r in records[1:]}
    assert {v: stored_record(r) for v, r in stored.items()} == expected
    assert str(stored[VIDEO + 2]["expected_profit"]) == "12345678901234567890.123456789"
    for row in stored.values():
        assert row["last_run_id"] == 5
        assert row["first_synced_at"] is not None
        assert row["first_synced_at"] == row["last_synced_at"]
    assert await count_keys(engine, VIDEO) == 2  # this date's row and the other date's
    after = await rows(engine, DAY)
    # Now the scope holds rows: the same records go through the full merge, unchanged.
    assert await merge(engine, records, run_id=6) == counts(staged=4, repeated=1, unchanged=3)
    assert plain_inserts == [3]
    assert await rows(engine, DAY) == after


async def test_plain_insert_falls_back_when_a_key_is_stored_outside_the_window(
    engine: AsyncEngine, plain_inserts: list[int | None]
) -> None:
    """A staged key already stored for the date with a publish time outside the window makes the
    plain INSERT fail; the full merge then updates that row: right counts, no duplicate."""
    await merge(
        engine,
        [rec(VIDEO, publish_time=START - 1000, gmv_1d=1), rec(VIDEO + 5, publish_time=START - 500)],
        start=START - 2000,
        end=START - 1,
    )
    before = await rows(engine)
    plain_inserts.clear()
    result = await merge(engine, [rec(VIDEO), rec(VIDEO + 1)], run_id=2)
    assert result == counts(staged=2, inserted=1, updated=1)
    assert plain_inserts == [None]  # tried, failed on the stored key, nothing kept from it
    after = await rows(engine)
    assert sorted(after) == [VIDEO, VIDEO + 1, VIDEO + 5]
    assert await count_keys(engine, VIDEO) == 1
    moved = after[VIDEO]
    assert stored_record(moved) == as_stored(rec(VIDEO))
    assert moved["publish_time"] == at(START + 100) and moved["gmv_1d"] == 1000
    assert moved["last_run_id"] == 2 and moved["xmin"] != before[VIDEO]["xmin"]
    assert moved["first_synced_at"] == before[VIDEO]["first_synced_at"]
    assert after[VIDEO + 1]["first_synced_at"] == after[VIDEO + 1]["last_synced_at"]
    assert after[VIDEO + 5] == before[VIDEO + 5]  # outside the window: neither updated nor gone


async def test_creator_scope_empty_is_a_plain_insert(
    engine: AsyncEngine, plain_inserts: list[int | None]
) -> None:
    """A creator-filtered partition whose creator has nothing stored is inserted plainly, other
    creators' rows in the window stay; once it has rows, its merge mirrors only that creator."""
    await merge(engine, [rec(VIDEO, douyin_id="y"), rec(VIDEO + 1, douyin_id="y")])
    plain_inserts.clear()
    mine = [rec(VIDEO + 2, douyin_id="x"), rec(VIDEO + 3, douyin_id="x")]
    assert await merge(engine, mine, douyin_id="x", run_id=2) == counts(staged=2, inserted=2)
    assert plain_inserts == [2]
    stored = await rows(engine)
    assert sorted(stored) == [VIDEO, VIDEO + 1, VIDEO + 2, VIDEO + 3]
    assert [stored_record(stored[v]) for v in (VIDEO + 2, VIDEO + 3)] == list(map(as_stored, mine))
    result = await merge(engine, mine[:1], douyin_id="x", run_id=3)
    assert result == counts(staged=1, unchanged=1, removed=1)
    assert plain_inserts == [2]  # the scope was not empty: full merge only
    assert sorted(await rows(engine)) == [VIDEO, VIDEO + 1, VIDEO + 2]


async def test_creator_scope_empty_falls_back_when_the_key_has_another_creator(
    engine: AsyncEngine, plain_inserts: list[int | None]
) -> None:
    """A creator-filtered partition whose key is stored under another creator (its douyin_id
    changed) falls back to the full merge and updates that row, deleting nothing else."""
    await merge(engine, [rec(VIDEO, douyin_id="y"), rec(VIDEO + 1, douyin_id="y")])
    before = await rows(engine)
    plain_inserts.clear()
    result = await merge(engine, [rec(VIDEO, douyin_id="z")], douyin_id="z", run_id=2)
    assert result == counts(staged=1, updated=1)
    assert plain_inserts == [None]
    after = await rows(engine)
    assert sorted(after) == [VIDEO, VIDEO + 1]
    assert after[VIDEO]["douyin_id"] == "z" and after[VIDEO]["last_run_id"] == 2
    assert after[VIDEO + 1] == before[VIDEO + 1]


async def test_publish_time_extremes_round_trip(engine: AsyncEngine) -> None:
    """Unix seconds at both ends of datetime's range are stored as those instants, and compare
    unchanged when merged again."""
    records = [
        rec(VIDEO, publish_time=-62135596800),
        rec(VIDEO + 1, publish_time=253402300799),
        rec(VIDEO + 2, publish_time=0),
    ]
    assert await merge(engine, records) == counts(staged=3, inserted=3)
    stored = await rows(engine)
    assert [stored[v]["publish_time"] for v in (VIDEO, VIDEO + 1, VIDEO + 2)] == [
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
    ]
    assert await merge(engine, records, run_id=2) == counts(staged=3, unchanged=3)
    assert await rows(engine) == stored


@pytest.mark.parametrize("scope_empty", [True, False])
async def test_unreadable_profit_text_is_refused_and_nothing_is_stored(
    engine: AsyncEngine, scope_empty: bool
) -> None:
    """A profit text that is not a number (the mapper never makes one) cannot be staged: the
    numeric codec refuses it by name, on the plain and the full path alike, and nothing is
    stored."""
    if not scope_empty:
        await merge(engine, [rec(VIDEO + 1)])
    before = await rows(engine)
    with pytest.raises(ValueError, match="'lots' is not a number"):
        await merge(engine, [rec(VIDEO, expected_profit="lots"), rec(VIDEO + 1)], run_id=2)
    assert await rows(engine) == before


async def test_rollback_leaves_nothing_and_the_writer_recovers(engine: AsyncEngine) -> None:
    """A rolled-back partition leaves no rows (and no staging table); the next one works."""
    async with engine.connect() as conn:
        with pytest.raises(RuntimeError, match="abort"):
            async with conn.begin():
                writer = await PartitionWriter.open(conn, APP)
                await writer.add_page([rec(VIDEO)])
                await writer.merge(DAY, START, END, run_id=1)
                raise RuntimeError("abort")
        assert await rows(engine) == {}
        async with conn.begin():
            writer = await PartitionWriter.open(conn, APP)
            await writer.add_page([rec(VIDEO + 1)])
            assert await writer.merge(DAY, START, END, run_id=2) == counts(staged=1, inserted=1)
    assert sorted(await rows(engine)) == [VIDEO + 1]


async def test_staging_is_empty_in_every_new_transaction(engine: AsyncEngine) -> None:
    """Partitions on one connection never see each other's staged rows, even in one
    transaction."""
    async with engine.connect() as conn:
        async with conn.begin():
            writer = await PartitionWriter.open(conn, APP)
            await writer.add_page([rec(VIDEO), rec(VIDEO + 1)])
            await writer.merge(DAY, START, END, run_id=1)
        async with conn.begin():
            writer = await PartitionWriter.open(conn, APP)
            await writer.add_page([rec(VIDEO)])
            assert await writer.merge(DAY, START, END, run_id=2) == counts(
                staged=1, unchanged=1, removed=1
            )
            writer = await PartitionWriter.open(conn, APP)
            await writer.add_page([rec(VIDEO + 2)])
            assert await writer.merge(DAY, START, END, run_id=2, mirror=False) == counts(
                staged=1, inserted=1
            )
    assert sorted(await rows(engine)) == [VIDEO, VIDEO + 2]


async def test_a_writer_sets_its_transactions_planner_settings_and_no_more(
    engine: AsyncEngine,
) -> None:
    """The merge's settings (work_mem, no nested loops) hold for the writer's transaction, on
    the first writer of a connection (which creates the staging table) and the next, and end
    with it."""
    async with engine.connect() as conn:
        for _ in range(2):
            async with conn.begin():
                await PartitionWriter.open(conn, APP)
                assert await conn.scalar(text("SHOW work_mem")) == "64MB"
                assert await conn.scalar(text("SHOW enable_nestloop")) == "off"
            async with conn.begin():
                assert await conn.scalar(text("SHOW enable_nestloop")) == "on"
                assert await conn.scalar(text("SELECT count(*) FROM taskbox_stage")) == 0


async def test_records_of_another_billing_date_are_refused(engine: AsyncEngine) -> None:
    """Merging records of another billing date into a partition is a programming error."""
    async with engine.connect() as conn, conn.begin():
        writer = await PartitionWriter.open(conn, APP)
        await writer.add_page([rec(VIDEO, billing_date=DAY - dt.timedelta(days=1))])
        with pytest.raises(ValueError, match="staged in a partition of 2024-05-01"):
            await writer.merge(DAY, START, END, run_id=1)


async def test_a_writer_merges_once(engine: AsyncEngine) -> None:
    """add_page or merge after merge is refused."""
    async with engine.connect() as conn, conn.begin():
        writer = await PartitionWriter.open(conn, APP)
        await writer.merge(DAY, START, END, run_id=1)
        with pytest.raises(RuntimeError):
            await writer.add_page([rec(VIDEO)])
        with pytest.raises(RuntimeError):
            await writer.merge(DAY, START, END, run_id=1)


async def append(
    engine: AsyncEngine, *pages: Sequence[tuple[Any, ...]], run_id: int = 1
) -> tuple[bool, MergeCounts]:
    """A partition written the appending way when its scope is empty."""
    async with engine.connect() as conn, conn.begin():
        writer = await PartitionWriter.open(conn, APP)
        writer.append_to(DAY, START, END, run_id=run_id)
        for page in pages:
            await writer.add_page(page)
        return writer.appending, await writer.merge(DAY, START, END, run_id=run_id)


async def test_append_writes_each_page_into_an_empty_scope(engine: AsyncEngine) -> None:
    """With nothing stored in the scope, pages go into the table as they come (repeats within a
    page still resolved, last wins), the merge only counts, and the rows are exact."""
    first = [rec(VIDEO), rec(VIDEO + 1, gmv_1d=1), rec(VIDEO + 1, gmv_1d=2)]
    second = [rec(VIDEO + 2, expected_profit="12345678901234567890.123456789")]
    appending, result = await append(engine, first, second, run_id=7)
    assert appending
    assert result == counts(staged=4, repeated=1, inserted=3)
    stored = await rows(engine)
    assert [stored_record(stored[v]) for v in (VIDEO, VIDEO + 2)] == [
        as_stored(first[0]),
        as_stored(second[0]),
    ]
    assert stored[VIDEO + 1]["gmv_1d"] == 2
    assert {r["last_run_id"] for r in stored.values()} == {7}
    again = await merge(engine, first, second, run_id=8)  # stored now: the full merge, unchanged
    assert again == counts(staged=4, repeated=1, unchanged=3)


async def test_written_records_carry_their_app_answer_and_run_and_no_other_run_appends(
    engine: AsyncEngine,
) -> None:
    """`add_written` takes the mapper's records with the app, the answer's time and the run
    after them, as `add_page` makes them: both ways store the same rows, and the answer's time
    (a later answer wins) is the record's. Appending, a record of another run or app is a
    programming error, refused before anything is copied."""
    answered = float(START + 5_000)
    async with engine.connect() as conn, conn.begin():
        writer = await PartitionWriter.open(conn, APP)
        writer.append_to(DAY, START, END, run_id=3)
        await writer.add_written([(*rec(VIDEO), APP, answered, 3)])
        await writer.add_page([rec(VIDEO + 1)], answered_at=answered)
        with pytest.raises(ValueError, match="run 4 in 3"):
            await writer.add_written([(*rec(VIDEO + 2), APP, answered, 4)])
        with pytest.raises(ValueError, match="app other"):
            await writer.add_written([(*rec(VIDEO + 2), "other", answered, 3)])
        assert await writer.merge(DAY, START, END, run_id=3) == counts(staged=2, inserted=2)
    stored = await rows(engine)
    assert sorted(stored) == [VIDEO, VIDEO + 1]
    assert [stored_record(stored[v]) for v in (VIDEO, VIDEO + 1)] == [
        as_stored(rec(VIDEO)),
        as_stored(rec(VIDEO + 1)),
    ]
    assert {r["answered_at"] for r in stored.values()} == {at(START + 5_000)}
    assert {r["last_run_id"] for r in stored.values()} == {3}
    assert {r["app_id"] for r in stored.values()} == {APP}


async def test_append_keeps_a_video_of_two_tasks_and_the_last_of_a_repeated_key(
    engine: AsyncEngine,
) -> None:
    """A video listed with two tasks is two rows; the same video and task twice in a page is
    one, the later (a key can only repeat where a video does)."""
    page = [rec(VIDEO, TASK), rec(VIDEO, TASK + 1), rec(VIDEO, TASK, gmv_1d=9), rec(VIDEO + 1)]
    appending, result = await append(engine, page)
    assert appending
    assert result == counts(staged=4, repeated=1, inserted=3)
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT video_id, task_id, gmv_1d FROM video_daily_earnings ORDER BY 1, 2")
            )
        ).all()
    assert [tuple(r) for r in stored] == [
        (VIDEO, TASK, 9),
        (VIDEO, TASK + 1, page[1][RECORD_COLUMNS.index("gmv_1d")]),
        (VIDEO + 1, TASK, page[3][RECORD_COLUMNS.index("gmv_1d")]),
    ]


async def test_append_is_declined_when_the_scope_holds_a_row(engine: AsyncEngine) -> None:
    """A scope with a stored row is merged as usual (the mirror can see what went away)."""
    await merge(engine, [rec(VIDEO), rec(VIDEO + 1)])
    appending, result = await append(engine, [rec(VIDEO)])
    assert not appending
    assert result == counts(staged=1, unchanged=1, removed=1)


async def test_append_conflicts_on_a_key_repeated_across_pages(engine: AsyncEngine) -> None:
    """A key that comes again in a later page cannot be appended: AppendConflict, and the
    transaction (rolled back by the caller) leaves nothing."""
    with pytest.raises(AppendConflict, match="by an earlier page"):
        await append(engine, [rec(VIDEO)], [rec(VIDEO, gmv_1d=5)])
    assert await rows(engine) == {}


async def test_append_conflicts_on_a_key_stored_outside_the_window(engine: AsyncEngine) -> None:
    """A staged key stored for the same date with a publish time outside the window (it moved)
    raises AppendConflict; the full merge then updates that row instead."""
    await merge(engine, [rec(VIDEO, publish_time=END + 500)], start=END + 1, end=END + 1000)
    with pytest.raises(AppendConflict, match="stored already"):
        await append(engine, [rec(VIDEO + 1)], [rec(VIDEO)])
    assert list(await rows(engine)) == [VIDEO]
    assert await merge(engine, [rec(VIDEO + 1)], [rec(VIDEO)]) == counts(
        staged=2, inserted=1, updated=1
    )
