"""The typed decode of daily-data pages (sync.records.wire): the dict path's records, or None."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import pytest

from sync.api.client import parse_daily_data
from sync.api.http import decode_json
from sync.db.schema import RECORD_COLUMNS
from sync.errors import ContractError, PermanentError, ThrottledError
from sync.records.mapper import MappedPage, map_page
from sync.records.wire import TypedRows, decode_page

BILLING = dt.date(2023, 8, 25)
VIDEO = 7270855478333246754  # above 2**53: a float would round it to ...246000
TASK = 7270785143852253123
I64_MAX = 2**63 - 1

# The API's keys, written out here rather than taken from records.wire: PascalCase as in the doc
# samples, snake_case (the names below) as in the doc tables and the SDK. `date` is the same.
PASCAL = {
    "video_id": "VideoId",
    "task_id": "TaskId",
    "douyin_id": "DouyinID",
    "author": "Author",
    "client_name": "ClientName",
    "micro_app_title": "MicroAppTitle",
    "task_name": "TaskName",
    "video_title": "VideoTitle",
    "video_link": "VideoLink",
    "publish_time": "PublishTime",
    "date": "date",
    "active_cnt_1d": "ActiveCnt1d",
    "gmv_1d": "GMV1d",
    "refund_gmv_1d": "RefundGMV1d",
    "billing_gmv_1d": "BillingGMV1d",
    "billing_refund_gmv_1d": "BillingRefundGMV1d",
    "ad_share_cost_1d": "AdShareCost1d",
    "feed_ad_share_cost_1d": "FeedAdShareCost1d",
    "expected_profit": "ExpectedProfit",
}
CASINGS = ("pascal", "snake")
PROFIT = RECORD_COLUMNS.index("expected_profit")
PUBLISHED = RECORD_COLUMNS.index("publish_time")


def row(video_id: Any = VIDEO, **changes: Any) -> dict[str, Any]:
    """A clean snake_case row (Decimals are written as JSON numbers); `changes` may drop keys
    by giving `...`."""
    item: dict[str, Any] = {
        "video_id": video_id,
        "task_id": TASK,
        "douyin_id": "31626424566",
        "author": "nice1",
        "client_name": "撮合网站应用015",
        "micro_app_title": "行业ITC",
        "task_name": "小程序B的支付分成绑定任务R4",
        "video_title": "hello",
        "video_link": f"https://www.iesdouyin.com/share/video/{video_id}/",
        "publish_time": 1692878009,
        "date": "2023-08-25",
        "active_cnt_1d": 3,
        "gmv_1d": 39900,
        "refund_gmv_1d": 100,
        "billing_gmv_1d": 39900,
        "billing_refund_gmv_1d": 0,
        "ad_share_cost_1d": 120,
        "feed_ad_share_cost_1d": 7,
        "expected_profit": Decimal("1.3"),
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v is not ...}


def cased(item: dict[str, Any], casing: str) -> dict[str, Any]:
    """The row with PascalCase keys, or as it is."""
    return {PASCAL.get(k, k): v for k, v in item.items()} if casing == "pascal" else item


_RAW_NUMBER = re.compile(r'"\\u0001([^"\\]*)\\u0001"')


def dumps(doc: object, *, compact: bool = True) -> bytes:
    """json.dumps with Decimals written as JSON numbers, digit for digit (ints are exact anyway);
    `compact=False` keeps json's default ", " and ": " separators."""
    text = json.dumps(
        doc,
        default=lambda d: f"\x01{d}\x01",  # only Decimals reach here; \x01 is escaped as \u0001
        separators=(",", ":") if compact else None,
    )
    return _RAW_NUMBER.sub(r"\1", text).encode()


def page(items: object, *, compact: bool = True, **envelope: Any) -> bytes:
    """A successful answer holding `items`, with envelope fields overridden by `envelope`."""
    doc = {"err_no": 0, "err_msg": "success", "log_id": "L1", "data": {}}
    doc["data"] = {"video_daily_data_list": items}
    doc.update(envelope)
    return dumps(doc, compact=compact)


