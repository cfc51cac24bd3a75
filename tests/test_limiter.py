"""The request limiter (sync.api.limiter): the platform's window rule, tested on a fake clock."""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import time

import pytest

from sync.api.limiter import MARGIN, RECOVERY_SECONDS, RequestLimiter, Slot


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
        slot = await limiter.acquire()
        sent.append(time.monotonic())
        slot.went(sent[-1])

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


def test_a_request_that_has_not_left_counts_as_leaving_now() -> None:
    """A request allowed but not yet written (its HTTP task waits for the busy event loop)
    counts as leaving now, not at its turn: the next waits for the 10th before it that has."""
    limiter = RequestLimiter(10.0)
    window = 1.0 + MARGIN
    limiter.sent(0.0, left=False)
    for i in range(1, 10):
        limiter.sent(i / 10)
    # Counted at its turn (0.0), the next could go at `window`, and then eleven would be within
    # a second of it leaving late; as it may leave any moment, the one at 0.1 decides.
    assert limiter.wait(window) == pytest.approx(0.1)


def test_late_departures_never_make_eleven_in_a_second() -> None:
    """Requests whose bytes leave up to 1.5 s after their turn, at random: counted where they
    really left, no second ever holds more than 10 of them."""
    rng = random.Random(12)
    limiter = RequestLimiter(10.0)
    now, departures = 0.0, []
    on_the_way: list[tuple[float, int, Slot]] = []  # (when it will leave, order, slot)
    for n in range(400):
        while (delay := limiter.wait(now)) > 0:
            if on_the_way and on_the_way[0][0] <= now + delay:
                leave, _, slot = heapq.heappop(on_the_way)  # it leaves before our turn: look again
                slot.went(leave)
                departures.append(leave)
                now = max(now, leave)
            else:
                now += delay
        late = rng.choice([0.0, 0.0, 0.0, rng.uniform(0, 0.3), rng.uniform(0, 1.5)])
        heapq.heappush(on_the_way, (now + late, n, limiter.sent(now, left=False)))
    departures += [leave for leave, _, _ in on_the_way]
    assert most_in_any_second(sorted(departures)) <= 10


def test_a_request_that_never_left_counts_from_when_it_failed() -> None:
    """A request that failed before its bytes left (no connection) stops holding the window
    once it is over: it counts from then."""
    clock = [0.0]
    limiter = RequestLimiter(10.0, clock=lambda: clock[0])
    lost = limiter.sent(0.0, left=False)
    for i in range(1, 10):
        limiter.sent(i / 10)
    clock[0] = 0.5
    limiter.done(lost)
    assert lost.left and lost.at == 0.5
    assert limiter.wait(2.0) == 0.0


async def test_a_lull_lets_a_request_due_soon_go_first() -> None:
    """CPU-bound work waits (`lull`) while a request waiting in the limiter is due within the
    span, and not otherwise: it would hold the event loop past the request's turn."""
    limiter = RequestLimiter(10.0)
    now = time.monotonic()
    limiter.sent(now - 0.97)  # the next may go in ~0.06 s ...
    for _ in range(9):
        limiter.sent(now)  # ... and the one after it only in ~1 s
    await asyncio.wait_for(limiter.lull(0.05), 0.01)  # nobody waits: no lull
    waiting = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    await limiter.lull(0.1)  # due in ~0.06 s: after it went
    assert waiting.done() and limiter.acquired == 11
    limiter.done(waiting.result())
    later = asyncio.create_task(limiter.acquire())  # due ~1 s from now: no lull
    await asyncio.sleep(0)
    await asyncio.wait_for(limiter.lull(0.1), 0.01)
    assert not later.done()
    later.cancel()


async def test_a_lull_lets_a_request_whose_turn_came_leave_first() -> None:
    """A request past its turn whose bytes have not left (aiohttp writes them in a task of its
    own) holds CPU-bound work back until they do, at most the span."""
    limiter = RequestLimiter(10.0)
    slot = await limiter.acquire()  # its turn came; nothing written yet
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, slot.went, time.monotonic() + 0.02)
    began = time.monotonic()
    await limiter.lull(0.5)
    assert slot.left and 0.015 <= time.monotonic() - began < 0.4
    stuck = await limiter.acquire()  # never written: the lull ends at its span anyway
    began = time.monotonic()
    await limiter.lull(0.05)
    assert 0.045 <= time.monotonic() - began < 0.3
    limiter.done(stuck)
    await asyncio.wait_for(limiter.lull(0.05), 0.01)  # all left: no lull


async def test_a_spare_slot_never_goes_before_a_waiting_request() -> None:
    """`spare` (a guess's wait) returns only for a slot nobody waiting in `acquire` takes."""
    limiter = RequestLimiter(10.0)
    await asyncio.wait_for(limiter.spare(), 0.01)  # nothing waits and the window is empty
    now = time.monotonic()
    for _ in range(10):
        limiter.sent(now - 0.95)  # the next may go in ~0.08 s
    order: list[str] = []

    async def needed() -> None:
        limiter.done(await limiter.acquire())
        order.append("needed")

    async def guess() -> None:
        await limiter.spare()
        order.append("guess")

    tasks = [asyncio.create_task(needed())]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(guess()))
    await asyncio.wait_for(asyncio.gather(*tasks), 1.0)
    assert order == ["needed", "guess"]
