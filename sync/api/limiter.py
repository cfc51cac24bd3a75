"""The request-rate budget shared by every data request of a run.

The platform counts requests in any sliding second and refuses the 11th. The limiter enforces
that rule itself: a request goes only when the 10th request before it left at least a second
ago, plus a margin for the timing jitter between our clock and the server's. Unlike a leaky
bucket of capacity 1 (which must run below the limit and loses every moment the event loop is
late to wake it), the window ties each request only to the 10th before it, so a late wake-up
is not lost twice. (It is not made up either: the 10th request after a late one is as late.
Hence `lull`, which CPU-bound work may await so as not to hold up a request due to go.)
aiolimiter paces requests on top of it, a leaky bucket at the
window's mean rate with room for two: requests stay evenly spread (the start of a run is no
burst of ten), and a request that went late is followed at once by the next.

Requests take their turn in arrival order, not by their partition's place: with answers taking
0.5-3 s every partition's pages form a chain of sequential requests, and serving older partitions
first made the youngest start their chains late and end the run seconds after the last slot was
used (measured 16.6-17.9 s against 13.6 s for a 1 M-row backfill whose 106 calls need 10.9 s).

A request counts from when its bytes reach the socket (`Slot.went`), not from its turn here: on
Python < 3.12 aiohttp writes a request in a task of its own, which runs only once the event loop
has worked through the steps queued before it (decoding, mapping and COPY-encoding pages, up to
~25 ms each). Measured in the -slow benchmarks: bytes left a median 1 ms but up to 380 ms after
their turn, and every throttled answer the sandbox gave was an 11th request within a second of
departures, while our turns were all >= 1.030 s apart. Until it has left, a request counts as
leaving now: it cannot reach the platform any earlier, and the next may wait for it.

`spare` is for requests that may or may not be needed (the next page of a window, asked for
before the page before it came back): it returns only for a slot no waiting request takes.

A rate is whole requests a second, the platform's unit (`--qps 9.5` sends 9), or one request
per 1/qps seconds below 1. On a throttled answer the window stretches for a while.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

MARGIN = 0.03  # seconds added to each window: 30 ms of jitter between our clock and the server's
SLOWDOWN = 0.7  # factor applied to the rate after a throttled answer
RECOVERY_SECONDS = 10.0  # how long the slower rate lasts
SPARE_RECHECK = 0.02  # seconds between looks for a slot that would go unused


class Slot:
    """A request's place in the window: when it left (`left`), or, while it has not (`acquire`'s
    slots until the HTTP layer calls `went`), when its turn came."""

    __slots__ = ("at", "left")

    def __init__(self, at: float, *, left: bool = True) -> None:
        self.at = at
        self.left = left

    def went(self, at: float) -> None:
        """The request's bytes left at `at`."""
        self.at = max(self.at, at)
        self.left = True

    def when(self, now: float) -> float:
        """When it counts from, seen at `now`: a request that has not left leaves now at best."""
        return self.at if self.left else max(self.at, now)


