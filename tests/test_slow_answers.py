"""Answers at the platform's latency: the row budget bounds data held, not requests outstanding.

Real HTTP against the sandbox with its answers delayed; a real PostgreSQL for the engine run.
Speed is the benchmark's business (`python -m bench`, the `-slow` scenarios): these tests assert
what must hold at any speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.api.client import (
    DAILY_DATA,
    DAILY_DATA_PATH,
    ApiCaller,
    DailyDataClient,
    Page,
    PageRequest,
    parse_daily_data,
)
from sync.api.http import Timeouts, new_session, post
from sync.api.limiter import RequestLimiter
from sync.api.tokens import ClientTokenProvider
from sync.errors import TransportError
from sync.pipeline.budget import FirstPageGuess, RowBudget
from sync.pipeline.fetcher import PageFlow, PageQuery, WindowPages, partition_pages
from sync.pipeline.starts import Starts
from sync.sandbox import Faults, SandboxConfig, SandboxServer
from sync.settings import Secret
from tests.helpers import (
    Clock,
    assert_no_rule_breaks,
    assert_table_is_truth,
    run_sync,
    sandbox_settings,
)

PAGE = 100


def slow(low: float, high: float) -> Faults:
    return Faults(latency_min=low, latency_max=high)


@pytest.fixture
async def slow_sandbox(clock: Clock) -> AsyncIterator[SandboxServer]:
    config = SandboxConfig(
        seed=11, videos=2_400, tasks=6, creators=40, faults=slow(0.3, 0.6), clock=clock
    )
    async with SandboxServer(config) as sb:
        yield sb


async def test_slow_full_pages_keep_more_than_four_requests_outstanding(
    slow_sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """With answers taking 0.3-0.6 s and a budget of four full pages (the old limit on requests
    in flight), the platform sees more than four requests at once, and the table is exact."""
    dates = clock.recent_dates(2)
    now = clock()
    settings = sandbox_settings(slow_sandbox, database_url)
    result = await run_sync(
        settings, dates, now=now, page_size=PAGE, buffer_rows=4 * PAGE, concurrency=12
    )
    assert result.status == "succeeded", result.failed
    assert result.counts.api_calls > 2 * 6  # several full pages per partition
    assert slow_sandbox.stats()["in_flight_peak"] > 4
    await assert_table_is_truth(engine, slow_sandbox, dates, now)
    assert_no_rule_breaks(slow_sandbox)


class _Fetching:
    """The fetch side of one run, built by hand: a client, a budget, and its pages."""

    def __init__(
        self,
        sandbox: SandboxServer,
        session: aiohttp.ClientSession,
        budget_rows: int,
        *,
        guess: bool = False,
    ) -> None:
        cfg = sandbox.config
        tokens = ClientTokenProvider(
            session, sandbox.base_url, cfg.client_key, Secret(cfg.client_secret)
        )
        limiter = RequestLimiter(10.0)
        caller = ApiCaller(session, limiter, tokens)
        self.client = DailyDataClient(caller, sandbox.base_url)
        self.flow = PageFlow(
            RowBudget(budget_rows),
            FirstPageGuess(PAGE),
            Starts(10.0, 32),
            spare=limiter.spare if guess else None,
        )
        self.query = PageQuery(page_size=PAGE)

    def pages(
        self, partition: planner.Partition, priority: int, seen: list[Page]
    ) -> AsyncGenerator[Page, None]:
        return partition_pages(
            self.client,
            partition,
            self.query,
            self.flow,
            lambda page, sent: seen.append(page),
            priority=priority,
        )


def _partitions(clock: Clock, count_dates: int) -> list[planner.Partition]:
    return list(planner.plan(clock.recent_dates(count_dates), clock()).partitions)


async def test_a_request_waiting_for_its_answer_holds_no_rows(
    slow_sandbox: SandboxServer, clock: Clock
) -> None:
    """While the platform takes its time, the request holds nothing of the budget; the rows are
    leased when the answer's body is read, and given back when the writer is done."""
    async with new_session(Timeouts()) as session:
        fetching = _Fetching(slow_sandbox, session, 4 * PAGE)
        budget = fetching.flow.budget
        partition = max(_partitions(clock, 1), key=lambda p: p.window.end - p.window.start)
        seen: list[Page] = []
        pages = fetching.pages(partition, 0, seen)
        first = asyncio.create_task(pages.__anext__())
        await asyncio.sleep(0.2)  # the request is out; its answer comes after 0.3-0.6 s
        assert not first.done()
        assert budget.used == 0
        page = await first
        assert len(page.items) == PAGE
        assert budget.used >= PAGE  # this page, and perhaps the next one read ahead
        await pages.aclose()
        assert budget.used == 0


