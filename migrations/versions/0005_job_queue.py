"""the job queue: procrastinate's tables and functions, in a schema of their own

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00

`taskbox-sync worker` takes sync jobs from a queue in this database (issue #16). The queue is
procrastinate's: its schema SQL (the one of the procrastinate version pyproject.toml pins, read
from the installed package) runs with `search_path` set to the schema `procrastinate`, so its
tables, types and functions live there, apart from ours (the models-vs-migrations check sees
only the public schema), and its connections name that schema in their `search_path`
(`sync.queue.connect`). Beside them one table of ours, `taskbox_job_notes`: the worker that took
a job last and why its last attempt failed, which `status` shows (procrastinate keeps neither).
A procrastinate upgrade that changes its schema comes with a migration of ours that applies its
migration scripts in the same way. Downgrade drops the schema and everything in it.
"""

from collections.abc import Sequence

from alembic import context, op
from procrastinate.schema import SchemaManager
from sqlalchemy import text
from sqlalchemy.util import await_only

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "procrastinate"  # also sync.queue.connect.SCHEMA (a migration imports nothing of sync)

NOTES = """
CREATE TABLE taskbox_job_notes (
    job_id bigint PRIMARY KEY REFERENCES procrastinate_jobs (id) ON DELETE CASCADE,
    worker text,
    error text,
    noted_at timestamp with time zone NOT NULL DEFAULT now()
);
"""


def _script(sql: str) -> None:
    """Run a script of many statements (functions with $$ bodies): asyncpg prepares every
    statement SQLAlchemy sends, which allows one only, so the script goes to the driver's
    own simple-query call."""
    if context.is_offline_mode():
        op.execute(sql)
        return
    bind = op.get_bind()
    raw = bind.connection.driver_connection
    if type(raw).__module__.startswith("asyncpg"):
        await_only(raw.execute(sql))
    else:  # a synchronous driver runs a script as one call
        bind.exec_driver_sql(sql)


def upgrade() -> None:
    op.execute(f"CREATE SCHEMA {SCHEMA}")
    if context.is_offline_mode():
        op.execute(f"SET LOCAL search_path TO {SCHEMA}")
    else:
        op.get_bind().execute(
            text("SELECT set_config('search_path', :path, true)"), {"path": SCHEMA}
        )
    _script(SchemaManager.get_schema())
    _script(NOTES)
    # Back to the session's own search_path for whatever this transaction does next.
    op.execute("SET LOCAL search_path TO DEFAULT")


def downgrade() -> None:
    op.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
