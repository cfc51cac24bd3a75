"""API items to records, as the careful decode (sync.records.careful) converts them into Rows and
the mapper (sync.records.mapper) maps those: exact ids and money, storable text, anomalies
counted."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from sync.db.schema import RECORD_COLUMNS
from sync.records.careful import rows_from_items
from sync.records.mapper import MAX_ANOMALY_TEXTS, MappedPage, map_page
from sync.records.wire import KEYS, Odd

BILLING = dt.date(2023, 8, 25)
VIDEO = 7270855478333246754  # above 2**53: a float would round it to ...246000
TASK = 7270785143852253123


def _decode(text: str) -> Any:
    """Decode as the client does: exact ints, floats as Decimal."""
    return json.loads(text, parse_float=Decimal)


SNAKE: dict[str, Any] = _decode(
    f"""{{"active_cnt_1d": 3, "ad_share_cost_1d": 120, "author": "nice1",
    "billing_gmv_1d": 39900, "billing_refund_gmv_1d": 0, "client_name": "撮合网站应用015",
    "feed_ad_share_cost_1d": 7, "douyin_id": "31626424566", "expected_profit": 1.3,
    "gmv_1d": 39900, "micro_app_title": "行业ITC", "publish_time": 1692878009,
    "refund_gmv_1d": 100, "task_id": {TASK}, "task_name": "小程序B的支付分成绑定任务R4",
    "video_id": {VIDEO}, "video_link": "https://www.iesdouyin.com/share/video/{VIDEO}/",
    "video_title": "hello", "date": "2023-08-25"}}"""
)
_PASCAL = {keys[1]: keys[0] for keys in KEYS.values() if keys[0] != "date"}


def _pascal(item: dict[str, Any]) -> dict[str, Any]:
    return {_PASCAL.get(k, k): v for k, v in item.items()}


def mapped(items: list[Any], billing: dt.date = BILLING) -> MappedPage:
    """The page of these items, decoded the careful way and mapped."""
    return map_page(rows_from_items(items, None), billing)


def _one(item: dict[str, Any], billing: dt.date = BILLING) -> dict[str, Any]:
    """The single record of a one-item page, as a dict by column name."""
    page = mapped([item], billing)
    assert page.rejected == 0 and len(page.records) == 1
    return dict(zip(RECORD_COLUMNS, page.records[0], strict=True))


def test_record_in_schema_order() -> None:
    """A clean item becomes a tuple in RECORD_COLUMNS order with the documented types."""
    page = mapped([SNAKE], BILLING)
    assert page.records == [
        (
            BILLING, VIDEO, TASK,
            "31626424566", "nice1", "撮合网站应用015", "行业ITC", "小程序B的支付分成绑定任务R4",
            "hello", f"https://www.iesdouyin.com/share/video/{VIDEO}/",
            1692878009, BILLING,  # publish time as Unix seconds: 2023-08-24 11:53:29 UTC
            3, 39900, 100, 39900, 0, 120, 7, "1.3", None,  # profit as its exact decimal text
        )
    ]  # fmt: skip
    record = page.records[0]
    assert type(record[10]) is int and type(record[19]) is str
    assert (page.rejected, page.sanitized, page.anomalies, page.anomaly_count) == (0, 0, [], 0)


def test_both_casings_identical() -> None:
    """PascalCase (doc sample) and snake_case (SDK) items give identical records."""
    pascal = _pascal(SNAKE)
    assert "VideoId" in pascal and "GMV1d" in pascal and "DouyinID" in pascal
    assert mapped([pascal], BILLING).records == mapped([SNAKE], BILLING).records
    mixed = mapped([pascal, SNAKE, pascal], BILLING)
    assert mixed.records == mapped([SNAKE] * 3, BILLING).records


def test_capitalised_date_key() -> None:
    """`Date` is accepted like `date`."""
    item = {("Date" if k == "date" else k): v for k, v in SNAKE.items()}
    assert _one(item)["data_date"] == BILLING


def test_big_ids_exact() -> None:
    """IDs above 2**53 come through exactly, up to the int64 maximum."""
    record = _one(SNAKE)
    assert record["video_id"] == 7270855478333246754 and record["task_id"] == TASK
    assert _one(dict(SNAKE, video_id=2**63 - 1))["video_id"] == 2**63 - 1


def test_id_digit_string_accepted() -> None:
    """An id sent as a string of digits is parsed exactly."""
    record = _one(dict(SNAKE, video_id=str(VIDEO), task_id=str(TASK)))
    assert (record["video_id"], record["task_id"]) == (VIDEO, TASK)


@pytest.mark.parametrize(
    "bad", [Decimal("7270855478333246754.0"), 7.270855478333247e18, True, 2**63, "12a", "-5", None]
)
def test_inexact_id_rejected(bad: object) -> None:
    """Float, Decimal, bool, out-of-range and non-digit ids are rejected and counted."""
    page = mapped([dict(SNAKE, video_id=bad), SNAKE], BILLING)
    assert page.rejected == 1 and len(page.records) == 1
    assert page.anomaly_count == 1 and page.anomalies[0].startswith("item 0 rejected: video_id")


def test_missing_key_fields_rejected() -> None:
    """Items without a video id or task id are not stored; each is counted with a reason."""
    no_video = {k: v for k, v in SNAKE.items() if k != "video_id"}
    no_task = {k: v for k, v in _pascal(SNAKE).items() if k != "TaskId"}
    page = mapped([no_video, SNAKE, no_task, {}], BILLING)
    assert len(page.records) == 1 and page.rejected == 3
    assert page.anomalies == [
        "item 0 rejected: video_id missing",
        "item 2 rejected: task_id missing",
        "item 3 rejected: video_id missing, task_id missing",
    ]


def test_missing_optional_fields_are_null() -> None:
    """An item with only its ids is stored with every other column null, without anomaly."""
    page = mapped([{"VideoId": VIDEO, "TaskId": TASK}], BILLING)
    assert page.records == [(BILLING, VIDEO, TASK, *[None] * 18)]
    assert page.anomaly_count == 0


def test_nul_and_surrogate_sanitized() -> None:
    """NUL and lone surrogates become U+FFFD; the row is kept and counted once."""
    items = [
        dict(SNAKE, video_title="a\x00b", author="x\ud800y"),
        dict(SNAKE, task_name="\udfff"),
        dict(SNAKE, video_title="好\U0001f600"),  # a real astral character is fine
        SNAKE,
    ]
    page = mapped(items, BILLING)
    assert page.sanitized == 2 and page.rejected == 0
    cols = [dict(zip(RECORD_COLUMNS, r, strict=True)) for r in page.records]
    assert (cols[0]["video_title"], cols[0]["author"]) == ("a\ufffdb", "x\ufffdy")
    assert cols[1]["task_name"] == "\ufffd"
    assert cols[2]["video_title"] == "好\U0001f600"


def test_number_and_null_texts() -> None:
    """A DouyinID sent as a number becomes its digits; a null text stays null."""
    record = _one(dict(SNAKE, douyin_id=31626424566, author=None))
    assert (record["douyin_id"], record["author"]) == ("31626424566", None)


def test_odd_text_noted() -> None:
    """A text field holding a list is stored null and noted."""
    page = mapped([dict(SNAKE, author=["a"])], BILLING)
    assert page.records[0][4] is None and "author is not text" in page.anomalies[0]


def test_expected_profit_exact() -> None:
    """ExpectedProfit becomes its exact decimal text (1.3 is "1.3", numeric strings too); an int
    stays the int it was sent as."""
    assert _one(SNAKE)["expected_profit"] == "1.3"
    assert _one(dict(SNAKE, expected_profit=Decimal("1.30")))["expected_profit"] == "1.30"
    assert _one(dict(SNAKE, expected_profit=5))["expected_profit"] == 5
    assert _one(dict(SNAKE, expected_profit=0))["expected_profit"] == 0
    assert _one(dict(SNAKE, expected_profit="2.50"))["expected_profit"] == "2.50"
    big = "12345678901234567890.123456789"
    assert _one(dict(SNAKE, expected_profit=Decimal(big)))["expected_profit"] == big
    assert _one(dict(SNAKE, expected_profit=10**30))["expected_profit"] == 10**30
    page = mapped([dict(SNAKE, expected_profit="lots")], BILLING)
    assert page.records[0][19] is None and page.anomaly_count == 1


def test_negative_profit_kept_as_text_and_noted() -> None:
    """A negative ExpectedProfit is stored as its text, as given, and noted as an anomaly."""
    page = mapped([dict(SNAKE, expected_profit=Decimal("-1.50"))], BILLING)
    assert page.records[0][19] == "-1.50"
    assert page.anomalies == [f"video {VIDEO} task {TASK}: expected_profit is negative: -1.50"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1692878009, 1692878009),
        (0, 0),
        (-62135596800, -62135596800),  # 0001-01-01 00:00:00 UTC, datetime's first second
        (253402300799, 253402300799),  # 9999-12-31 23:59:59 UTC, its last
        (Decimal("1692878009"), 1692878009),
        ("1692878009", 1692878009),
    ],
)
def test_publish_time_is_unix_seconds(value: object, seconds: int) -> None:
    """PublishTime within datetime's range becomes an int of Unix seconds, without anomaly."""
    page = mapped([dict(SNAKE, publish_time=value)], BILLING)
    published = page.records[0][RECORD_COLUMNS.index("publish_time")]
    assert type(published) is int and published == seconds
    assert page.anomaly_count == 0