def dict_path(body: bytes) -> MappedPage:
    """What the general path maps: exact JSON into dicts, then map_page on the list."""
    return map_page(decode_json(body, endpoint="test")["data"]["video_daily_data_list"], BILLING)


def typed_path(body: bytes) -> MappedPage:
    """What the typed path maps; the body must decode to TypedRows."""
    decoded = decode_page(body)
    assert decoded is not None, "the typed decode refused the page"
    rows, _ = decoded
    assert type(rows) is TypedRows
    return map_page(rows, BILLING)


VARIETY = [
    row(),
    row(VIDEO + 1, expected_profit=Decimal("1.30")),  # trailing zero kept
    row(VIDEO + 2, author=None, video_title=None, douyin_id=None),  # null texts
    row(VIDEO + 3, client_name=..., video_link=..., micro_app_title=...),  # absent texts
    row(VIDEO + 4, expected_profit=5),  # an int profit
    row(VIDEO + 5, expected_profit=0, gmv_1d=0, active_cnt_1d=0),
    row(I64_MAX, task_id=I64_MAX, gmv_1d=I64_MAX, feed_ad_share_cost_1d=I64_MAX),
    row(0, task_id=0),
    row(VIDEO + 6, publish_time=0),
    row(VIDEO + 7, publish_time=253402300799),  # 9999-12-31 23:59:59 UTC
    row(VIDEO + 8, expected_profit=Decimal("12345678901234567890.123456789")),
    row(VIDEO + 9, expected_profit=Decimal("1E+2"), author=""),
    row(VIDEO + 10, video_title='quote " backslash \\ tab \t newline \n 😀 \u2028'),
    row(VIDEO + 11, expected_profit=Decimal("-0")),  # JSON -0: an integer zero
]


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "spaced"])
@pytest.mark.parametrize("casing", CASINGS)
def test_typed_page_maps_like_the_dict_path(casing: str, compact: bool) -> None:
    """A clean page in either casing decodes to TypedRows that map to the dict path's records."""
    body = page([cased(item, casing) for item in VARIETY], compact=compact)
    decoded = decode_page(body)
    assert decoded is not None
    rows, log_id = decoded
    assert type(rows) is TypedRows and len(rows) == len(VARIETY) and log_id == "L1"
    typed = map_page(rows, BILLING)
    assert typed == dict_path(body)
    assert (typed.rejected, typed.sanitized, typed.anomaly_count) == (0, 0, 0)
    assert [r[1] for r in typed.records] == [item["video_id"] for item in VARIETY]
    by_video = {r[1]: dict(zip(RECORD_COLUMNS, r, strict=True)) for r in typed.records}
    assert by_video[VIDEO]["publish_time"] == 1692878009
    assert by_video[VIDEO]["expected_profit"] == "1.3"
    assert by_video[VIDEO + 1]["expected_profit"] == "1.30"
    assert by_video[VIDEO + 4]["expected_profit"] == "5"
    assert by_video[VIDEO + 5]["expected_profit"] == "0"
    assert by_video[VIDEO + 8]["expected_profit"] == "12345678901234567890.123456789"
    assert by_video[VIDEO + 3]["client_name"] is None and by_video[VIDEO + 2]["author"] is None
    assert by_video[I64_MAX]["task_id"] == I64_MAX and by_video[I64_MAX]["gmv_1d"] == I64_MAX
    for record in typed.records:
        assert type(record[PUBLISHED]) is int and type(record[PROFIT]) is str


@pytest.mark.parametrize("casing", CASINGS)
def test_parse_daily_data_takes_the_typed_path(casing: str) -> None:
    """parse_daily_data hands a clean page over as TypedRows with its log_id and size."""
    body = page([cased(item, casing) for item in VARIETY[:3]])
    parsed = parse_daily_data(body)
    assert type(parsed.items) is TypedRows and len(parsed.items) == 3
    assert (parsed.log_id, parsed.nbytes) == ("L1", len(body))
    assert map_page(parsed.items, BILLING) == dict_path(body)


