"""`python -m sync.sandbox.measure`: how fast the sandbox generates rows and serves a full page.

Prints one JSON object: dataset generation time for the last 90 billing dates (18,000 videos over
120 days: about a million rows), rows, memory, and the time to build a 10,000-row daily-data
reply in process: the first (which renders that billing date) and the median and max of 19 more.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time

from sync.sandbox.config import SandboxConfig
from sync.sandbox.daily_data import daily_data_reply
from sync.sandbox.days import DAY, log_id
from sync.sandbox.state import Sandbox


def page_timings(sandbox: Sandbox, token: str, *, page_size: int, repeat: int) -> list[float]:
    """Seconds to build a `page_size` reply for yesterday (throttle bypassed)."""
    now = sandbox.now()
    day = sandbox.recent_dates(1)[0].isoformat()
    end = int(now)
    body = {
        "billing_date": day,
        "page_num": 1,
        "page_size": page_size,
        "video_publish_start_time": end - 30 * DAY,
        "video_publish_end_time": end,
    }
    raw = json.dumps(body).encode()
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        reply = daily_data_reply(
            sandbox, sandbox.app(), token, raw, now=now, throttled=False, logid=log_id(now)
        )
        timings.append(time.perf_counter() - started)
        if reply.rows != page_size:
            raise RuntimeError(f"page held {reply.rows} rows, not {page_size}")
    return timings


def measure(videos: int, history_days: int, dates: int) -> dict[str, object]:
    started = time.perf_counter()
    sandbox = Sandbox(SandboxConfig(videos=videos, history_days=history_days, creators=2000))
    catalog_s = time.perf_counter() - started
    started = time.perf_counter()
    rows = sandbox.warm(sandbox.recent_dates(dates))
    warm_s = time.perf_counter() - started
    # A 30-day publish window holds at most 30 days of videos: 12,000 of them in 30 days.
    dense = Sandbox(SandboxConfig(videos=12_000, history_days=30, creators=2000))
    token, _ = dense.client_tokens.issue()
    timings = page_timings(dense, token, page_size=10_000, repeat=20)
    return {
        "videos": videos,
        "billing_dates": dates,
        "rows": rows,
        "catalog_seconds": round(catalog_s, 3),
        "render_seconds": round(warm_s, 3),
        "render_us_per_row": round(warm_s / max(rows, 1) * 1e6, 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "page_10000_rows_first_ms": round(timings[0] * 1000, 2),
        "page_10000_rows_ms_median": round(statistics.median(timings[1:]) * 1000, 2),
        "page_10000_rows_ms_max": round(max(timings[1:]) * 1000, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync.sandbox.measure")
    parser.add_argument("--videos", type=int, default=18_000)
    parser.add_argument("--history-days", type=int, default=120)
    parser.add_argument("--dates", type=int, default=90)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.videos, args.history_days, args.dates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