@pytest.mark.parametrize(
    "value", [-62135596801, 253402300800, 2**63, Decimal("1692878009.5"), 1.5e9, True]
)
def test_publish_time_out_of_range_is_null(value: object) -> None:
    """A PublishTime outside datetime's range, fractional or bool is stored null and noted."""
    page = mapped([dict(SNAKE, publish_time=value)], BILLING)
    assert page.records[0][RECORD_COLUMNS.index("publish_time")] is None
    assert page.anomaly_count == 1 and "publish_time is not Unix seconds" in page.anomalies[0]


def test_figures_converted_or_noted() -> None:
    """Integral Decimals and digit strings become ints; fractions and bools become null, noted."""
    item = dict(SNAKE, gmv_1d=Decimal("39900.0"), refund_gmv_1d="100", active_cnt_1d=Decimal("1.5"))
    item["ad_share_cost_1d"] = True
    page = mapped([item], BILLING)
    record = dict(zip(RECORD_COLUMNS, page.records[0], strict=True))
    assert (record["gmv_1d"], record["refund_gmv_1d"]) == (39900, 100)
    assert type(record["gmv_1d"]) is int
    assert record["active_cnt_1d"] is None and record["ad_share_cost_1d"] is None
    assert page.anomaly_count == 2


def test_huge_numbers_are_null_not_slow() -> None:
    """Absurdly large figures and ids are null or rejected, noted, without building huge ints."""
    items = [
        dict(SNAKE, gmv_1d=Decimal("1E+999999999"), refund_gmv_1d="9" * 5000),
        dict(SNAKE, video_id="9" * 5000),
        dict(SNAKE, billing_gmv_1d=2**63),
    ]
    page = mapped(items, BILLING)
    assert page.rejected == 1 and len(page.records) == 2
    first, second = (dict(zip(RECORD_COLUMNS, r, strict=True)) for r in page.records)
    assert first["gmv_1d"] is None and first["refund_gmv_1d"] is None
    assert second["billing_gmv_1d"] is None
    assert page.anomaly_count == 4
    assert sum("not an int64" in text for text in page.anomalies) == 3


