"""Sliding-window request counting with an injected "now": pure arithmetic, no sleeping."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Counts requests at times t with t > now - window; every request is recorded.

    `hit(now)` answers whether the new request is over the limit (the window already held
    `limit` requests), and records it either way: rejected requests count too.
    """

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("need limit >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()
        self.peak = 0
        """The most requests seen within one window (including the one just recorded)."""

    def _expire(self, now: float) -> None:
        cutoff = now - self.window
        times = self._times
        while times and times[0] <= cutoff:
            times.popleft()

    def count(self, now: float) -> int:
        """Requests within the window ending at `now`."""
        self._expire(now)
        return len(self._times)

    def hit(self, now: float) -> bool:
        """Record a request at `now`; True when it is over the limit."""
        self._expire(now)
        over = len(self._times) >= self.limit
        self._times.append(now)
        self.peak = max(self.peak, len(self._times))
        return over

    def reset(self) -> None:
        self._times.clear()
        self.peak = 0
