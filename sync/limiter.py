"""The request-rate budget shared by every data request of a run.

The platform counts requests in any sliding second and refuses the 11th. A leaky bucket of
capacity 1 never lets more than 1 + rate × T requests into a span of T seconds, so a rate a
little under the limit leaves room for the timing jitter between our clock and the server's.
On a throttled answer the rate drops for a while and then recovers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

HEADROOM = 0.96  # fraction of the budget used: 0.4 requests/s of slack for jitter at 10 QPS
SLOWDOWN = 0.7  # factor applied to the rate after a throttled answer
RECOVERY_SECONDS = 10.0  # how long the slower rate lasts


class RequestLimiter:
    """`async with limiter:` before each request; `throttled()` after a 28003018."""

    def __init__(
        self, qps: float, *, headroom: float = HEADROOM, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.qps = qps
        self._full_rate = qps * headroom
        self._clock = clock
        self._slow_until = 0.0
        self._limiter = self._make(self._full_rate)
        self.acquired = 0

    @staticmethod
    def _make(rate: float) -> AsyncLimiter:
        return AsyncLimiter(1, 1.0 / rate)

    @property
    def rate(self) -> float:
        """Requests per second currently allowed."""
        return 1.0 / float(self._limiter.time_period)

    async def acquire(self) -> None:
        if self._slow_until and self._clock() >= self._slow_until:
            self._slow_until = 0.0
            self._limiter = self._make(self._full_rate)
        await self._limiter.acquire()
        self.acquired += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        return None

    def throttled(self) -> None:
        """Slow down: the platform said we went too fast."""
        self._limiter = self._make(max(self.rate * SLOWDOWN, self.qps / 10))
        self._slow_until = self._clock() + RECOVERY_SECONDS
