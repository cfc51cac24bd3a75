"""The decoding boundary of daily-data pages (sync.records.decode): ordinary pages decode typed
(sync.records.wire), any other careful (sync.records.careful), and both give the same Rows."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import pytest

from sync.api.client import parse_daily_data
from sync.db.schema import RECORD_COLUMNS
from sync.errors import ContractError, PermanentError, ThrottledError
from sync.records import decode
from sync.records.careful import rows_from_items
from sync.records.decode import decode_daily_data, decode_json
from sync.records.mapper import MappedPage, map_page
from sync.records.wire import MAX_PLACED_NULS, Row, decode_typed, nul_escapes

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


def careful_path(body: bytes) -> MappedPage:
    """What the careful path maps: exact JSON into dicts, converted to Rows, mapped."""
    items = decode_json(body, endpoint="test")["data"]["video_daily_data_list"]
    return map_page(rows_from_items(items, None), BILLING)


def typed_path(body: bytes) -> MappedPage:
    """What the boundary maps of a page the typed decode takes (it must take it)."""
    assert decode_typed(body) is not None, "the typed decode refused the page"
    return boundary(body)


def boundary(body: bytes) -> MappedPage:
    """What the boundary's rows map to, whichever way it decoded them."""
    rows = decode_daily_data(body).rows
    assert all(isinstance(r, Row) for r in rows)
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
def test_typed_page_maps_like_the_careful_path(casing: str, compact: bool) -> None:
    """A clean page in either casing decodes typed into Rows that map to the careful path's
    records."""
    body = page([cased(item, casing) for item in VARIETY], compact=compact)
    decoded = decode_typed(body)
    assert decoded is not None
    assert len(decoded.rows) == len(VARIETY) and decoded.log_id == "L1" and decoded.nuls == ()
    assert all(isinstance(r, Row) and r.odd is None and r.extra is None for r in decoded.rows)
    typed = map_page(decoded.rows, BILLING)
    assert typed == careful_path(body)
    assert (typed.rejected, typed.sanitized, typed.anomaly_count) == (0, 0, 0)
    assert [r[1] for r in typed.records] == [item["video_id"] for item in VARIETY]
    by_video = {r[1]: dict(zip(RECORD_COLUMNS, r, strict=True)) for r in typed.records}
    assert by_video[VIDEO]["publish_time"] == 1692878009
    assert by_video[VIDEO]["expected_profit"] == "1.3"
    assert by_video[VIDEO + 1]["expected_profit"] == "1.30"
    assert by_video[VIDEO + 4]["expected_profit"] == 5  # an int stays an int
    assert by_video[VIDEO + 5]["expected_profit"] == 0
    assert by_video[VIDEO + 8]["expected_profit"] == "12345678901234567890.123456789"
    assert by_video[VIDEO + 3]["client_name"] is None and by_video[VIDEO + 2]["author"] is None
    assert by_video[I64_MAX]["task_id"] == I64_MAX and by_video[I64_MAX]["gmv_1d"] == I64_MAX
    for record in typed.records:
        assert type(record[PUBLISHED]) is int and type(record[PROFIT]) in (int, str)


@pytest.mark.parametrize("casing", CASINGS)
def test_parse_daily_data_takes_the_typed_path(casing: str) -> None:
    """parse_daily_data hands a clean page over as typed Rows with its log_id and size."""
    body = page([cased(item, casing) for item in VARIETY[:3]])
    parsed = parse_daily_data(body)
    assert decode_typed(body) is not None
    assert all(isinstance(r, Row) for r in parsed.items) and len(parsed.items) == 3
    assert (parsed.log_id, parsed.nbytes) == ("L1", len(body))
    assert map_page(parsed.items, BILLING) == careful_path(body)


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
    assert typed_path(body) == careful_path(body)
    assert typed_path(body).records == [
        (
            BILLING, 7270855478333246754, 7270785143852253123, "31626424566", "nice1", "撮合",
            None, "t", "hello", "https://www.iesdouyin.com/share/video/1/", 1692878009, BILLING,
            3, 39900, 100, 39900, 0, 120, 9223372036854775807, "1.30", None,
        )
    ]  # fmt: skip
    decoded = decode_typed(body)
    assert decoded is not None and decoded.log_id == "202308251200"


def _mixed() -> list[dict[str, Any]]:
    return [cased(row(), "pascal"), row(VIDEO + 1)]


