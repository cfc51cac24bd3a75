"""The run's budget of rows in memory: pages read and decoded but not yet written.

An answer leases the rows its page is expected to hold once its headers are in and before its
body is read; the lease is resized to the page's real size when it is decoded and given back when
the writer has copied the page. So the budget bounds data held, not requests outstanding.

Why at the body and not when the request is sent: the platform answers in 0.5-3 s, and 10
requests a second need 5-30 outstanding (Little's law). Leased at sending, a 40,000-row budget
allowed four full-page requests outstanding, ~2.3 a second (measured: 0.19 of the QPS budget).
An unread body costs ~0.7 MB here: aiohttp stops reading a response past its buffer and TCP
holds the server back, so 36 connections' worth of waiting bodies stay under 30 MB.

Asking is gated too (`room_to_ask`): while `waiting_bodies` (8) answers already wait for rows,
the writers are the bottleneck and another request would only park one more body in a socket
(and, on a real platform, risk its send timeout). With slow answers bodies rarely wait and
nothing is held back (with 2 the gate shut on every burst of answers and lost ~10 % of the
requests); with instant answers it keeps asking at the writers' pace.

Waiting leases and asks are served in order of priority (the partition's place in the plan): with
fast answers, where the budget is what everyone waits on, older partitions finish first and their
merges spread over the run instead of piling up at its end. (The limiter itself serves requests
in arrival order: with 0.5-3 s answers, serving older partitions first there made the youngest
windows start their chains of pages late, 16.6-17.9 s against 13.6 s for a 1 M-row backfill.)

A lease never waits for more than the whole budget, and a page larger than its lease overdraws
instead of waiting: a page in hand is never blocked, so the budget cannot deadlock. (An answer to
a page asked for early leases only once the page before it came back full, or pages waiting for
their predecessors could hold the whole budget: see `sync.pipeline.fetcher`.) How many
partitions are under way at once is `sync.pipeline.starts`' business.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
from collections.abc import Callable

WAITING_BODIES = 8  # see the module docstring


class Lease:
    """Rows held for one page, from its request until the writer is done with it."""

    __slots__ = ("_budget", "rows")

    def __init__(self, budget: RowBudget, rows: int) -> None:
        self._budget: RowBudget | None = budget
        self.rows = rows

    def resize(self, rows: int) -> None:
        """The page arrived with `rows` rows: hold that many (more may overdraw the budget)."""
        if self._budget is not None:
            self._budget._adjust(rows - self.rows)
            self.rows = rows

    def release(self) -> None:
        """Give the rows back; later calls do nothing."""
        if self._budget is not None:
            self._budget._adjust(-self.rows)
            self._budget = None


class RowBudget:
    """At most `limit` rows leased at once (overdrafts aside); see the module docstring."""

    def __init__(self, limit: int, *, waiting_bodies: int | None = None) -> None:
        if limit < 1:
            raise ValueError(f"the row budget must be at least 1, got {limit}")
        self.limit = limit
        self.used = 0
        self.peak = 0
        # Asks pause while this many leases wait.
        self.waiting_bodies = WAITING_BODIES if waiting_bodies is None else waiting_bodies
        self._order = itertools.count()
        self._waiting: list[tuple[int, int, Callable[[], int], asyncio.Future[int]]] = []
        self._asks: list[tuple[int, int, asyncio.Future[None]]] = []

    def __repr__(self) -> str:
        return f"RowBudget(limit={self.limit}, used={self.used}, waiting={self.waiting})"

    @property
    def waiting(self) -> int:
        """Leases waiting for rows (cancelled ones not counted)."""
        return sum(1 for entry in self._waiting if not entry[3].done())

    async def room_to_ask(self, *, priority: int = 0) -> None:
        """Wait until fewer than `waiting_bodies` leases wait, lower `priority` first."""
        if not self._asks and self.waiting < self.waiting_bodies:
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._asks, (priority, next(self._order), turn))
        self._let_ask()
        try:
            await turn
        except asyncio.CancelledError:
            turn.cancel()
            self._let_ask()
            raise

    def _let_ask(self) -> None:
        room = self.waiting_bodies - self.waiting
        while self._asks and room > 0:
            _, _, turn = heapq.heappop(self._asks)
            if not turn.done():
                turn.set_result(None)
                room -= 1

    async def lease(self, rows: Callable[[], int], *, priority: int = 0) -> Lease:
        """Wait until `rows()` (at most the whole budget) fit, lower `priority` served first.

        `rows` is asked when the lease's turn comes, so an estimate that improved meanwhile
        (the first answers of a run) is the one used.
        """
        if not self._waiting:
            wanted = self._clamp(rows())
            if self.used + wanted <= self.limit:
                self._adjust(wanted)
                return Lease(self, wanted)
        granted: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), rows, granted))
        try:
            return Lease(self, await granted)
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._adjust(-granted.result())  # granted as we were cancelled: give it back
            else:
                granted.cancel()  # _grant drops it
                self._grant()
                self._let_ask()
            raise

    def _clamp(self, rows: int) -> int:
        return max(0, min(rows, self.limit))

    def _adjust(self, delta: int) -> None:
        self.used += delta
        self.peak = max(self.peak, self.used)
        if delta < 0:
            self._grant()

    def _grant(self) -> None:
        while self._waiting:
            _, _, rows, granted = self._waiting[0]
            if granted.done():  # cancelled while waiting
                heapq.heappop(self._waiting)
                continue
            wanted = self._clamp(rows())
            if self.used + wanted > self.limit:
                break
            heapq.heappop(self._waiting)
            self.used += wanted
            self.peak = max(self.peak, self.used)
            granted.set_result(wanted)
        self._let_ask()


class FirstPageGuess:
    """How many rows a partition's first page will hold: the most of the last few first pages.

    Later pages follow a full page, so they are leased at the page size; first pages are what a
    run of many small partitions (a nightly's newest dates, slow answers) waits on. First-page
    leases still in flight are estimates: when an answer shows pages are smaller than thought,
    they shrink at once, so a run whose answers are slow and small does not wait its first
    seconds on leases sized for full pages.
    """

    __slots__ = ("_in_flight", "_recent", "page_size")

    def __init__(self, page_size: int, *, remember: int = 8) -> None:
        self.page_size = page_size
        self._recent: collections.deque[int] = collections.deque(maxlen=remember)
        self._in_flight: set[Lease] = set()

    def rows(self) -> int:
        # A floor: a run of empty first pages must not let every request in without a lease.
        return max(self._recent, default=self.page_size) or max(1, self.page_size // 10)

    def sent(self, lease: Lease) -> None:
        """A first page was requested under `lease`."""
        self._in_flight.add(lease)

    def arrived(self, lease: Lease, rows: int) -> None:
        """The first page of `lease` came with `rows` rows; shrink the other estimates."""
        self._in_flight.discard(lease)
        lease.resize(rows)
        self._recent.append(rows)
        guess = self.rows()
        for other in self._in_flight:
            if other.rows > guess:
                other.resize(guess)

    def forget(self, lease: Lease) -> None:
        """The request of `lease` ended without a page."""
        self._in_flight.discard(lease)