def test_raw_doc_sample_with_big_ids() -> None:
    """A hand-written doc-sample page (ids above 2**53, profit 1.30) keeps every digit."""
    body = (
        b'{"err_no":0,"err_msg":"","log_id":"202308251200","data":{"video_daily_data_list":['
        b'{"VideoId":7270855478333246754,"TaskId":7270785143852253123,"DouyinID":"31626424566",'
        b'"Author":"nice1","ClientName":"\\u64ae\\u5408","MicroAppTitle":null,"TaskName":"t",'
        b'"VideoTitle":"hello","VideoLink":"https://www.iesdouyin.com/share/video/1/",'
        b'"PublishTime":1692878009,"date":"2023-08-25","ActiveCnt1d":3,"GMV1d":39900,'
        b'"RefundGMV1d":100,"BillingGMV1d":39900,"BillingRefundGMV1d":0,"AdShareCost1d":120,'
        b'"FeedAdShareCost1d":9223372036854775807,"ExpectedProfit":1.30}]}}'
    )
    assert typed_path(body) == dict_path(body)
    assert typed_path(body).records == [
        (
            BILLING, 7270855478333246754, 7270785143852253123, "31626424566", "nice1", "撮合",
            None, "t", "hello", "https://www.iesdouyin.com/share/video/1/", 1692878009, BILLING,
            3, 39900, 100, 39900, 0, 120, 9223372036854775807, "1.30", None,
        )
    ]  # fmt: skip
    decoded = decode_page(body)
    assert decoded is not None and decoded[1] == "202308251200"


def _mixed() -> list[dict[str, Any]]:
    return [cased(row(), "pascal"), row(VIDEO + 1)]


# Pages the typed decode must refuse, by casing: the dict path then maps them, and each case's
# (rejected, sanitized, anomaly_count) shows that path's handling.
UNTYPED: dict[str, tuple[Any, tuple[int, int, int]]] = {
    "mixed casings": (lambda c: _mixed() if c == "pascal" else _mixed()[::-1], (0, 0, 0)),
    "unknown key": (lambda c: [cased(row(Note="x"), c)], (0, 0, 0)),
    "negative figure": (lambda c: [cased(row(gmv_1d=-500), c)], (0, 0, 1)),
    "float id": (lambda c: [cased(row(7.270855478333247e18), c)], (1, 0, 1)),
    "integral float figure": (lambda c: [cased(row(gmv_1d=Decimal("39900.0")), c)], (0, 0, 0)),
    "id above int64": (lambda c: [cased(row(2**63), c)], (1, 0, 1)),
    "id far above int64": (lambda c: [cased(row(task_id=2**64 + 5), c)], (1, 0, 1)),
    "id as digits": (lambda c: [cased(row(str(VIDEO)), c)], (0, 0, 0)),
    "null figure": (lambda c: [cased(row(gmv_1d=None), c)], (0, 0, 0)),
    "string figure": (lambda c: [cased(row(gmv_1d="39900"), c)], (0, 0, 0)),
    "bool figure": (lambda c: [cased(row(gmv_1d=True), c)], (0, 0, 1)),
    "missing figure": (lambda c: [cased(row(gmv_1d=...), c)], (0, 0, 0)),
    "number for text": (lambda c: [cased(row(douyin_id=31626424566), c)], (0, 0, 0)),
    "negative publish time": (lambda c: [cased(row(publish_time=-1), c)], (0, 0, 0)),
    "publish time past 9999": (lambda c: [cased(row(publish_time=253402300800), c)], (0, 0, 1)),
    "publish time as digits": (lambda c: [cased(row(publish_time="1692878009"), c)], (0, 0, 0)),
    "capitalised Date": (lambda c: [cased(row(date=..., Date="2023-08-25"), c)], (0, 0, 0)),
    "missing id": (lambda c: [cased(row(video_id=...), c)], (1, 0, 1)),
    "both casings in a row": (
        lambda c: [dict(cased(row(), c), VideoId=VIDEO, video_id=VIDEO)],
        (0, 0, 0),
    ),
}


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "spaced"])
@pytest.mark.parametrize("casing", CASINGS)
@pytest.mark.parametrize("case", list(UNTYPED))
def test_untyped_pages_take_the_dict_path(case: str, casing: str, compact: bool) -> None:
    """Pages outside the typed contract decode to None; parse_daily_data then gives dicts that
    map exactly as the dict path always did."""
    build, (rejected, sanitized, anomalies) = UNTYPED[case]
    body = page(build(casing), compact=compact)
    assert decode_page(body) is None
    parsed = parse_daily_data(body)
    assert type(parsed.items) is list and parsed.log_id == "L1"
    mapped = map_page(parsed.items, BILLING)
    assert mapped == dict_path(body)
    assert (mapped.rejected, mapped.sanitized, mapped.anomaly_count) == (
        rejected,
        sanitized,
        anomalies,
    )


