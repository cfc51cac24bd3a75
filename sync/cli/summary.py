"""The closing summary of a run: a line, then its figures and failed partitions as tables."""

from __future__ import annotations

from datetime import UTC, datetime

from sync.cli.tables import table
from sync.pipeline.runs import RunResult
from sync.planner import SHANGHAI

ERROR_CELLS = 120  # display cells of a failed partition's error

_CALLS = ("partitions", "done", "failed", "skipped", "api calls", "throttled", "retries")
_ROWS = ("rows fetched", "inserted", "updated", "unchanged", "removed", "rejected", "rows/s")
_FAILED = ("failed billing date", "publish window (Asia/Shanghai)", "err_no", "log_id", "error")


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def render_result(result: RunResult) -> str:
    c = result.counts
    rate = c.rows_fetched / result.elapsed if result.elapsed else 0.0
    calls = (
        c.partitions_total,
        c.partitions_done,
        c.partitions_failed,
        c.partitions_skipped,
        c.api_calls,
        c.throttled,
        c.retries,
    )
    rows = (
        c.rows_fetched,
        c.rows_inserted,
        c.rows_updated,
        c.rows_unchanged,
        c.rows_removed,
        c.rows_rejected,
    )
    lines = [
        f"run {result.run_id}: {result.status} in {result.elapsed:.1f}s"
        + (f" ({result.error})" if result.error else ""),
        table(_CALLS, [calls], right=range(len(_CALLS))),
        table(_ROWS, [[*(f"{n:,}" for n in rows), f"{rate:,.0f}"]], right=range(len(_ROWS))),
    ]
    if result.failed:
        failed = [
            (
                f.billing_date.isoformat(),
                f"{_when(f.window_start)} .. {_when(f.window_end)}",
                "" if f.err_no is None else str(f.err_no),
                f.log_id or "",
                f.error,
            )
            for f in result.failed
        ]
        lines.append(table(_FAILED, failed, limits={len(_FAILED) - 1: ERROR_CELLS}))
    return "\n".join(lines)
