"""Answers that break the API's contract, served by a stub platform on 127.0.0.1.

What the engine must do with each:

* a page it cannot use (no `data`, a list that is not a list, items that are not objects, ...):
  the partition fails with a clear error and its log_id; nothing of the partition is committed,
  and no stored row is deleted;
* a row it cannot key exactly (video or task id missing, a float): the row is rejected and
  counted, the page's log_id is reported, and the partition skips its mirror delete;
* doubtful but meaningful values (ids as strings of digits, negative money, unknown fields):
  stored, exactly, and noted;
* hostile texts (SQL, NUL, lone surrogates): stored verbatim, NUL and surrogates replaced.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from aiohttp import web
from sqlalchemy import Text, cast, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.api import client
from sync.api.retry import RetryPolicy
from sync.db.schema import sync_partitions, video_daily_earnings
from sync.pipeline.runs import RunResult
from sync.sandbox import SandboxServer
from sync.sandbox.catalog import SPECIAL_TITLES
from sync.settings import Secret, Settings
from tests.helpers import (
    Clock,
    assert_table_is_truth,
    partitions,
    run_row,
    run_sync,
    sandbox_settings,
    storable,
)

TASK_ID = 7_316_127_884_488_730_275  # above 2**53: a float would lose it
_ENCODER = msgspec.json.Encoder(decimal_format="number")


# -- the stub platform ------------------------------------------------------------------------


class StubApi:
    """Answers /oauth/client_token/ as the sandbox does, and each daily-data page with the body
    recorded for its page number (an empty list beyond the last one)."""

    def __init__(self) -> None:
        self.pages: dict[int, bytes] = {}
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._tokens = itertools.count(1)

    def serve(self, *pages: bytes) -> None:
        self.pages = {i: body for i, body in enumerate(pages, 1)}

    async def _token(self, request: web.Request) -> web.Response:
        await request.read()
        data = {
            "access_token": f"clt.stub{next(self._tokens):04d}",
            "description": "",
            "error_code": 0,
            "expires_in": 7200,
        }
        return web.json_response({"data": data, "message": "success"})

    async def _daily(self, request: web.Request) -> web.Response:
        doc = json.loads(await request.read())
        self.requests.append(doc)
        body = self.pages.get(doc["page_num"], envelope([], log_id="stub-empty"))
        if body.startswith(b"HTTP "):  # b"HTTP 404 <body>": another status than 200
            status, _, rest = body[5:].partition(b" ")
            return web.Response(body=rest, status=int(status), content_type="text/html")
        return web.Response(body=body, content_type="application/json")

    async def __aenter__(self) -> StubApi:
        app = web.Application()
        app.router.add_post("/oauth/client_token/", self._token)
        app.router.add_post(client.DAILY_DATA_PATH, self._daily)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def envelope(items: Any, *, log_id: str = "202611220000000000STUB") -> bytes:
    return _ENCODER.encode(
        {
            "err_no": 0,
            "err_msg": "success",
            "log_id": log_id,
            "data": {"video_daily_data_list": items},
        }
    )


def encode(doc: Any) -> bytes:
    return _ENCODER.encode(doc)


def item(video_id: Any, day: dt.date, publish: int, **changes: Any) -> dict[str, Any]:
    """One row as the doc samples write it (PascalCase); `changes` replace or add keys, and a
    value of ... removes the key."""
    doc: dict[str, Any] = {
        "VideoId": video_id,
        "TaskId": TASK_ID,
        "DouyinID": "lw1234567",
        "Author": "阿杰42",
        "ClientName": "星河互娱",
        "MicroAppTitle": "消消乐",
        "TaskName": "冬季推广",
        "VideoTitle": f"video {video_id}",
        "VideoLink": f"https://www.douyin.com/video/{video_id}",
        "PublishTime": publish,
        "date": day.isoformat(),
        "ActiveCnt1d": 3,
        "GMV1d": 12_345,
        "RefundGMV1d": 0,
        "BillingGMV1d": 12_000,
        "BillingRefundGMV1d": 0,
        "AdShareCost1d": 150,
        "FeedAdShareCost1d": 50,
        "ExpectedProfit": Decimal("123.45"),
    }
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


class OneWindow:
    """The one partition every stub test syncs: yesterday's newest publish window."""

    def __init__(self, clock: Clock) -> None:
        self.now = clock()
        self.day = clock.yesterday
        self.window = planner.windows_for(self.day, self.now)[0]
        self.plan = planner.Plan((planner.Partition(self.day, self.window),))

    def publish(self, n: int) -> int:
        return self.window.end - 3600 * (n + 1)

    def rows(self, ids: list[Any], **changes: Any) -> list[dict[str, Any]]:
        return [item(v, self.day, self.publish(i), **changes) for i, v in enumerate(ids)]


