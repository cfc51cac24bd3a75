"""Fetching one partition: its window's pages in order, one page ahead of the writer.

Page k+1 is requested only after page k came back full (the API has no totals), and while the
writer maps and stores page k; a queue of two pages bounds the memory a partition holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable

from sync.client import DailyDataClient, Page, PageRequest
from sync.errors import TaskboxError
from sync.paging import PageCursor
from sync.planner import Partition

PAGE_QUEUE_DEPTH = 2


@dataclasses.dataclass(frozen=True, slots=True)
class PageQuery:
    """What every request of a run asks besides the partition: page size and API filters."""

    page_size: int = 10_000
    max_pages: int = 10_000
    douyin_id: str | None = None
    agency_client_key: str | None = None


async def partition_pages(
    client: DailyDataClient,
    partition: Partition,
    query: PageQuery,
    on_page: Callable[[Page, int], None],
) -> AsyncIterator[Page]:
    """Yield the partition's pages; `on_page(page, requests_sent)` sees each as it arrives."""
    queue: asyncio.Queue[Page | TaskboxError | None] = asyncio.Queue(PAGE_QUEUE_DEPTH)

    async def fetch() -> None:
        cursor = PageCursor(query.page_size, query.max_pages)
        try:
            while not cursor.done:
                request = PageRequest(
                    partition.billing_date,
                    partition.window.start,
                    partition.window.end,
                    cursor.next_page,
                    query.page_size,
                    query.douyin_id,
                    query.agency_client_key,
                )
                page, sent = await client.fetch_page(request)
                on_page(page, sent)
                cursor.advance(len(page.items), page.fingerprint())
                await queue.put(page)
            await queue.put(None)
        except TaskboxError as exc:
            await queue.put(exc)

    task = asyncio.create_task(fetch())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, TaskboxError):
                raise item
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
