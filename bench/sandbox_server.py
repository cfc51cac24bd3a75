"""`python -m bench.sandbox_server`: the sandbox in a process of its own, for the benchmark.

Like `python -m sync.sandbox --port 0 --warm`, except that it renders only the billing dates a
run will ask for (`--warm-days`): all 90 dates of a 157,000-video sandbox would take minutes and
gigabytes. The first line on stdout is the sandbox's info as JSON (base_url, credentials).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from dataclasses import replace

from bench.trace import install_sandbox
from sync.sandbox import Faults, SandboxConfig, SandboxServer
from sync.sandbox.config import parse_latency


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.sandbox_server")
    p.add_argument("--videos", type=int, required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--creators", type=int, default=200)
    p.add_argument("--latency", metavar="MIN:MAX", help="added latency in seconds, uniform")
    p.add_argument("--warm-days", type=int, default=0, help="render the N most recent dates")
    return p


async def _serve(config: SandboxConfig, warm_days: int) -> int:
    trace = install_sandbox()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with SandboxServer(config, port=0) as server:
        if warm_days:
            server.warm(server.sandbox.recent_dates(warm_days))
        sys.stdout.write(json.dumps(server.info()) + "\n")
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
        seed=args.seed, videos=args.videos, creators=args.creators, faults=faults
    )
    return asyncio.run(_serve(config, args.warm_days))


if __name__ == "__main__":
    sys.exit(main())
