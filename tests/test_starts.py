"""How many partitions are under way (sync.pipeline.starts): arithmetic on a fake clock, then
the gate."""

from __future__ import annotations

import asyncio
import math

from sync.pipeline.starts import HEADROOM, LEAST, OVERHEAD, Starts


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_before_any_answer_the_run_starts_a_few() -> None:
    """With nothing sent and nothing learned, a handful may be under way."""
    starts = Starts(10.0, 32, clock=Clock())
    assert starts.target(100.0) == max(LEAST, math.ceil(10 * OVERHEAD * HEADROOM)) == 5


def test_the_target_grows_while_the_first_answers_keep_us_waiting() -> None:
    """A request unanswered for a second says answers take at least that long: the target is
    what Little's law wants for it, before any answer came."""
    clock = Clock()
    starts = Starts(10.0, 32, clock=clock)
    starts.sent()
    assert starts.target(clock.now + 0.1) < starts.target(clock.now + 1.0)
    assert starts.target(clock.now + 1.0) == math.ceil(10 * (1.0 + OVERHEAD) * HEADROOM)


def test_instant_answers_keep_few_under_way_and_slow_ones_many() -> None:
    """Learned latency decides: ~20 ms answers keep the floor, ~1.75 s ones the concurrency."""
    clock = Clock()
    fast = Starts(10.0, 32, clock=clock)
    slow = Starts(10.0, 32, clock=clock)
    for _ in range(20):
        ticket = fast.sent()
        clock.now += 0.02
        fast.answered(ticket)
        ticket = slow.sent()
        clock.now += 1.75
        slow.answered(ticket)
    assert fast.target(clock.now) == LEAST + 1  # ceil(10 x 0.32 x 1.5)
    assert slow.target(clock.now) == math.ceil(10 * (1.75 + OVERHEAD) * HEADROOM) == 31


def test_failed_requests_teach_no_latency() -> None:
    """A request that ended without an answer (a timeout) is forgotten, not measured."""
    clock = Clock()
    starts = Starts(10.0, 32, clock=clock)
    ticket = starts.sent()
    clock.now += 60.0
    starts.forget(ticket)
    assert starts.latency is None and starts.target(clock.now) == 5


async def test_partitions_wait_their_turn_oldest_first() -> None:
    """Past the target, partitions wait; as one is done the oldest waiting starts."""
    starts = Starts(10.0, 2, clock=Clock())
    first = await starts.room(priority=0)
    second = await starts.room(priority=1)
    order: list[int] = []

    async def start(priority: int) -> None:
        (await starts.room(priority=priority)).done()
        order.append(priority)

    waiting = [asyncio.create_task(start(p)) for p in (7, 3, 5)]
    await asyncio.sleep(0.01)
    assert order == [] and starts.under_way == 2
    first.done()
    first.done()  # idempotent
    await asyncio.wait_for(asyncio.gather(*waiting), 1.0)
    assert order == [3, 5, 7]
    second.done()
    assert starts.under_way == 0


async def test_a_cancelled_wait_takes_no_place() -> None:
    """A partition stopped while waiting to start leaves the count as it was."""
    starts = Starts(10.0, 1, clock=Clock())
    held = await starts.room()
    gone = asyncio.create_task(starts.room())
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    held.done()
    assert starts.under_way == 0
    (await asyncio.wait_for(starts.room(), 1.0)).done()
    assert starts.under_way == 0