VIDEO_IDS = [7_300_000_000_000_000_001 + 7919 * i for i in range(8)]


@pytest.fixture
async def stub() -> AsyncIterator[StubApi]:
    async with StubApi() as api:
        yield api


@pytest.fixture
def part(clock: Clock) -> OneWindow:
    """The one partition of a stub test, planned by the test's clock."""
    return OneWindow(clock)


# Answers that are wrong every time would take the default policy ~1 min to give up on: the
# stub runs ask for a short one (RunOptions.retry).
FAST = RetryPolicy(attempts=3, base=0.01, cap=0.02)


def stub_settings(stub: StubApi, database_url: str) -> Settings:
    return Settings(
        database_url=Secret(database_url),
        client_key="stub_client_key",
        client_secret=Secret("stub_client_secret"),
        open_base_url=stub.base_url,
        developer_base_url=stub.base_url,
    )


async def sync(stub: StubApi, database_url: str, part: OneWindow, **options: Any) -> RunResult:
    options.setdefault("page_size", 10)
    # Answers that are wrong every time would take the default policy ~1 min to give up on.
    options.setdefault("retry", FAST)
    return await run_sync(
        stub_settings(stub, database_url), [part.day], plan=part.plan, now=part.now, **options
    )


async def stored(engine: AsyncEngine, day: dt.date) -> dict[int, dict[str, Any]]:
    """The table's rows of `day` by video id, extra as exact JSON."""
    t = video_daily_earnings.c
    async with engine.connect() as conn:
        result = await conn.execute(
            select(
                t.video_id,
                t.task_id,
                t.video_title,
                t.gmv_1d,
                t.refund_gmv_1d,
                t.expected_profit,
                cast(t.extra, Text).label("extra"),
            ).where(t.billing_date == day)
        )
        rows = {}
        for r in result:
            doc = dict(r._mapping)
            doc["extra"] = (
                None if doc["extra"] is None else json.loads(doc["extra"], parse_float=Decimal)
            )
            rows[doc["video_id"]] = doc
    return rows


def assert_rows(actual: dict[int, dict[str, Any]], items: list[dict[str, Any]]) -> None:
    """The stored rows are exactly these well-formed items."""
    assert sorted(actual) == sorted(int(i["VideoId"]) for i in items)
    for i in items:
        row = actual[int(i["VideoId"])]
        assert row["task_id"] == int(i["TaskId"])
        assert row["gmv_1d"] == i["GMV1d"]
        assert row["expected_profit"] == i["ExpectedProfit"]
        assert row["video_title"] == storable(i["VideoTitle"])


# -- pages that cannot be used ------------------------------------------------------------------

LOG = "20261122093000ABCDEF0123456789"

UNUSABLE = {
    "no data": {"err_no": 0, "err_msg": "success", "log_id": LOG},
    "data null": {"err_no": 0, "err_msg": "success", "log_id": LOG, "data": None},
    "data a list": {"err_no": 0, "err_msg": "success", "log_id": LOG, "data": []},
    "data a string": {"err_no": 0, "err_msg": "success", "log_id": LOG, "data": "ok"},
    "list an object": {
        "err_no": 0,
        "log_id": LOG,
        "data": {"video_daily_data_list": {"VideoId": 1}},
    },
    "list a string": {"err_no": 0, "log_id": LOG, "data": {"video_daily_data_list": "[]"}},
    "list a number": {"err_no": 0, "log_id": LOG, "data": {"video_daily_data_list": 0}},
    "items not objects": {"err_no": 0, "log_id": LOG, "data": {"video_daily_data_list": [1, "x"]}},
    "err_no a string": {"err_no": "0", "log_id": LOG, "data": {"video_daily_data_list": []}},
    "err_no missing": {"err_msg": "success", "log_id": LOG, "data": {"video_daily_data_list": []}},
    "data without the list": {"err_no": 0, "err_msg": "success", "log_id": LOG, "data": {}},
    "list under another name": {
        "err_no": 0,
        "err_msg": "success",
        "log_id": LOG,
        "data": {"list": []},
    },
    "an array": [],
    "a number": 0,
}
# Answers that are not JSON, or not a 200.
RAW = {
    "an empty body": b"",
    "HTML with status 200": b"<html><body><h1>Service maintenance</h1></body></html>",
    "HTTP 404 with HTML": b"HTTP 404 <html><body>404 Not Found</body></html>",
    "HTTP 429 with HTML": b"HTTP 429 <html><body>Too Many Requests</body></html>",
}


