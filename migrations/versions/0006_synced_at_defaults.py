"""first_synced_at and last_synced_at default to now()

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00

The bulk path copies a page of a scope with nothing stored straight into video_daily_earnings
(`sync.db.store`); the two columns then take the transaction's time from the server, as the
INSERT … SELECT of the merge sets them (`now()`), instead of a value encoded for every row.
Only the defaults change: no row is rewritten.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("first_synced_at", "last_synced_at")


def upgrade() -> None:
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE video_daily_earnings ALTER COLUMN {column} SET DEFAULT now()")


def downgrade() -> None:
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE video_daily_earnings ALTER COLUMN {column} DROP DEFAULT")
