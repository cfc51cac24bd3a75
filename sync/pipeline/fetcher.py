"""Fetching one partition: its window's pages in order, one page ahead of the writer.

Page k+1 is needed only if page k came back full (the API has no totals); it is fetched while the
writer maps and stores page k. When answers are slow and the rate budget would otherwise go
unused, page k+1 is asked for as soon as page k has left, before its answer (a guess): a window's
pages are a chain of 0.5-3 s answers, and at a run's tail that chain is all that is left to wait
for. A guess past the window's last page is dropped unread (one spare call).

A partition is under way from its first request (the run's `Starts` decides when) to its last.
Each answer leases its rows from the run's `RowBudget` before its body is read; a guess's answer
only once the page before it came back full, so that no lease is held by a page that waits for
a page that waits for the budget. A page's lease is given back when the writer asks for the next
page (it has copied this one), and every lease still held when the partition stops is given back
on the way out.
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
from sync.pipeline.starts import Starts
from sync.planner import Partition, window_rank

PAGE_QUEUE_DEPTH = 2
GUESS_AHEAD = True  # ask for the next page early when the rate budget is spare (see fetch)
LULL = True  # CPU-bound work on a page waits for a request due to go (see PageFlow.lull)
# Seconds: answers faster than this leave no latency worth guessing for, and keep requests and
# CPU work in step by themselves (each answer's work is done before the next request is due).
SLOW_ANSWERS = 0.25


@dataclasses.dataclass(frozen=True, slots=True)
class PageQuery:
    """What every request of a run asks besides the partition: page size and API filters."""

    page_size: int = 10_000
    max_pages: int = 10_000
    douyin_id: str | None = None
    agency_client_key: str | None = None


class WindowPages:
    """The most pages a window of each rank (`planner.window_rank`) is known to need so far in
    the run.

    A guess past them is likely a wasted call: windows of one rank on neighbouring dates cover
    nearly the same videos, and a window's last page is short. In the bench's *ceiling-slow*
    (27 windows, 0.5-3 s answers) guesses past a window's end went from 12-17 of ~118 calls to
    3-6 of ~110, for the same wall (14.9 s): they had taken slots no needed request wanted, but
    each is a call the platform answers for nothing. A window that turns out longer than its
    rank's so far asks for its extra page once it is known to be needed.

    A rank is known once one of its windows ended; from then on a page of any of its windows
    counts as soon as it is known to be needed (the page before came back full), not only when
    its window ends: the windows of a rank run side by side, and the oldest rank's grow date by
    date. Counted at windows' ends only, the newest date's window of *ceiling-slow*'s oldest
    rank guessed no 4th page although four windows of that rank had asked for theirs 3 s
    before: its 4th page left 2 s after the run's last other request. (An unknown rank may
    reach any page: a window's own needed pages do not make its rank known, or its first
    window would never guess.) Pure: no I/O.
    """

    __slots__ = ("_most",)

    def __init__(self) -> None:
        self._most: dict[int, int] = {}

    def ended(self, rank: int, pages: int) -> None:
        """A window of `rank` ended with its page `pages`."""
        self._most[rank] = max(pages, self._most.get(rank, 0))

    def needed(self, rank: int, page_num: int) -> None:
        """A window of `rank` needs its page `page_num`: a known rank reaches it."""
        most = self._most.get(rank)
        if most is not None and page_num > most:
            self._most[rank] = page_num

    def may_reach(self, rank: int, page_num: int) -> bool:
        """Whether a window of `rank` may have page `page_num` (unknown ranks may)."""
        most = self._most.get(rank)
        return most is None or page_num <= most


@dataclasses.dataclass(frozen=True, slots=True)
class PageFlow:
    """What the partitions of one run share: the row budget, the first-page estimate, the gate
    that decides how many partitions are under way, and two hooks."""

    budget: RowBudget
    first_page: FirstPageGuess
    starts: Starts
    # Awaited right before each request; it raises to stop the partition (the engine's database
    # gate, so that no call goes out while nothing can be written).
    ready: Callable[[], Awaitable[None]] | None = None
    # Returns when a request may go in a slot that would otherwise go unused (the limiter's
    # `spare`); None: never ask for a page before it is known to be needed.
    spare: Callable[[], Awaitable[None]] | None = None
    # Awaited before CPU-bound work on a page (decoding it, handing it to the writer): the
    # limiter's `lull`, so that a request due to go is not held up behind it.
    lull: Callable[[], Awaitable[None]] | None = None
    window_pages: WindowPages = dataclasses.field(default_factory=WindowPages)


class WriterGate:
    """A partition's first page is read only once the partition holds a connection to write it.

    Partitions take a database connection only once their first answer is in (requests waiting
    on the platform hold none), and rows are leased from the run's budget when a body is about
    to be read. If a first page were read before its connection, a fleet (more partitions under
    way than writer connections, one budget) could wedge: every connection held by a partition
    whose next page waits for rows, every row leased to a first page whose partition waits for
    a connection (seen: a fleet-big run after a busy start, no commit in 240 s). Leased only
    after the connection, rows are held by partitions that are writing, and each of them gives
    its rows back as its writer goes on.
    """

    __slots__ = ("answered", "open")

    def __init__(self) -> None:
        self.answered = asyncio.Event()  # the first page's answer is in (headers; body unread)
        self.open = asyncio.Event()  # the partition holds its connection: read on


class _PageLease:
    """The rows one page holds in the budget, leased when its body is about to be read.

    Not when its request is sent: answers take 0.5-3 s, and Little's law wants 10/s x 3 s
    requests outstanding, while an unread body costs nothing here (aiohttp stops reading it past
    ~128 KiB and TCP holds the server back). So the budget bounds data held, not requests
    outstanding. A retried request keeps the lease its first answer took. A guess's body waits
    unread until its page is `needed`. The request's send and answer times go to the run's
    `Starts`, which learns the latency from them.
    """

    __slots__ = ("_first", "_flow", "_gate", "_needed", "_priority", "_ticket", "lease", "went")

    def __init__(
        self,
        flow: PageFlow,
        needed: asyncio.Event,
        *,
        first: bool,
        priority: int,
        gate: WriterGate | None = None,
    ) -> None:
        self._flow = flow
        self._needed = needed
        self._first = first
        self._priority = priority
        self._gate = gate if first else None
        self._ticket: int | None = None
        self.lease: Lease | None = None
        self.went = asyncio.Event()

    def sent(self) -> None:
        """The limiter let the request (or its retry) go."""
        self._forget()
        self._ticket = self._flow.starts.sent()
        self.went.set()

    async def take(self) -> None:
        """The answer's headers are in: once the page is needed, lease its rows."""
        if self._ticket is not None:
            self._flow.starts.answered(self._ticket)
            self._ticket = None
        await self._needed.wait()
        if self.lease is not None:
            return
        if self._gate is not None:
            self._gate.answered.set()
            await self._gate.open.wait()
        guess = self._flow.first_page
        expected = guess.rows if self._first else (lambda: guess.page_size)
        self.lease = await self._flow.budget.lease(expected, priority=self._priority)
        if self._first:
            guess.sent(self.lease)
        await _lull(self._flow)

    def arrived(self, rows: int) -> Lease:
        """The page came with `rows` rows: the lease now holds that many."""
        assert self.lease is not None  # a page is only read under its lease
        if self._first:
            self._flow.first_page.arrived(self.lease, rows)
        else:
            self.lease.resize(rows)
        return self.lease

    def release(self) -> None:
        """The request ended without a page, or its page is not wanted: give back its rows."""
        self._forget()
        if self.lease is not None:
            self._flow.first_page.forget(self.lease)
            self.lease.release()

    def _forget(self) -> None:
        if self._ticket is not None:
            self._flow.starts.forget(self._ticket)
            self._ticket = None