@pytest.mark.parametrize("shape", [*UNUSABLE, *RAW])
async def test_unusable_page_fails_the_partition(
    stub: StubApi, part: OneWindow, database_url: str, engine: AsyncEngine, shape: str
) -> None:
    """A first page of the wrong shape fails the partition with a clear error and its log_id;
    the stored rows of the window are neither changed nor deleted; the next good run completes."""
    good = part.rows(VIDEO_IDS[:5])
    stub.serve(envelope(good))
    assert (await sync(stub, database_url, part)).status == "succeeded"

    stub.serve(RAW[shape] if shape in RAW else encode(UNUSABLE[shape]))
    result = await sync(stub, database_url, part)
    assert result.status == "partial", f"{shape}: taken for a page"
    assert len(result.failed) == 1
    failure = result.failed[0]
    assert "query_task_video_daily_data" in failure.error
    (p,) = await partitions(engine, result.run_id)
    assert p.status == "failed" and p.error == failure.error
    if isinstance(UNUSABLE.get(shape), dict):  # the answer's log_id, for the platform's support
        assert p.last_log_id == LOG
        assert failure.log_id == LOG, failure
    assert result.counts.rows_removed == 0
    assert_rows(await stored(engine, part.day), good)

    changed = part.rows(VIDEO_IDS[1:6], GMV1d=99)
    stub.serve(envelope(changed))
    again = await sync(stub, database_url, part)
    assert again.status == "succeeded"
    assert_rows(await stored(engine, part.day), changed)


async def test_unusable_second_page_commits_nothing_of_the_first(
    stub: StubApi, part: OneWindow, database_url: str, engine: AsyncEngine
) -> None:
    """Page 1 full and good, page 2 unusable: page 1's changes are not committed either, no row
    is deleted, and no 'done' partition is recorded for the window."""
    good = part.rows(VIDEO_IDS[:6])
    stub.serve(envelope(good[:4]), envelope(good[4:]))
    assert (await sync(stub, database_url, part, page_size=4)).status == "succeeded"

    changed = part.rows(VIDEO_IDS[:6], GMV1d=1, ExpectedProfit=Decimal("0.01"))
    stub.serve(envelope(changed[:4]), encode(UNUSABLE["no data"]))
    result = await sync(stub, database_url, part, page_size=4)
    assert result.status == "partial" and len(result.failed) == 1
    assert [p.status for p in await partitions(engine, result.run_id)] == ["failed"]
    assert_rows(await stored(engine, part.day), good)

    stub.serve(envelope(changed[:4]), envelope(changed[4:]))
    again = await sync(stub, database_url, part, page_size=4)
    assert again.status == "succeeded"
    assert_rows(await stored(engine, part.day), changed)


@pytest.mark.parametrize("how", ["more rows than the page size", "page_num ignored"])
async def test_broken_paging_fails_the_partition(
    stub: StubApi, part: OneWindow, database_url: str, engine: AsyncEngine, how: str
) -> None:
    """A page longer than asked, or the same full page whatever page_num says, fails the
    partition (it would otherwise loop or lose rows); stored rows stay as they were."""
    good = part.rows(VIDEO_IDS[:6])
    stub.serve(envelope(good[:4]), envelope(good[4:]))
    assert (await sync(stub, database_url, part, page_size=4)).status == "succeeded"

    changed = part.rows(VIDEO_IDS[:6], GMV1d=5)
    if how == "page_num ignored":
        stub.serve(*[envelope(changed[:4])] * 3)
    else:
        stub.serve(envelope(changed[:5]), envelope(changed[5:]))
    result = await sync(stub, database_url, part, page_size=4)
    assert result.status == "partial" and len(result.failed) == 1
    assert result.failed[0].error
    assert [p.status for p in await partitions(engine, result.run_id)] == ["failed"]
    assert_rows(await stored(engine, part.day), good)


