"""Fleet scenarios (issue #14): several apps in one sync process, run as users run it.

The sync is the CLI (`python -m sync nightly|backfill --apps FILE`, through `bench.fleet_sync`,
which only notes each request's times) in a process of its own, against a sandbox process of
N apps (`bench.sandbox_server --apps N`). Meanwhile this process samples `pg_stat_activity`
(connections of application_name 'taskbox-sync' on the bench's database) every SAMPLE_S.
Afterwards: the sandbox's per-app counters (each app's busiest sliding second, throttled
answers), the ledger (each app's run), and every app's rows against its sandbox truth, key by
key (`verify`).

The aggregate request rate "while 10 or more apps have work" (`rate_while_busy`): an app has
work from the run's start until its own last request leaves (apps still waiting for a slot
have work too). From the run's first departure until the moment fewer than MIN_APPS apps have a
request left to make (the 10th-last app's last departure), requests departed / seconds. Our
departure times are the limiter slots' (when the bytes reached the socket), on the sync
process's monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import psutil  # type: ignore[import-untyped]
from sqlalchemy import make_url

from bench import pg
from bench.measure import _min_span
from bench.report import Verdict, _num, grid
from bench.sandbox import SandboxProcess, daily_calls, rejected_delta
from bench.trace import profiled
from sync import planner
from sync.sandbox.apps_file import render_apps_file, secret_env
from sync.sandbox.credentials import AppCredentials

if TYPE_CHECKING:
    from bench.profiles import Scenario
    from bench.run import Context

SAMPLE_S = 0.1  # seconds between two looks at pg_stat_activity and the sync's memory
MIN_APPS = 10  # "while 10 or more apps have work"
PER_APP_LIMIT = 10  # requests an app may make in any sliding second
FLEET_RATE = 90.0  # requests/s while >= MIN_APPS apps have work (fleet-small)
FLEET_MAX_RSS_MB = 400.0
FLEET_BIG_ROWS_PER_S = 100_000.0


# -- arithmetic on the trace ------------------------------------------------------------------


def rate_while_busy(departures: dict[int, list[float]], min_apps: int = MIN_APPS) -> dict[str, Any]:
    """Requests per second from the first departure until fewer than `min_apps` apps have a
    request left to make (each app's last departure ends its work); None with fewer apps."""
    lasts = sorted(max(ts) for ts in departures.values() if ts)
    every = sorted(t for ts in departures.values() for t in ts)
    if len(lasts) < min_apps or not every:
        return {"rate": None, "span_s": 0.0, "requests": 0}
    first, end = every[0], lasts[-min_apps]
    count = bisect_right(every, end) - bisect_left(every, first)
    span = end - first
    return {"rate": count / span if span > 0 else None, "span_s": span, "requests": count}


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most of the sorted `times` within any half-open span [t, t + window)."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def per_app(requests: list[list[Any]]) -> dict[int, list[float]]:
    """Each app's departure times, sorted (requests that never left are not counted)."""
    out: dict[int, list[float]] = defaultdict(list)
    for app, _start, departure, _end, _dropped in requests:
        if departure is not None and app is not None:
            out[int(app)].append(float(departure))
    for times in out.values():
        times.sort()
    return dict(out)


# -- the run ----------------------------------------------------------------------------------


def _cli_args(sc: Scenario, dates: list[dt.date], apps_file: Path, ctx: Context) -> list[str]:
    if sc.kind == "nightly":  # the default lookback, counted back from today (China time)
        args = ["nightly", "--lookback-days", str(sc.days)]
    else:
        args = ["backfill", "--from", dates[0].isoformat(), "--to", dates[-1].isoformat()]
    args += ["--apps", str(apps_file), "--database-url", ctx.url]
    args += ["--concurrency", str(ctx.concurrency), "--log-format", "json"]
    at_once = ctx.apps_at_once or sc.apps_at_once
    if at_once:
        args += ["--apps-at-once", str(at_once)]
    return args


def _env(sandbox: SandboxProcess, apps: list[AppCredentials]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DOUYIN_", "TASKBOX_", "SBX_APP_")) and k != "DATABASE_URL"
    }
    env.update(secret_env(apps))
    env["DOUYIN_OPEN_BASE_URL"] = sandbox.base_url
    env["DOUYIN_DEVELOPER_BASE_URL"] = sandbox.base_url
    return env


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclasses.dataclass
class _Watch:
    """What the sampler saw while the sync ran."""

    connections_max: int = 0
    active_max: int = 0
    samples: int = 0
    connections_sum: int = 0
    rss_mb_max: float = 0.0
    # CPU seconds of each server process of ours, the last seen: the sync's backends end with
    # it, before a snapshot taken after it could see them
    server: dict[int, float] = dataclasses.field(default_factory=dict)


SERVER_EVERY = 3  # samples between two looks at the server's processes' CPU


def _server_cpu(postmaster: int | None, url: str, seen: dict[int, float]) -> None:
    for pid, seconds in pg.server_cpu(postmaster, pg.database_name(url)).items():
        seen[pid] = max(seen.get(pid, 0.0), seconds)


async def _sample(
    url: str, pid: int, postmaster: int | None, watch: _Watch, done: asyncio.Event
) -> None:
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        proc = psutil.Process(pid)
        while not done.is_set():
            if watch.samples % SERVER_EVERY == 0:
                _server_cpu(postmaster, url, watch.server)
            row = await conn.fetchrow(
                "SELECT count(*) AS n, count(*) FILTER (WHERE state <> 'idle') AS active "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'taskbox-sync'"
            )
            assert row is not None
            watch.connections_max = max(watch.connections_max, int(row["n"]))
            watch.active_max = max(watch.active_max, int(row["active"]))
            watch.connections_sum += int(row["n"])
            watch.samples += 1
            with contextlib.suppress(psutil.Error):
                watch.rss_mb_max = max(watch.rss_mb_max, proc.memory_info().rss / 2**20)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), SAMPLE_S)
    finally:
        await conn.close()


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


