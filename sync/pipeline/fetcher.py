"""Fetching one partition: its window's pages in order, one page ahead of the writer.

Page k+1 is requested only after page k came back full (the API has no totals), and while the
writer maps and stores page k. Each answer leases its rows from the run's `RowBudget` before its
body is read; a page's lease is given back when the writer asks for the next page (it has
copied this one), and every lease still held when the partition stops is given back on the way
out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Awaitable, Callable

from sync.api.client import DailyDataClient, Page, PageRequest
from sync.api.paging import PageCursor
from sync.errors import TaskboxError
from sync.pipeline.budget import FirstPageGuess, Lease, RowBudget
from sync.planner import Partition

PAGE_QUEUE_DEPTH = 2


@dataclasses.dataclass(frozen=True, slots=True)
class PageQuery:
    """What every request of a run asks besides the partition: page size and API filters."""

    page_size: int = 10_000
    max_pages: int = 10_000
    douyin_id: str | None = None
    agency_client_key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PageFlow:
    """What the partitions of one run share: the row budget and the first-page estimate."""

    budget: RowBudget
    first_page: FirstPageGuess
    # Awaited right before each request; it raises to stop the partition (the engine's database
    # gate, so that no call goes out while nothing can be written).
    ready: Callable[[], Awaitable[None]] | None = None


class _PageLease:
    """The rows one page holds in the budget, leased when its body is about to be read.

    Not when its request is sent: answers take 0.5-3 s, and Little's law wants 10/s x 3 s
    requests outstanding, while an unread body costs nothing here (aiohttp stops reading it past
    ~128 KiB and TCP holds the server back). So the budget bounds data held, not requests
    outstanding. A retried request keeps the lease its first answer took.
    """

    __slots__ = ("_first", "_flow", "_priority", "lease")

    def __init__(self, flow: PageFlow, *, first: bool, priority: int) -> None:
        self._flow = flow
        self._first = first
        self._priority = priority
        self.lease: Lease | None = None

    async def take(self) -> None:
        if self.lease is not None:
            return
        guess = self._flow.first_page
        expected = guess.rows if self._first else (lambda: guess.page_size)
        self.lease = await self._flow.budget.lease(expected, priority=self._priority)
        if self._first:
            guess.sent(self.lease)

    def arrived(self, rows: int) -> Lease:
        """The page came with `rows` rows: the lease now holds that many."""
        assert self.lease is not None  # a page is only read under its lease
        if self._first:
            self._flow.first_page.arrived(self.lease, rows)
        else:
            self.lease.resize(rows)
        return self.lease

    def release(self) -> None:
        if self.lease is not None:
            self._flow.first_page.forget(self.lease)
            self.lease.release()


async def partition_pages(
    client: DailyDataClient,
    partition: Partition,
    query: PageQuery,
    flow: PageFlow,
    on_page: Callable[[Page, int], None],
    *,
    priority: int = 0,
) -> AsyncGenerator[Page, None]:
    """Yield the partition's pages; `on_page(page, requests_sent)` sees each as it arrives."""
    queue: asyncio.Queue[tuple[Page, Lease] | TaskboxError | None] = asyncio.Queue(PAGE_QUEUE_DEPTH)
    held: set[Lease] = set()

    async def fetch() -> None:
        cursor = PageCursor(query.page_size, query.max_pages)
        try:
            while not cursor.done:
                reserved = _PageLease(flow, first=cursor.next_page == 1, priority=priority)
                request = PageRequest(
                    partition.billing_date,
                    partition.window.start,
                    partition.window.end,
                    cursor.next_page,
                    query.page_size,
                    query.douyin_id,
                    query.agency_client_key,
                )
                await flow.budget.room_to_ask(priority=priority)
                try:
                    if flow.ready is not None:
                        await flow.ready()
                    page, sent = await client.fetch_page(request, before_body=reserved.take)
                except BaseException:
                    reserved.release()
                    raise
                lease = reserved.arrived(len(page.items))
                held.add(lease)
                on_page(page, sent)
                cursor.advance(len(page.items), page.fingerprint())
                await queue.put((page, lease))
                del page  # the writer's now: not held while the next request waits
            await queue.put(None)
        except TaskboxError as exc:
            await queue.put(exc)

    task = asyncio.create_task(fetch())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, TaskboxError):
                raise item
            page, lease = item
            del item
            yield page
            # The writer asked for the next page: it is done with this one. Drop it before
            # waiting for the next, or every partition would hold a page outside the budget.
            del page
            lease.release()
            held.discard(lease)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for lease in held:
            lease.release()