# Pages the typed decode must refuse, by casing: the careful path then maps them, and each case's
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
    "keys named as Row's own fields": (lambda c: [cased(row(extra="x", odd=None), c)], (0, 0, 0)),
    "both casings in a row": (
        lambda c: [dict(cased(row(), c), VideoId=VIDEO, video_id=VIDEO)],
        (0, 0, 0),
    ),
}


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "spaced"])
@pytest.mark.parametrize("casing", CASINGS)
@pytest.mark.parametrize("case", list(UNTYPED))
def test_untyped_pages_take_the_careful_path(case: str, casing: str, compact: bool) -> None:
    """Pages outside the typed contract are refused by the typed decode; parse_daily_data then
    gives the careful path's Rows, which map exactly as dicts did before there were Rows."""
    build, (rejected, sanitized, anomalies) = UNTYPED[case]
    body = page(build(casing), compact=compact)
    assert decode_typed(body) is None
    parsed = parse_daily_data(body)
    assert all(isinstance(r, Row) for r in parsed.items) and parsed.log_id == "L1"
    mapped = map_page(parsed.items, BILLING)
    assert mapped == careful_path(body)
    assert (mapped.rejected, mapped.sanitized, mapped.anomaly_count) == (
        rejected,
        sanitized,
        anomalies,
    )


# Texts the careful path repairs (NUL and lone surrogates become U+FFFD, the row counts as
# sanitized): the typed decode takes the page, and the boundary repairs just those rows.
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
def test_repaired_texts_map_like_the_careful_path(case: str, casing: str, compact: bool) -> None:
    """Pages with NUL or lone surrogates stay typed; the rows that need a repair map exactly
    as on the careful path (same records, same sanitized count), in place among clean rows."""
    changes, sanitized = REPAIRED[case]
    items = [cased(row(VIDEO + i, **(changes if i == 1 else {})), casing) for i in range(3)]
    body = page(items, compact=compact)  # json.dumps escapes as \uXXXX, as many platforms do
    expected = careful_path(body)
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
    assert mapped == careful_path(body)
    record = dict(zip(RECORD_COLUMNS, mapped.records[0], strict=True))
    assert (record["author"], record["video_title"], mapped.sanitized) == ("达人😀", "x\ufffd", 1)


def raw_utf8(body: bytes) -> bytes:
    """`body` as the platform sends it: text as UTF-8, not \\uXXXX escapes (NUL stays escaped)."""
    return json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("body", "offsets"),
    [
        (b'{"a":"plain"}', ()),
        (b'{"a":"\\u0000"}', (6,)),  # a NUL
        (b'{"a":"\\\\u0000"}', ()),  # an escaped backslash, then the text u0000
        (b'{"a":"\\\\\\u0000"}', (8,)),  # an escaped backslash, then a NUL
        (b'{"a":"\\"\\u0000"}', (8,)),  # an escaped quote, then a NUL
        (b'{"a":"\\u00001"}', (6,)),
        (b'{"a":"\\u0001"}', ()),
    ],
)
def test_nul_escapes_are_found_between_the_other_escapes(
    body: bytes, offsets: tuple[int, ...]
) -> None:
    assert nul_escapes(body) == offsets


def test_nul_escapes_give_up_where_placing_them_would_cost_more_than_searching() -> None:
    """Past MAX_PLACED_NULS escapes, or in a body dense with escapes, the places are unknown:
    None (the page's rows are then all looked into)."""
    many = b'{"a":"' + b"\\u0000" * (MAX_PLACED_NULS + 1) + b'"}'
    assert nul_escapes(many) is None
    assert nul_escapes(b'{"a":"' + b"\\u0000" * MAX_PLACED_NULS + b'"}') is not None
    dense = json.dumps({"a": "达" * 5_000}).encode()  # every character escaped
    assert dense.count(b"\\") == 5_000 and nul_escapes(dense) is None
    page_ = decode_typed(page([row(video_title="达" * 5_000 + "\x00")]))
    assert page_ is not None and page_.nuls is None  # unknown: every row is looked into


def _titles(count: int, nul_rows: dict[int, str]) -> list[dict[str, Any]]:
    """`count` rows with titles of very unequal lengths; the rows of `nul_rows` get that title."""
    return [
        row(VIDEO + i, video_title=nul_rows.get(i, "标题" * (1 + (i * 37) % 200)))
        for i in range(count)
    ]


