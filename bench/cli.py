"""`python -m bench [--quick] [--only NAMES] [--database-url URL] [--out PATH]`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench import experiments, fleet, pg, report, workers, yardstick
from bench.experiments import PATCHES
from bench.profiles import FULL, QUICK, Profile
from bench.run import Context, run_scenario, start
from sync.pipeline.runs import DEFAULT_CONCURRENCY

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small and exact, for CI (< 1 min)")
    p.add_argument("--only", metavar="NAMES", help="comma-separated scenarios to run")
    p.add_argument(
        "--patch",
        metavar="NAMES",
        help=f"engine changes to try, comma-separated: {', '.join(PATCHES)} (bench.experiments)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"the engine's (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--apps-at-once",
        type=int,
        default=0,
        help="the CLI's --apps-at-once in the fleet scenarios (default: the CLI's own)",
    )
    p.add_argument("--database-url", help="server to use (default: DATABASE_URL, else embedded)")
    p.add_argument("--database-name", default=pg.DEFAULT_NAME, help="dropped and created again")
    p.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default {RESULTS})")
    return p


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def _machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dirty = (
        "+dirty"
        if _git("status", "--porcelain", "--untracked-files=no") not in ("", "unknown")
        else ""
    )
    return {
        "host": platform.node(),
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD") + dirty,
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
    }


async def _run(profile: Profile, args: argparse.Namespace) -> int:
    wanted = set(args.only.split(",")) if args.only else None
    scenarios = [s for s in profile.scenarios if wanted is None or s.name in wanted]
    if not scenarios:
        print(f"no scenario named {args.only!r}", file=sys.stderr)
        return 2
    began = time.monotonic()
    patches = tuple(args.patch.split(",")) if args.patch else ()
    unknown = experiments.unknown(patches)
    if unknown:
        print(f"unknown patches {unknown}; known: {', '.join(PATCHES)}", file=sys.stderr)
        return 2
    # Before anything of the run is up, and again after: how fast this machine is (a VM's
    # speed drifts by the hour), so that figures from different runs can be compared.
    stick = {"before": yardstick.measure()}
    print(f"bench: {yardstick.line(stick['before'])}", flush=True)
    ctx, where = await start(profile, scenarios, args.database_url, args.database_name)
    ctx.patches = patches
    ctx.concurrency = args.concurrency
    ctx.apps_at_once = args.apps_at_once
    print(f"bench: {profile.name} run on {where}, ready in {time.monotonic() - began:.0f} s")
    if patches:
        print(f"bench: engine patched in the scenario processes: {', '.join(patches)}")
    measured: dict[str, dict[str, Any]] = {}
    derived: dict[str, dict[str, Any]] = {}
    fleets: dict[str, dict[str, Any]] = {}  # fleet scenarios: a table of their own
    queued: dict[str, dict[str, Any]] = {}  # the workers scenario
    verdicts: list[report.Verdict] = []
    try:
        for sc in scenarios:
            if sc.engine == "workers":  # issue #16: a table of its own
                m = measured[sc.name] = await workers.run_workers_scenario(ctx, sc)
                verdicts += workers.checks(sc, m)
                queued[sc.name] = m
                print(workers.summary(m), flush=True)
                continue
            if sc.engine == "fleet":
                m = await fleet.run_fleet_scenario(ctx, sc)
                measured[sc.name] = m
                d = fleets[sc.name] = fleet.derive(sc, m)
                verdicts += fleet.checks(sc, m, d)
                busy = d["busy_rate"]
                print(
                    f"bench: {sc.name}: {d['apps']} apps, {d['rows']:,} rows in "
                    f"{d['wall_s']:.1f} s ({d['rows_per_s']:,.0f} rows/s, {d['calls']} requests"
                    + (f", {busy:.1f}/s while >= 10 apps work" if busy else "")
                    + ")",
                    flush=True,
                )
                continue
            m = await run_scenario(ctx, sc)
            measured[sc.name] = m
            derived[sc.name] = report.derive(sc, m, 10.0)
            verdicts += report.checks(sc, m, derived[sc.name])
            d = derived[sc.name]
            print(
                f"bench: {sc.name}: {d['rows']:,} rows in {d['wall_s']:.1f} s "
                f"({d['rows_per_s']:,.0f} rows/s, {d['requests']} requests)",
                flush=True,
            )
    finally:
        for sandbox in ctx.sandboxes.values():
            sandbox.stop()
    stick["after"] = yardstick.measure()
    print(f"bench: after the run, {yardstick.line(stick['after'])}", flush=True)
    goals = report.targets(derived) + fleet.targets(fleets) if profile.check_targets else []
    notes = _notes(profile, ctx, measured)
    print()
    if derived:
        print(report.table(derived, notes if not fleets else ()))
        print()
    if fleets:
        print(fleet.table(fleets))
        print("\n".join(notes))
        print()
    for m in queued.values():
        print(workers.table(m))
        print()
    print("\n".join(report.verdict_lines(verdicts, "checks (exactness, manners):")))
    if goals:
        print("\n".join(report.verdict_lines(goals, "targets:")))
    doc = {
        "machine": {**_machine(), "database": where, "yardstick": stick},
        "profile": profile.name,
        "patches": list(ctx.patches),
        "scenarios": {
            sc.name: {
                "what": sc.what,
                "derived": derived.get(sc.name) or fleets.get(sc.name) or {},
                "raw": measured[sc.name],
            }
            for sc in scenarios
        },
        "checks": [_verdict(v) for v in verdicts],
        "targets": [_verdict(v) for v in goals],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"\nresults: {args.out}")
    return 0 if all(v.ok for v in verdicts) else 1


def _verdict(v: report.Verdict) -> dict[str, Any]:
    return {"scenario": v.scenario, "name": v.name, "ok": v.ok, "detail": v.detail}


def _notes(profile: Profile, ctx: Context, measured: dict[str, dict[str, Any]]) -> list[str]:
    notes = [""]
    if ctx.patches:
        notes.append(f"engine patched (bench.experiments): {', '.join(ctx.patches)}")
    for sc in profile.scenarios:
        if sc.name in measured:
            notes.append(f"{sc.name}: {sc.what}")
    base = measured.get("baseline")
    if base:
        notes.append(
            f"baseline: measured on a sample ({len(base['partitions'])} partitions, "
            f"{base['rows']:,} rows); its rows/s is that sample's, not a full run's"
        )
    for name, spec in profile.sandboxes.items():
        if name in ctx.sandboxes:
            apps = f"{spec.apps} apps x " if spec.apps > 1 else ""
            notes.append(
                f"sandbox {name}: {apps}{spec.videos:,} videos, seed {spec.seed}"
                + (f", latency {spec.latency} s" if spec.latency else "")
            )
    return notes


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return asyncio.run(_run(QUICK if args.quick else FULL, args))
