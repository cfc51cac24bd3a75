"""`BENCH_TRACE=DIR`: each request's times on both sides, to see where a throttle came from.

The platform counts requests when they reach it; our limiter counts them when they leave. A
throttled answer with every 11 of our departures spread over more than a second means the two
clocks saw different spacings. The trace records, on one clock (CLOCK_MONOTONIC is shared by
the processes of one machine):

* client (`DIR/<scenario>-client.json`): per request, when the limiter let it go (`slot`), when
  it counted as leaving in the end (`sent`: the slot's time after `Slot.went`), when its bytes
  were handed to the socket (`wrote`, seen here independently), when its answer's headers
  were in (`headers`), when it had room in the row budget (`leased`), when its body was read
  (`done`), its page key, and when the fetcher asked for that page (`asked`: before
  the gates that may hold a request back, and a guess's wait for spare rate);
* sandbox (`DIR/sandbox-<pid>.json`, written when the process ends): per daily-data request,
  when its bytes reached the server's protocol (`rx`), when its handler began (`entry`, the
  moment the throttle window is stamped with), whether it was throttled, and its page key; the
  event loop's late wake-ups (`lag`) and the cyclic collector's pauses (`gc`).

Nothing here changes what is measured elsewhere: the probes only note times.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

ENV = "BENCH_TRACE"
LAG_TICK = 0.002  # seconds between the loop monitor's wake-ups
LAG_NOTE = 0.004  # a wake-up later than this is noted


PROFILE_ENV = "BENCH_PROFILE"  # a folder: sample scenario processes with py-spy


def profiled(command: list[str], name: str) -> list[str]:
    """`command` under `py-spy record` into `$BENCH_PROFILE/<name>.txt` (raw collapsed stacks)
    when BENCH_PROFILE is set; else `command` itself."""
    where = os.environ.get(PROFILE_ENV)
    if not where:
        return command
    samples = Path(where) / f"{name}.txt"
    return ["py-spy", "record", "-r", "250", "-f", "raw", "-o", str(samples), "--", *command]


def folder() -> Path | None:
    where = os.environ.get(ENV)
    return Path(where) if where else None


def _key(raw: bytes | None) -> str:
    try:
        doc = json.loads(raw or b"")
        return f"{doc['billing_date']}/{doc['video_publish_start_time']}/{doc['page_num']}"
    except (ValueError, KeyError, TypeError):
        return "?"


# -- the sandbox's side -------------------------------------------------------------------


class SandboxTrace:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lag: list[tuple[float, float]] = []
        self.gc: list[tuple[float, float, int]] = []
        self._rx: dict[int, float] = {}
        self._gc_started = 0.0

    def dump(self, where: Path) -> None:
        doc = {"requests": self.requests, "lag": self.lag, "gc": self.gc}
        (where / f"sandbox-{os.getpid()}.json").write_text(json.dumps(doc))

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        else:
            now = time.monotonic()
            self.gc.append((self._gc_started, now - self._gc_started, info["generation"]))

    async def watch_loop(self) -> None:
        import asyncio

        while True:
            before = time.monotonic()
            await asyncio.sleep(LAG_TICK)
            late = time.monotonic() - before - LAG_TICK
            if late > LAG_NOTE:
                self.lag.append((before + LAG_TICK, late))


def install_sandbox() -> SandboxTrace | None:
    """In the sandbox process, before its app is built: note arrivals, lag and GC pauses."""
    where = folder()
    if where is None:
        return None
    from aiohttp import web, web_protocol

    from sync.sandbox import daily_data

    trace = SandboxTrace()
    gc.callbacks.append(trace.on_gc)
    atexit.register(trace.dump, where)
    received = web_protocol.RequestHandler.data_received

    def data_received(self: web_protocol.RequestHandler, data: bytes) -> None:
        trace._rx[id(self.transport)] = time.monotonic()
        received(self, data)

    web_protocol.RequestHandler.data_received = data_received  # type: ignore[method-assign]
    handler = daily_data.query_task_video_daily_data

    async def traced(request: web.Request) -> web.StreamResponse:
        entry = time.monotonic()
        rx = trace._rx.get(id(request.transport), entry)
        resp = await handler(request)
        body = getattr(resp, "body", b"") or b""
        throttled = isinstance(body, bytes) and b"28003018" in body[:80]
        trace.requests.append(
            {
                "rx": rx,
                "entry": entry,
                "throttled": throttled,
                "key": _key(request._read_bytes),
            }
        )
        return resp

    daily_data.query_task_video_daily_data = traced  # type: ignore[assignment]
    return trace


# -- the client's side --------------------------------------------------------------------


def install_client(name: str) -> None:
    """In a scenario process: note each request's slot, departure and answer."""
    where = folder()
    if where is None:
        return
    import contextvars

    from aiohttp import http_writer

    from sync.api import client

    requests: list[dict[str, Any]] = []
    current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
        "bench_trace_request", default=None
    )
    # The request's bytes reach the socket in aiohttp's body-writer task, which inherits the
    # context of the `post` that made it: the first write seen there is the real departure.
    for method in ("_write", "_writelines"):
        original = getattr(http_writer.StreamWriter, method)

        def noted(self: Any, data: Any, _original: Any = original) -> None:
            entry = current.get()
            if entry is not None and "wrote" not in entry:
                entry["wrote"] = time.monotonic()
            _original(self, data)

        setattr(http_writer.StreamWriter, method, noted)
    atexit.register(lambda: (where / f"{name}-client.json").write_text(json.dumps(requests)))
    post = client.post
    fetch_page = client.DailyDataClient.fetch_page
    asked: dict[str, float] = {}  # page key -> when the fetcher asked for it (first time)

    async def traced_fetch(self: Any, request: Any, **kwargs: Any) -> Any:
        asked.setdefault(_key(request.body()), time.monotonic())
        return await fetch_page(self, request, **kwargs)

    async def traced(session: Any, url: str, body: bytes, **kwargs: Any) -> Any:
        on_sent = kwargs.get("on_sent")
        slot = getattr(on_sent, "__self__", None)
        key = _key(body)
        entry = {"asked": asked.get(key), "slot": getattr(slot, "at", None), "key": key}
        requests.append(entry)
        current.set(entry)
        before_body = kwargs.get("before_body")
        if before_body is not None:

            async def noted_body() -> None:
                entry["headers"] = time.monotonic()  # the answer's headers are in
                await before_body()
                entry["leased"] = time.monotonic()  # room in memory: the body is read next

            kwargs["before_body"] = noted_body
        try:
            return await post(session, url, body, **kwargs)
        finally:
            entry["sent"] = getattr(slot, "at", None)
            entry["done"] = time.monotonic()

    client.post = traced  # type: ignore[assignment]
    client.DailyDataClient.fetch_page = traced_fetch  # type: ignore[method-assign]
    _sample_limiter(where / f"{name}-limiter.json")


LIMITER_TICK = 0.01  # seconds between looks at the limiter


def _sample_limiter(path: Path) -> None:
    """Every LIMITER_TICK while the run's limiter is in use: how many requests wait in it, and
    whether it would let one go at once (a slot going unused if none waits)."""
    import asyncio

    from sync.api import limiter

    samples: list[tuple[float, int, bool]] = []
    atexit.register(lambda: path.write_text(json.dumps(samples)))
    acquire = limiter.RequestLimiter.acquire
    watching: set[int] = set()

    async def watch(lim: Any) -> None:
        while True:
            now = time.monotonic()
            free = lim.wait(lim._clock()) <= 0 and lim._pace.has_capacity()
            samples.append((now, lim._asking, free))
            await asyncio.sleep(LIMITER_TICK)

    async def traced_acquire(self: Any) -> Any:
        if id(self) not in watching:
            watching.add(id(self))
            task = asyncio.create_task(watch(self))
            task.add_done_callback(lambda _: None)
            self._bench_watch = task  # kept alive with the limiter
        return await acquire(self)

    limiter.RequestLimiter.acquire = traced_acquire  # type: ignore[method-assign]
