"""The HTTP edge: one place that talks aiohttp and turns its failures into our errors.

Everything above this module sees bytes in, `Response` out, or a `TransportError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace

import aiohttp

from sync.errors import ContractError, TransportError

USER_AGENT = "taskbox-sync/0.1"


@dataclasses.dataclass(frozen=True, slots=True)
class Timeouts:
    """Request time limits: connecting, and the whole request including the body (time spent
    waiting for room to read the body, `post(before_body=...)`, is not the server's and is not
    counted)."""

    connect: float = 10.0
    total: float = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes


async def _bytes_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestChunkSentParams,
) -> None:
    # Fired right before the body (with the headers, coalesced) is handed to the socket, in the
    # same step. Not `on_request_headers_sent`: that fires when the headers are only buffered,
    # and the bytes leave in a task of their own, as late as the event loop gets to it.
    on_sent = context.trace_request_ctx
    if on_sent is not None:
        on_sent(time.monotonic())


def new_session(timeouts: Timeouts, *, max_connections: int = 32) -> aiohttp.ClientSession:
    """The one session of a run: keep-alive pool, compressed answers accepted, time limits,
    and the moment each request's bytes leave reported to its `post(on_sent=...)`."""
    tracing = aiohttp.TraceConfig()
    tracing.on_request_chunk_sent.append(_bytes_sent)
    return aiohttp.ClientSession(
        trace_configs=[tracing],
        timeout=aiohttp.ClientTimeout(total=timeouts.total, connect=timeouts.connect),
        connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300),
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        raise_for_status=False,
    )


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    endpoint: str,
    headers: dict[str, str] | None = None,
    on_sent: Callable[[float], None] | None = None,
    before_body: Callable[[], Awaitable[None]] | None = None,
) -> Response:
    """POST a JSON body; HTTP 5xx, timeouts, resets and cut-off bodies raise TransportError.

    `on_sent(monotonic_time)` is called when the request's bytes are handed to the socket
    (sessions of `new_session`; a request with an empty body never reports it): the rate limit
    counts requests when they arrive, not when they were allowed.
    `before_body()` is awaited once a 200 answer's headers are in and before its body is read:
    the caller may wait there for room in memory while the unread body stays in the socket
    (aiohttp stops reading past ~128 KiB and TCP holds the sender back).
    """
    all_headers = {"Content-Type": "application/json"}
    if headers:
        all_headers.update(headers)
    # The session's total limit, applied to the server's parts only: sending until the headers
    # are in, and reading the body; not to the wait in `before_body`.
    limit = session.timeout.total
    phased = _without_total(session.timeout)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(limit) as deadline:
            async with session.post(
                url, data=body, headers=all_headers, trace_request_ctx=on_sent, timeout=phased
            ) as resp:
                status = resp.status
                if before_body is not None and status == 200:
                    deadline.reschedule(None)
                    await before_body()
                    deadline.reschedule(None if limit is None else loop.time() + limit)
                data = await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _transport_error(exc, endpoint) from None
    return _checked(status, data, endpoint)


async def get(
    session: aiohttp.ClientSession,
    url: str,
    *,
    endpoint: str,
    params: dict[str, str],
    headers: dict[str, str] | None = None,
) -> Response:
    """GET with query parameters (the provider's token endpoints); failures as `post`'s. The
    query may hold secrets: no error repeats the URL."""
    try:
        async with session.get(url, params=params, headers=headers) as resp:
            status = resp.status
            data = await resp.read()
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise _transport_error(exc, endpoint) from None
    return _checked(status, data, endpoint)


def _transport_error(exc: BaseException, endpoint: str) -> TransportError:
    """aiohttp's and the socket's failures, as ours (their text never includes the URL)."""
    if isinstance(exc, TimeoutError):
        return TransportError("request timed out", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(f"response body cut off: {exc}", endpoint=endpoint)
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"connection failed: {type(exc).__name__}", endpoint=endpoint)
    assert isinstance(exc, OSError)
    return TransportError(f"connection failed: {exc.strerror or exc}", endpoint=endpoint)


def _checked(status: int, data: bytes, endpoint: str) -> Response:
    if status >= 500:
        raise TransportError(f"HTTP {status}", endpoint=endpoint, http_status=status)
    if status != 200:
        # 4xx other than business errors: the platform answers those with 200 and a code.
        raise ContractError(f"unexpected HTTP {status}", endpoint=endpoint, http_status=status)
    return Response(status, data)


def _without_total(t: aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None,
        connect=t.connect,
        sock_read=t.sock_read,
        sock_connect=t.sock_connect,
        ceil_threshold=t.ceil_threshold,
    )