async def test_many_requests_outstanding_under_a_small_budget_make_progress(clock: Clock) -> None:
    """Eight partitions at once under a budget of one page: every page arrives, the budget is
    never exceeded, and the platform saw several requests at once."""
    config = SandboxConfig(
        seed=12, videos=1_200, tasks=6, creators=40, faults=slow(0.1, 0.3), clock=clock
    )
    async with SandboxServer(config) as sandbox, new_session(Timeouts()) as session:
        fetching = _Fetching(sandbox, session, PAGE)
        budget = fetching.flow.budget
        partitions = _partitions(clock, 3)[:8]

        async def drain(place: int, partition: planner.Partition) -> int:
            seen: list[Page] = []
            pages = fetching.pages(partition, place, seen)
            rows = 0
            async for page in pages:
                rows += len(page.items)
                await asyncio.sleep(0.02)  # the writer's turn
            return rows

        fetched = await asyncio.gather(*(drain(i, p) for i, p in enumerate(partitions)))
        _assert_rows_are_truth(sandbox, partitions, fetched, clock())
        assert budget.peak <= PAGE and budget.used == 0
        assert sandbox.stats()["in_flight_peak"] > 2


async def test_guessed_pages_under_a_budget_of_one_page_all_arrive(clock: Clock) -> None:
    """Next pages asked for before the page before them came back (slow answers, spare rate):
    a guess's answer waits unread until its page is needed, so under a budget of one page no
    partition waits on rows held by a page that waits for its own predecessor; every page
    arrives, the budget holds, and calls past a window's end change nothing."""
    config = SandboxConfig(
        seed=13, videos=1_200, tasks=6, creators=40, faults=slow(0.3, 0.6), clock=clock
    )
    async with SandboxServer(config) as sandbox, new_session(Timeouts()) as session:
        fetching = _Fetching(sandbox, session, PAGE, guess=True)
        budget = fetching.flow.budget
        partitions = _partitions(clock, 3)[:4]  # ~8 requests a second: the rate budget is spare
        pages = 0

        async def drain(place: int, partition: planner.Partition) -> int:
            nonlocal pages
            rows = 0
            async for page in fetching.pages(partition, place, []):
                rows += len(page.items)
                pages += 1
                await asyncio.sleep(0.05)  # the writer's turn
            return rows

        fetched = await asyncio.wait_for(
            asyncio.gather(*(drain(i, p) for i, p in enumerate(partitions))), 60
        )
        _assert_rows_are_truth(sandbox, partitions, fetched, clock())
        assert budget.peak <= PAGE and budget.used == 0
        assert sandbox.stats()["endpoints"]["daily_data"]["calls"] > pages  # guesses went
        assert_no_rule_breaks(sandbox)


async def test_no_page_is_guessed_past_what_windows_of_its_rank_needed(clock: Clock) -> None:
    """Once a window of a rank has ended, a window of that rank asks for a page past that
    length only when it is needed: read twice, one date's windows make guesses the first time
    (some past a window's end) and not one wasted call the second."""
    config = SandboxConfig(
        seed=13, videos=1_200, tasks=6, creators=40, faults=slow(0.3, 0.6), clock=clock
    )
    async with SandboxServer(config) as sandbox, new_session(Timeouts()) as session:
        fetching = _Fetching(sandbox, session, 10 * PAGE, guess=True)
        partitions = _partitions(clock, 1)
        assert [planner.window_rank(p) for p in partitions] == list(range(len(partitions)))

        def calls() -> int:
            return int(sandbox.stats()["endpoints"].get("daily_data", {}).get("calls", 0))

        async def read_all() -> tuple[int, int]:
            """(pages read, calls made)"""
            before = calls()
            counts = await asyncio.wait_for(
                asyncio.gather(
                    *(_count_pages(fetching.pages(p, i, [])) for i, p in enumerate(partitions))
                ),
                60,
            )
            return sum(counts), calls() - before

        pages, made = await read_all()
        assert made > pages  # guesses past a window's end: nothing known of the ranks yet
        pages, made = await read_all()
        assert made == pages
        assert_no_rule_breaks(sandbox)