def test_negative_money_noted() -> None:
    """A negative figure is stored as given and noted as an anomaly."""
    page = mapped([dict(SNAKE, gmv_1d=-500)], BILLING)
    assert page.records[0][RECORD_COLUMNS.index("gmv_1d")] == -500
    assert page.anomalies == [f"video {VIDEO} task {TASK}: gmv_1d is negative: -500"]


def test_unknown_fields_go_to_extra() -> None:
    """Unmapped fields are kept as compact JSON, Decimals exact, non-ASCII unescaped."""
    item = dict(SNAKE, Zeta=Decimal("0.10"), Alpha="达人", Big=2**70, Nested={"a": [1, None]})
    extra = _one(item)["extra"]
    assert (
        extra == '{"Alpha":"达人","Big":1180591620717411303424,"Nested":{"a":[1,null]},"Zeta":0.10}'
    )
    assert _decode(extra)["Zeta"] == Decimal("0.10")


def test_extra_text_sanitized() -> None:
    """NUL in an unmapped field is repaired too, and the row counted as sanitized."""
    page = mapped([dict(SNAKE, Note="a\x00b")], BILLING)
    assert page.records[0][-1] == '{"Note":"a\ufffdb"}' and page.sanitized == 1


def test_duplicate_keys_prefer_pascal() -> None:
    """An item carrying both casings of a key uses PascalCase; the other goes to extra."""
    record = _one(dict(SNAKE, VideoId=VIDEO + 1))
    assert record["video_id"] == VIDEO + 1
    assert record["extra"] == f'{{"video_id":{VIDEO}}}'


