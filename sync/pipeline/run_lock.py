"""The app's run lock, held by a run on a connection of its own for the run's whole length.

The lock is PostgreSQL's session-level advisory lock (`locks.acquire_run_lock`): one run per app
at a time. It dies with its session, so after a database outage a run takes it again on a new
connection, unless another run took it meanwhile. The lock's connection can also die alone (an
idle-session timeout, a proxy, pg_terminate_backend): `watch` pings it and reports the loss,
which the run treats as an outage: it pauses, takes the lock back (`keep`) or stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sync.db import database, locks
from sync.errors import RunLockedError


class RunLock:
    """`take()` at the start, `keep(run_id)` after an outage, `release()` at the end."""

    def __init__(self, db: AsyncEngine, app_id: str) -> None:
        self.db = db
        self.app_id = app_id
        self.conn: AsyncConnection | None = None  # holds the lock (its session)
        self._session: locks.Session | None = None
        self._watching = False

    @property
    def held(self) -> bool:
        return self.conn is not None

    async def take(self) -> None:
        """The app's run lock, on a connection kept for the run (RunLockedError if taken)."""
        async with database.translate_errors():
            conn = await self.db.connect()
            async with database.translate_errors(conn):
                locked = await locks.acquire_run_lock(conn, self.app_id)
                holder = await locks.current_session(conn)
                await conn.commit()
        if not locked:
            await conn.close()
            raise RunLockedError(
                f"another taskbox-sync run for app {self.app_id} is in progress; "
                "try again when it has finished"
            )
        self.conn, self._session = conn, holder

    async def watch(
        self, lost: Callable[[], None], *, paused: Callable[[], bool], interval: float = 1.0
    ) -> None:
        """Until `stop_watching` (or cancelled): ping the lock's connection every `interval`
        seconds and call `lost()` when it no longer answers (not while `paused()`: an outage is
        being waited out, and `keep` looks at the connection then).

        The flag, not only the cancellation, ends the loop: a cancellation that lands just as a
        ping answers can be lost (asyncio.wait_for in 3.11 returns the result instead), and a
        loop that only stops when cancelled would then run forever, its run waiting on it."""
        self._watching = True
        while self._still_watching():
            await asyncio.sleep(interval)
            if not self._still_watching():
                return
            conn = self.conn
            if conn is None or paused():
                continue
            if not await _alive(conn) and self.conn is conn and not paused():
                lost()

    def stop_watching(self) -> None:
        self._watching = False

    def _still_watching(self) -> bool:
        return self._watching

    async def keep(self, run_id: int) -> None:
        """After an outage: keep the lock's connection if it lived through it, else take the
        lock again on a new one (a restarted server forgot it with the session).

        If another run took the lock meanwhile, this run stops with RunLockedError (exit 75,
        as for a run refused at start): that run marked this one 'interrupted' when it began
        and owns the app's ledger now; it, or the next run, resumes the work.
        """
        old = self.conn
        assert old is not None
        if await _alive(old):
            return
        self.conn = None
        await database.discard(old)
        async with database.translate_errors():
            conn = await self.db.connect()
            async with database.translate_errors(conn):
                if self._session is not None:
                    locked = await locks.take_over_run_lock(conn, self.app_id, self._session)
                else:
                    locked = await locks.acquire_run_lock(conn, self.app_id)
                holder = await locks.current_session(conn)
                await conn.commit()
        if not locked:
            await database.discard(conn)
            this = f"run {run_id} stopped (interrupted)" if run_id else "this run stopped"
            raise RunLockedError(
                f"another taskbox-sync run for app {self.app_id} took the run lock while the "
                f"database was unavailable; {this} and that run owns the work now: run this "
                "command again when it has finished"
            )
        self.conn, self._session = conn, holder

    async def release(self) -> None:
        """Give the lock back; a connection in doubt is discarded so the lock dies with it."""
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            await conn.rollback()
            await locks.release_run_lock(conn, self.app_id)
            await conn.commit()
            await conn.close()
        except Exception:  # the database went away: closing the session frees the lock anyway
            await database.discard(conn)


async def _alive(conn: AsyncConnection) -> bool:
    """Whether a connection still answers (within 2 s)."""
    if conn.closed or conn.invalidated:
        return False
    try:
        async with asyncio.timeout(2.0):  # unlike wait_for, never swallows a cancellation
            await conn.scalar(text("SELECT 1"))
            await conn.commit()
    except Exception:
        return False
    return True
