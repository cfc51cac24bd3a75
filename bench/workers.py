"""The `workers` scenario (issue #16): the fleet-small apps as queued jobs, run by 1, 2 and 4
`taskbox-sync worker` processes.

For each number of workers: a fresh database; `taskbox-sync enqueue nightly` defers one job per
app (200); N workers (`python -m bench.fleet_sync TRACE -- worker …`, which notes each request's
app and departure, on the machine-wide monotonic clock) run them; the wall is from the workers'
start until the queue's last job ended (procrastinate's events). Then, with the queue empty and
the workers idle, the lock phase: LOCK_APPS apps get two backfill jobs each (yesterday, then the
day before): the second waits on the app's lock, and its start minus the first's end (both
procrastinate events, the database's clock) is the lock-release-to-start latency. Every app's
requests, all workers together, are checked against 10 in any sliding second (the client's
trace and the sandbox's own per-app peak) and every app's rows against the sandbox's truth.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from bench import pg
from bench.fleet import _asyncpg_dsn, _env, _ledger, max_in_window, per_app, verify
from bench.report import Verdict, _num, grid
from bench.sandbox import SandboxProcess, daily_calls, rejected_delta
from sync.sandbox.apps_file import render_apps_file
from sync.sandbox.credentials import AppCredentials

if TYPE_CHECKING:
    from bench.profiles import Scenario
    from bench.run import Context

WORKER_COUNTS = (1, 2, 4)
JOBS_PER_WORKER = 8  # the worker's default --concurrency
DB_CONNECTIONS = 12  # per worker (+4 overflow, +3 queue): 4 workers stay under max_connections 100
LOCK_APPS = 8  # apps whose second job waits on the first's lock
LOCK_START_LIMIT_S = 2.0
PER_APP_LIMIT = 10

_JOB_TIMES = """
SELECT j.id, j.args->>'app' AS app, j.status::text AS status,
       min(e.at) FILTER (WHERE e.type = 'started') AS started,
       max(e.at) FILTER (WHERE e.type IN ('succeeded', 'failed')) AS ended
  FROM procrastinate.procrastinate_jobs j
  JOIN procrastinate.procrastinate_events e ON e.job_id = j.id
 WHERE j.task_name = 'taskbox.sync' GROUP BY j.id ORDER BY j.id
