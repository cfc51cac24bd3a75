"""The run lock of an app: a PostgreSQL session-level advisory lock, one run per app at a time.

The lock belongs to the database session, not to a transaction: `release_run_lock` gives it back,
and so does the end of the session. A pooled connection does not end its session when it is
returned to the pool, so release the lock on every path (or invalidate the connection).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

_LOCK_NAMESPACE = "taskbox-sync:"


def run_lock_key(app_id: str) -> int:
    """The advisory lock key of an app: the first 8 bytes of BLAKE2b, as a signed int64.

    Stable across processes and versions (unlike hash()), so two processes agree on it.
    """
    digest = hashlib.blake2b((_LOCK_NAMESPACE + app_id).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def acquire_run_lock(conn: AsyncConnection, app_id: str) -> bool:
    """Take the app's run lock for this session without waiting; False if another holds it."""
    got = await conn.scalar(select(func.pg_try_advisory_lock(run_lock_key(app_id))))
    return bool(got)


@dataclass(frozen=True, slots=True)
class Session:
    """A database session (backend), told apart from a later one that reuses its pid."""

    pid: int
    started: dt.datetime


async def current_session(conn: AsyncConnection) -> Session:
    row = (
        await conn.execute(
            text("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        )
    ).one()
    return Session(int(row.pid), row.backend_start)


async def take_over_run_lock(
    conn: AsyncConnection, app_id: str, old: Session, *, wait: float = 5.0
) -> bool:
    """Take the app's run lock that `old`, a session of this same run, may still hold: after a
    lost connection the server can keep the session (and its lock) until it notices the socket
    is gone. Ends `old` if it holds the lock; False if the lock is someone else's."""
    holders = await conn.execute(
        text(
            "SELECT a.pid, a.backend_start FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND (l.classid::bigint << 32) | l.objid::bigint = :key"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"key": run_lock_key(app_id)},
    )
    holder = holders.first()
    if holder is None or Session(int(holder.pid), holder.backend_start) != old:
        return await acquire_run_lock(conn, app_id)  # free, or another run's
    await conn.execute(select(func.pg_terminate_backend(old.pid)))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while not await acquire_run_lock(conn, app_id):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def release_run_lock(conn: AsyncConnection, app_id: str) -> bool:
    """Release the app's run lock held by this session; False if it did not hold it."""
    released = await conn.scalar(select(func.pg_advisory_unlock(run_lock_key(app_id))))
    return bool(released)


async def locks_held_elsewhere(conn: AsyncConnection) -> set[int]:
    """Keys of the advisory locks (int64 form) other sessions hold in this database."""
    # A bigint key shows as two 32-bit halves (classid high, objid low; objsubid 1). Shifting
    # in bigint wraps, which gives back the signed key.
    result = await conn.execute(
        text(
            "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks"
            " WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND pid <> pg_backend_pid()"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )
    return set(result.scalars())


async def lock_held_elsewhere(conn: AsyncConnection, app_id: str) -> bool:
    """Whether another session holds the app's run lock: a run of that app is in progress."""
    return run_lock_key(app_id) in await locks_held_elsewhere(conn)
