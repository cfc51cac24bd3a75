"""The plain way, for comparison: one page after another, stdlib `json`, a dict per row and
SQLAlchemy's `insert().on_conflict_do_update()` executemany, one transaction per partition.

Self-contained on purpose (it shares no code with the engine but the table definition); polite
(never above the QPS, one request in flight) and correct enough to store the same rows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from decimal import Decimal
from typing import Any

import aiohttp
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import create_async_engine

from bench.instrument import Probe
from bench.measure import ScenarioSpec, Snapshot
from sync.db.schema import KEY_COLUMNS, RECORD_COLUMNS, video_daily_earnings

PATH = "/api/match/v2/taskbox/query_task_video_daily_data/"
TEXTS = {
    "douyin_id": "DouyinID",
    "author": "Author",
    "client_name": "ClientName",
    "micro_app_title": "MicroAppTitle",
    "task_name": "TaskName",
    "video_title": "VideoTitle",
    "video_link": "VideoLink",
}
FIGURES = {
    "active_cnt_1d": "ActiveCnt1d",
    "gmv_1d": "GMV1d",
    "refund_gmv_1d": "RefundGMV1d",
    "billing_gmv_1d": "BillingGMV1d",
    "billing_refund_gmv_1d": "BillingRefundGMV1d",
    "ad_share_cost_1d": "AdShareCost1d",
    "feed_ad_share_cost_1d": "FeedAdShareCost1d",
}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates -> "?"


def to_row(item: dict[str, Any], billing_date: dt.date, now: dt.datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "billing_date": billing_date,
        "app_id": "baseline",  # the first version knew one app; the table now needs it
        "video_id": int(item["VideoId"]),
        "task_id": int(item["TaskId"]),
        "publish_time": dt.datetime.fromtimestamp(int(item["PublishTime"]), dt.UTC),
        "data_date": dt.date.fromisoformat(item["date"]),
        "expected_profit": Decimal(item["ExpectedProfit"]),
        "extra": None,
        "first_synced_at": now,
        "last_synced_at": now,
    }
    for column, key in TEXTS.items():
        row[column] = _text(item.get(key))
    for column, key in FIGURES.items():
        row[column] = int(item[key])
    return row


def upsert() -> Any:
    stmt = insert(video_daily_earnings)
    changing = [c for c in RECORD_COLUMNS if c not in KEY_COLUMNS] + ["last_synced_at"]
    return stmt.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS), set_={c: stmt.excluded[c] for c in changing}
    )


async def _token(session: aiohttp.ClientSession, spec: ScenarioSpec) -> str:
    body = {
        "client_key": spec.client_key,
        "client_secret": spec.client_secret,
        "grant_type": "client_credential",
    }
    async with session.post(spec.base_url + "/oauth/client_token/", json=body) as resp:
        doc = json.loads(await resp.read())
    return str(doc["data"]["access_token"])


async def run_baseline(spec: ScenarioSpec) -> dict[str, Any]:
    probe = Probe()
    decode = probe.timed("decode", json.loads)
    statement = upsert()
    engine = create_async_engine(spec.database_url)
    rows = requests = 0
    partitions: list[dict[str, int]] = []
    gap = 1.0 / spec.qps
    last = 0.0
    async with aiohttp.ClientSession() as session:
        token = await _token(session, spec)
        before = Snapshot.take(spec)
        for p in spec.plan().partitions:
            async with engine.begin() as conn:
                page, fetched = 1, 0
                while True:
                    await asyncio.sleep(max(0.0, last + gap - time.monotonic()))
                    last = time.monotonic()
                    query = {
                        "billing_date": p.billing_date.isoformat(),
                        "page_num": page,
                        "page_size": spec.page_size,
                        "video_publish_start_time": p.window.start,
                        "video_publish_end_time": p.window.end,
                    }
                    headers = {"access-token": token}
                    async with session.post(spec.base_url + PATH, json=query, headers=headers) as r:
                        raw = await r.read()
                    requests += 1
                    doc = decode(raw, parse_float=Decimal)
                    if doc["err_no"] != 0:
                        raise RuntimeError(f"baseline: err_no {doc['err_no']}: {doc['err_msg']}")
                    items = doc["data"]["video_daily_data_list"] or []
                    start = time.thread_time()
                    now = dt.datetime.now(dt.UTC)
                    batch = [to_row(item, p.billing_date, now) for item in items]
                    probe.cpu["map"] += time.thread_time() - start
                    if batch:
                        await probe.timed_async("write", conn.execute)(statement, batch)
                    fetched += len(items)
                    if len(items) < spec.page_size:
                        break
                    page += 1
            partitions.append({"rows": fetched, "pages": page, "calls": page})
            rows += fetched
        after = Snapshot.take(spec)
    await engine.dispose()
    return {
        "status": "succeeded",
        "error": None,
        "wall": after.wall - before.wall,
        "rows": rows,
        "requests": requests,
        "throttled": 0,
        "retries": 0,
        "partitions": partitions,
        "cpu": after.cpu_since(before),
        "stages": probe.cpu,
        "in_flight_mean": 1.0,
        "in_flight_max": 1,
        "util_steady": None,
        "steady_s": 0.0,
        "head_s": 0.0,
        "tail_s": 0.0,
    }