async def _run_cli(
    ctx: Context,
    sandbox: SandboxProcess,
    command: list[str],
    env: dict[str, str],
    tmp: Path,
    limit: float,
) -> dict[str, Any]:
    """Run the CLI; CPU of everyone involved, the sampler's figures, the trace."""
    server_before = pg.server_cpu(ctx.postmaster, pg.database_name(ctx.url))
    sandbox_before = pg.process_cpu(sandbox.pid)
    machine_before = pg.machine_busy()
    children_before = _children_cpu()
    bench_before = pg.self_cpu()
    began = time.monotonic()
    with (tmp / "stdout.txt").open("wb") as out, (tmp / "stderr.txt").open("wb") as err:
        proc = await asyncio.create_subprocess_exec(*command, stdout=out, stderr=err, env=env)
        watch, done = _Watch(), asyncio.Event()
        watch.server = dict(server_before)
        sampler = asyncio.create_task(_sample(ctx.url, proc.pid, ctx.postmaster, watch, done))
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), limit)
        except TimeoutError:
            timed_out = True
            proc.kill()
            await proc.wait()
        finally:
            done.set()
            await sampler
    wall = time.monotonic() - began
    if timed_out:
        await pg.terminate_backends(ctx.url)
    sync_cpu = _children_cpu() - children_before
    bench_cpu = pg.self_cpu() - bench_before  # this process: the sampler
    sandbox_cpu = pg.process_cpu(sandbox.pid) - sandbox_before
    _server_cpu(ctx.postmaster, ctx.url, watch.server)
    server = watch.server
    postgres = pg.cpu_delta(server_before, server)
    machine = pg.machine_busy() - machine_before
    trace_path = tmp / "trace.json"
    trace: dict[str, Any] = json.loads(trace_path.read_text()) if trace_path.exists() else {}
    return {
        "timed_out": timed_out,
        "exit": proc.returncode,
        "wall": wall,
        "trace": trace,
        "watch": {k: v for k, v in dataclasses.asdict(watch).items() if k != "server"},
        "summary": (tmp / "stdout.txt").read_text(errors="replace")[-4000:],
        "stderr_tail": (tmp / "stderr.txt").read_text(errors="replace")[-2000:],
        "cpu": {
            "sync": sync_cpu,
            "sandbox": sandbox_cpu,
            "postgres": postgres,
            "postgres_helpers": pg.cpu_delta(server_before, server, helpers=True),
            "bench": bench_cpu,
            "other": max(machine - sync_cpu - sandbox_cpu - postgres - bench_cpu, 0.0),
        },
    }


async def _ledger(url: str) -> dict[str, dict[str, Any]]:
    """Each app's run (the latest), and the oldest publish time its plan asked for."""
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        runs = await conn.fetch(
            "SELECT DISTINCT ON (app_id) app_id, status, rows_fetched, api_calls, throttled, "
            "retries, partitions_total, partitions_done FROM sync_runs ORDER BY app_id, id DESC"
        )
        starts = await conn.fetch(
            "SELECT app_id, extract(epoch FROM min(window_start))::bigint AS since "
            "FROM sync_partitions GROUP BY app_id"
        )
    finally:
        await conn.close()
    since = {r["app_id"]: int(r["since"]) for r in starts}
    return {r["app_id"]: {**dict(r), "since": since.get(r["app_id"])} for r in runs}


