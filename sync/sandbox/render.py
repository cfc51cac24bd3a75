"""Row JSON rendering in three pre-rendered parts: figures + the video's static fields + date.

A row is `figures_part + static_part + date_part`: bytes concatenation only, no formatting per row.
Keys keep the docs' names; their order groups the daily figures first (JSON objects are unordered).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import msgspec

from sync.sandbox.catalog import Video
from sync.sandbox.figures import Figures, figure_pool, profit_json, profit_value

PASCAL = (
    "ActiveCnt1d",
    "AdShareCost1d",
    "Author",
    "BillingGMV1d",
    "BillingRefundGMV1d",
    "ClientName",
    "FeedAdShareCost1d",
    "DouyinID",
    "ExpectedProfit",
    "GMV1d",
    "MicroAppTitle",
    "PublishTime",
    "RefundGMV1d",
    "TaskId",
    "TaskName",
    "VideoId",
    "VideoLink",
    "VideoTitle",
    "date",
)
SNAKE = (
    "active_cnt_1d",
    "ad_share_cost_1d",
    "author",
    "billing_gmv_1d",
    "billing_refund_gmv_1d",
    "client_name",
    "feed_ad_share_cost_1d",
    "douyin_id",
    "expected_profit",
    "gmv_1d",
    "micro_app_title",
    "publish_time",
    "refund_gmv_1d",
    "task_id",
    "task_name",
    "video_id",
    "video_link",
    "video_title",
    "date",
)
PASCAL_TO_SNAKE = dict(zip(PASCAL, SNAKE, strict=True))


FIGURE_FIELDS = (0, 1, 3, 4, 6, 8, 9, 12)
"""Indexes (into PASCAL/SNAKE) of the daily figures, in `Figures` order."""
STATIC_FIELDS = (2, 5, 7, 10, 11, 13, 14, 15, 16, 17)


def _text(value: str) -> bytes:
    try:
        return msgspec.json.encode(value)
    except UnicodeEncodeError:  # a lone surrogate, as some real titles carry: send it escaped
        return json.dumps(value).encode()


def _key(index: int, snake_case: bool) -> bytes:
    return b'"' + (SNAKE if snake_case else PASCAL)[index].encode() + b'":'


def _figures_template(keys: tuple[str, ...]) -> bytes:
    holes = [b'"' + keys[i].encode() + (b'":%b' if i == 8 else b'":%d') for i in FIGURE_FIELDS]
    return b"{" + b",".join(holes) + b","


_FIGURES_TEMPLATES = {False: _figures_template(PASCAL), True: _figures_template(SNAKE)}


def figures_part(figures: Figures, *, snake_case: bool) -> bytes:
    """`{"ActiveCnt1d":…,…,"RefundGMV1d":…,`: the opening of a row, its daily figures."""
    active, ad, bgmv, brefund, feed, profit, gmv, refund = figures
    return _FIGURES_TEMPLATES[snake_case] % (
        active,
        ad,
        bgmv,
        brefund,
        feed,
        profit_json(profit),
        gmv,
        refund,
    )


@functools.lru_cache(maxsize=8)
def pool_parts(seed: int, snake_case: bool) -> tuple[list[Figures], list[bytes]]:
    """The seed's figure pool and each set's rendered `figures_part` (shared by sandboxes)."""
    pool = figure_pool(seed)
    return pool, [figures_part(f, snake_case=snake_case) for f in pool]


def static_part(video: Video, *, snake_case: bool) -> bytes:
    """`"Author":…,…,"VideoTitle":…`: the fields of a row that never change."""
    values = (
        _text(video.creator.author),
        _text(video.agency.name if video.agency else ""),
        _text(video.creator.douyin_id),
        _text(video.task.micro_app_title),
        b"%d" % video.publish_time,
        b"%d" % video.task.task_id,
        _text(video.task.name),
        b"%d" % video.video_id,
        _text(video.link),
        _text(video.title),
    )
    return b",".join(_key(i, snake_case) + v for i, v in zip(STATIC_FIELDS, values, strict=True))


def date_part(date: str, *, snake_case: bool) -> bytes:
    """`,"date":"YYYY-MM-DD"}`: the close of a row."""
    return b"," + _key(18, snake_case) + _text(date) + b"}"


def row_dict(video: Video, figures: Figures, date: str) -> dict[str, Any]:
    """The row as exact Python values, snake_case keys (what a correct client stores)."""
    active, ad, bgmv, brefund, feed, profit, gmv, refund = figures
    return {
        "active_cnt_1d": active,
        "ad_share_cost_1d": ad,
        "author": video.creator.author,
        "billing_gmv_1d": bgmv,
        "billing_refund_gmv_1d": brefund,
        "client_name": video.agency.name if video.agency else "",
        "feed_ad_share_cost_1d": feed,
        "douyin_id": video.creator.douyin_id,
        "expected_profit": profit_value(profit),
        "gmv_1d": gmv,
        "micro_app_title": video.task.micro_app_title,
        "publish_time": video.publish_time,
        "refund_gmv_1d": refund,
        "task_id": video.task.task_id,
        "task_name": video.task.name,
        "video_id": video.video_id,
        "video_link": video.link,
        "video_title": video.title,
        "date": date,
    }