class RequestLimiter:
    """`await limiter.acquire()` before each request; `throttled()` after a 28003018."""

    def __init__(
        self,
        qps: float,
        *,
        margin: float = MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if qps <= 0:
            raise ValueError(f"qps must be positive, got {qps}")
        self.qps = qps
        # Whole requests per second (the platform's unit), or one per 1/qps seconds below 1.
        self.count = max(1, int(qps))
        self._full_window = max(1.0, 1.0 / qps) + margin
        self._window = self._full_window
        self._clock = clock
        self._slow_until = 0.0
        # More than `count`: a slot moved late by its HTTP write can be among the newest.
        self._sent: collections.deque[Slot] = collections.deque(maxlen=4 * self.count)
        self._turn = asyncio.Lock()  # waiters take their turn in arrival order
        # Capacity 2 at the window's mean rate: smooth, yet one late wake-up is made up at once.
        self._pace = AsyncLimiter(2, 2 * self._full_window / self.count)
        self._asking = 0  # callers inside acquire()
        self._spare_turn = asyncio.Lock()  # callers of `spare`, one looking at a time
        self.acquired = 0

    @property
    def rate(self) -> float:
        """Requests per second currently allowed, on average."""
        return self.count / self._window

    def wait(self, now: float) -> float:
        """Seconds until a request may go at `now` (0: at once); reads no clock of its own."""
        if self._slow_until and now >= self._slow_until:
            self._slow_until = 0.0
            self._window = self._full_window
        if len(self._sent) < self.count:
            return 0.0
        # The count-th newest departure: slots may have moved out of order.
        oldest = sorted(slot.when(now) for slot in self._sent)[-self.count]
        return max(0.0, oldest + self._window - now)

    def sent(self, now: float, *, left: bool = True) -> Slot:
        """Record a request that goes at `now`; its slot may be moved later by `Slot.went`."""
        slot = Slot(now, left=left)
        self._sent.append(slot)
        self.acquired += 1
        return slot

    def idle(self) -> bool:
        """Whether a request could go now and none is waiting: a slot that would go unused."""
        return not self._asking and self.wait(self._clock()) <= 0 and self._pace.has_capacity()

    async def spare(self) -> None:
        """Wait for a slot that would go unused (`idle`), then `acquire` at once (without
        awaiting anything before it, or others may take the same slot). Callers take their turn
        in arrival order; only the first looks, every SPARE_RECHECK at most."""
        async with self._spare_turn:
            while not self.idle():
                # Not an event to wait on: a slot comes free with time, not with a call.
                delay = max(self.wait(self._clock()), SPARE_RECHECK)
                await asyncio.sleep(delay)

    async def lull(self, span: float = 0.05) -> None:
        """Return once no request is due to go within `span` seconds (waiting at most that
        long): CPU-bound work begun now would hold the event loop past its turn, and a request
        that goes late makes the 10th after it late too, a slot lost for good.

        A request whose turn came but whose bytes have not left yet (aiohttp writes them in a
        task of its own) is due now: the trace of *ceiling-slow* showed such requests leaving
        50-180 ms after their turn, behind a page's decoding or COPY begun in between."""
        deadline = self._clock() + span
        looks = 0
        while True:
            now = self._clock()
            if now >= deadline:
                return
            if self._unsent():
                # Its write is usually a step or two away in the loop's queue; past that (a
                # connection being opened, say), look every millisecond rather than spin.
                looks += 1
                await asyncio.sleep(0 if looks <= 3 else 0.001)
                continue
            if not self._asking:
                return
            due = self.wait(now)
            if due > span:
                return
            await asyncio.sleep(min(due, deadline - now) + 0.001)

    def _unsent(self) -> bool:
        """Whether a request whose turn came has not left yet."""
        return any(not slot.left for slot in self._sent)

    async def acquire(self) -> Slot:
        """Wait for a place in the window; the request should then go at once, and its HTTP
        layer call `went` on the slot when its bytes leave (`done` when it is over)."""
        self._asking += 1
        try:
            async with self._turn:  # only the holder sends
                delay = self.wait(self._clock())
                while delay > 0:
                    await asyncio.sleep(delay)
                    # Look again: a request on its way when we looked may have left since,
                    # later than it counted for then.
                    delay = self.wait(self._clock())
                await self._pace.acquire()
                return self.sent(self._clock(), left=False)
        finally:
            self._asking -= 1

    def done(self, slot: Slot) -> None:
        """The request is over: if its bytes never left (it failed before), count it from now."""
        if not slot.left:
            slot.went(self._clock())

    def throttled(self) -> None:
        """Slow down: the platform said we went too fast."""
        slowest = self.count / (self.qps / 10)
        self._window = min(self._window / SLOWDOWN, slowest)
        self._slow_until = self._clock() + RECOVERY_SECONDS
