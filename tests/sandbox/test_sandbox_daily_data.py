"""query_task_video_daily_data: envelope, rows, ids, paging, filters, T+1 and every validation."""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal

import pytest

from sync.sandbox.render import PASCAL, PASCAL_TO_SNAKE, SNAKE

DAY = 86400


def snake(row: dict) -> dict:
    return {PASCAL_TO_SNAKE[k]: v for k, v in row.items()}


def window_of(rows: list[dict], count: int) -> tuple[int, int]:
    """A publish-time window holding exactly the first `count` rows."""
    times = [r["publish_time"] for r in rows]
    assert len(times) > count and times[count - 1] < times[count]
    return times[0], times[count - 1]


async def test_success_envelope(api, clock):
    """Success is HTTP 200 {err_no 0, err_msg, log_id, data: {video_daily_data_list}} only."""
    clock.frozen = True
    resp = await api.daily(await api.token(), page_size=5)
    assert resp.status == 200 and resp.content_type == "application/json"
    body = resp.json
    assert set(body) == {"err_no", "err_msg", "log_id", "data"}
    assert body["err_no"] == 0 and body["err_msg"] == "success"
    assert set(body["data"]) == {"video_daily_data_list"}
    assert len(body["data"]["video_daily_data_list"]) == 5
    assert re.fullmatch(r"20260315120000[0-9A-F]{20}", body["log_id"])


async def test_rows_equal_truth_exactly(api):
    """A page parsed with exact decimals equals truth(): same rows, order, values and types."""
    token = await api.token()
    start, end = api.now - 30 * DAY, api.now
    resp = await api.daily(token, page_size=10000, video_publish_start_time=start)
    rows = [snake(r) for r in resp.json["data"]["video_daily_data_list"]]
    truth = api.server.truth(api.yesterday, start, end)
    assert rows == truth and len(rows) > 50
    for got, want in zip(rows, truth, strict=True):
        assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in want.items()}
    assert {row["date"] for row in rows} == {api.yesterday}
    assert all(str(row["video_id"]) in row["video_link"] for row in rows)


async def test_ids_are_bare_json_numbers_above_2_53(api):
    """TaskId and VideoId are 19-digit bare numbers beyond float precision, never strings."""
    resp = await api.daily(await api.token(), page_size=50)
    text = resp.raw.decode()
    for key in ("VideoId", "TaskId"):
        found = re.findall(rf'"{key}":(-?[0-9.eE+"]+)', text)
        assert len(found) == 50
        for value in found:
            assert re.fullmatch(r"[0-9]{19}", value), value
            number = int(value)
            assert number > 2**53 and int(float(number)) != number
    rows = resp.json["data"]["video_daily_data_list"]
    assert all(isinstance(r["VideoId"], int) and isinstance(r["TaskId"], int) for r in rows)


async def test_expected_profit_has_exact_decimals(api):
    """ExpectedProfit is mostly an int, sometimes a one-digit decimal like 12.5 in the JSON."""
    start = api.now - 30 * DAY
    resp = await api.daily(await api.token(), page_size=10000, video_publish_start_time=start)
    assert re.search(rb'"ExpectedProfit":[0-9]+\.[1-9][,}]', resp.raw)
    assert not re.search(rb'"ExpectedProfit":[^,}]*[eE"]', resp.raw)
    values = [r["ExpectedProfit"] for r in resp.json["data"]["video_daily_data_list"]]
    assert any(isinstance(v, Decimal) for v in values)
    assert sum(isinstance(v, int) for v in values) > len(values) // 2


async def test_pascal_case_keys_by_default(api):
    """Rows carry exactly the documented PascalCase keys (and lowercase `date`)."""
    rows = (await api.daily(await api.token(), page_size=3)).json["data"]["video_daily_data_list"]
    assert all(set(r) == set(PASCAL) for r in rows)


async def test_snake_case_switch(make_sandbox, make_api):
    """With snake_case=True rows carry the snake_case keys and equal truth() directly."""
    api = make_api(await make_sandbox(snake_case=True))
    start = api.now - 30 * DAY
    resp = await api.daily(await api.token(), page_size=10000, video_publish_start_time=start)
    rows = resp.json["data"]["video_daily_data_list"]
    assert rows and all(set(r) == set(SNAKE) for r in rows)
    assert rows == api.server.truth(api.yesterday, start, api.now)


