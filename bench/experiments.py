"""Engine changes tried in the benchmark's scenario process only (`python -m bench --patch`),
to measure what each would buy before proposing it for `sync/` (which bench/ does not edit).

* typed-decode: msgspec decodes the page straight into typed structs (PascalCase rows with the
  documented fields), and the mapper builds records from them without the per-key dict work.
  Any page it is not sure of (an unknown key, snake_case, a lone surrogate, a wrong type) goes
  the engine's own way, so the records are the same.
* raw-stage: the staging table holds publish_time as Unix seconds (bigint) and expected_profit
  as text; a temporary view converts them for the unchanged merge. asyncpg's binary COPY spends
  ~1 µs per timestamptz and ~1.4 µs per numeric value, the mapper ~0.3 µs per datetime.
* plain-insert: a partition with no stored row in its window is inserted with a plain INSERT
  (in a savepoint, falling back to the merge on a unique violation) instead of the full merge.
* no-nestloop: `SET LOCAL enable_nestloop = off` before the merge. When the statistics say the
  table (or the billing date) is nearly empty, the UPDATE and DELETE of the merge can be planned
  as a nested loop that rescans the whole `work` CTE for every stored row of the date: quadratic,
  minutes per partition. Hash joins keep it linear whatever the statistics say.
* queue-1, queue-4: 1 or 4 decoded pages queued per partition instead of 2
  (sync.fetcher.PAGE_QUEUE_DEPTH): memory against fetchers blocked behind a busy writer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from bench import store_patches

PATCHES = ("typed-decode", "raw-stage", "plain-insert", "no-nestloop", "queue-1", "queue-4")
_PUBLISH_MAX = 253402300799


class Item(
    msgspec.Struct,
    kw_only=True,
    forbid_unknown_fields=True,
    gc=False,
    rename={
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
    },
):
    """One row as the docs' sample sends it; the fields in record order."""

    video_id: int
    task_id: int
    douyin_id: str | None = None
    author: str | None = None
    client_name: str | None = None
    micro_app_title: str | None = None
    task_name: str | None = None
    video_title: str | None = None
    video_link: str | None = None
    publish_time: int
    date: str
    active_cnt_1d: int
    gmv_1d: int
    refund_gmv_1d: int
    billing_gmv_1d: int
    billing_refund_gmv_1d: int
    ad_share_cost_1d: int
    feed_ad_share_cost_1d: int
    expected_profit: Decimal


class _Data(msgspec.Struct, gc=False):
    video_daily_data_list: list[Item] | None = None


class _Envelope(msgspec.Struct, gc=False):
    err_no: int
    log_id: str | None = None
    data: _Data | None = None


_DECODER = msgspec.json.Decoder(_Envelope)


class TypedItems(list[Item]):
    """A page's rows decoded as `Item`s (the engine's map_page is given their dicts)."""


def typed_parse(original: Callable[[bytes], Any], page_type: type) -> Callable[[bytes], Any]:
    def parse(body: bytes) -> Any:
        try:
            env = _DECODER.decode(body)
        except msgspec.DecodeError:  # ValidationError included
            return original(body)
        if env.err_no != 0 or env.data is None:
            return original(body)  # its errors say what is wrong
        items = TypedItems(env.data.video_daily_data_list or ())
        return page_type(items, env.log_id, len(body))

    return parse


def _fast(item: Item, billing_date: dt.date, iso: str, raw: bool) -> tuple[Any, ...] | None:
    """The record sync.mapper makes of a row; None when the row needs its careful path."""
    vid, tid, t0, t1, t2, t3, t4, t5, t6, pt, dd, f0, f1, f2, f3, f4, f5, f6, ep = (
        msgspec.structs.astuple(item)
    )
    if (
        (vid | tid | f0 | f1 | f2 | f3 | f4 | f5 | f6) >> 63
        or dd != iso
        or not 0 <= pt <= _PUBLISH_MAX
        or not ep.is_finite()
        or ep.is_signed()
    ):
        return None
    try:
        text = "".join((t0, t1, t2, t3, t4, t5, t6))
    except TypeError:  # a null text
        text = "".join(filter(None, (t0, t1, t2, t3, t4, t5, t6)))
    if "\x00" in text:  # (msgspec refuses lone surrogates: no need to look for them)
        return None
    return (billing_date, vid, tid, t0, t1, t2, t3, t4, t5, t6,
            pt if raw else dt.datetime.fromtimestamp(pt, dt.UTC), billing_date,
            f0, f1, f2, f3, f4, f5, f6, str(ep) if raw else ep, None)  # fmt: skip


def typed_map(original: Callable[..., Any], page_type: type, raw: bool) -> Callable[..., Any]:
    """map_page for typed pages: the fast path per row, the engine's mapper for the rest
    (given as a snake_case dict, which it reads the same way)."""

    def map_page(items: object, billing_date: dt.date) -> Any:
        if type(items) is not TypedItems:
            return original(items, billing_date)
        iso = billing_date.isoformat()
        page = page_type([], 0, 0, [], 0)
        append = page.records.append
        for item in items:
            record = _fast(item, billing_date, iso, raw)
            if record is not None:
                append(record)
                continue
            slow = original([msgspec.structs.asdict(item)], billing_date)
            page.records.extend(
                map(store_patches.raw_record, slow.records) if raw else slow.records
            )
            page.rejected += slow.rejected
            page.sanitized += slow.sanitized
            page.anomalies.extend(slow.anomalies)
            page.anomaly_count += slow.anomaly_count
        return page

    return map_page


def install(names: Sequence[str]) -> None:
    """Apply the named patches (see PATCHES) in this process."""
    unknown = set(names) - set(PATCHES)
    if unknown:
        raise ValueError(f"unknown patches {sorted(unknown)}; known: {', '.join(PATCHES)}")
    from sync import client, engine, mapper, store
    from sync.schema import RECORD_COLUMNS, video_daily_earnings

    raw = "raw-stage" in names
    if (
        RECORD_COLUMNS.index("publish_time") != store_patches.PT
        or RECORD_COLUMNS.index("expected_profit") != store_patches.EP
    ):
        raise RuntimeError("bench.experiments is out of step with sync.schema.RECORD_COLUMNS")
    if "typed-decode" in names:
        parse = client.parse_daily_data
        client.parse_daily_data = typed_parse(parse, client.Page)  # type: ignore[assignment]
        original_map = getattr(engine, "map_page")  # noqa: B009 (not re-exported, on purpose)
        typed = typed_map(original_map, mapper.MappedPage, raw)
        setattr(engine, "map_page", typed)  # noqa: B010
    if raw:
        store._CREATE_STAGE = store_patches.raw_stage_sql(
            RECORD_COLUMNS, video_daily_earnings.name, store.STAGE_TABLE
        )
        opener = store.PartitionWriter.open.__func__  # type: ignore[attr-defined]

        async def open_raw(cls: Any, conn: Any) -> Any:
            writer = await opener(cls, conn)
            writer._apg = store_patches.RawCopy(writer._apg)
            return writer

        store.PartitionWriter.open = classmethod(open_raw)  # type: ignore[assignment]
    if "plain-insert" in names:
        merge = store_patches.plain_insert_merge(store.PartitionWriter.merge)
        store.PartitionWriter.merge = merge  # type: ignore[method-assign]
    for depth in (1, 4):
        if f"queue-{depth}" in names:
            from sync import fetcher

            fetcher.PAGE_QUEUE_DEPTH = depth
    if "no-nestloop" in names:
        guarded = store_patches.no_nestloop(store.PartitionWriter.merge)
        store.PartitionWriter.merge = guarded  # type: ignore[method-assign]