"""


async def _job_times(url: str) -> list[dict[str, Any]]:
    for _ in range(20):  # the server shared with others may be out of connections a moment
        try:
            conn = await asyncpg.connect(_asyncpg_dsn(url))
            break
        except asyncpg.TooManyConnectionsError:
            await asyncio.sleep(0.5)
    else:
        conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        return [dict(r) for r in await conn.fetch(_JOB_TIMES)]
    finally:
        await conn.close()


async def _cli(args: list[str], env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sync", *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"taskbox-sync {' '.join(args[:2])} exited {proc.returncode}")
    return out.decode()


async def _wait_jobs(url: str, count: int, limit: float) -> list[dict[str, Any]]:
    """Poll until `count` jobs have ended (or `limit` s passed); their times."""
    deadline = time.monotonic() + limit
    while True:
        jobs = await _job_times(url)
        ended = [j for j in jobs if j["status"] in ("succeeded", "failed")]
        if len(ended) >= count or time.monotonic() > deadline:
            return jobs
        await asyncio.sleep(0.5)


async def _one(
    ctx: Context, sc: Scenario, sandbox: SandboxProcess, apps: list[AppCredentials], n: int
) -> dict[str, Any]:
    from bench.run import recent_dates

    ctx.url = await pg.fresh_database(ctx.admin_url, ctx.name)
    await pg.checkpoint(ctx.url)
    dates = recent_dates(sc.days, time.time())
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as where:
        tmp = Path(where)
        apps_file = tmp / "apps.toml"
        apps_file.write_text(render_apps_file(apps), encoding="utf-8")
        env = {**_env(sandbox, apps), "TASKBOX_APPS_FILE": str(apps_file), "DATABASE_URL": ctx.url}
        await _cli(["enqueue", "nightly", "--lookback-days", str(sc.days)], env)
        stats_before = await asyncio.to_thread(sandbox.stats)
        began = time.monotonic()
        procs = []
        for i in range(n):
            command = [sys.executable, "-m", "bench.fleet_sync", str(tmp / f"trace{i}.json"), "--"]
            command += ["worker", "--name", f"w{i + 1}", "--concurrency", str(JOBS_PER_WORKER)]
            command += ["--db-connections", str(DB_CONNECTIONS), "--log-format", "json"]
            err = (tmp / f"worker{i}.err").open("wb")
            procs.append(await asyncio.create_subprocess_exec(*command, env=env, stderr=err))
        try:
            jobs = await _wait_jobs(ctx.url, len(apps), sc.timeout)
            wall = time.monotonic() - began
            # The lock phase: two jobs per app on idle workers, the second behind the first.
            picked = [a.app_id for a in apps[:LOCK_APPS]]
            for day in (dates[-1], dates[-2]):
                picks = [x for a in picked for x in ("--app", a)]
                await _cli(
                    ["enqueue", "backfill", "--from", str(day), "--to", str(day), *picks], env
                )
            lock_jobs = await _wait_jobs(ctx.url, len(apps) + 2 * LOCK_APPS, 120)
        finally:
            for p in procs:
                if p.returncode is None:
                    p.send_signal(signal.SIGTERM)
            exits = [await p.wait() for p in procs]
        stats_after = await asyncio.to_thread(sandbox.stats)
        errors = [(tmp / f"worker{i}.err").read_text(errors="replace")[-1500:] for i in range(n)]
        requests = []
        for i in range(n):
            path = tmp / f"trace{i}.json"
            if path.exists():
                requests += json.loads(path.read_text()).get("requests", [])
    departures = per_app(requests)
    nightly = [j for j in jobs if j["id"] <= len(apps)]
    ended = [j["ended"] for j in nightly if j["ended"] is not None]
    started = [j["started"] for j in nightly if j["started"] is not None]
    by_app: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for j in lock_jobs:
        if j["id"] > len(apps):
            by_app[j["app"]].append(j)
    latencies = []
    for pair in by_app.values():
        first, second = sorted(pair, key=lambda j: j["id"])
        if first["ended"] is not None and second["started"] is not None:
            latencies.append((second["started"] - first["ended"]).total_seconds())
    ledger = await _ledger(ctx.url)
    since = {app: run["since"] for app, run in ledger.items() if run["since"] is not None}
    peaks = {
        a.app_id: int(stats_after["apps"][a.client_key]["daily_data_peak_per_second"]) for a in apps
    }
    return {
        "workers": n,
        "exits": exits,
        "stderr_tails": [e for e, x in zip(errors, exits, strict=True) if x != 143],
        "wall_s": wall,
        "queue_span_s": (max(ended) - min(started)).total_seconds() if ended and started else None,
        "jobs": len(nightly),
        "jobs_succeeded": sum(j["status"] == "succeeded" for j in nightly),
        "lock_jobs_succeeded": sum(
            j["status"] == "succeeded" for js in by_app.values() for j in js
        ),
        "lock_latency_s": sorted(latencies),
        "calls": daily_calls(stats_after) - daily_calls(stats_before),
        "rejected": rejected_delta(stats_before, stats_after),
        "sandbox_peak_max": max(peaks.values(), default=0),
        "client_peak_max": max((max_in_window(ts) for ts in departures.values()), default=0),
        "rows": sum(int(r["rows_fetched"]) for r in ledger.values()),
        "verify": await verify(ctx.url, sandbox, apps, dates, since),
    }


async def run_workers_scenario(ctx: Context, sc: Scenario) -> dict[str, Any]:
    """The scenario for each number of workers in WORKER_COUNTS."""
    sandbox = ctx.sandboxes[sc.sandbox]
    apps = [AppCredentials.from_json(a) for a in sandbox.info["apps"]]
    if sc.latency:
        await asyncio.to_thread(sandbox.set_latency, sc.latency)
    try:
        runs = [await _one(ctx, sc, sandbox, apps, n) for n in WORKER_COUNTS]
    finally:
        if sc.latency:
            await asyncio.to_thread(sandbox.set_latency, sandbox.spec.latency)
    return {"name": sc.name, "apps": len(apps), "runs": runs}


def checks(sc: Scenario, m: dict[str, Any]) -> list[Verdict]:
    out = []
    for r in m["runs"]:
        name, v = f"{sc.name} x{r['workers']}", r["verify"]
        worst = max(r["lock_latency_s"], default=None)
        out += [
            Verdict(
                name,
                "every job succeeded",
                r["jobs_succeeded"] == m["apps"],
                f"{r['jobs_succeeded']}/{m['apps']}",
            ),
            Verdict(name, "workers exit 143", all(e == 143 for e in r["exits"]), str(r["exits"])),
            Verdict(
                name,
                "per app <= 10 in any second (sandbox)",
                r["sandbox_peak_max"] <= PER_APP_LIMIT,
                str(r["sandbox_peak_max"]),
            ),
            Verdict(
                name,
                "per app <= 10 in any second (client, all workers)",
                r["client_peak_max"] <= PER_APP_LIMIT,
                str(r["client_peak_max"]),
            ),
            Verdict(name, "no rejections", not r["rejected"], str(r["rejected"])),
            Verdict(
                name,
                "rows per app and date = truth",
                v["wrong_count_cells"] == 0
                and v["table_rows"] == v["truth_rows"]
                and v["missing"] == v["stray"] == 0,
                f"{v['table_rows']:,}/{v['truth_rows']:,} rows, missing {v['missing']}, "
                f"stray {v['stray']}",
            ),
            Verdict(
                name,
                f"a job behind a held lock starts within {LOCK_START_LIMIT_S:g} s of its release",
                worst is not None
                and worst <= LOCK_START_LIMIT_S
                and len(r["lock_latency_s"]) == LOCK_APPS,
                "-" if worst is None else f"max {worst:.2f} s of {len(r['lock_latency_s'])}",
            ),
        ]
    return out


def table(m: dict[str, Any]) -> str:
    lines = [["workers (each 8 jobs at once)", *(str(r["workers"]) for r in m["runs"])]]
    rows: list[tuple[str, Any]] = [
        ("jobs succeeded", lambda r: f"{r['jobs_succeeded']}/{r['jobs']}"),
        ("rows", lambda r: _num(r["rows"], 0)),
        ("calls (sandbox)", lambda r: _num(r["calls"], 0)),
        ("wall s (workers start .. last job ends)", lambda r: _num(r["wall_s"], 1)),
        (
            "busiest second of any app: sandbox / client",
            lambda r: f"{r['sandbox_peak_max']} / {r['client_peak_max']}",
        ),
        (
            "lock release -> next job's start s: median / max",
            lambda r: _spread(r["lock_latency_s"]),
        ),
    ]
    for label, cell in rows:
        lines.append([label, *(cell(r) for r in m["runs"])])
    return "\n".join(grid(lines))


def _spread(values: list[float]) -> str:
    return "-" if not values else f"{values[len(values) // 2]:.2f} / {max(values):.2f}"


def summary(m: dict[str, Any]) -> str:
    walls = ", ".join(f"{r['workers']}: {r['wall_s']:.1f} s" for r in m["runs"])
    return f"bench: workers: {m['apps']} apps as jobs; wall by workers {walls}"
