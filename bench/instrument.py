"""Probes installed in a scenario process: CPU per stage and the timeline of requests.

Nothing in `sync` is edited: the probes replace, in this process only, the functions the engine
calls through module attributes. Synchronous stages (decode, map) are timed around the call.
Coroutine stages (write = the COPY of a page, merge) are timed step by step: only the CPU spent
running *their* code between two awaits counts, not that of the tasks that run meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")
STAGES = ("decode", "map", "write", "merge", "gc")
clock = time.thread_time  # CPU of the event loop's thread only


@dataclasses.dataclass
class Probe:
    """What the probes saw: CPU seconds per stage, request and partition times (monotonic)."""

    cpu: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    request_starts: list[float] = dataclasses.field(default_factory=list)
    request_ends: list[float] = dataclasses.field(default_factory=list)
    # When each request's bytes left, as its limiter slot says once the request is over.
    departures: list[float] = dataclasses.field(default_factory=list)
    # Starts of the requests dropped before their answer was read (guesses past a window's end).
    dropped: list[float] = dataclasses.field(default_factory=list)
    in_flight_at_start: list[int] = dataclasses.field(default_factory=list)
    partition_starts: list[float] = dataclasses.field(default_factory=list)
    in_flight: int = 0
    _gc_started: float = 0.0

    def gc_callback(self, phase: str, info: dict[str, Any]) -> None:
        """For gc.callbacks: CPU spent in the cyclic garbage collector (also counted in the
        stage whose allocation set it off)."""
        if phase == "start":
            self._gc_started = clock()
        else:
            self.cpu["gc"] += clock() - self._gc_started

    def timed(self, stage: str, fn: Callable[..., T]) -> Callable[..., T]:
        """`fn`, with its CPU time added to `stage`."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> T:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu[stage] += clock() - start

        return wrapper

    def timed_async(
        self, stage: str, fn: Callable[..., Awaitable[T]]
    ) -> Callable[..., Awaitable[T]]:
        """Coroutine function `fn`, with the CPU of each of its steps added to `stage`."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Awaitable[T]:
            return _Stepped(fn(*args, **kwargs), self.cpu, stage)

        return wrapper

    def requests(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        """Coroutine function `fn` (one HTTP request), with its start and end recorded."""

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            started = time.monotonic()
            self.request_starts.append(started)
            self.in_flight_at_start.append(self.in_flight)
            self.in_flight += 1
            slot = getattr(kwargs.get("on_sent"), "__self__", None)  # `Slot.went`, bound
            try:
                return await fn(*args, **kwargs)
            except asyncio.CancelledError:
                self.dropped.append(started)
                raise
            finally:
                self.in_flight -= 1
                self.request_ends.append(time.monotonic())
                if getattr(slot, "left", False):
                    self.departures.append(slot.at)

        return wrapper

    def partitions(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        """Coroutine function `fn` (one partition's work), with its start recorded."""

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Awaitable[T]:
            self.partition_starts.append(time.monotonic())
            return fn(*args, **kwargs)

        return wrapper


class _Stepped:
    """Awaits a coroutine like `await coro` does, timing each step it runs."""

    def __init__(self, coro: Awaitable[Any], cpu: dict[str, float], stage: str) -> None:
        self._coro = coro.__await__()
        self._cpu = cpu
        self._stage = stage

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self._coro
        value: Any = None
        error: BaseException | None = None
        while True:
            start = clock()
            try:
                step = inner.send(value) if error is None else inner.throw(error)
            except StopIteration as stop:
                return stop.value
            finally:
                self._cpu[self._stage] += clock() - start
            try:
                value, error = (yield step), None
            except GeneratorExit:
                inner.close()
                raise
            except BaseException as exc:  # cancellation and the like: hand it to the coroutine
                value, error = None, exc


def _patch(owner: object, name: str, wrap: Callable[[Any], Any]) -> None:
    setattr(owner, name, wrap(getattr(owner, name)))


def install(probe: Probe) -> None:
    """Point the engine's decode, map, COPY, merge and HTTP calls at the probes."""
    import gc

    from sync.api import client
    from sync.db import store
    from sync.pipeline import partition

    gc.callbacks.append(probe.gc_callback)

    _patch(client, "parse_daily_data", lambda fn: probe.timed("decode", fn))
    _patch(client, "post", probe.requests)
    _patch(partition, "map_page", lambda fn: probe.timed("map", fn))
    _patch(store.PartitionWriter, "add_written", lambda fn: probe.timed_async("write", fn))
    _patch(store.PartitionWriter, "merge", lambda fn: probe.timed_async("merge", fn))
    _patch(partition.PartitionWork, "sync", probe.partitions)