# Texts the careful path repairs (NUL and lone surrogates become U+FFFD, the row counts as
# sanitized): the typed decode takes the page, and only those rows go the dict path.
REPAIRED: dict[str, tuple[dict[str, Any], int]] = {
    "NUL in title": ({"video_title": "a\x00b"}, 1),
    "NUL in two texts": ({"author": "\x00", "video_link": "x\x00"}, 1),
    "lone high surrogate": ({"video_title": "a\ud800b"}, 1),
    "lone low surrogate": ({"author": "\udc00"}, 1),
    "high surrogate at the end": ({"video_title": "abc\udbff"}, 1),
    "two highs then a pair": ({"video_title": "\ud800\ud800\udc00"}, 1),
    "surrogate and NUL": ({"video_title": "\ud800", "author": "\x00"}, 1),
    "escaped backslash before u": ({"video_title": "\\ud800 is text"}, 0),
    "pair only": ({"video_title": "\U0001f600"}, 0),
}


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "spaced"])
@pytest.mark.parametrize("casing", CASINGS)
@pytest.mark.parametrize("case", list(REPAIRED))
def test_repaired_texts_map_like_the_dict_path(case: str, casing: str, compact: bool) -> None:
    """Pages with NUL or lone surrogates stay typed; the rows that need a repair map exactly
    as on the dict path (same records, same sanitized count), in place among clean rows."""
    changes, sanitized = REPAIRED[case]
    items = [cased(row(VIDEO + i, **(changes if i == 1 else {})), casing) for i in range(3)]
    body = page(items, compact=compact)  # json.dumps escapes as \uXXXX, as many platforms do
    expected = dict_path(body)
    assert expected.sanitized == sanitized
    assert typed_path(body) == expected
    assert map_page(parse_daily_data(body).items, BILLING) == expected


def test_lone_surrogate_in_raw_utf8_page_still_maps() -> None:
    """A page sent as raw UTF-8 (emoji unescaped) with one lone surrogate escape decodes typed,
    and only the text with the surrogate is repaired."""
    item = cased(row(author="达人😀", video_title="x"), "pascal")
    body = page([item], compact=True).replace(b'"x"', b'"x\\ud800"')
    body = body.replace(json.dumps("达人😀").encode()[1:-1], "达人😀".encode())
    mapped = typed_path(body)
    assert mapped == dict_path(body)
    record = dict(zip(RECORD_COLUMNS, mapped.records[0], strict=True))
    assert (record["author"], record["video_title"], mapped.sanitized) == ("达人😀", "x\ufffd", 1)


