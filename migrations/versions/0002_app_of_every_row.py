"""each row, run, partition and talent operation carries its app

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 12:10:00

Several apps share one database: every table gets the app (its client key) so that mirror
deletes, resume and status touch one app's rows only. Existing rows get the app of the run that
last wrote them; rows whose run is gone get the one app the ledger knows, if there is exactly one
(a database of one app, as every database before this revision was meant to be), else
'unknown': no app's sync deletes or moves them; each counts and reports their keys as another
app's (see `sync.db.store_sql`), so the operator can assign them with one UPDATE.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The one app the ledger knows, else 'unknown'.
_ONLY_APP = """
(SELECT CASE WHEN count(DISTINCT app_id) = 1 THEN min(app_id) ELSE 'unknown' END FROM sync_runs)
"""


def upgrade() -> None:
    op.alter_column("sync_runs", "app_key", new_column_name="app_id")
    op.create_index("ix_sync_runs_app_id_id", "sync_runs", ["app_id", "id"])

    op.add_column("sync_partitions", sa.Column("app_id", sa.Text(), nullable=True))
    op.execute(
        "UPDATE sync_partitions p SET app_id = r.app_id FROM sync_runs r WHERE r.id = p.run_id"
    )
    op.execute(f"UPDATE sync_partitions SET app_id = {_ONLY_APP} WHERE app_id IS NULL")
    op.alter_column("sync_partitions", "app_id", nullable=False)
    op.drop_index("ix_sync_partitions_billing_date_window_end", table_name="sync_partitions")
    op.create_index(
        "ix_sync_partitions_app_id_billing_date_window_end",
        "sync_partitions",
        ["app_id", "billing_date", "window_end"],
    )

    op.add_column("video_daily_earnings", sa.Column("app_id", sa.Text(), nullable=True))
    op.add_column(
        "video_daily_earnings", sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute(
        "UPDATE video_daily_earnings v SET app_id = r.app_id FROM sync_runs r"
        " WHERE r.id = v.last_run_id"
    )
    op.execute(f"UPDATE video_daily_earnings SET app_id = {_ONLY_APP} WHERE app_id IS NULL")
    op.alter_column("video_daily_earnings", "app_id", nullable=False)
    # Few keys, long posting lists: see sync.db.schema (the index keeps what it holds).
    op.execute(
        "ALTER INDEX ix_video_daily_earnings_task_id_billing_date SET (deduplicate_items = off)"
    )
    op.create_index(
        "ix_video_daily_earnings_app_id_billing_date",
        "video_daily_earnings",
        ["app_id", "billing_date"],
        postgresql_with={"deduplicate_items": "off"},
    )

    for table in ("sync_runs", "sync_partitions"):
        op.add_column(
            table,
            sa.Column("rows_foreign", sa.BigInteger(), server_default="0", nullable=False),
        )

    op.add_column("talent_operations", sa.Column("app_id", sa.Text(), nullable=True))
    op.execute(
        f"UPDATE talent_operations SET app_id = {_ONLY_APP} WHERE EXISTS (SELECT 1 FROM sync_runs)"
    )
    op.execute("UPDATE talent_operations SET app_id = NULL WHERE app_id = 'unknown'")


def downgrade() -> None:
    for table in ("sync_runs", "sync_partitions"):
        op.drop_column(table, "rows_foreign")
    op.drop_column("talent_operations", "app_id")
    op.drop_index("ix_video_daily_earnings_app_id_billing_date", table_name="video_daily_earnings")
    op.execute("ALTER INDEX ix_video_daily_earnings_task_id_billing_date RESET (deduplicate_items)")
    op.drop_column("video_daily_earnings", "answered_at")
    op.drop_column("video_daily_earnings", "app_id")
    op.drop_index("ix_sync_partitions_app_id_billing_date_window_end", table_name="sync_partitions")
    op.create_index(
        "ix_sync_partitions_billing_date_window_end",
        "sync_partitions",
        ["billing_date", "window_end"],
    )
    op.drop_column("sync_partitions", "app_id")
    op.drop_index("ix_sync_runs_app_id_id", table_name="sync_runs")
    op.alter_column("sync_runs", "app_id", new_column_name="app_key")