async def verify(
    url: str,
    sandbox: SandboxProcess,
    apps: list[AppCredentials],
    dates: list[dt.date],
    since: dict[str, int],
) -> dict[str, Any]:
    """Every app's rows against its truth: counts per app and billing date, truth rows missing
    from the table (by key and app), table rows that are not their app's (another app's key,
    or no app's), over each app's publish range."""
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    truth_counts: dict[str, dict[str, int]] = {}
    try:
        await conn.execute(
            "CREATE TEMP TABLE bench_truth (app_id text, billing_date date, video_id bigint, "
            "task_id bigint)"
        )
        default_since = min(since.values(), default=planner.earliest_start(time.time()))
        for app in apps:
            start = since.get(app.app_id, default_since)
            truth_counts[app.app_id] = {}
            for day in dates:
                videos, tasks = await asyncio.to_thread(
                    sandbox.truth_keys, day, start, planner.day_end(day), app.client_key
                )
                truth_counts[app.app_id][day.isoformat()] = len(videos)
                await conn.copy_records_to_table(
                    "bench_truth",
                    records=[(app.app_id, day, v, t) for v, t in zip(videos, tasks, strict=True)],
                )
        await conn.execute("ANALYZE bench_truth")
        await conn.execute(
            "CREATE TEMP TABLE bench_since AS SELECT * FROM unnest($1::text[], $2::bigint[]) "
            "AS s(app_id, since)",
            [a.app_id for a in apps],
            [since.get(a.app_id, default_since) for a in apps],
        )
        rows = await conn.fetch(
            "SELECT e.app_id, e.billing_date, count(*) AS n FROM video_daily_earnings e "
            "JOIN bench_since s USING (app_id) WHERE e.billing_date = ANY($1::date[]) "
            "AND e.publish_time >= to_timestamp(s.since) GROUP BY 1, 2",
            dates,
        )
        missing = await conn.fetchval(
            "SELECT count(*) FROM bench_truth t WHERE NOT EXISTS (SELECT 1 FROM "
            "video_daily_earnings e WHERE e.billing_date = t.billing_date AND "
            "e.video_id = t.video_id AND e.task_id = t.task_id AND e.app_id = t.app_id)"
        )
        foreign = await conn.fetchval(
            "SELECT count(*) FROM video_daily_earnings e JOIN bench_truth t USING "
            "(billing_date, video_id, task_id) WHERE t.app_id <> e.app_id"
        )
        stray = await conn.fetchval(
            "SELECT count(*) FROM video_daily_earnings e JOIN bench_since s USING (app_id) "
            "WHERE e.publish_time >= to_timestamp(s.since) AND NOT EXISTS (SELECT 1 FROM "
            "bench_truth t WHERE t.billing_date = e.billing_date AND t.video_id = e.video_id "
            "AND t.task_id = e.task_id AND t.app_id = e.app_id)"
        )
        unknown_app = await conn.fetchval(
            "SELECT count(*) FROM video_daily_earnings WHERE app_id <> ALL($1::text[])",
            [a.app_id for a in apps],
        )
    finally:
        await conn.close()
    table: dict[str, dict[str, int]] = {a.app_id: {} for a in apps}
    for r in rows:
        table.setdefault(r["app_id"], {})[r["billing_date"].isoformat()] = int(r["n"])
    wrong = {
        f"{app}/{day}": (table.get(app, {}).get(day, 0), n)
        for app, days in truth_counts.items()
        for day, n in days.items()
        if table.get(app, {}).get(day, 0) != n
    }
    return {
        "truth_rows": sum(sum(d.values()) for d in truth_counts.values()),
        "table_rows": sum(sum(d.values()) for d in table.values()),
        "wrong_counts": dict(list(wrong.items())[:10]),
        "wrong_count_cells": len(wrong),
        "cells": sum(len(d) for d in truth_counts.values()),
        "missing": int(missing),
        "foreign": int(foreign),
        "stray": int(stray),
        "unknown_app": int(unknown_app),
    }


