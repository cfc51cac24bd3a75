"""The procrastinate app of a database: its connection, its queues and its task names.

procrastinate talks to PostgreSQL through psycopg 3, which takes a libpq conninfo, not our
SQLAlchemy URL: `conninfo` converts one into the other (the password goes only into the
conninfo handed to the pool, never into a message). Every connection of the queue has
`search_path` set to the schema migration 0005 put procrastinate's objects in.
"""

from __future__ import annotations

from typing import Any

from procrastinate import App, PsycopgConnector
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from sync.errors import SettingsError

SCHEMA = "procrastinate"  # where migrations/versions/0005_job_queue.py put the queue
SYNC_QUEUE = "sync"  # the sync jobs: every worker takes them
SCHEDULE_QUEUE = "schedule"  # the cron's ticks: only workers started with --schedule take them
SYNC_TASK = "taskbox.sync"
TICK_TASK = "taskbox.nightly_tick"

# libpq's names for what asyncpg's URL query may carry.
_QUERY_NAMES = {"ssl": "sslmode", "sslmode": "sslmode", "host": "host", "port": "port"}


def conninfo(url: str) -> str:
    """A libpq conninfo (key=value) for the database of `url` (postgresql[+asyncpg]://…, a
    socket directory in `?host=` as the embedded server's), with the queue's search_path."""
    try:
        parsed = make_url(url)
    except Exception:
        raise SettingsError(
            "DATABASE_URL: expected postgresql://user:password@host:port/db"
        ) from None
    params: dict[str, Any] = {
        "host": parsed.host,
        "port": parsed.port,
        "user": parsed.username,
        "password": parsed.password,
        "dbname": parsed.database,
    }
    for key, value in parsed.query.items():
        name = _QUERY_NAMES.get(key)
        if name is None:
            continue  # asyncpg's own options (prepared statement cache, …) mean nothing to libpq
        params[name] = value if isinstance(value, str) else value[0]
    params["options"] = f"-c search_path={SCHEMA}"
    params["application_name"] = "taskbox-sync queue"
    return make_conninfo(**{k: v for k, v in params.items() if v not in (None, "")})


def queue_app(url: str, *, pool_size: int = 4) -> App:
    """The procrastinate app on the database of `url` (open it with `open_async`); tasks are
    registered by the worker (`sync.queue.worker`), deferring needs only their names."""
    connector = PsycopgConnector(
        conninfo=conninfo(url), min_size=1, max_size=max(pool_size, 2), name="taskbox-queue"
    )
    return App(connector=connector)