async def _lull(flow: PageFlow) -> None:
    """Before CPU-bound work on a page, when answers are slow: let a request due to go first.

    With slow answers, pages arrive at random moments and their decoding, mapping and encoding
    (~25 ms steps) held requests up by 25-50 ms past their turn (a 10-request window then spans
    1.07 s, not 1.03 s: ~0.93 of the rate); waiting for the turn first brought that to ~12-15 ms
    on a quiet machine. With instant answers, each answer's work falls between two requests by
    itself, and the writers are what the run waits on: there a lull only idles them.
    """
    if LULL and flow.lull is not None and (flow.starts.latency or 0.0) >= SLOW_ANSWERS:
        await flow.lull()


async def _spare_or_needed(flow: PageFlow, needed: asyncio.Event) -> None:
    """Return when the page is needed or the rate budget has a slot that would go unused.

    The wait for a slot runs in this task, so that the request is in the limiter before anyone
    else looks for the same slot; the page becoming needed interrupts it.
    """
    if needed.is_set() or flow.spare is None:
        await needed.wait()
        return
    watcher: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(None) as deadline:
            watcher = asyncio.create_task(_expire_when(needed, deadline))
            await flow.spare()
    except TimeoutError:
        pass  # needed now: it goes as any other request
    finally:
        if watcher is not None:
            watcher.cancel()


async def _expire_when(event: asyncio.Event, deadline: asyncio.Timeout) -> None:
    await event.wait()
    deadline.reschedule(asyncio.get_running_loop().time())


Fetched = tuple[Page, int, _PageLease]


@dataclasses.dataclass(slots=True)
class _Request:
    """A page's request under way; a guess (asked for before it was known to be needed) waits
    for spare rate budget, and its answer waits unread, until `needed` is set."""

    page_num: int
    task: asyncio.Task[Fetched]
    needed: asyncio.Event
    went: asyncio.Event