async def _count_pages(pages: AsyncGenerator[Page, None]) -> int:
    count = 0
    async for _ in pages:
        count += 1
    return count


def test_window_pages_remember_the_longest_window_of_each_rank() -> None:
    """The most pages known of a rank: its windows' last pages, then any page one of its windows
    is known to need; a rank none of whose windows ended may reach any page."""
    pages = WindowPages()
    assert pages.may_reach(0, 7)  # nothing known: any page may come
    pages.needed(0, 2)  # a window's own needed page does not make its rank known
    assert pages.may_reach(0, 7)
    pages.ended(0, 3)
    pages.ended(0, 2)
    assert pages.may_reach(0, 3) and not pages.may_reach(0, 4)
    pages.needed(0, 4)  # a window of the known rank needs its 4th page, still running
    assert pages.may_reach(0, 4) and not pages.may_reach(0, 5)
    assert pages.may_reach(1, 9)


async def test_one_partition_at_a_time_asks_for_its_next_page_early(
    slow_sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """With one partition under way and slow answers the rate budget is spare, so the page after
    a full one is asked for before its answer: two requests at once, and the guess past a
    window's last page is a wasted call that changes nothing in the table."""
    dates = clock.recent_dates(1)
    now = clock()
    settings = sandbox_settings(slow_sandbox, database_url)
    result = await run_sync(settings, dates, now=now, page_size=PAGE, concurrency=1)
    assert result.status == "succeeded", result.failed
    assert slow_sandbox.stats()["in_flight_peak"] >= 2
    await assert_table_is_truth(engine, slow_sandbox, dates, now)
    assert_no_rule_breaks(slow_sandbox)


def _assert_rows_are_truth(
    sandbox: SandboxServer, partitions: list[planner.Partition], fetched: list[int], now: float
) -> None:
    """Each partition's fetched row count is what the platform holds in its window."""
    start = planner.earliest_start(now)
    for partition, rows in zip(partitions, fetched, strict=True):
        truth = sandbox.truth(
            partition.billing_date, max(start, partition.window.start), partition.window.end
        )
        assert rows == len(truth)


def _page_request(partition: planner.Partition) -> bytes:
    return PageRequest(
        partition.billing_date, partition.window.start, partition.window.end, 1, PAGE
    ).body()


async def _token(sandbox: SandboxServer, session: aiohttp.ClientSession) -> str:
    cfg = sandbox.config
    tokens = ClientTokenProvider(
        session, sandbox.base_url, cfg.client_key, Secret(cfg.client_secret)
    )
    return await tokens.get()


async def test_waiting_for_room_does_not_count_against_the_request_time_limit(
    clock: Clock,
) -> None:
    """The time a caller spends before reading the body (waiting for room in memory) is not the
    server's: a 0.5 s limit holds for sending and for reading, not for that wait."""
    async with (
        SandboxServer(
            SandboxConfig(seed=1, videos=300, faults=slow(0.1, 0.1), clock=clock)
        ) as sandbox,
        new_session(Timeouts(connect=2.0, total=0.5)) as session,
    ):

        async def wait_for_room() -> None:
            await asyncio.sleep(1.0)

        resp = await post(
            session,
            sandbox.base_url + DAILY_DATA_PATH,
            _page_request(_partitions(clock, 1)[-1]),
            endpoint=DAILY_DATA,
            headers={"access-token": await _token(sandbox, session)},
            before_body=wait_for_room,
        )
        assert resp.status == 200 and parse_daily_data(resp.body).items


async def test_a_server_slower_than_the_limit_still_times_out(clock: Clock) -> None:
    """A server that takes longer than the limit to answer is a timeout, as before."""
    async with (
        SandboxServer(
            SandboxConfig(seed=1, videos=300, faults=slow(1.0, 1.0), clock=clock)
        ) as sandbox,
        new_session(Timeouts(connect=2.0, total=0.3)) as session,
    ):
        with pytest.raises(TransportError, match="timed out"):
            await post(
                session,
                sandbox.base_url + DAILY_DATA_PATH,
                _page_request(_partitions(clock, 1)[-1]),
                endpoint=DAILY_DATA,
                headers={"access-token": await _token(sandbox, session)},
            )
