"""How many partitions may be under way at once: as many as the answers' latency needs.

A partition's pages are a chain (page k+1 is asked for only when page k came back full, or early
as a guess: see `sync.pipeline.fetcher`), so one partition keeps about one request outstanding.
To use 10 requests a second, Little's law wants 10 x (latency + the time a page spends between
its answer and the next request) partitions under way. The two cases a run meets need very
different numbers:

* answers in ~50 ms (a platform close by, the lab): ~4. More partitions under way only spread
  the same pages over more of them, so they all finish late and their merges pile up at the end
  (measured on a re-sync with 10 % changed rows: 13.1 s with ~4, 14.9-16.9 s with all 27).
* answers in 0.5-3 s (the real platform): 20-30, and started early: a partition of four pages
  takes 4 x 1.75 s however fast the rest is, so one started late ends the run late (a 1 M-row
  backfill: 13.6 s with all 27 partitions started at once, 18.6 s when they were started only
  as the limiter ran short of requests).

So the gate lets a partition start while fewer than `target(now)` are under way, where the target
follows the latency seen: the mean of recent answers, or, while no answer has come yet, how long
the oldest request has been waiting (a lower bound that grows each moment the platform is slow).
The arithmetic (`Starts.target`) reads no clock of its own; `room` waits and looks again.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable

OVERHEAD = 0.3  # seconds a page spends between its answer and the next request: read, queue
HEADROOM = 1.5  # chains stall on slow answers and on the writers: start more than the mean needs
LEAST = 4  # partitions under way even when answers are instant (the writers' pipeline)
RECHECK = 0.05  # seconds between looks at a target that grows while requests wait
SMOOTHING = 0.2  # weight of the newest answer in the mean latency


class Start:
    """One partition under way, from its start until it needs no more requests."""

    __slots__ = ("_starts",)

    def __init__(self, starts: Starts) -> None:
        self._starts: Starts | None = starts  # already counted in `starts.under_way`

    def done(self) -> None:
        """The partition needs no more requests; later calls do nothing."""
        if self._starts is not None:
            self._starts.under_way -= 1
            self._starts._wake()
            self._starts = None


class Starts:
    """The gate partitions pass before their first request; see the module docstring."""

    def __init__(
        self,
        qps: float,
        most: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        least: int | None = None,
    ) -> None:
        self.qps = qps
        self.most = max(1, most)
        self.least = max(1, min(LEAST if least is None else least, self.most))
        self.under_way = 0
        self.latency: float | None = None  # mean seconds from sending to the answer's headers
        self._clock = clock
        self._outstanding: dict[int, float] = {}  # request ticket -> when it was sent
        self._tickets = itertools.count()
        self._order = itertools.count()
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []

    def __repr__(self) -> str:
        return f"Starts(under_way={self.under_way}, latency={self.latency}, most={self.most})"

    # -- the arithmetic -----------------------------------------------------------------

    def target(self, now: float) -> int:
        """Partitions that may be under way at `now`."""
        oldest = min(self._outstanding.values(), default=now)
        latency = max(self.latency or 0.0, now - oldest)
        wanted = math.ceil(self.qps * (latency + OVERHEAD) * HEADROOM)
        return max(self.least, min(self.most, wanted))

    def sent(self) -> int:
        """A request left; returns its ticket for `answered` or `forget`."""
        ticket = next(self._tickets)
        self._outstanding[ticket] = self._clock()
        return ticket

    def forget(self, ticket: int) -> None:
        """The request ended without an answer (an error, a retry, a stop)."""
        if self._outstanding.pop(ticket, None) is not None:
            self._wake()

    def answered(self, ticket: int) -> None:
        """The request's answer came: learn its latency."""
        sent = self._outstanding.pop(ticket, None)
        if sent is None:
            return
        took = self._clock() - sent
        self.latency = (
            took if self.latency is None else self.latency + SMOOTHING * (took - self.latency)
        )
        self._wake()

    # -- the waiting --------------------------------------------------------------------

    async def room(self, *, priority: int = 0) -> Start:
        """Wait until a partition may start, lower `priority` (place in the plan) first."""
        if not self._waiting and self.under_way < self.target(self._clock()):
            self.under_way += 1
            return Start(self)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), turn))
        try:
            while not turn.done():
                self._wake()
                if not turn.done():
                    # The target grows while requests wait unanswered: look again shortly.
                    await asyncio.wait({turn}, timeout=RECHECK)
        except asyncio.CancelledError:
            if turn.done():
                self.under_way -= 1  # let in as we were cancelled: pass the place on
                self._wake()
            else:
                turn.cancel()  # `_wake` drops it
            raise
        return Start(self)

    def _wake(self) -> None:
        target = self.target(self._clock())
        while self._waiting and self.under_way < target:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():  # skip starts cancelled meanwhile
                self.under_way += 1  # counted now, so one wake lets in no more than fit
                turn.set_result(None)
