"""a service provider's tokens, sealed: component tokens and merchants' authorizer tokens

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 15:00:00

Provider mode (#15): a merchant's authorizer refresh token changes with every refresh and must be
kept, so it lives in the database, encrypted (Fernet) with a key from the environment; the
component token lives beside it so that every process shares one (fetching a new one retires
the previous after five minutes).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tz(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "provider_components",
        sa.Column("component_appid", sa.Text(), nullable=False),
        sa.Column("access_token_sealed", sa.Text(), nullable=True),
        _tz("access_expires_at"),
        _tz("renewed_at"),
        sa.PrimaryKeyConstraint("component_appid", name="pk_provider_components"),
    )
    op.create_table(
        "provider_authorizations",
        sa.Column("app_id", sa.Text(), nullable=False),
        sa.Column("component_appid", sa.Text(), nullable=False),
        sa.Column("refresh_token_sealed", sa.Text(), nullable=False),
        _tz("refresh_expires_at"),
        sa.Column("access_token_sealed", sa.Text(), nullable=True),
        _tz("access_expires_at"),
        _tz("authorized_at", nullable=False),
        _tz("renewed_at"),
        sa.Column("renewals", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("app_id", name="pk_provider_authorizations"),
    )


def downgrade() -> None:
    op.drop_table("provider_authorizations")
    op.drop_table("provider_components")