async def test_pages_torn_on_every_attempt_delete_nothing(
    stub: StubApi, part: OneWindow, database_url: str, engine: AsyncEngine
) -> None:
    """Offset paging shifted under every attempt (page 2 repeats a key of page 1, so a row was
    skipped): a row the platform still lists must not be mirror-deleted on the strength of a
    read known to be torn. (The skipped row E is simply not on any page here.)"""
    a, b, c, d, e, f = VIDEO_IDS[:6]
    good = part.rows([a, b, c, d, e, f])
    stub.serve(envelope(good[:4]), envelope(good[4:]))
    assert (await sync(stub, database_url, part, page_size=4)).status == "succeeded"

    by_id = {row["VideoId"]: row for row in good}
    stub.serve(envelope([by_id[v] for v in (a, b, c, d)]), envelope([by_id[d], by_id[f]]))
    result = await sync(stub, database_url, part, page_size=4)
    assert len(stub.requests) == 2 + 2 * 3  # re-read on every attempt
    assert result.counts.rows_removed == 0, "a torn read mirror-deleted a row"
    assert e in await stored(engine, part.day)
    (p,) = await partitions(engine, result.run_id)
    assert p.status == "failed" or p.rows_repeated > 0  # and the ledger says what happened


# -- rows that cannot be keyed ------------------------------------------------------------------


