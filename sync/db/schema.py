"""The tables, declared once with SQLAlchemy Core: Alembic compares migrations against this."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB

# Stable constraint names, so migrations can refer to them.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _tz(name: str, *, nullable: bool = True, now: bool = False) -> Column[object]:
    return Column(
        name, DateTime(timezone=True), nullable=nullable, server_default=func.now() if now else None
    )


# The columns of the figures, in the order the bulk path copies them.
FIGURE_COLUMNS = (
    "active_cnt_1d",
    "gmv_1d",
    "refund_gmv_1d",
    "billing_gmv_1d",
    "billing_refund_gmv_1d",
    "ad_share_cost_1d",
    "feed_ad_share_cost_1d",
)
TEXT_COLUMNS = (
    "douyin_id",
    "author",
    "client_name",
    "micro_app_title",
    "task_name",
    "video_title",
    "video_link",
)

video_daily_earnings = Table(
    "video_daily_earnings",
    metadata,
    Column("billing_date", Date, primary_key=True),
    Column("video_id", BigInteger, primary_key=True, autoincrement=False),
    Column("task_id", BigInteger, primary_key=True, autoincrement=False),
    # The app whose answer the row came from (a task belongs to one app, so the key needs no app).
    Column("app_id", Text, nullable=False),
    *(Column(name, Text) for name in TEXT_COLUMNS),
    _tz("publish_time"),
    Column("data_date", Date),
    *(Column(name, BigInteger) for name in FIGURE_COLUMNS),
    Column("expected_profit", Numeric),
    Column("extra", JSONB),
    # Default now(): a page copied straight into the table leaves them to the server.
    _tz("first_synced_at", nullable=False, now=True),
    _tz("last_synced_at", nullable=False, now=True),
    # When the platform answered with these values: of two partitions of one run that both saw a
    # row (its publish time moved between their windows), the later answer wins.
    _tz("answered_at"),
    # No foreign key on purpose: an RI trigger per merged row would halve the bulk path's speed.
    Column("last_run_id", BigInteger),
    comment="Daily earnings per billing date, video and task, as the platform reports them.",
)
# One app's partitions and status read its own rows only; the task's index serves BI by task.
# Both deduplicate (PostgreSQL's default; revision 0007 says why they no longer opt out).
Index(
    "ix_video_daily_earnings_app_id_billing_date",
    video_daily_earnings.c.app_id,
    video_daily_earnings.c.billing_date,
)
Index(
    "ix_video_daily_earnings_task_id_billing_date",
    video_daily_earnings.c.task_id,
    video_daily_earnings.c.billing_date,
)

ROW_COUNTERS = (
    "rows_fetched",
    "rows_inserted",
    "rows_updated",
    "rows_unchanged",
    "rows_removed",
    "rows_rejected",
    "rows_foreign",  # keys listed by the app's answer that another app's rows hold
)


def _counters(kind: type[Integer] | type[BigInteger], *names: str) -> list[Column[int]]:
    """Counters of runs and partitions: not null, zero until set."""
    return [Column(n, kind, nullable=False, server_default="0") for n in names]


sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("kind", Text, nullable=False),  # nightly | backfill
    Column("app_id", Text, nullable=False),  # the app (its client key), or 'access-token'
    Column("params", JSONB, nullable=False),
    Column("status", Text, nullable=False),  # running|succeeded|partial|failed|interrupted
    _tz("started_at", nullable=False),
    _tz("finished_at"),
    *_counters(
        Integer, "partitions_total", "partitions_done", "partitions_failed", "partitions_skipped"
    ),
    *_counters(BigInteger, *ROW_COUNTERS),
    *_counters(Integer, "api_calls", "throttled", "retries"),
    Column("qps_used", Numeric),
    Column("error", Text),
)
Index("ix_sync_runs_kind_started_at", sync_runs.c.kind, sync_runs.c.started_at)
Index("ix_sync_runs_app_id_id", sync_runs.c.app_id, sync_runs.c.id)

sync_partitions = Table(
    "sync_partitions",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("run_id", BigInteger, nullable=False),
    Column("app_id", Text, nullable=False),
    Column("billing_date", Date, nullable=False),
    _tz("window_start", nullable=False),
    _tz("window_end", nullable=False),
    Column("scope", Text, nullable=False, server_default=""),  # API filters, '' = everything
    Column("status", Text, nullable=False),  # running | done | failed
    *_counters(Integer, "attempts", "pages", "api_calls"),
    *_counters(BigInteger, *ROW_COUNTERS),
    *_counters(BigInteger, "rows_repeated", "texts_sanitized"),
    Column("last_log_id", Text),
    Column("err_no", BigInteger),
    Column("error", Text),
    _tz("started_at", nullable=False),
    _tz("finished_at"),
)
Index("ix_sync_partitions_run_id", sync_partitions.c.run_id)
Index(
    "ix_sync_partitions_app_id_billing_date_window_end",
    sync_partitions.c.app_id,
    sync_partitions.c.billing_date,
    sync_partitions.c.window_end,
)

talent_operations = Table(
    "talent_operations",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("app_id", Text),  # null only for operations recorded before apps were recorded
    Column("task_id", BigInteger, nullable=False),
    Column("douyin_id", Text, nullable=False),
    Column("operation", Text, nullable=False),  # add | cancel
    Column("ok", Boolean, nullable=False),
    Column("outcome", Text, nullable=False),  # the platform's update_result, or our reason
    Column("error_code", BigInteger),
    Column("log_id", Text),
    Column("third_appid", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index(
    "ix_talent_operations_task_id_created_at",
    talent_operations.c.task_id,
    talent_operations.c.created_at,
)

# A service provider's tokens (#15), sealed (Fernet, `sync.db.vault`): never stored in clear.
# One row per provider (component app): its component access token, shared by every process.
provider_components = Table(
    "provider_components",
    metadata,
    Column("component_appid", Text, primary_key=True),
    Column("access_token_sealed", Text),
    _tz("access_expires_at"),
    _tz("renewed_at"),
)
# One row per merchant app a provider syncs: the authorizer refresh token (every refresh returns
# a new one, stored before the new access token is used) and the current access token.
provider_authorizations = Table(
    "provider_authorizations",
    metadata,
    Column("app_id", Text, primary_key=True),
    Column("component_appid", Text, nullable=False),
    Column("refresh_token_sealed", Text, nullable=False),
    _tz("refresh_expires_at"),
    Column("access_token_sealed", Text),
    _tz("access_expires_at"),
    _tz("authorized_at", nullable=False),
    _tz("renewed_at"),
    Column("renewals", Integer, nullable=False, server_default="0"),
)

# The order of the values in a mapped record (`records.mapper`) and of the bulk COPY (`db.store`):
#   billing_date: date, video_id: int, task_id: int, the TEXT_COLUMNS: str | None,
#   publish_time: int (Unix seconds) | None, data_date: date | None, the FIGURE_COLUMNS:
#   int | None, expected_profit: int | str (exact decimal text) | None, extra: str (JSON text)
#   | None. publish_time is staged raw and converted by the merge (sync.db.store).
RECORD_COLUMNS = (
    "billing_date",
    "video_id",
    "task_id",
    *TEXT_COLUMNS,
    "publish_time",
    "data_date",
    *FIGURE_COLUMNS,
    "expected_profit",
    "extra",
)
KEY_COLUMNS = ("billing_date", "video_id", "task_id")
