"""The benchmark run: PostgreSQL and sandboxes up, each scenario in its own process, checks."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import sys
import time
from bisect import bisect_left, bisect_right
from typing import Any

from bench import pg
from bench.measure import NO_TIMELINE, ScenarioSpec
from bench.profiles import Profile, Scenario
from bench.sandbox import SandboxProcess, daily_calls, rejected_delta
from bench.trace import profiled
from sync import planner
from sync.pipeline.runs import DEFAULT_CONCURRENCY

TRUTH_SLACK = 3600  # seconds of publish time fetched before the first run's range


def recent_dates(days: int, now: float) -> list[dt.date]:
    """The `days` newest billing dates with data (T+1, China time), oldest first."""
    last = planner.shanghai_today(now) - dt.timedelta(days=1)
    return [last - dt.timedelta(days=i) for i in reversed(range(days))]


class Truth:
    """The sandboxes' own answer: publish times per date, fetched once, counted per range."""

    def __init__(self, sandboxes: dict[str, SandboxProcess], now: float) -> None:
        self._sandboxes = sandboxes
        self._start = planner.earliest_start(now) - TRUTH_SLACK
        self._times: dict[tuple[str, dt.date], list[int]] = {}

    def count(self, sandbox: str, day: dt.date, since: int) -> int:
        """Rows of `day` published from `since` to the day's end (a run's publish range)."""
        key = (sandbox, day)
        if key not in self._times:
            end = planner.day_end(day)
            self._times[key] = self._sandboxes[sandbox].publish_times(day, self._start, end)
        times = self._times[key]
        return bisect_right(times, planner.day_end(day)) - bisect_left(times, since)


@dataclasses.dataclass
class Context:
    profile: Profile
    admin_url: str
    name: str
    url: str
    postmaster: int | None
    sandboxes: dict[str, SandboxProcess]
    truth: Truth
    patches: tuple[str, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY
    mutations: int = 0
    apps_at_once: int = 0  # fleet scenarios: the CLI's --apps-at-once (0: the scenario's)


async def _prepare(ctx: Context, sc: Scenario, dates: list[dt.date]) -> int:
    """Bring table and sandbox to the scenario's starting state; returns rows changed."""
    sandbox = ctx.sandboxes[sc.sandbox]
    if sc.fresh:  # a new database: empty table, no statistics, as on a fresh install
        ctx.url = await pg.fresh_database(ctx.admin_url, ctx.name)
        await pg.checkpoint(ctx.url)
    for day in dates[len(dates) - sc.new_days :] if sc.new_days else []:
        await pg.delete_date(ctx.url, day)
    changed = 0
    if sc.change_fraction:
        targets = dates[: sc.change_days] if sc.change_days else dates
        ctx.mutations += 1
        changed = await asyncio.to_thread(
            sandbox.mutate, targets, sc.change_fraction, ctx.mutations
        )
    if not sc.fresh:
        await pg.settle(ctx.url)
    return changed


async def _child(spec: ScenarioSpec, limit: float) -> dict[str, Any] | None:
    """The scenario process's measurements; None when it ran out of time (then killed)."""
    command = [sys.executable, "-m", "bench.scenario", json.dumps(dataclasses.asdict(spec))]
    command = profiled(command, spec.name)
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        await pg.terminate_backends(spec.database_url)  # their statements would run on
        return None
    lines = [n for n in out.decode().splitlines() if n.startswith("{")]  # (py-spy's say too)
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scenario {spec.name} exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def run_scenario(ctx: Context, sc: Scenario) -> dict[str, Any]:
    """Prepare, run in a child process, then measure what the child cannot see."""
    sandbox = ctx.sandboxes[sc.sandbox]
    dates = recent_dates(sc.days, time.time())
    changed = await _prepare(ctx, sc, dates)
    xid = await pg.current_xid(ctx.url)
    stats_before = await asyncio.to_thread(sandbox.stats)
    now = time.time()
    spec = ScenarioSpec(
        name=sc.name,
        database_url=ctx.url,
        base_url=sandbox.base_url,
        client_key=sandbox.info["client_key"],
        client_secret=sandbox.info["client_secret"],
        dates=[d.isoformat() for d in dates],
        now=now,
        kind=sc.kind,
        engine=sc.engine,
        page_size=sc.page_size,
        concurrency=ctx.concurrency,
        sample_partitions=sc.sample_partitions,
        sandbox_pid=sandbox.pid,
        postmaster_pid=ctx.postmaster,
        patches=ctx.patches if sc.engine == "sync" else (),
    )
    began = time.monotonic()
    if sc.latency:
        await asyncio.to_thread(sandbox.set_latency, sc.latency)
    try:
        m = await _child(spec, sc.timeout) or timed_out(sc.timeout, time.monotonic() - began)
    finally:
        if sc.latency:
            await asyncio.to_thread(sandbox.set_latency, sandbox.spec.latency)
    stats_after = await asyncio.to_thread(sandbox.stats)
    since = planner.earliest_start(now)
    m["dates"] = spec.dates
    m["rejected"] = rejected_delta(stats_before, stats_after)
    m["sandbox_calls"] = daily_calls(stats_after) - daily_calls(stats_before)
    m["versions"] = await pg.versions_since(ctx.url, xid)
    m["changed"] = changed
    if sc.engine == "sync":
        m["table_counts"] = await pg.counts_by_date(ctx.url, dates, since)
        m["truth_counts"] = {
            d.isoformat(): await asyncio.to_thread(ctx.truth.count, sc.sandbox, d, since)
            for d in dates
        }
    return m


async def start(
    profile: Profile, scenarios: list[Scenario], database_url: str | None, name: str
) -> tuple[Context, str]:
    """PostgreSQL (fresh database `name`) and the sandboxes the scenarios need, warmed up."""
    needed = {sc.sandbox for sc in scenarios}
    sandboxes = {k: SandboxProcess(s) for k, s in profile.sandboxes.items() if k in needed}
    try:
        admin_url, embedded = await pg.server_url(database_url)
        url = await pg.fresh_database(admin_url, name)
        postmaster = await pg.postmaster_pid(url)
        for sandbox in sandboxes.values():
            await asyncio.to_thread(sandbox.wait_ready)
    except BaseException:
        for sandbox in sandboxes.values():
            sandbox.stop()
        raise
    where = "embedded PostgreSQL" if embedded else "PostgreSQL of DATABASE_URL"
    truth = Truth(sandboxes, time.time())
    return Context(profile, admin_url, name, url, postmaster, sandboxes, truth), where


def timed_out(limit: float, wall: float) -> dict[str, Any]:
    """What stands for the measurements of a scenario that did not finish in time."""
    return {
        "status": "timed out",
        "error": f"killed after {limit:.0f} s",
        "wall": wall,
        "rows": 0,
        "requests": 0,
        "throttled": 0,
        "retries": 0,
        "partitions": [],
        "cpu": {
            "sync": 0.0,
            "sandbox": 0.0,
            "postgres": 0.0,
            "postgres_helpers": 0.0,
            "other": 0.0,
        },
        "stages": {},
        **NO_TIMELINE,
        "peak_rss_mb": 0.0,
    }
