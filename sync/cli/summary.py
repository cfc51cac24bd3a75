"""The closing summary of a run, as a small fixed-width table."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sync.db.status import table as status_table
from sync.pipeline.runs import RunResult
from sync.planner import SHANGHAI


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: Sequence[Sequence[str]]) -> str:
    """The first row as headers over the rest, in the status screen's table layout."""
    return status_table(rows[0], rows[1:])


def render_result(result: RunResult) -> str:
    c = result.counts
    rate = c.rows_fetched / result.elapsed if result.elapsed else 0.0
    lines = [
        f"run {result.run_id}: {result.status} in {result.elapsed:.1f}s"
        + (f" ({result.error})" if result.error else ""),
        table(
            [
                ("partitions", "done", "failed", "skipped", "api calls", "throttled", "retries"),
                (
                    str(c.partitions_total),
                    str(c.partitions_done),
                    str(c.partitions_failed),
                    str(c.partitions_skipped),
                    str(c.api_calls),
                    str(c.throttled),
                    str(c.retries),
                ),
            ]
        ),
        table(
            [
                (
                    "rows fetched",
                    "inserted",
                    "updated",
                    "unchanged",
                    "removed",
                    "rejected",
                    "rows/s",
                ),
                (
                    f"{c.rows_fetched:,}",
                    f"{c.rows_inserted:,}",
                    f"{c.rows_updated:,}",
                    f"{c.rows_unchanged:,}",
                    f"{c.rows_removed:,}",
                    f"{c.rows_rejected:,}",
                    f"{rate:,.0f}",
                ),
            ]
        ),
    ]
    if result.failed:
        rows = [
            ("failed billing date", "publish window (Asia/Shanghai)", "err_no", "log_id", "error")
        ]
        for f in result.failed:
            rows.append(
                (
                    f.billing_date.isoformat(),
                    f"{_when(f.window_start)} .. {_when(f.window_end)}",
                    "" if f.err_no is None else str(f.err_no),
                    f.log_id or "",
                    f.error[:120],
                )
            )
        lines.append(table(rows))
    return "\n".join(lines)