async def test_pages_at_an_exact_multiple(api):
    """20 rows at page_size 10 come as pages of 10, 10, then an empty page; none overlap."""
    token = await api.token()
    start, end = window_of(api.server.truth(api.yesterday), 20)
    pages = []
    for page_num in (1, 2, 3):
        resp = await api.daily(
            token,
            page_num=page_num,
            page_size=10,
            video_publish_start_time=start,
            video_publish_end_time=end,
        )
        pages.append(resp.json["data"]["video_daily_data_list"])
    assert [len(p) for p in pages] == [10, 10, 0]
    ids = [r["VideoId"] for p in pages for r in p]
    assert len(set(ids)) == 20
    assert [snake(r) for p in pages for r in p] == api.server.truth(api.yesterday, start, end)


async def test_small_pages_concatenate_to_the_whole(api, clock):
    """Pages of 7 in order never skip or repeat a row: together they are the full result."""
    token = await api.token()
    start, end = api.now - 30 * DAY, api.now
    rows: list[dict] = []
    page_num = 1
    while True:
        clock.advance(0.2)  # stay under 10 requests per second
        resp = await api.daily(
            token,
            page_num=page_num,
            page_size=7,
            video_publish_start_time=start,
            video_publish_end_time=end,
        )
        page = resp.json["data"]["video_daily_data_list"]
        rows.extend(snake(r) for r in page)
        if len(page) < 7:
            break
        page_num += 1
    assert page_num > 5
    assert rows == api.server.truth(api.yesterday, start, end)


async def test_publish_window_is_inclusive(api):
    """start == end == a video's publish time returns exactly that video."""
    row = api.server.truth(api.yesterday)[5]
    t = row["publish_time"]
    resp = await api.daily(await api.token(), video_publish_start_time=t, video_publish_end_time=t)
    assert [snake(r) for r in resp.json["data"]["video_daily_data_list"]] == [row]


async def test_douyin_id_and_agency_filters(api):
    """douyin_id and agency_client_key narrow the rows; rows without an agency key never match."""
    token = await api.token()
    start = api.now - 30 * DAY
    everything = api.server.truth(api.yesterday, start, api.now)
    douyin_id = everything[0]["douyin_id"]
    resp = await api.daily(
        token, page_size=10000, video_publish_start_time=start, douyin_id=douyin_id
    )
    rows = [snake(r) for r in resp.json["data"]["video_daily_data_list"]]
    assert rows == [r for r in everything if r["douyin_id"] == douyin_id]
    key = api.server.info()["agency_client_keys"][0]
    resp = await api.daily(
        token, page_size=10000, video_publish_start_time=start, agency_client_key=key
    )
    rows = [snake(r) for r in resp.json["data"]["video_daily_data_list"]]
    assert rows and len(rows) < len(everything)
    assert rows == api.server.truth(api.yesterday, start, api.now, agency_client_key=key)
    assert {r["client_name"] for r in rows} == {rows[0]["client_name"]} != {""}
    assert any(r["client_name"] == "" for r in everything)
    resp = await api.daily(token, douyin_id="no-such-creator")
    assert resp.json["data"]["video_daily_data_list"] == []


async def test_no_rows_for_today_or_later(api):
    """T+1: yesterday has rows; today and tomorrow answer an empty list; so does a far past date."""
    token = await api.token()
    today = dt.date.fromisoformat(api.yesterday) + dt.timedelta(days=1)
    assert (await api.daily(token)).json["data"]["video_daily_data_list"]
    for day in (today, today + dt.timedelta(days=1), dt.date(2019, 1, 1)):
        resp = await api.daily(token, billing_date=day.isoformat())
        assert resp.json["err_no"] == 0 and resp.json["data"]["video_daily_data_list"] == []
    assert api.server.truth(today) == []


async def test_rows_start_on_the_publish_day(api):
    """A video has rows from its (Shanghai) publish day on, and none before."""
    yesterday = dt.date.fromisoformat(api.yesterday)
    earlier = yesterday - dt.timedelta(days=10)
    rows_then = {r["video_id"] for r in api.server.truth(earlier)}
    rows_now = api.server.truth(yesterday)
    cutoff = dt.datetime.combine(earlier + dt.timedelta(days=1), dt.time(), api_tz()).timestamp()
    for row in rows_now:
        assert (row["video_id"] in rows_then) == (row["publish_time"] < cutoff)


def api_tz() -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Asia/Shanghai")


async def test_some_videos_are_beyond_the_90_day_reach(api):
    """The dataset holds videos published more than 90 days ago, which the API cannot return."""
    old = api.server.truth(api.yesterday, 0, api.now - 91 * DAY)
    assert old
    reachable = api.server.truth(api.yesterday)
    assert all(r["publish_time"] >= api.now - 90 * DAY for r in reachable)


