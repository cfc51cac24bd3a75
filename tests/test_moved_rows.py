"""The moved-row race (#14): a row whose publish time moves between two windows of one billing
date while a run syncs both. Whatever order the two partitions' answers and commits come in, the
table ends with the later answer's values and never loses a row an answer listed."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from sync.db.store import PartitionWriter
from tests.test_store import DAY, END, START, rec, rows

APP = "tt_moved"
W1 = (START, END)  # the row's window before the move
W2 = (END + 1, END + 86_400)  # after it
VIDEO = 7_300_000_000_000_000_001
T1, T2 = 1_000.0, 2_000.0  # answer times: the first window's answer came first


async def _store(engine: AsyncEngine, window: tuple[int, int], *records: Any, at: float) -> None:
    async with engine.connect() as conn, conn.begin():
        writer = await PartitionWriter.open(conn, APP)
        await writer.add_page(records, answered_at=at)
        await writer.merge(DAY, *window, run_id=1)


async def test_an_older_answer_never_overwrites_a_later_one(engine: AsyncEngine) -> None:
    """The first window's answer (before the move) merges after the second's (after it): the
    row keeps the second's values."""
    before, after = (
        rec(VIDEO, publish_time=W1[0] + 10, gmv_1d=100),
        rec(VIDEO, publish_time=W2[0] + 10, gmv_1d=200),
    )
    await _store(engine, W1, before, at=T1 - 500)  # an earlier run
    await _store(engine, W2, after, at=T2)
    await _store(engine, W1, before, at=T1)
    stored = (await rows(engine))[VIDEO]
    assert stored["gmv_1d"] == 200 and stored["publish_time"].timestamp() == W2[0] + 10
    # A later answer still wins as usual.
    await _store(engine, W1, rec(VIDEO, publish_time=W1[0] + 20, gmv_1d=300), at=T2 + 1)
    assert (await rows(engine))[VIDEO]["gmv_1d"] == 300


async def test_a_mirror_delete_never_removes_a_row_another_window_just_wrote(
    engine: AsyncEngine,
) -> None:
    """The first window's answer (after the move) no longer lists the row; its mirror delete runs
    while the second window's merge, which moved the row into its window, is not committed yet.
    The delete waits for that commit and then leaves the row: it is no longer in its window."""
    other = rec(VIDEO + 1, publish_time=W1[0] + 50)
    await _store(engine, W1, rec(VIDEO, publish_time=W1[0] + 10), other, at=T1 - 500)
    async with engine.connect() as second, engine.connect() as first:
        await second.begin()
        writer2 = await PartitionWriter.open(second, APP)
        await writer2.add_page([rec(VIDEO, publish_time=W2[0] + 10, gmv_1d=200)], answered_at=T2)
        await writer2.merge(DAY, *W2, run_id=2)  # the row moved; not committed yet

        async def first_window() -> int:
            async with first.begin():
                writer1 = await PartitionWriter.open(first, APP)
                await writer1.add_page([other], answered_at=T2)  # the row is gone from here
                return (await writer1.merge(DAY, *W1, run_id=2)).removed

        deleting = asyncio.create_task(first_window())
        await asyncio.sleep(0.5)
        assert not deleting.done()  # waits on the row the second window is writing
        await second.commit()
        removed = await asyncio.wait_for(deleting, 10)
    assert removed == 0
    stored = await rows(engine)
    assert (
        stored[VIDEO]["gmv_1d"] == 200 and stored[VIDEO]["publish_time"].timestamp() == W2[0] + 10
    )
    assert VIDEO + 1 in stored