async def run_fleet_scenario(ctx: Context, sc: Scenario) -> dict[str, Any]:
    """A fresh database, the CLI over every app of the scenario's sandbox, then the checks."""
    from bench.run import recent_dates

    sandbox = ctx.sandboxes[sc.sandbox]
    ctx.url = await pg.fresh_database(ctx.admin_url, ctx.name)
    await pg.checkpoint(ctx.url)
    apps = [AppCredentials.from_json(a) for a in sandbox.info["apps"]]
    dates = recent_dates(sc.days, time.time())
    stats_before = await asyncio.to_thread(sandbox.stats)
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as where:
        tmp = Path(where)
        apps_file = tmp / "apps.toml"
        apps_file.write_text(render_apps_file(apps), encoding="utf-8")
        command = [sys.executable, "-m", "bench.fleet_sync", str(tmp / "trace.json"), "--"]
        command = profiled(command + _cli_args(sc, dates, apps_file, ctx), sc.name)
        if sc.latency:
            await asyncio.to_thread(sandbox.set_latency, sc.latency)
        try:
            m = await _run_cli(ctx, sandbox, command, _env(sandbox, apps), tmp, sc.timeout)
        finally:
            if sc.latency:
                await asyncio.to_thread(sandbox.set_latency, sandbox.spec.latency)
    stats_after = await asyncio.to_thread(sandbox.stats)
    ledger = await _ledger(ctx.url)
    since = {app: run["since"] for app, run in ledger.items() if run["since"] is not None}
    began = time.monotonic()
    m["verify"] = await verify(ctx.url, sandbox, apps, dates, since)
    m["verify_s"] = time.monotonic() - began
    peaks = {
        a.app_id: int(stats_after["apps"][a.client_key]["daily_data_peak_per_second"]) for a in apps
    }
    trace = m.pop("trace")
    requests = trace.get("requests", [])
    departures = per_app(requests)
    m.update(
        name=sc.name,
        apps=len(apps),
        dates=[d.isoformat() for d in dates],
        ledger=ledger,
        sandbox_peaks=peaks,
        sandbox_calls=daily_calls(stats_after) - daily_calls(stats_before),
        rejected=rejected_delta(stats_before, stats_after),
        pool_cap=trace.get("pool_cap"),
        peak_rss_mb=trace.get("peak_rss_mb", 0.0),
        run_s=(trace["ended"] - trace["started"]) if "ended" in trace else None,
        client_requests=len(requests),
        client_dropped=sum(r[4] for r in requests),
        client_peak=max((max_in_window(ts) for ts in departures.values()), default=0),
        client_min_span_11=min(
            (s for ts in departures.values() if (s := _min_span(ts, 11)) is not None),
            default=None,
        ),
        busy=rate_while_busy(departures),
        traced_apps=len(departures),
    )
    return m


# -- figures, checks, targets -----------------------------------------------------------------


def derive(sc: Scenario, m: dict[str, Any]) -> dict[str, Any]:
    ledger = m["ledger"].values()
    rows = sum(int(r["rows_fetched"]) for r in ledger)
    wall = max(m["wall"], 1e-9)
    statuses: dict[str, int] = defaultdict(int)
    for r in ledger:
        statuses[r["status"]] += 1
    missing_runs = m["apps"] - len(m["ledger"])
    if missing_runs:
        statuses["no run"] += missing_runs
    return {
        "status": "timed out"
        if m["timed_out"]
        else ("succeeded" if m["exit"] == 0 else f"exit {m['exit']}"),
        "apps": m["apps"],
        "app_statuses": dict(statuses),
        "billing_dates": len(m["dates"]),
        "rows": rows,
        "calls": m["sandbox_calls"],
        "ledger_calls": sum(int(r["api_calls"]) for r in ledger),
        "dropped": m["client_dropped"],
        "wall_s": m["wall"],
        "run_s": m["run_s"],
        "rows_per_s": rows / wall,
        "requests_per_s": m["sandbox_calls"] / wall,
        "busy_rate": m["busy"]["rate"],
        "busy_span_s": m["busy"]["span_s"],
        "busy_requests": m["busy"]["requests"],
        "sandbox_peak_max": max(m["sandbox_peaks"].values(), default=0),
        "client_peak_max": m["client_peak"],
        "client_min_span_11": m["client_min_span_11"],
        "throttled": max(
            sum(int(r["throttled"]) for r in ledger), m["rejected"].get("throttled", 0)
        ),
        "rejected": sum(m["rejected"].values()),
        "connections_max": m["watch"]["connections_max"],
        "connections_active_max": m["watch"]["active_max"],
        "connections_mean": m["watch"]["connections_sum"] / max(m["watch"]["samples"], 1),
        "pool_cap": m["pool_cap"],
        "peak_rss_mb": m["peak_rss_mb"],
        "cpu_s": m["cpu"],
        "sandbox_cpu_share": m["cpu"]["sandbox"] / wall,
        "verify": m["verify"],
    }


