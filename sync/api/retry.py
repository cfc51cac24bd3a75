"""How long to wait before trying again: exponential backoff with full jitter, bounded."""

from __future__ import annotations

import dataclasses
import random


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts per request and the backoff between them (seconds)."""

    attempts: int = 8
    base: float = 0.25
    cap: float = 20.0
    throttle_wait: float = 1.0  # after 28003018: one sliding second must pass

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base × 2^(attempt-1))]."""
        return rng.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
