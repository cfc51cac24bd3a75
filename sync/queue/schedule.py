"""The nightly schedule: a cron expression read in China time, and the ticks it makes.

`ticks` and `due` are pure (a cron, moments in Unix seconds). `keep_scheduling` is the loop of a
worker started with --schedule: at each tick it defers one tick job, through procrastinate's
periodic deferral (a unique row per task and tick in `procrastinate_periodic_defers`), so however
many scheduling workers run, a tick is deferred once; the worker that takes the tick job enqueues
the nightly of every app of its apps file (`sync.queue.worker`). procrastinate's own periodic
tasks read cron in UTC; ours is China time (Asia/Shanghai has no daylight saving time, but a
cron such as "30 4 * * 1" names a weekday of China's calendar).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable

from croniter import croniter
from procrastinate import App

from sync.errors import SettingsError
from sync.planner import SHANGHAI
from sync.queue.connect import SCHEDULE_QUEUE, TICK_TASK

log = logging.getLogger(__name__)

MAX_DELAY = 600.0  # a tick missed by more than this when a worker starts is not made up
PERIODIC_ID = "nightly"


def check_cron(text: str) -> str:
    """A cron expression of five fields (minute hour day month weekday), else SettingsError."""
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise SettingsError(
            f"--schedule: expected a cron expression of five fields such as '30 4 * * *' "
            f"(minute hour day month weekday, China time), got {text!r}"
        )
    return text


def _next(cron: str, after: float) -> float:
    start = dt.datetime.fromtimestamp(after, SHANGHAI)
    return float(croniter(cron, start).get_next(dt.datetime).timestamp())


def _previous(cron: str, at: float) -> float:
    start = dt.datetime.fromtimestamp(at, SHANGHAI)
    return float(croniter(cron, start).get_prev(dt.datetime).timestamp())


def due(cron: str, last: float | None, now: float) -> list[float]:
    """The ticks to defer at `now`: those after `last` (the last one deferred) up to `now`; on
    a worker's first pass (`last` None) the latest tick, if it is at most MAX_DELAY old."""
    if last is None:
        previous = _previous(cron, now + 1e-6)
        return [previous] if now - previous <= MAX_DELAY else []
    found = []
    tick = _next(cron, last)
    while tick <= now:
        found.append(tick)
        tick = _next(cron, tick)
    return found


def next_tick(cron: str, now: float) -> float:
    return _next(cron, now)


async def defer_tick(app: App, tick: float, lookback_days: int) -> int | None:
    """Defer the tick job of `tick` unless another worker did: its id, or None."""
    deferrer = app.configure_task(
        TICK_TASK,
        queue=SCHEDULE_QUEUE,
        task_kwargs={"timestamp": int(tick), "lookback_days": lookback_days},
    )
    return await app.job_manager.defer_periodic_job(
        deferrer.job, periodic_id=PERIODIC_ID, defer_timestamp=int(tick)
    )


async def keep_scheduling(
    app: App,
    cron: str,
    lookback_days: int,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Defer a tick job at every tick of `cron` (China time) until cancelled."""
    last: float | None = None
    while True:
        now = clock()
        for tick in due(cron, last, now):
            job_id = await defer_tick(app, tick, lookback_days)
            when = dt.datetime.fromtimestamp(tick, SHANGHAI).strftime("%Y-%m-%d %H:%M")
            if job_id is not None:
                log.info("schedule: tick %s (China time) deferred as job %d", when, job_id)
            else:
                log.info("schedule: tick %s (China time) already deferred elsewhere", when)
            last = tick
        if last is None:
            last = now
        await asyncio.sleep(max(next_tick(cron, now) - clock(), 0.0) + 0.5)
