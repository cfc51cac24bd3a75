"""the app and task indexes deduplicate again

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 09:00:00

Revision 0002 turned deduplication off on the two secondary indexes of video_daily_earnings,
measured then as cheaper to insert into. Measured again with the engine of today (a page copied
in video order, four apps at once, 4 M rows on the project's 2-core box), deduplicated indexes
cost the server less: 6.3-7.4 us a row against 7.0-8.5 in a bare COPY test, and 30.8-30.9
CPU-s against 32.0-41.9 for the benchmark's *fleet-big*; and they are several times smaller (every
row of an app and date, or of a task and date, shares one key). Only the option changes: existing
entries are merged as their pages fill, no index is rebuilt here.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    "ix_video_daily_earnings_app_id_billing_date",
    "ix_video_daily_earnings_task_id_billing_date",
)


def upgrade() -> None:
    for index in _INDEXES:
        op.execute(f"ALTER INDEX {index} RESET (deduplicate_items)")


def downgrade() -> None:
    for index in _INDEXES:
        op.execute(f"ALTER INDEX {index} SET (deduplicate_items = off)")