def checks(sc: Scenario, m: dict[str, Any], d: dict[str, Any]) -> list[Verdict]:
    """Exactness and manners of a fleet run."""
    name, v = sc.name, d["verify"]
    not_done = {k: n for k, n in d["app_statuses"].items() if k != "succeeded"}
    span = d["client_min_span_11"]
    out = [
        Verdict(
            name,
            "status",
            d["status"] == "succeeded",
            f"{d['status']} {m['stderr_tail'][-300:] if d['status'] != 'succeeded' else ''}",
        ),
        Verdict(name, "every app succeeded", not not_done, str(dict(d["app_statuses"]))),
        Verdict(name, "throttled = 0", d["throttled"] == 0, str(d["throttled"])),
        Verdict(name, "no rejections", d["rejected"] == 0, str(m["rejected"])),
        Verdict(
            name,
            "per app <= 10 in any second (sandbox)",
            d["sandbox_peak_max"] <= PER_APP_LIMIT,
            str(d["sandbox_peak_max"]),
        ),
        Verdict(
            name,
            "per app 11 departures span >= 1 s",
            span is None or span >= 1.0,
            "-" if span is None else f"{span:.3f} s",
        ),
        Verdict(
            name,
            "connections <= pool cap",
            d["pool_cap"] is not None and d["connections_max"] <= d["pool_cap"],
            f"{d['connections_max']}/{d['pool_cap']}",
        ),
        Verdict(
            name,
            "rows per app and date = truth",
            v["wrong_count_cells"] == 0 and v["table_rows"] == v["truth_rows"],
            f"{v['cells']} cells, {v['table_rows']:,}/{v['truth_rows']:,} rows"
            + (f", wrong {v['wrong_counts']}" if v["wrong_count_cells"] else ""),
        ),
        Verdict(
            name,
            "each row is its app's (keys)",
            v["missing"] == v["foreign"] == v["stray"] == v["unknown_app"] == 0,
            f"missing {v['missing']}, another app's {v['foreign']}, stray {v['stray']}, "
            f"unknown app {v['unknown_app']}",
        ),
    ]
    return out


def targets(derived: dict[str, dict[str, Any]]) -> list[Verdict]:
    out: list[Verdict] = []
    small = derived.get("fleet-small")
    if small:
        rate = small["busy_rate"] or 0.0
        out.append(
            Verdict(
                "fleet-small", "req/s while >=10 apps work >= 90", rate >= FLEET_RATE, f"{rate:.1f}"
            )
        )
    big = derived.get("fleet-big")
    if big:
        rate = big["rows_per_s"]
        out.append(
            Verdict("fleet-big", "rows/s >= 100,000", rate >= FLEET_BIG_ROWS_PER_S, f"{rate:,.0f}")
        )
    for name, d in derived.items():
        if d["status"] == "succeeded":
            rss = d["peak_rss_mb"]
            out.append(
                Verdict(name, "peak RSS <= 400 MB", rss <= FLEET_MAX_RSS_MB, f"{rss:.0f} MB")
            )
    return out


_ROWS: tuple[tuple[str, str, int], ...] = (
    ("status", "status", 0),
    ("apps", "apps", 0),
    ("billing dates", "billing_dates", 0),
    ("rows", "rows", 0),
    ("calls (sandbox)", "calls", 0),
    ("  of which dropped unread", "dropped", 0),
    ("wall s (CLI process)", "wall_s", 1),
    ("  of which the CLI's main s", "run_s", 1),
    ("rows/s", "rows_per_s", 0),
    ("requests/s, whole wall", "requests_per_s", 1),
    ("requests/s while >= 10 apps have work", "busy_rate", 1),
    ("  over s", "busy_span_s", 1),
    ("busiest second of any app, sandbox", "sandbox_peak_max", 0),
    ("busiest second of any app, client", "client_peak_max", 0),
    ("shortest span of 11 departures of an app s", "client_min_span_11", 3),
    ("throttled", "throttled", 0),
    ("rejections", "rejected", 0),
    ("DB connections max (pg_stat_activity)", "connections_max", 0),
    ("  active max", "connections_active_max", 0),
    ("  mean", "connections_mean", 1),
    ("  pool cap (size + overflow)", "pool_cap", 0),
    ("peak RSS MB (sync process)", "peak_rss_mb", 0),
)
_CPU = ("sync", "sandbox", "postgres", "bench", "other")


def table(derived: dict[str, dict[str, Any]]) -> str:
    names = list(derived)
    lines: list[list[str]] = [["fleet", *names]]
    for label, key, digits in _ROWS:
        lines.append([label, *(_num(derived[n][key], digits) for n in names)])
    for part in _CPU:
        lines.append([f"CPU s, {part}", *(_num(derived[n]["cpu_s"][part], 1) for n in names)])
    return "\n".join(grid(lines))