def test_publish_time_and_date_checked() -> None:
    """A bad PublishTime or date is stored null and noted; a date unlike the billing date noted."""
    page = mapped(
        [
            dict(SNAKE, publish_time="soon"),
            dict(SNAKE, date="2023/08/25"),
            dict(SNAKE, date="2023-08-24"),
        ],
        BILLING,
    )
    assert page.records[0][10] is None and page.records[1][11] is None
    assert page.records[2][11] == dt.date(2023, 8, 24)
    assert page.anomaly_count == 3 and "differs from billing date" in page.anomalies[2]


def test_anomaly_texts_capped_counts_exact() -> None:
    """Only the first texts are kept; counts stay exact."""
    page = mapped([dict(SNAKE, gmv_1d=-1)] * 50 + [{"x": 1}] * 30, BILLING)
    assert len(page.anomalies) == MAX_ANOMALY_TEXTS
    assert page.anomaly_count == 80 and page.rejected == 30 and len(page.records) == 50


def test_empty_page() -> None:
    """An empty list maps to nothing."""
    page = mapped([], BILLING)
    assert (page.records, page.rejected, page.sanitized, page.anomalies) == ([], 0, 0, [])


@pytest.mark.parametrize(
    "changes",
    [{}, {"expected_profit": 0}, {"expected_profit": 7}, {"expected_profit": Decimal("1.30")},
     {"expected_profit": Decimal("1E+2")}, {"douyin_id": 123}, {"author": None},
     {"video_title": "好看"}, {"gmv_1d": 0, "video_id": 0}, {"publish_time": 0},
     {"publish_time": 253402300799}],
)  # fmt: skip
def test_quick_ways_agree_with_careful_ways(changes: dict[str, Any]) -> None:
    """An item the careful decode takes at a glance gives the Row it converts value by value
    (the same item with its ids sent as digits), and the mapper's quick way gives the record
    its careful way gives (the same Row marked odd)."""
    item = dict(SNAKE, **changes)
    (quick,) = rows_from_items([item], None)
    assert quick.odd is None
    digits = dict(item, video_id=str(item["video_id"]), task_id=str(item["task_id"]))
    (converted,) = rows_from_items([digits], None)
    assert converted.odd == Odd()
    assert msgspec.structs.replace(converted, odd=None) == quick
    fast = map_page([quick], BILLING)
    assert fast.records and fast.anomaly_count == 0
    assert map_page([msgspec.structs.replace(quick, odd=Odd())], BILLING) == fast
    # With the writer's tail (app, answer time, run), both ways put it after the same record.
    tail = ("app", 1692878100.25, 7)
    (record,) = fast.records
    assert map_page([quick], BILLING, tail).records == [(*record, *tail)]
    odd = msgspec.structs.replace(quick, odd=Odd())
    assert map_page([odd], BILLING, tail).records == [(*record, *tail)]


def test_anomalies_of_a_row_in_column_order() -> None:
    """A row's anomalies come in column order, the decode's (dropped values) and the mapper's
    (date, negative money) interleaved."""
    item = dict(SNAKE, author=["a"], publish_time="soon", date="2023-08-24", gmv_1d=-5)
    item.update(refund_gmv_1d=Decimal("1.5"), expected_profit=Decimal("-2"))
    page = mapped([item])
    where = f"video {VIDEO} task {TASK}"
    assert page.anomalies == [
        f"{where}: author is not text: ['a']",
        f"{where}: publish_time is not Unix seconds: 'soon'",
        f"{where}: date 2023-08-24 differs from billing date 2023-08-25",
        f"{where}: gmv_1d is negative: -5",
        f"{where}: refund_gmv_1d is not an int64: Decimal('1.5')",
        f"{where}: expected_profit is negative: -2",
    ]
