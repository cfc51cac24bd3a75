"""The closing summary of a run: a line, then its figures and failed partitions as tables, then
what it noted (negative amounts, …: counted, with a few examples and their log_ids)."""

from __future__ import annotations

from datetime import UTC, datetime

from sync.cli.tables import table
from sync.db.counts import RunCounts
from sync.pipeline.fleet import FleetResult
from sync.pipeline.runs import RunNotes, RunResult
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
    lines += _foreign_lines(c)
    lines += note_lines(result.notes)
    return "\n".join(lines)


def note_lines(notes: RunNotes, app: str | None = None) -> list[str]:
    """What the run stored as sent and needs no attention: a count per kind, then a few
    examples of each with the log_id of the answer it came in."""
    if not notes.total:
        return []
    who = f"app {app}: " if app else ""
    counts = ", ".join(f"{n:,} {kind}" for kind, n in notes.counts.items())
    lines = [f"{who}noted, stored as sent: {counts}; for example:"]
    lines += [
        f"  {text} (log_id={log_id or '?'})"
        for examples in notes.examples.values()
        for text, log_id in examples
    ]
    return lines


def _foreign_lines(c: RunCounts, app: str | None = None) -> list[str]:
    """Keys the app's answers listed that another app's rows hold: counted, a few shown."""
    if not c.rows_foreign:
        return []
    who = f"app {app}: " if app else ""
    lines = [
        f"{who}{c.rows_foreign:,} rows listed for this app are stored under another app and were "
        "left there (a task belongs to one app: check the apps' credentials):"
    ]
    lines += [
        f"  video {k.video_id} task {k.task_id}: stored under {k.stored_app}, "
        f"listed in the answer log_id={k.log_id or '?'}"
        for k in c.foreign_keys
    ]
    return lines


_APPS = (
    "app",
    "outcome",
    "run",
    "partitions",
    "done",
    "failed",
    "skipped",
    "api calls",
    "throttled",
    "rows fetched",
    "inserted",
    "updated",
    "removed",
    "other app's",
    "note",
)


def _app_cells(app: str, outcome: str, run: object, c: RunCounts, note: str) -> list[object]:
    return [
        app,
        outcome,
        run,
        c.partitions_total,
        c.partitions_done,
        c.partitions_failed,
        c.partitions_skipped,
        f"{c.api_calls:,}",
        c.throttled,
        f"{c.rows_fetched:,}",
        f"{c.rows_inserted:,}",
        f"{c.rows_updated:,}",
        f"{c.rows_removed:,}",
        f"{c.rows_foreign:,}",
        note,
    ]


def render_fleet(result: FleetResult) -> str:
    """A line per app and a total; then each app's failed partitions and other apps' keys."""
    rows: list[list[object]] = []
    tally: dict[str, int] = {}
    for a in result.apps:
        c = a.result.counts if a.result is not None else RunCounts()
        note = str(a.error) if a.error is not None else (a.result.error if a.result else "") or ""
        run = a.result.run_id if a.result is not None else ""
        rows.append(_app_cells(a.app_id, a.outcome, run, c, note))
        tally[a.outcome] = tally.get(a.outcome, 0) + 1
    total = RunCounts.summed(a.result.counts for a in result.apps if a.result is not None)
    outcomes = ", ".join(f"{n} {o}" for o, n in tally.items())
    rows.append(_app_cells("total", outcomes, "", total, ""))
    rate = total.rows_fetched / result.elapsed if result.elapsed else 0.0
    lines = [
        f"{len(result.apps)} apps in {result.elapsed:.1f}s ({outcomes}); {rate:,.0f} rows/s",
        table(_APPS, rows, right=range(3, len(_APPS) - 1), limits={len(_APPS) - 1: ERROR_CELLS}),
    ]
    for a in result.apps:
        if a.result is None:
            continue
        for f in a.result.failed[:FAILED_SHOWN]:
            lines.append(
                f"app {a.app_id}: failed {f.billing_date} "
                f"[{_when(f.window_start)} .. {_when(f.window_end)}] err_no={f.err_no} "
                f"log_id={f.log_id or ''}: {f.error}"
            )
        lines += _foreign_lines(a.result.counts, a.app_id)
        lines += note_lines(a.result.notes, a.app_id)
    return "\n".join(lines)


FAILED_SHOWN = 5  # failed partitions listed per app in a fleet's summary