async def test_float_id_is_rejected_counted_and_blocks_the_mirror(
    stub: StubApi,
    part: OneWindow,
    database_url: str,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A video id sent as a JSON float (digits possibly lost) is never stored under a guessed
    id: the row is rejected and counted, the page's log_id is logged, and the partition does not
    delete rows missing from the answer (they may be the unreadable ones)."""
    a, b, c, d = VIDEO_IDS[:4]
    first = part.rows([a, b, c, d])
    stub.serve(envelope(first))
    assert (await sync(stub, database_url, part)).status == "succeeded"

    second_log = "20261122100000FLOATIDPAGE0001"
    rows = [
        item(a, part.day, part.publish(0), GMV1d=777),  # changed
        item(float(b), part.day, part.publish(1)),  # 7.3e18: not exact
        # c is not in the answer: it must not be deleted, the answer had an unreadable row
        item(d, part.day, part.publish(3)),
        item(VIDEO_IDS[5], part.day, part.publish(5)),  # new
    ]
    stub.serve(envelope(rows, log_id=second_log))
    caplog.set_level(logging.WARNING, logger="sync")
    result = await sync(stub, database_url, part)
    assert result.status != "failed"
    assert result.counts.rows_rejected == 1
    assert result.counts.rows_removed == 0
    (p,) = await partitions(engine, result.run_id)
    assert p.status == "done" and p.rows_rejected == 1 and p.rows_removed == 0
    assert (await run_row(engine, result.run_id)).rows_rejected == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(second_log in w and "video_id" in w for w in warnings), warnings

    table = await stored(engine, part.day)
    assert sorted(table) == sorted([a, b, c, d, VIDEO_IDS[5]])
    assert table[a]["gmv_1d"] == 777
    assert table[b]["gmv_1d"] == first[1]["GMV1d"]  # the old row, untouched
    assert not any(str(float(b)) in str(v) for v in table)  # nothing stored under a float id


async def test_rows_without_video_or_task_id_are_rejected_and_counted(
    stub: StubApi,
    part: OneWindow,
    database_url: str,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rows without a video id (absent or null), without a task id, or with ids beyond int64
    are rejected and counted; the other rows of the page are stored."""
    ids = VIDEO_IDS[:7]
    rows = [
        item(ids[0], part.day, part.publish(0)),
        item(ids[1], part.day, part.publish(1), VideoId=...),
        item(None, part.day, part.publish(2)),
        item(ids[3], part.day, part.publish(3), TaskId=...),
        item(str(2**63), part.day, part.publish(4)),
        item(2**64 + 5, part.day, part.publish(5)),
        item(ids[6], part.day, part.publish(6)),
    ]
    stub.serve(envelope(rows))
    caplog.set_level(logging.WARNING, logger="sync")
    result = await sync(stub, database_url, part)
    assert result.status != "failed"
    assert result.counts.rows_rejected == 5
    (p,) = await partitions(engine, result.run_id)
    assert p.status == "done" and p.rows_rejected == 5
    assert_rows(await stored(engine, part.day), [rows[0], rows[6]])
    assert any("video_id missing" in r.getMessage() for r in caplog.records)


# -- doubtful values with a clear meaning -------------------------------------------------------


async def test_ids_as_strings_of_digits_are_stored_exactly(
    stub: StubApi, part: OneWindow, database_url: str, engine: AsyncEngine
) -> None:
    """IDs sent as strings of digits mean the same numbers: stored exactly, nothing rejected."""
    ids = [2**63 - 1, 2**53 + 1, VIDEO_IDS[0]]
    rows = part.rows([str(v) for v in ids], TaskId=str(TASK_ID))
    stub.serve(envelope(rows))
    result = await sync(stub, database_url, part)
    assert result.status == "succeeded" and result.counts.rows_rejected == 0
    table = await stored(engine, part.day)
    assert sorted(table) == sorted(ids)
    assert {r["task_id"] for r in table.values()} == {TASK_ID}


async def test_negative_money_is_stored_and_noted(
    stub: StubApi,
    part: OneWindow,
    database_url: str,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Negative figures (clawbacks) are stored as sent and counted as notes for the summary, not
    rejected, and no page is logged for them."""
    rows = [
        item(VIDEO_IDS[0], part.day, part.publish(0), GMV1d=-500, RefundGMV1d=-1),
        item(VIDEO_IDS[1], part.day, part.publish(1), ExpectedProfit=Decimal("-12.50")),
        item(VIDEO_IDS[2], part.day, part.publish(2)),
    ]
    stub.serve(envelope(rows))
    caplog.set_level(logging.WARNING, logger="sync")
    result = await sync(stub, database_url, part)
    assert result.status == "succeeded" and result.counts.rows_rejected == 0
    table = await stored(engine, part.day)
    assert (table[VIDEO_IDS[0]]["gmv_1d"], table[VIDEO_IDS[0]]["refund_gmv_1d"]) == (-500, -1)
    assert table[VIDEO_IDS[1]]["expected_profit"] == Decimal("-12.50")
    assert result.notes.counts == {"negative amounts": 3}, result.notes
    assert not any("negative" in r.getMessage() for r in caplog.records), caplog.text


async def test_unexpected_fields_are_kept_in_extra(
    stub: StubApi, part: OneWindow, database_url: str, engine: AsyncEngine
) -> None:
    """Fields the mapping does not know are stored in `extra`, exactly (big ints, decimals,
    nested values; NUL made storable); rows without any have no `extra`."""
    unknown = {
        "NewMetric1d": 123_456_789_012_345_678_901_234_567_890,
        "Ratio": Decimal("0.1"),
        "Nested": {"a": [1, "x", None, True], "b": {"c": "中文"}},
        "Note": "NUL\x00here",
    }
    rows = [
        item(VIDEO_IDS[0], part.day, part.publish(0), **unknown),
        item(VIDEO_IDS[1], part.day, part.publish(1)),
    ]
    stub.serve(envelope(rows))
    result = await sync(stub, database_url, part)
    assert result.status == "succeeded" and result.counts.rows_rejected == 0
    table = await stored(engine, part.day)
    assert table[VIDEO_IDS[0]]["extra"] == {**unknown, "Note": "NUL\ufffdhere"}
    assert table[VIDEO_IDS[1]]["extra"] is None
    assert_rows(table, [item(VIDEO_IDS[0], part.day, 0), item(VIDEO_IDS[1], part.day, 0)])


# -- hostile texts ------------------------------------------------------------------------------


async def test_hostile_titles_are_stored_verbatim(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """The sandbox's hostile titles (SQL injection, quotes, control characters, emoji, zero-width
    characters, NUL, a lone surrogate, multi-KB titles) land in the table as sent, NUL and the
    surrogate replaced by U+FFFD, and the table they tried to drop is still there."""
    dates = clock.recent_dates(1)
    now = clock()
    sent = {r["video_title"] for r in sandbox.truth(dates[0])}
    missing = [t for t in SPECIAL_TITLES if t not in sent]
    assert not missing, f"the sandbox did not serve {missing} on {dates[0]}"
    result = await run_sync(sandbox_settings(sandbox, database_url), dates, now=now, page_size=50)
    assert result.status == "succeeded"
    await assert_table_is_truth(engine, sandbox, dates, now)
    async with engine.connect() as conn:
        titles = set(
            (
                await conn.execute(
                    select(video_daily_earnings.c.video_title).where(
                        video_daily_earnings.c.billing_date == dates[0]
                    )
                )
            ).scalars()
        )
        sanitized = await conn.scalar(select(func.sum(sync_partitions.c.texts_sanitized)))
    for title in SPECIAL_TITLES:
        want = title.replace("\x00", "\ufffd").replace("\ud800", "\ufffd")
        assert want in titles, f"{title!r} not stored as {want!r}"
    assert "NUL in the middle \ufffd of a title" in titles
    assert "lone surrogate \ufffd from a broken emoji" in titles
    assert any(len(t) > 2000 for t in titles)  # the multi-KB ones
    assert sanitized >= 2