# ExpectedProfit values that are not a non-negative JSON number, with the dict path's
# (rejected, sanitized, anomaly_count). The typed decode may refuse such a page or pass the value
# through for the mapper to send that row down the dict path; either way the records match.
ODD_PROFITS: dict[str, tuple[object, tuple[int, int, int]]] = {
    "text": ("1.3", (0, 0, 0)),
    "text with underscore": ("1_000", (0, 0, 1)),
    "text with plus sign": ("+5", (0, 0, 1)),
    "text with spaces": (" 5", (0, 0, 1)),
    "NaN text": ("NaN", (0, 0, 1)),
    "null": (None, (0, 0, 0)),
    "bool": (True, (0, 0, 1)),
    "object": ({"yuan": 1}, (0, 0, 1)),
    "negative": (Decimal("-1.5"), (0, 0, 1)),
    "negative int": (-2, (0, 0, 1)),
}


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "spaced"])
@pytest.mark.parametrize("casing", CASINGS)
@pytest.mark.parametrize("case", list(ODD_PROFITS))
def test_odd_profit_maps_like_the_dict_path(case: str, casing: str, compact: bool) -> None:
    """A profit sent as text, null or another non-number maps exactly as on the dict path, in
    place among clean rows, whether or not the typed decode takes the page."""
    profit, (rejected, sanitized, anomalies) = ODD_PROFITS[case]
    items = [row(), row(VIDEO + 1, expected_profit=profit), row(VIDEO + 2)]
    body = page([cased(item, casing) for item in items], compact=compact)
    expected = dict_path(body)
    assert [r[1] for r in expected.records] == [VIDEO, VIDEO + 1, VIDEO + 2]
    assert (expected.rejected, expected.sanitized, expected.anomaly_count) == (
        rejected,
        sanitized,
        anomalies,
    )
    assert map_page(parse_daily_data(body).items, BILLING) == expected
    decoded = decode_page(body)
    if decoded is not None:
        assert map_page(decoded[0], BILLING) == expected


def test_dict_path_results_of_refused_pages() -> None:
    """The refused pages' records are the dict path's: repaired texts, exact or null values."""
    nul = dict_path(page([row(video_title="a\x00b", author="x\ud800")]))
    assert (nul.records[0][8], nul.records[0][4]) == ("a\ufffdb", "x\ufffd")
    text_profit = dict_path(page([cased(row(expected_profit="1.3"), "pascal")]))
    assert text_profit.records[0][PROFIT] == "1.3"
    odd = dict_path(page([row(expected_profit="1_000")]))
    assert odd.records[0][PROFIT] is None
    assert odd.anomalies == [f"video {VIDEO} task {TASK}: expected_profit is not a number: '1_000'"]
    extra = dict_path(page([cased(row(Note="x"), "pascal")]))
    assert extra.records[0][-1] == '{"Note":"x"}'


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (page([row()], err_no=28003018, err_msg="busy"), ThrottledError),
        (page([row()], err_no=28001007), PermanentError),
        (page(None, data=None), ContractError),
        (dumps({"err_no": 0, "log_id": "L1"}), ContractError),
        (dumps({"err_no": 0, "log_id": "L1", "data": {}}), ContractError),
        (dumps({"err_no": 0, "log_id": "L1", "data": {"list": []}}), ContractError),
        (page([row()], err_no="0"), ContractError),
    ],
    ids=["throttled", "permanent", "null data", "no data", "no list", "other list", "text err_no"],
)
def test_error_answers_are_not_typed(body: bytes, error: type[Exception]) -> None:
    """Error codes and answers without data or list decode to None, and the dict path raises."""
    assert decode_page(body) is None
    with pytest.raises(error):
        parse_daily_data(body)


def test_no_list_error_names_it() -> None:
    """A missing video_daily_data_list is a contract error, not an empty page."""
    with pytest.raises(ContractError, match="data has no video_daily_data_list"):
        parse_daily_data(dumps({"err_no": 0, "log_id": "L1", "data": {}}))


