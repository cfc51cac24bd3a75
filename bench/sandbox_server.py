"""`python -m bench.sandbox_server`: the sandbox in a process of its own, for the benchmark.

Like `python -m sync.sandbox --port 0 --warm`, except that it renders only the billing dates a
run will ask for (`--warm-days`): all 90 dates of a 157,000-video sandbox would take minutes and
gigabytes. The first line on stdout is the sandbox's info as JSON (base_url, credentials).

With `--apps N` it serves N apps (each its own data, tokens and 10-per-second window) and warms
every app's dates. It also answers `GET /__bench/truth_keys?app=&billing_date=&start_ts=&end_ts=`
(bench only): the (video id, task id) of each row the API returns to that app over that range,
as two lists, far lighter than `/__sandbox/truth`'s whole rows for a million-row fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import replace

from aiohttp import web

from bench.trace import install_sandbox
from sync.sandbox import Faults, SandboxConfig, SandboxServer, server
from sync.sandbox.config import parse_latency
from sync.sandbox.days import parse_day
from sync.sandbox.keys import SANDBOX


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.sandbox_server")
    p.add_argument("--videos", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--creators", type=int, default=200)
    p.add_argument("--latency", metavar="MIN:MAX", help="added latency in seconds, uniform")
    p.add_argument("--warm-days", type=int, default=0, help="render the N most recent dates")
    p.add_argument("--apps", type=int, default=1, help="apps served (each with --videos videos)")
    return p


async def _truth_keys(request: web.Request) -> web.Response:
    """The keys of the rows the API returns to `app` for a billing date over [start, end]."""
    sandbox = request.app[SANDBOX]
    query = request.query
    day = parse_day(query.get("billing_date", ""))
    if day is None:
        return web.json_response({"error": "billing_date"}, status=400)
    dataset = sandbox.app(query.get("app")).dataset
    start, end = int(query["start_ts"]), int(query["end_ts"])
    videos = dataset.rows(day).videos if dataset.visible(day) else []
    chosen = [v for v in videos if start <= v.publish_time <= end]
    return web.json_response(
        {"video_ids": [v.video_id for v in chosen], "task_ids": [v.task.task_id for v in chosen]}
    )


def _install_bench_routes() -> None:
    """`/__bench/truth_keys` on the app the sandbox server builds (this process only)."""
    create = getattr(server, "create_app")  # noqa: B009

    def create_app(*args: object, **kwargs: object) -> web.Application:
        app: web.Application = create(*args, **kwargs)
        app.router.add_get("/__bench/truth_keys", _truth_keys)
        return app

    setattr(server, "create_app", create_app)  # noqa: B010


async def _serve(config: SandboxConfig, warm_days: int) -> int:
    trace = install_sandbox()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _install_bench_routes()
    async with SandboxServer(config, port=0) as sandbox:
        if warm_days:
            for app in sandbox.sandbox.apps:
                days = sandbox.sandbox.recent_dates(warm_days)
                sandbox.warm(days, app=app.credentials.client_key)
        sys.stdout.write(json.dumps(sandbox.info()) + "\n")
        sys.stdout.flush()
        watch = asyncio.create_task(trace.watch_loop()) if trace else None
        await stop.wait()
        if watch is not None:
            watch.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    faults = Faults()
    if args.latency:
        low, high = parse_latency(args.latency)
        faults = replace(faults, latency_min=low, latency_max=high)
    config = SandboxConfig(
        seed=args.seed,
        apps=args.apps,
        videos=args.videos,
        creators=args.creators,
        faults=faults,
        # every app's warm dates stay rendered (the default keeps 256 dates, all apps together)
        cache_dates=max(256, args.apps * (args.warm_days + 2)),
    )
    return asyncio.run(_serve(config, args.warm_days))


if __name__ == "__main__":
    sys.exit(main())
