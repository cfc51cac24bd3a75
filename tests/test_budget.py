"""The run's row budget and first-page estimate (sync.pipeline.budget): pure asyncio, no servers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from sync.pipeline.budget import FirstPageGuess, RowBudget


def rows(n: int) -> Callable[[], int]:
    return lambda: n


async def test_lease_within_the_limit_is_immediate_and_release_is_idempotent() -> None:
    """Leases that fit are granted at once; release gives the rows back exactly once."""
    budget = RowBudget(100)
    a = await budget.lease(rows(60))
    b = await budget.lease(rows(40))
    assert (budget.used, budget.peak) == (100, 100)
    a.release()
    a.release()
    assert budget.used == 40
    b.release()
    assert budget.used == 0


async def test_a_full_budget_waits_and_serves_the_lowest_priority_first() -> None:
    """When full, waiting leases are granted as rows come back, oldest partition first."""
    budget = RowBudget(100)
    held = await budget.lease(rows(100))
    order: list[str] = []

    async def want(name: str, priority: int) -> None:
        lease = await budget.lease(rows(50), priority=priority)
        order.append(name)
        await asyncio.sleep(0)
        lease.release()

    tasks = [asyncio.create_task(want(n, p)) for n, p in (("late", 9), ("old", 1), ("mid", 5))]
    await asyncio.sleep(0)
    assert order == [] and budget.used == 100
    held.release()
    await asyncio.gather(*tasks)
    assert order == ["old", "mid", "late"]
    assert budget.used == 0


async def test_the_estimate_is_asked_when_the_turn_comes() -> None:
    """A waiting lease takes the size its estimate gives when granted, not when it asked."""
    budget = RowBudget(100)
    held = await budget.lease(rows(100))
    estimate = {"rows": 100}
    waiting = asyncio.create_task(budget.lease(lambda: estimate["rows"]))
    await asyncio.sleep(0)
    estimate["rows"] = 10
    held.resize(90)  # 10 rows free: enough for the improved estimate
    lease = await waiting
    assert lease.rows == 10 and budget.used == 100


async def test_a_lease_never_waits_for_more_than_the_whole_budget() -> None:
    """A page estimate above the limit is clamped, so it is granted once the budget is empty."""
    budget = RowBudget(100)
    lease = await budget.lease(rows(10_000))
    assert lease.rows == 100 and budget.used == 100


async def test_resize_up_overdraws_and_resize_down_wakes_waiters() -> None:
    """A page larger than its lease is never blocked (no deadlock); a smaller one frees rows."""
    budget = RowBudget(100)
    lease = await budget.lease(rows(50))
    lease.resize(150)
    assert budget.used == 150 and budget.peak == 150
    waiting = asyncio.create_task(budget.lease(rows(50)))
    await asyncio.sleep(0)
    assert not waiting.done()
    lease.resize(20)
    granted = await waiting
    assert budget.used == 70
    granted.release()
    lease.release()
    assert budget.used == 0


async def test_a_cancelled_waiter_leaks_nothing() -> None:
    """Cancelling a waiting lease leaves the budget as it was and serves the next in line."""
    budget = RowBudget(100)
    held = await budget.lease(rows(100))
    first = asyncio.create_task(budget.lease(rows(80), priority=0))
    second = asyncio.create_task(budget.lease(rows(80), priority=1))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    held.release()
    lease = await second
    assert budget.used == 80 == lease.rows
    lease.release()
    assert budget.used == 0


async def test_a_waiter_cancelled_as_it_is_granted_gives_the_rows_back() -> None:
    """Granted and cancelled in the same step: the rows go back, none are lost."""
    budget = RowBudget(100)
    held = await budget.lease(rows(100))
    waiting = asyncio.create_task(budget.lease(rows(60)))
    await asyncio.sleep(0)
    held.release()  # grants the waiter (its future now has a result) ...
    waiting.cancel()  # ... and the task is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert budget.used == 0


def test_the_budget_refuses_nonsense() -> None:
    """A budget below one row is a programming error."""
    with pytest.raises(ValueError, match="at least 1"):
        RowBudget(0)


async def test_first_page_guess_learns_and_shrinks_leases_in_flight() -> None:
    """Full pages until told otherwise; the most of the recent first pages after; leases still
    in flight shrink to the new guess and free rows for those waiting."""
    guess = FirstPageGuess(10_000, remember=3)
    assert guess.rows() == 10_000
    budget = RowBudget(20_000)
    a = await budget.lease(guess.rows)
    guess.sent(a)
    b = await budget.lease(guess.rows)
    guess.sent(b)
    waiting = asyncio.create_task(budget.lease(guess.rows))
    await asyncio.sleep(0)
    assert not waiting.done()
    guess.arrived(a, 1_500)  # a small first page: b's estimate shrinks too
    assert (a.rows, b.rows, guess.rows()) == (1_500, 1_500, 1_500)
    c = await waiting
    assert c.rows == 1_500 and budget.used == 4_500
    for rows_ in (10, 20, 30):  # only the last three are remembered
        guess.arrived(c, rows_)
    assert guess.rows() == 30


async def test_first_page_guess_has_a_floor_after_empty_pages() -> None:
    """Empty first pages do not let requests go without a lease."""
    guess = FirstPageGuess(10_000)
    budget = RowBudget(10)
    lease = await budget.lease(rows(0))
    guess.arrived(lease, 0)
    assert guess.rows() == 1_000


async def test_asks_go_at_once_while_few_bodies_wait_for_rows() -> None:
    """Asking for a page is free while fewer than `waiting_bodies` answers wait for rows."""
    budget = RowBudget(100, waiting_bodies=2)
    held = await budget.lease(rows(100))
    first = asyncio.create_task(budget.lease(rows(50)))
    await asyncio.sleep(0)
    assert budget.waiting == 1
    await asyncio.wait_for(budget.room_to_ask(), 0.1)
    held.release()
    (await first).release()


async def test_asks_pause_while_bodies_wait_and_resume_lowest_priority_first() -> None:
    """When the writers are behind (bodies wait for rows), new asks wait; as leases are granted
    they go again, the oldest partition first."""
    budget = RowBudget(100, waiting_bodies=2)
    held = await budget.lease(rows(100))
    bodies = [asyncio.create_task(budget.lease(rows(100), priority=p)) for p in (0, 1)]
    await asyncio.sleep(0)
    order: list[str] = []

    async def ask(name: str, priority: int) -> None:
        await budget.room_to_ask(priority=priority)
        order.append(name)

    asks = [asyncio.create_task(ask(n, p)) for n, p in (("late", 9), ("old", 1), ("mid", 5))]
    await asyncio.sleep(0)
    assert order == []
    held.release()  # the first body gets its rows: one place to ask
    lease = await bodies[0]
    await asyncio.sleep(0)
    assert order == ["old"]
    lease.release()  # the second body gets its rows: nothing waits, everyone may ask
    (await bodies[1]).release()
    await asyncio.gather(*asks)
    assert order == ["old", "mid", "late"]


async def test_a_cancelled_ask_does_not_hold_back_the_others() -> None:
    """An ask cancelled while waiting (its partition stopped) takes no place."""
    budget = RowBudget(10, waiting_bodies=1)
    held = await budget.lease(rows(10))
    body = asyncio.create_task(budget.lease(rows(10)))
    await asyncio.sleep(0)
    gone = asyncio.create_task(budget.room_to_ask(priority=0))
    other = asyncio.create_task(budget.room_to_ask(priority=1))
    await asyncio.sleep(0)
    gone.cancel()
    held.release()
    (await body).release()
    await asyncio.wait_for(other, 0.1)
    assert budget.used == 0