@pytest.mark.parametrize("casing", CASINGS)
def test_odd_rows_of_a_typed_page_go_the_slow_way_in_order(casing: str) -> None:
    """Rows of another date or with a negative profit in a typed page are mapped by the slow
    path, noted, and keep their place in the page."""
    items = [
        row(VIDEO),
        row(VIDEO + 1, date="2023-08-24"),
        row(VIDEO + 2),
        row(VIDEO + 3, expected_profit=Decimal("-1.5")),
        row(VIDEO + 4, expected_profit=Decimal("-0.0")),  # signed zero: slow, but no anomaly
        row(VIDEO + 5, date="2023-08-24", expected_profit=-2),
        row(VIDEO + 6),
    ]
    body = page([cased(item, casing) for item in items])
    typed = typed_path(body)
    assert typed == dict_path(body)
    assert [r[1] for r in typed.records] == [item["video_id"] for item in items]
    assert typed.anomalies == [
        f"video {VIDEO + 1} task {TASK}: date 2023-08-24 differs from billing date 2023-08-25",
        f"video {VIDEO + 3} task {TASK}: expected_profit is negative: -1.5",
        f"video {VIDEO + 5} task {TASK}: date 2023-08-24 differs from billing date 2023-08-25",
        f"video {VIDEO + 5} task {TASK}: expected_profit is negative: -2",
    ]
    assert (typed.rejected, typed.sanitized, typed.anomaly_count) == (0, 0, 4)
    by_video = {r[1]: dict(zip(RECORD_COLUMNS, r, strict=True)) for r in typed.records}
    assert by_video[VIDEO + 1]["data_date"] == dt.date(2023, 8, 24)
    assert by_video[VIDEO + 1]["billing_date"] == BILLING
    assert by_video[VIDEO + 3]["expected_profit"] == "-1.5"
    assert by_video[VIDEO + 4]["expected_profit"] == "-0.0"
    assert by_video[VIDEO + 5]["expected_profit"] == "-2"


@pytest.mark.parametrize("casing", CASINGS)
def test_a_typed_page_of_only_odd_rows(casing: str) -> None:
    """A typed page whose every row is odd maps like the dict path too."""
    items = [row(VIDEO + i, date="2023-08-26") for i in range(3)]
    body = page([cased(item, casing) for item in items])
    typed = typed_path(body)
    assert typed == dict_path(body) and typed.anomaly_count == 3
    assert [r[1] for r in typed.records] == [VIDEO, VIDEO + 1, VIDEO + 2]


@pytest.mark.parametrize("items", [None, []], ids=["null", "empty"])
def test_null_or_empty_list_is_empty_typed_rows(items: object) -> None:
    """`video_daily_data_list: null` (or []) decodes to empty TypedRows: an empty page."""
    body = page(items)
    decoded = decode_page(body)
    assert decoded is not None
    rows, log_id = decoded
    assert type(rows) is TypedRows and len(rows) == 0 and log_id == "L1"
    assert map_page(rows, BILLING) == MappedPage([], 0, 0, [], 0)
    parsed = parse_daily_data(body)
    assert type(parsed.items) is TypedRows and parsed.items == []


def test_missing_log_id_is_none() -> None:
    """A typed page without log_id has log_id None, as on the dict path."""
    body = dumps({"err_no": 0, "data": {"video_daily_data_list": [row()]}})
    decoded = decode_page(body)
    assert decoded is not None and decoded[1] is None
    assert parse_daily_data(body).log_id is None


def test_non_text_log_id_takes_the_dict_path() -> None:
    """A log_id sent as a number is refused by the typed decode; the dict path keeps its text."""
    body = page([row()], log_id=202308251200)
    assert decode_page(body) is None
    parsed = parse_daily_data(body)
    assert type(parsed.items) is list and parsed.log_id == "202308251200"
    assert map_page(parsed.items, BILLING) == typed_path(page([row()]))
