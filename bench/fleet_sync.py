"""`python -m bench.fleet_sync OUT -- ARGS`: the CLI (`python -m sync ARGS`, i.e.
`sync.cli.main.main`) in this process, with a request trace written to OUT when it ends.

What is noted changes nothing the CLI does: per daily-data request, the app its token names
(the sandbox's tokens carry their app's number), when `post` was called, when its bytes left
(the limiter slot's time, as `bench.instrument` reads it), when it ended, and whether it was
dropped unread; the pool the CLI's engine was given (size + overflow: the cap on its
connections); this process's peak RSS (VmHWM) and CPU seconds, and the CLI's exit status.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _install(record: dict[str, Any]) -> None:
    from sync.api import client
    from sync.db import connect
    from sync.sandbox.tokens import token_app

    requests: list[list[Any]] = record["requests"]  # [app, start, departure|None, end, dropped]
    post = client.post  # type: ignore[attr-defined]

    async def traced(*args: Any, **kwargs: Any) -> Any:
        if len(args) < 2 or client.DAILY_DATA_PATH not in str(args[1]):
            return await post(*args, **kwargs)
        token = (kwargs.get("headers") or {}).get("access-token", "")
        slot = getattr(kwargs.get("on_sent"), "__self__", None)
        entry: list[Any] = [token_app(token) if token else None, time.monotonic(), None, None, 0]
        requests.append(entry)
        try:
            return await post(*args, **kwargs)
        except asyncio.CancelledError:
            entry[4] = 1
            raise
        finally:
            entry[3] = time.monotonic()
            if slot is not None and slot.left:
                entry[2] = slot.at

    setattr(client, "post", traced)  # noqa: B010 (a module attribute, patched)
    create = getattr(connect, "create_engine")  # noqa: B009

    def create_engine(url: str, **kwargs: Any) -> Any:
        engine = create(url, **kwargs)
        pool = engine.pool
        record["pool_cap"] = max(
            record.get("pool_cap", 0), pool.size() + getattr(pool, "_max_overflow", 0)
        )
        return engine

    setattr(connect, "create_engine", create_engine)  # noqa: B010


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[1] != "--":
        print("usage: python -m bench.fleet_sync OUT -- CLI_ARGS", file=sys.stderr)
        return 2
    out = Path(args[0])
    record: dict[str, Any] = {"requests": [], "started": time.monotonic()}
    _install(record)
    from sync.cli.main import main as cli

    status = 1
    try:
        status = cli(args[2:])
    finally:
        times = os.times()
        record.update(
            exit=status,
            ended=time.monotonic(),
            peak_rss_mb=_peak_rss_mb(),
            cpu=times.user + times.system,
        )
        out.write_text(json.dumps(record))
    return status


if __name__ == "__main__":
    sys.exit(main())