async def _drop(request: _Request | None) -> None:
    """Stop a request whose page is not wanted; whatever it holds is given back when it ends."""
    if request is None:
        return
    request.task.add_done_callback(_release_page)
    request.task.cancel()
    # Wait for it without taking on its cancellation (ours, if it comes, still propagates).
    await asyncio.wait({request.task})


def _release_page(task: asyncio.Task[Fetched]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result()[2].release()


async def partition_pages(
    client: DailyDataClient,
    partition: Partition,
    query: PageQuery,
    flow: PageFlow,
    on_page: Callable[[Page, int], None],
    *,
    priority: int = 0,
    gate: WriterGate | None = None,
) -> AsyncGenerator[Page, None]:
    """Yield the partition's pages; `on_page(page, requests_sent)` sees each as it arrives.
    With `gate`, the first page's body is read only once the gate is open (see WriterGate)."""
    queue: asyncio.Queue[tuple[Page, Lease] | TaskboxError | None] = asyncio.Queue(PAGE_QUEUE_DEPTH)
    rank = window_rank(partition)
    held: set[Lease] = set()

    def launch(page_num: int, *, after: asyncio.Event | None = None) -> _Request:
        """Request page `page_num`; with `after`, a guess: only once that event is set (the page
        before has left) and the rate budget is spare, unless the page turns out to be needed."""
        needed = asyncio.Event()
        if after is None:
            needed.set()
        reserved = _PageLease(flow, needed, first=page_num == 1, priority=priority, gate=gate)

        async def fetch_one() -> Fetched:
            if after is not None:
                await after.wait()
            request = PageRequest(
                partition.billing_date,
                partition.window.start,
                partition.window.end,
                page_num,
                query.page_size,
                query.douyin_id,
                query.agency_client_key,
            )
            await flow.budget.room_to_ask(priority=priority)
            try:
                if flow.ready is not None:
                    await flow.ready()
                # Last before the request: nothing between a spare slot and the limiter waits.
                await _spare_or_needed(flow, needed)
                page, sent = await client.fetch_page(
                    request, on_sent=reserved.sent, before_body=reserved.take
                )
            except BaseException:
                reserved.release()
                raise
            return page, sent, reserved

        return _Request(page_num, asyncio.create_task(fetch_one()), needed, reserved.went)

    def worth_guessing(page_num: int) -> bool:
        """Whether page `page_num + 1` may be asked for before page `page_num` came back: the
        answers are slow enough for it to matter (instant ones leave nothing to save), the pages
        so far were full (first pages: recent first pages were), and the window may have
        another page."""
        if not GUESS_AHEAD or flow.spare is None or page_num >= query.max_pages:
            return False
        if (flow.starts.latency or 0.0) < SLOW_ANSWERS:
            return False
        if not flow.window_pages.may_reach(rank, page_num + 1):
            return False
        return page_num > 1 or flow.first_page.rows() >= query.page_size

    async def fetch() -> None:
        cursor = PageCursor(query.page_size, query.max_pages)
        start = await flow.starts.room(priority=priority)  # its turn to be under way
        current: _Request | None = None
        ahead: _Request | None = None  # the page after `current`, asked for early
        try:
            if not cursor.done:
                current = launch(cursor.next_page)
            while current is not None:
                if ahead is None and worth_guessing(current.page_num):
                    # When the rate budget would go unused, asking now saves a whole answer's
                    # latency on this window's chain of pages; a wasted call costs only spare
                    # budget (the run's tail, mostly).
                    ahead = launch(current.page_num + 1, after=current.went)
                # Not `await current.task`: a cancellation of ours would pass to the request, and
                # be lost if the request finished anyway.
                await asyncio.wait({current.task})
                page, sent, reserved = current.task.result()
                current = None
                lease = reserved.arrived(len(page.items))
                held.add(lease)
                on_page(page, sent)
                cursor.advance(len(page.items), page.fingerprint())
                # The next page is asked for before this one waits for the writer: the chain of
                # requests does not wait on the database (the row budget bounds what is held).
                if cursor.done:
                    flow.window_pages.ended(rank, cursor.next_page)
                    await _drop(ahead)  # the window ended: the page after it is not needed
                    ahead = None
                    start.done()  # no more requests: let another partition be under way
                else:
                    flow.window_pages.needed(rank, cursor.next_page)
                    if ahead is not None and ahead.page_num == cursor.next_page:
                        current, ahead = ahead, None
                        current.needed.set()
                    else:
                        current = launch(cursor.next_page)
                await queue.put((page, lease))
                del page  # the writer's now: not held while the next request waits
            await queue.put(None)
        except TaskboxError as exc:
            await queue.put(exc)
        finally:
            await _drop(current)
            await _drop(ahead)
            start.done()

    task = asyncio.create_task(fetch())
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, TaskboxError):
                raise item
            page, lease = item
            del item
            await _lull(flow)
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