async def test_hostile_titles_round_trip(api):
    """Titles with SQL, quotes, backslashes, emoji and multi-KB text arrive exactly."""
    clock = api.server.config.clock
    clock.offset, clock.frozen = clock() - clock.start, True  # windows must not age mid-test
    token = await api.token()
    truth = api.server.truth(api.yesterday)
    titles = {r["video_title"] for r in truth}
    assert "'); DROP TABLE video_daily_earnings;--" in titles
    assert any(len(t.encode("utf-8", "surrogatepass")) > 2000 for t in titles)
    assert any("\\" in t and '"' in t for t in titles)
    got: list[dict] = []
    start = api.server.sandbox.dataset.reach_start()
    for offset in range(0, 90, 30):
        resp = await api.daily(
            token,
            page_size=10000,
            video_publish_start_time=start + offset * DAY,
            video_publish_end_time=min(start + (offset + 30) * DAY - 1, api.now),
        )
        got.extend(snake(r) for r in resp.json["data"]["video_daily_data_list"])
    assert {r["video_title"] for r in got} == titles


async def test_same_seed_same_data(make_sandbox):
    """Two sandboxes with the same seed and clock hold identical data."""
    one = await make_sandbox(seed=11)
    two = await make_sandbox(seed=11)
    other = await make_sandbox(seed=12)
    day = dt.date(2026, 3, 14)
    assert one.truth(day) == two.truth(day)
    assert one.truth(day) != other.truth(day)


VALIDATION_CASES = [
    ({"billing_date": ...}, 28001007),
    ({"page_num": ...}, 28001007),
    ({"page_size": ...}, 28001007),
    ({"video_publish_start_time": ...}, 28001007),
    ({"video_publish_end_time": ...}, 28001007),
    ({"billing_date": 20260314}, 28001007),
    ({"billing_date": "2026/03/14"}, 28001007),
    ({"billing_date": "2026-02-30"}, 28001007),
    ({"page_num": "1"}, 28001007),
    ({"page_num": 1.0}, 28001007),
    ({"page_num": True}, 28001007),
    ({"page_size": "10"}, 28001007),
    ({"video_publish_start_time": "1700000000"}, 28001007),
    ({"video_publish_end_time": 1.5e9}, 28001007),
    ({"douyin_id": 123}, 28001007),
    ({"agency_client_key": ["x"]}, 28001007),
    ({"page_num": 0}, 28001007),
    ({"page_num": -1}, 28001007),
    ({"page_size": 0}, 28001007),
    ({"page_size": 10001}, 28013010),
    ({"page_size": 10000}, 0),
]


@pytest.mark.parametrize(("fields", "code"), VALIDATION_CASES)
async def test_field_validation(api, clock, fields, code):
    """Each missing, mistyped or out-of-range field answers its documented code."""
    clock.frozen = True
    resp = await api.daily(await api.token(), **fields)
    assert resp.status == 200
    assert resp.json["err_no"] == code
    if code:
        assert set(resp.json) == {"err_no", "err_msg", "log_id"} and resp.json["err_msg"]


async def test_time_window_validation(api, clock):
    """start > end and spans over 30 days give 28001007; a start before now - 90 days 28013009."""
    clock.frozen = True
    token = await api.token()
    now = api.now

    async def code(start: int, end: int) -> int:
        resp = await api.daily(token, video_publish_start_time=start, video_publish_end_time=end)
        return int(resp.json["err_no"])

    assert await code(now - 10, now - 11) == 28001007
    assert await code(now - 30 * DAY, now) == 0
    assert await code(now - 30 * DAY - 1, now) == 28001007
    reach = math.ceil(clock() - 90 * DAY)
    assert await code(reach, reach + 10) == 0
    assert await code(reach - 1, reach + 10) == 28013009


async def test_malformed_bodies_are_invalid_parameters(api):
    """A body that is not JSON, or not a JSON object, answers 28001007."""
    token = await api.token()
    for raw in (b"", b"{", b"[]", b'"x"', b"null"):
        resp = await api.post(api.DAILY, raw=raw, headers={"access-token": token})
        assert resp.json["err_no"] == 28001007, raw


async def test_capability_missing_gives_28001018(make_sandbox, make_api):
    """An app without the data-analysis capability answers 28001018."""
    api = make_api(await make_sandbox(capability=False))
    assert (await api.daily(await api.token())).json["err_no"] == 28001018
