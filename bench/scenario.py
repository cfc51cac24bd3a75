"""`python -m bench.scenario SPEC`: one scenario in a fresh process, so that its peak RSS and
CPU are its own. SPEC is a `ScenarioSpec` as JSON; the last stdout line is the measurements."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench import experiments, trace
from bench.instrument import Probe, install
from bench.measure import ScenarioSpec, Snapshot, timeline
from sync import heap, planner
from sync.db.database import create_engine
from sync.pipeline import runs
from sync.pipeline.engine import run_app
from sync.pipeline.runs import RunOptions


async def _partitions(url: str, run_id: int, plan: planner.Plan) -> list[dict[str, int]]:
    """Rows, pages and calls of each partition the run finished, from the ledger, in the plan's
    order, with each one's rank in the order they finished (`finished`, 0 first)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT billing_date, window_start, rows_fetched, pages, api_calls "
                    "FROM sync_partitions WHERE run_id = :run AND status = 'done' "
                    "ORDER BY finished_at, id"
                ),
                {"run": run_id},
            )
            done = {
                (day, int(start.timestamp())): {"rows": r, "pages": p, "calls": c, "finished": i}
                for i, (day, start, r, p, c) in enumerate(result)
            }
    finally:
        await engine.dispose()
    keys = [(p.billing_date, p.window.start) for p in plan.partitions]
    return [done[k] for k in keys if k in done]


def finish_order(partitions: list[dict[str, int]]) -> float | None:
    """Spearman's rank correlation of the plan's order and the order partitions finished in:
    1.0 when they finish in the plan's order (a killed run then loses little)."""
    n = len(partitions)
    if n < 2:
        return None
    ranks = sorted(range(n), key=lambda i: partitions[i]["finished"])
    finished_at = {place: rank for rank, place in enumerate(ranks)}
    d2 = sum((place - finished_at[place]) ** 2 for place in range(n))
    return 1 - 6 * d2 / (n * (n * n - 1))


async def run_engine(spec: ScenarioSpec) -> dict[str, Any]:
    """The engine as `taskbox-sync sync` runs it, with the probes installed."""
    experiments.install(spec.patches)
    heap.keep_freed_memory()  # as the CLI does
    probe = Probe()
    install(probe)
    trace.install_client(spec.name)
    db = create_engine(spec.database_url, pool_size=spec.concurrency + 2)
    options = RunOptions(
        kind=spec.kind,
        page_size=spec.page_size,
        concurrency=spec.concurrency,
        buffer_rows=runs.DEFAULT_BUFFER_ROWS,  # read now: a --patch may have changed it
        restart=True,
    )
    try:
        before = Snapshot.take(spec)
        result = await run_app(db, spec.settings(), options, spec.plan(), progress_interval=3600.0)
        after = Snapshot.take(spec)  # before dispose: the server's backends are still alive
    finally:
        await db.dispose()
    c = result.counts
    return {
        "status": result.status,
        "error": result.error,
        "wall": after.wall - before.wall,
        "rows": c.rows_fetched,
        "inserted": c.rows_inserted,
        "updated": c.rows_updated,
        "unchanged": c.rows_unchanged,
        "requests": c.api_calls,
        "throttled": c.throttled,
        "retries": c.retries,
        "partitions": (parts := await _partitions(spec.database_url, result.run_id, spec.plan())),
        "finish_order": finish_order(parts),
        "cpu": after.cpu_since(before),
        "stages": probe.cpu,
        **timeline(probe, spec.qps, before.wall, after.wall),
    }


async def measure(spec: ScenarioSpec) -> dict[str, Any]:
    if spec.engine == "baseline":
        from bench.baseline import run_baseline

        result = await run_baseline(spec)
    else:
        result = await run_engine(spec)
    result["name"] = spec.name
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: on Linux that
    keeps the parent's peak across fork and exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.scenario SPEC_JSON", file=sys.stderr)
        return 2
    spec = ScenarioSpec(**json.loads(args[0]))
    result = asyncio.run(measure(spec))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
