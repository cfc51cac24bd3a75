"""Calling the platform: the shared request loop (limiter, token, retries, counters) and the
daily-data endpoint on top of it. Pages come back decoded but not yet mapped."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any, TypeVar

import aiohttp

from sync.api.http import post
from sync.api.limiter import RequestLimiter
from sync.api.retry import RetryPolicy
from sync.api.tokens import TokenProvider
from sync.errors import (
    ApiError,
    ThrottledError,
    TokenError,
    api_error,
    retryable,
)
from sync.records.decode import decode_daily_data
from sync.records.wire import Row

log = logging.getLogger(__name__)

T = TypeVar("T")

DAILY_DATA_PATH = "/api/match/v2/taskbox/query_task_video_daily_data/"
DAILY_DATA = "query_task_video_daily_data"
MAX_TOKEN_REFRESHES = 2  # per request: a token refused right after a refresh is not retried forever


@dataclasses.dataclass(slots=True)
class CallStats:
    """Counters of one run's requests, for the ledger and the summary."""

    api_calls: int = 0
    throttled: int = 0
    retries: int = 0
    token_refreshes: int = 0
    bytes_received: int = 0


class ApiCaller:
    """Sends a request under the shared limiter; the one place that retries a request.

    Whether to retry is one predicate on the error's class (`errors.retryable`), and the class
    says how: RetryableError → backoff with jitter; ThrottledError → slow the limiter, wait;
    TokenError → one shared refresh. PermanentError and FatalError are raised to the caller
    with their data, and so is the last error once the attempts are spent.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        limiter: RequestLimiter,
        tokens: TokenProvider,
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
        stats: CallStats | None = None,
    ) -> None:
        self.session = session
        self.limiter = limiter
        self.tokens = tokens
        self.policy = policy or RetryPolicy()
        self.rng = rng or random.Random()
        self.stats = stats or CallStats()

    async def call(
        self,
        endpoint: str,
        url: str,
        build: Callable[[str], tuple[bytes, dict[str, str]]],
        parse: Callable[[bytes], T],
        *,
        on_sent: Callable[[], None] | None = None,
        before_body: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[T, int]:
        """`build(token)` gives body and headers; `parse(body)` raises ApiError for error codes.
        `on_sent()` is called each time the limiter lets the request go; `before_body()` is
        awaited before an answer's body is read (see `http.post`).

        Returns the parsed answer and the number of requests it took.
        """
        last: ApiError | None = None
        refreshes = 0
        sent = 0
        for attempt in range(1, self.policy.attempts + 1):
            token = ""
            try:
                token = await self.tokens.get()
                body, headers = build(token)
                slot = await self.limiter.acquire()
                if on_sent is not None:
                    on_sent()
                self.stats.api_calls += 1
                sent += 1
                try:
                    resp = await post(
                        self.session,
                        url,
                        body,
                        endpoint=endpoint,
                        headers=headers,
                        on_sent=slot.went,
                        before_body=before_body,
                    )
                finally:
                    self.limiter.done(slot)
                self.stats.bytes_received += len(resp.body)
                return parse(resp.body), sent
            except ApiError as exc:
                last = exc
                if not retryable(exc):
                    raise
                if isinstance(exc, ThrottledError):
                    self.stats.throttled += 1
                    self.limiter.throttled()
                    log.warning("throttled by the platform; slowing to %.1f/s", self.limiter.rate)
                    await asyncio.sleep(self.policy.throttle_wait)
                elif isinstance(exc, TokenError):
                    if refreshes >= MAX_TOKEN_REFRESHES:
                        raise
                    refreshes += 1
                    self.stats.token_refreshes += 1
                    await self.tokens.invalidate(token)
                elif attempt < self.policy.attempts:  # RetryableError
                    self.stats.retries += 1
                    delay = self.policy.backoff(attempt, self.rng)
                    log.info("%s; retry %d in %.2fs", exc, attempt, delay)
                    await asyncio.sleep(delay)
                else:
                    raise
        assert last is not None
        raise last


@dataclasses.dataclass(frozen=True, slots=True)
class PageRequest:
    billing_date: date
    start: int  # publish window, inclusive Unix seconds
    end: int
    page_num: int
    page_size: int
    douyin_id: str | None = None
    agency_client_key: str | None = None

    def body(self) -> bytes:
        doc: dict[str, Any] = {
            "billing_date": self.billing_date.isoformat(),
            "page_num": self.page_num,
            "page_size": self.page_size,
            "video_publish_start_time": self.start,
            "video_publish_end_time": self.end,
        }
        if self.douyin_id:
            doc["douyin_id"] = self.douyin_id
        if self.agency_client_key:
            doc["agency_client_key"] = self.agency_client_key
        return json.dumps(doc).encode()


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One page of daily data: every item of the answer as a Row, in order (rows the mapper will
    reject included, so that a full page counts as full)."""

    items: list[Row]
    log_id: str | None
    nbytes: int
    # When the answer was read (Unix seconds): of two answers listing one row, the later stands.
    answered_at: float = dataclasses.field(default_factory=time.time)

    def fingerprint(self) -> bytes:
        """Identifies a page's content cheaply: its length and its first and last items."""
        if not self.items:
            return b""
        return repr((len(self.items), self.items[0], self.items[-1])).encode()


def parse_daily_data(body: bytes) -> Page:
    """The page of a daily-data answer (decoded by `records.decode`); an error code raises the
    ApiError of its class."""
    answer = decode_daily_data(body)
    if answer.err_no != 0:
        raise api_error(
            "open", answer.err_no, answer.err_msg, endpoint=DAILY_DATA, log_id=answer.log_id
        )
    return Page(answer.rows, answer.log_id, len(body))


class DailyDataClient:
    """query_task_video_daily_data v2: one page per call."""

    def __init__(self, caller: ApiCaller, base_url: str) -> None:
        self._caller = caller
        self._url = base_url + DAILY_DATA_PATH

    @property
    def stats(self) -> CallStats:
        """The requests this client made, over its whole life."""
        return self._caller.stats

    @property
    def limiter(self) -> RequestLimiter:
        """The app's request-rate limiter, which every request of this client goes through."""
        return self._caller.limiter

    async def check_token(self) -> None:
        """Get a token now: refused credentials raise CredentialsError before any work starts."""
        await self._caller.tokens.get()

    async def fetch_page(
        self,
        request: PageRequest,
        *,
        on_sent: Callable[[], None] | None = None,
        before_body: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[Page, int]:
        """One page, and the number of requests it took (retries included); see
        `ApiCaller.call` for `on_sent` and `before_body`."""
        body = request.body()

        def build(token: str) -> tuple[bytes, dict[str, str]]:
            return body, {"access-token": token}

        return await self._caller.call(
            DAILY_DATA,
            self._url,
            build,
            parse_daily_data,
            on_sent=on_sent,
            before_body=before_body,
        )
