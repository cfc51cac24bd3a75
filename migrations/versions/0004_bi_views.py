"""views for BI tools: amounts in yuan, daily totals per task, creator and video

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00

Views, not copies: they read video_daily_earnings when queried, so they are never stale and
cost no storage or sync time. Money columns are fen * 0.01: `numeric` with scale 2, exact (never
a float). ExpectedProfit keeps the platform's value as is: its unit is not documented. Each ID
also comes as text, because BI front ends written in JavaScript round 19-digit numbers.

Every view and column carries a COMMENT (Metabase shows them as descriptions). A later revision
that changes a view should use CREATE OR REPLACE VIEW where it can: it keeps the GRANTs a
read-only role was given (see the README's *Views for BI*).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (column, what it is, the fen column) for the money figures.
_MONEY = (
    ("gmv_yuan", "GMV of the day", "gmv_1d"),
    ("refund_gmv_yuan", "refunded GMV of the day", "refund_gmv_1d"),
    ("billing_gmv_yuan", "billable GMV of the day", "billing_gmv_1d"),
    ("billing_refund_gmv_yuan", "billable refunded GMV of the day", "billing_refund_gmv_1d"),
    ("ad_share_cost_yuan", "ad revenue share of the day", "ad_share_cost_1d"),
    ("feed_ad_share_cost_yuan", "feed ad revenue share of the day", "feed_ad_share_cost_1d"),
)
_YUAN = "in yuan, exact (numeric, 2 decimals: the platform's fen / 100)"
_PROFIT = (
    "ExpectedProfit (the creator's commission) exactly as the platform reports it; its unit "
    "is not documented, so it is not converted"
)
_APP = "the mini-app whose answer the rows came from (the apps file's id, or the client key)"
_DATE = "the billing date (China time)"
_ID_TEXT = "as text, for BI front ends that would round a 19-digit number"


def _money_rows() -> list[tuple[str, str, str]]:
    return [(name, f"{c} * 0.01", f"{what}, {_YUAN}") for name, what, c in _MONEY]


def _money_sums() -> list[tuple[str, str, str]]:
    return [(name, f"sum({c}) * 0.01", f"sum of the {what}, {_YUAN}") for name, what, c in _MONEY]


# Each view: (name, comment, [(column, expression, comment)], GROUP BY). The columns of a
# grouped view that are not aggregates are its GROUP BY, in that order.
_VIEWS: list[tuple[str, str, list[tuple[str, str, str]], str]] = [
    (
        "bi_earnings",
        "Every row of video_daily_earnings (billing date, video, task) with its amounts in "
        "yuan, for BI tools. A view: always current.",
        [
            ("app_id", "app_id", _APP),
            ("billing_date", "billing_date", _DATE),
            ("video_id", "video_id", "the video's ID (64-bit)"),
            ("video_id_text", "video_id::text", f"the video's ID {_ID_TEXT}"),
            ("task_id", "task_id", "the task's ID (64-bit)"),
            ("task_id_text", "task_id::text", f"the task's ID {_ID_TEXT}"),
            ("douyin_id", "douyin_id", "the creator's Douyin ID"),
            ("author", "author", "the creator's nickname"),
            ("client_name", "client_name", "the client (agency) name"),
            ("micro_app_title", "micro_app_title", "the mini-app's title"),
            ("task_name", "task_name", "the task's name"),
            ("video_title", "video_title", "the video's title"),
            ("video_link", "video_link", "the video's share link"),
            ("publish_time", "publish_time", "when the video was published"),
            ("data_date", "data_date", "the cut-off day of the figures (the platform's `date`)"),
            ("active_cnt_1d", "active_cnt_1d", "daily active users (a count, not money)"),
            *_money_rows(),
            ("expected_profit", "expected_profit", _PROFIT),
            ("last_synced_at", "last_synced_at", "when a sync last confirmed the row"),
        ],
        "",
    ),
    (
        "bi_task_daily",
        "Daily totals per app, billing date and task, amounts in yuan. A view: always current; "
        "filter on billing_date (and app_id) to read only those days.",
        [
            ("app_id", "app_id", _APP),
            ("billing_date", "billing_date", _DATE),
            ("task_id", "task_id", "the task's ID (64-bit)"),
            ("task_id_text", "task_id::text", f"the task's ID {_ID_TEXT}"),
            ("task_name", "max(task_name)", "the task's name (as that day's rows give it)"),
            ("videos", "count(*)", "videos with a row for the task that day"),
            ("creators", "count(DISTINCT douyin_id)", "distinct creators (Douyin IDs) among them"),
            ("active_cnt_1d", "sum(active_cnt_1d)", "sum of the rows' daily active users"),
            *_money_sums(),
            ("expected_profit", "sum(expected_profit)", f"sum of {_PROFIT}"),
        ],
        "app_id, billing_date, task_id",
    ),
    (
        "bi_creator_daily",
        "Daily totals per app, billing date and creator (Douyin ID), amounts in yuan. A view: "
        "always current; filter on billing_date (and app_id) to read only those days.",
        [
            ("app_id", "app_id", _APP),
            ("billing_date", "billing_date", _DATE),
            ("douyin_id", "douyin_id", "the creator's Douyin ID (null: rows without one)"),
            ("author", "max(author)", "the creator's nickname (as that day's rows give it)"),
            ("tasks", "count(DISTINCT task_id)", "distinct tasks the creator earned on that day"),
            ("videos", "count(DISTINCT video_id)", "distinct videos of the creator that day"),
            ("active_cnt_1d", "sum(active_cnt_1d)", "sum of the rows' daily active users"),
            *_money_sums(),
            ("expected_profit", "sum(expected_profit)", f"sum of {_PROFIT}"),
        ],
        "app_id, billing_date, douyin_id",
    ),
    (
        "bi_video_daily",
        "Daily totals per app, billing date and video (over the video's tasks), amounts in "
        "yuan. A view: always current; filter on billing_date (and app_id) to read only those "
        "days.",
        [
            ("app_id", "app_id", _APP),
            ("billing_date", "billing_date", _DATE),
            ("video_id", "video_id", "the video's ID (64-bit)"),
            ("video_id_text", "video_id::text", f"the video's ID {_ID_TEXT}"),
            ("douyin_id", "max(douyin_id)", "the creator's Douyin ID"),
            ("video_title", "max(video_title)", "the video's title (as that day's rows give it)"),
            ("tasks", "count(*)", "tasks the video earned for that day"),
            ("active_cnt_1d", "sum(active_cnt_1d)", "sum of the rows' daily active users"),
            *_money_sums(),
            ("expected_profit", "sum(expected_profit)", f"sum of {_PROFIT}"),
        ],
        "app_id, billing_date, video_id",
    ),
]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def upgrade() -> None:
    for name, comment, columns, group_by in _VIEWS:
        select = ",\n    ".join(f"{expr} AS {column}" for column, expr, _ in columns)
        grouped = f"\nGROUP BY {group_by}" if group_by else ""
        op.execute(
            f"CREATE VIEW {name} AS\nSELECT\n    {select}\nFROM video_daily_earnings{grouped}"
        )
        op.execute(f"COMMENT ON VIEW {name} IS {_quote(comment)}")
        for column, _, about in columns:
            op.execute(f"COMMENT ON COLUMN {name}.{column} IS {_quote(about)}")


def downgrade() -> None:
    for name, *_ in reversed(_VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