@pytest.mark.parametrize(
    "nul_rows",
    [
        {0: "a\x00"},
        {399: "\x00"},
        {5: "\x00", 6: "\x00", 7: "b\x00", 300: "\x00"},  # a cluster, and one far off
        {200: "\x00\x00 two in one text"},
        {17: "\x00" + "长" * 3_000},  # a row far longer than the rest throws the guess off
        {i: "\x00" for i in range(0, 400, 7)},
    ],
    ids=["first", "last", "cluster", "two-in-one", "long-row", "many"],
)
@pytest.mark.parametrize("casing", CASINGS)
def test_the_rows_holding_nuls_are_found_wherever_they_sit(
    nul_rows: dict[int, str], casing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a page sent as raw UTF-8, the rows whose texts hold a NUL are found from where the
    escapes lie, and every one of them is repaired as the careful path repairs it."""
    looked: list[int] = []
    counted = decode._nuls_in
    monkeypatch.setattr(decode, "_nuls_in", lambda r: looked.append(1) or counted(r))
    body = raw_utf8(page([cased(item, casing) for item in _titles(400, nul_rows)]))
    expected = careful_path(body)
    assert expected.sanitized == len(nul_rows)
    assert typed_path(body) == expected
    if len(nul_rows) == 1:
        assert 0 < len(looked) < 400 // 2  # found near the guess, not by looking everywhere


def test_a_nul_outside_the_texts_has_every_row_looked_into(monkeypatch: pytest.MonkeyPatch) -> None:
    """A NUL escape that no text holds (here in the log_id) cannot be placed in a row: every row
    is looked into, and none is repaired."""
    looked: list[int] = []
    counted = decode._nuls_in
    monkeypatch.setattr(decode, "_nuls_in", lambda r: looked.append(1) or counted(r))
    body = raw_utf8(page(_titles(50, {}), log_id="L\x001"))
    decoded = decode_typed(body)
    assert decoded is not None and decoded.nuls and len(decoded.nuls) == 1
    assert typed_path(body).sanitized == 0
    assert len(looked) >= 50


# ExpectedProfit values that are not a non-negative JSON number, with the careful path's
# (rejected, sanitized, anomaly_count). The typed decode may refuse such a page or pass the value
# through for the mapper to send that row down the careful path; either way the records match.
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
def test_odd_profit_maps_like_the_careful_path(case: str, casing: str, compact: bool) -> None:
    """A profit sent as text, null or another non-number maps exactly as on the careful path, in
    place among clean rows, whether or not the typed decode takes the page."""
    profit, (rejected, sanitized, anomalies) = ODD_PROFITS[case]
    items = [row(), row(VIDEO + 1, expected_profit=profit), row(VIDEO + 2)]
    body = page([cased(item, casing) for item in items], compact=compact)
    expected = careful_path(body)
    assert [r[1] for r in expected.records] == [VIDEO, VIDEO + 1, VIDEO + 2]
    assert (expected.rejected, expected.sanitized, expected.anomaly_count) == (
        rejected,
        sanitized,
        anomalies,
    )
    assert map_page(parse_daily_data(body).items, BILLING) == expected
    assert boundary(body) == expected


def test_careful_path_results_of_refused_pages() -> None:
    """The refused pages' records are the careful path's: repaired texts, exact or null values."""
    nul = careful_path(page([row(video_title="a\x00b", author="x\ud800")]))
    assert (nul.records[0][8], nul.records[0][4]) == ("a\ufffdb", "x\ufffd")
    text_profit = careful_path(page([cased(row(expected_profit="1.3"), "pascal")]))
    assert text_profit.records[0][PROFIT] == "1.3"
    odd = careful_path(page([row(expected_profit="1_000")]))
    assert odd.records[0][PROFIT] is None
    assert odd.anomalies == [f"video {VIDEO} task {TASK}: expected_profit is not a number: '1_000'"]
    extra = careful_path(page([cased(row(Note="x"), "pascal")]))
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
    """Error codes and answers without data or list are refused by the typed decode, and
    parse_daily_data raises."""
    assert decode_typed(body) is None
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
    assert typed == careful_path(body)
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
    assert by_video[VIDEO + 5]["expected_profit"] == -2


@pytest.mark.parametrize("casing", CASINGS)
def test_a_typed_page_of_only_odd_rows(casing: str) -> None:
    """A typed page whose every row is odd maps like the careful path too."""
    items = [row(VIDEO + i, date="2023-08-26") for i in range(3)]
    body = page([cased(item, casing) for item in items])
    typed = typed_path(body)
    assert typed == careful_path(body) and typed.anomaly_count == 3
    assert [r[1] for r in typed.records] == [VIDEO, VIDEO + 1, VIDEO + 2]


@pytest.mark.parametrize("items", [None, []], ids=["null", "empty"])
def test_null_or_empty_list_is_an_empty_typed_page(items: object) -> None:
    """`video_daily_data_list: null` (or []) decodes typed to no rows: an empty page."""
    body = page(items)
    decoded = decode_typed(body)
    assert decoded is not None and decoded.rows == [] and decoded.log_id == "L1"
    assert map_page(decoded.rows, BILLING) == MappedPage([], 0, 0, [], 0)
    assert parse_daily_data(body).items == []


def test_missing_log_id_is_none() -> None:
    """A typed page without log_id has log_id None, as on the careful path."""
    body = dumps({"err_no": 0, "data": {"video_daily_data_list": [row()]}})
    decoded = decode_typed(body)
    assert decoded is not None and decoded.log_id is None
    assert parse_daily_data(body).log_id is None


def test_non_text_log_id_takes_the_careful_path() -> None:
    """A log_id sent as a number is refused by the typed decode; the careful path keeps its text."""
    body = page([row()], log_id=202308251200)
    assert decode_typed(body) is None
    parsed = parse_daily_data(body)
    assert parsed.log_id == "202308251200"
    assert map_page(parsed.items, BILLING) == typed_path(page([row()]))


def test_own_field_names_are_kept_in_extra() -> None:
    """Items with keys named `extra` or `odd` (Row's own fields) keep them as unknown fields."""
    mapped = boundary(page([row(extra="x", odd=None)]))
    assert mapped.records[0][-1] == '{"extra":"x","odd":null}'


# One logical page, spelled four ways: the boundary must give the same records (an unknown field
# adds only its `extra`).
def _mixed_within_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {(PASCAL[k] if j % 2 else k): v for j, (k, v) in enumerate(item.items())} for item in items
    ]


SPELLINGS: dict[str, Any] = {
    "PascalCase": lambda items: [cased(item, "pascal") for item in items],
    "snake_case": lambda items: items,
    "mixed casings": lambda items: [
        cased(item, "pascal" if i % 2 else "snake") for i, item in enumerate(items)
    ],
    "mixed within rows": _mixed_within_rows,
    "with an unknown field": lambda items: [cased(dict(i, Note="新"), "pascal") for i in items],
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_spellings_of_one_page_give_identical_records(spelling: str) -> None:
    """The same logical rows in PascalCase, snake_case, mixed casings or with an unknown field
    give identical records through the boundary, whichever decode takes the page."""
    want = boundary(page(VARIETY))
    body = page(SPELLINGS[spelling](VARIETY))
    assert (decode_typed(body) is not None) == (spelling in ("PascalCase", "snake_case"))
    got = boundary(body)
    if spelling == "with an unknown field":
        assert {r[-1] for r in got.records} == {'{"Note":"新"}'}
        got.records = [(*r[:-1], None) for r in got.records]
    assert got == want
    assert (got.rejected, got.sanitized, got.anomaly_count) == (0, 0, 0)


def test_rejected_items_stay_on_the_page() -> None:
    """A page's Rows count every item, those the mapper rejects included, so that a full page
    is seen as full by the paging."""
    body = page([row(), row(video_id=...), row(VIDEO + 2, task_id=2.5)])
    parsed = parse_daily_data(body)
    assert len(parsed.items) == 3 and [r.video_id for r in parsed.items] == [VIDEO, None, VIDEO + 2]
    assert parsed.items[2].task_id is None
    mapped = map_page(parsed.items, BILLING)
    assert len(mapped.records) == 1 and mapped.rejected == 2


@pytest.mark.parametrize(
    "items", [{"VideoId": 1}, "[]", 0], ids=["an object", "a string", "a number"]
)
def test_a_list_that_is_not_a_list_is_a_contract_error(items: object) -> None:
    """A video_daily_data_list that is not a list is a broken answer, with its log_id."""
    with pytest.raises(ContractError, match="not a list") as info:
        decode_daily_data(page(items))
    assert (info.value.endpoint, info.value.log_id) == ("query_task_video_daily_data", "L1")


def test_an_item_that_is_not_an_object_is_a_contract_error() -> None:
    """An item that is not an object is a broken answer, naming its position, with the log_id."""
    with pytest.raises(ContractError, match="item 1 of video_daily_data_list is list") as info:
        decode_daily_data(page([row(), [1, 2]]))
    assert info.value.log_id == "L1"


def test_error_code_is_handed_back() -> None:
    """An answer with an error code decodes to its code and message; it is the API layer that
    raises (test_error_answers_are_not_typed)."""
    decoded = decode_daily_data(page(None, err_no=28003018, err_msg="busy", data=None))
    assert (decoded.err_no, decoded.err_msg, decoded.log_id, decoded.rows) == (
        28003018,
        "busy",
        "L1",
        [],
    )
