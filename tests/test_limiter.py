"""The request limiter (sync.api.limiter): the platform's window rule, tested on a fake clock."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from sync.api.limiter import MARGIN, RECOVERY_SECONDS, RequestLimiter


def drive(
    limiter: RequestLimiter, sends: int, *, late: dict[int, float] | None = None
) -> list[float]:
    """Send `sends` requests as soon as the window allows; request i goes `late[i]` s late."""
    now, times = 0.0, []
    for i in range(sends):
        now += limiter.wait(now) + (late or {}).get(i, 0.0)
        limiter.sent(now)
        times.append(now)
    return times


def most_in_any_second(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


@pytest.mark.parametrize("qps", [10.0, 9.5, 2.5, 1.0, 0.5])
def test_never_more_than_the_platform_allows(qps: float) -> None:
    """However requests come, no second holds more than 10 (nor more than `qps` rounded up),
    even in bursts as the window alone would allow them."""
    times = drive(RequestLimiter(qps), 100)
    assert most_in_any_second(times) <= min(10, math.ceil(qps))


def test_full_rate_is_the_limit_less_the_margin() -> None:
    """At 10 QPS, 10 requests per 1 s + MARGIN: ~9.7 a second over a long run."""
    times = drive(RequestLimiter(10.0), 201)
    assert (times[-1] - times[0]) == pytest.approx(20 * (1.0 + MARGIN))


def test_a_late_request_does_not_push_the_next_back() -> None:
    """A request sent late (the event loop was busy) does not delay the next: it may go at its
    own time, as the 10th request before it allows (a leaky bucket of capacity 1 would make it
    wait a whole gap after the late one, losing the delay for good)."""
    limiter = RequestLimiter(10.0)
    gap = (1.0 + MARGIN) / 10
    for i in range(30):
        limiter.sent(i * gap)
    late = 30 * gap + 0.08
    limiter.sent(late)
    assert late + limiter.wait(late) == pytest.approx(31 * gap)


def test_throttled_slows_down_then_recovers() -> None:
    """After a throttled answer the rate drops for RECOVERY_SECONDS, then comes back."""
    clock = [100.0]
    limiter = RequestLimiter(10.0, clock=lambda: clock[0])
    full = limiter.rate
    limiter.throttled()
    assert limiter.rate == pytest.approx(full * 0.7)
    limiter.wait(100.0 + RECOVERY_SECONDS - 0.1)
    assert limiter.rate < full
    limiter.wait(100.0 + RECOVERY_SECONDS)
    assert limiter.rate == pytest.approx(full)


def test_refuses_a_rate_of_zero() -> None:
    """A rate of zero would never send: refused where it is made."""
    with pytest.raises(ValueError, match="positive"):
        RequestLimiter(0)


async def test_acquire_keeps_the_window_on_the_real_clock() -> None:
    """Many tasks acquiring at once on the real event loop: the window holds, in order."""
    limiter = RequestLimiter(50.0)
    sent: list[float] = []

    async def one() -> None:
        await limiter.acquire()
        sent.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(60)))
    assert most_in_any_second(sorted(sent)) <= 50
    assert limiter.acquired == 60


def test_a_request_whose_headers_left_late_counts_from_then() -> None:
    """The window counts a request from when it really left (Slot.went), even once ten newer
    requests were allowed: the 11th must not go while it is still within the last second."""
    limiter = RequestLimiter(10.0)
    window = 1.0 + MARGIN
    slots = [limiter.sent(i / 10) for i in range(10)]  # 0.0 .. 0.9
    slots[0].went(0.95)  # its connection was slow: it reached the platform after the others
    assert limiter.wait(0.1 + window) == 0  # the 10th newest departure is the one at 0.1
    limiter.sent(0.1 + window)
    # Newest ten now: 0.2 .. 0.9, 0.95 and 1.13; counting only the last ten allowed (dropping
    # the late one) would let the next go at once, an 11th inside one second.
    assert limiter.wait(0.1 + window) == pytest.approx(0.1)
