"""Waiting out a database outage: the backoff arithmetic (pure) and the gate that a run's workers
and fetchers consult.

    worker   since = await gate.ready()     waits while the database is away; past the limit
                                            it raises the final DatabaseUnavailable
             … DatabaseUnavailable …        gate.report(exc, since): the first report closes
                                            the gate and starts the one prober
    fetcher  await gate.check()             before each API request: raises at once while the
                                            gate is closed, so no call goes out while nothing
                                            can be written (the partition starts again later)
    prober   probe() with backoff, until it succeeds (the gate opens) or the limit passes
             (the gate fails: every waiter raises the final error)

`since` is the gate's generation when the caller's attempt began: an error from a connection
older than the last outage (found only after the database came back) closes nothing again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sync.errors import DatabaseUnavailable, TaskboxError

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_OUTAGE_TIMEOUT = 300.0  # seconds: longer than a managed failover (30-120 s)


@dataclass(frozen=True, slots=True)
class Backoff:
    """When to probe a database that went away, and how often to say so."""

    first: float = 0.5  # the pause before the second probe (the first one goes at once)
    factor: float = 2.0
    cap: float = 5.0  # the longest pause: the database is back at most this long unnoticed
    log_every: float = 10.0  # seconds between "still unavailable" log lines
    probe_limit: float = 10.0  # a probe that hangs (no RST from a dead host) is cut off

    def delay(self, tries: int) -> float:
        """The pause before probe number `tries` (0: the first, at once)."""
        if tries <= 0:
            return 0.0
        # The exponent is bounded so that a long limit never overflows a float.
        return min(self.cap, self.first * self.factor ** min(tries - 1, 64))

    def next_wait(self, tries: int, waited: float, limit: float) -> float | None:
        """The pause before the next probe, cut so the last probe falls on the limit; None once
        `waited` reached the limit (after at least one probe)."""
        if tries > 0 and waited >= limit:
            return None
        return max(0.0, min(self.delay(tries), limit - waited))

    def probe_timeout(self, waited: float, limit: float) -> float:
        """How long one probe may take: what is left of the limit, within [1, probe_limit]."""
        return min(self.probe_limit, max(1.0, limit - waited))

    def log_due(self, waited: float, logged: float) -> bool:
        """Whether to log again, `logged` being the wait at the last line."""
        return waited - logged >= self.log_every


class DatabaseGate:
    """Shared by one run (or one talents command): closed while the database is away.

    `probe` raises DatabaseUnavailable while the database is still away; returning means the
    work may go on (the engine's probe also takes its run lock back). Any other TaskboxError
    from it (another run took the lock) ends the wait as the gate's failure.
    """

    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        *,
        limit: float = DEFAULT_OUTAGE_TIMEOUT,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limit = limit
        self.backoff = backoff or Backoff()
        self.generation = 0  # counts outages met
        self.failure: BaseException | None = None  # why waiting ended without the database
        self.waited = 0.0  # seconds spent in outages that ended
        self._probe = probe
        self._clock = clock
        self._sleep = sleep
        self._open = asyncio.Event()
        self._open.set()
        self._reason = ""
        self._prober: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        """Whether an outage is being waited out now."""
        return not self._open.is_set()

    @property
    def reason(self) -> str:
        """The last reason the database gave (or failed to give) in the current outage."""
        return self._reason

    def report(self, exc: DatabaseUnavailable, since: int | None = None) -> None:
        """The database went away under work begun at generation `since` (None: now)."""
        if self.failure is not None or (since is not None and since != self.generation):
            return  # already given up, or this connection died in an outage already met
        self._reason = exc.reason
        if self.down:
            return
        self.generation += 1
        self._open.clear()
        log.warning(
            "database unavailable (%s); API calls paused, waiting up to %g s for it "
            "(--db-outage-timeout)",
            exc.reason,
            self.limit,
        )
        self._prober = asyncio.get_running_loop().create_task(self._wait_out())

    def fail(self, exc: BaseException) -> BaseException:
        """The run cannot go on (its run was taken over): waiters and the next steps raise `exc`,
        or the failure that came first, which is returned."""
        if self.failure is None:
            self.failure = exc
        self._open.set()
        return self.failure

    async def ready(self) -> int:
        """Wait while the database is away; the generation to pass to `report`."""
        await self._open.wait()
        if self.failure is not None:
            raise self.failure
        return self.generation

    async def check(self) -> None:
        """Raise at once while the database is away (the hook before each API request)."""
        if self.failure is not None:
            raise self.failure
        if self.down:
            raise DatabaseUnavailable(self._reason)

    async def run(self, step: Callable[[], Awaitable[T]]) -> T:
        """`step()`, again after each outage it meets, until it returns or the gate fails."""
        while True:
            since = await self.ready()
            try:
                return await step()
            except DatabaseUnavailable as exc:
                self.report(exc, since)

    async def close(self) -> None:
        """Stop probing (the run is over)."""
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
            self._prober = None

    async def _wait_out(self) -> None:
        started = self._clock()
        tries = 0
        logged = 0.0
        try:
            while True:
                waited = self._clock() - started
                pause = self.backoff.next_wait(tries, waited, self.limit)
                if pause is None:
                    self.failure = DatabaseUnavailable(
                        self._reason, waited=waited, limit=self.limit
                    )
                    return
                await self._sleep(pause)
                tries += 1
                waited = self._clock() - started
                try:
                    # asyncio.timeout, not wait_for: a cancellation is never swallowed
                    async with asyncio.timeout(self.backoff.probe_timeout(waited, self.limit)):
                        await self._probe()
                except DatabaseUnavailable as exc:
                    self._reason = exc.reason
                except TimeoutError:
                    self._reason = "no answer from the database"
                except TaskboxError as exc:  # back, but this run may not go on (lock taken)
                    self.failure = exc
                    return
                else:
                    waited = self._clock() - started
                    self.waited += waited
                    log.warning(
                        "database back after %.1f s; going on (partitions in flight start again)",
                        waited,
                    )
                    return
                waited = self._clock() - started
                if self.backoff.log_due(waited, logged):
                    logged = waited
                    log.warning(
                        "database still unavailable after %.0f s (waiting up to %g s): %s",
                        waited,
                        self.limit,
                        self._reason,
                    )
        except Exception as exc:  # a bug in a probe: stop the waiters with it, never hang them
            self.failure = exc
        finally:
            self._open.set()
