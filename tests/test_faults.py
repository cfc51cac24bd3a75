"""The fault matrix: whatever the platform, the network or PostgreSQL does to a run, the table never
holds a wrong row, a duplicate or a silent gap, and the next successful run leaves it exact.

Every test checks two things after each run:

* the ledger is the table: the rows stored are exactly the truth of the windows the ledger calls
  'done' (each test starts from an empty table), so a failed or cut-off partition left nothing
  behind and a 'done' one is complete; and every planned partition is accounted for;
* after the run that succeeds (the first, or a second one when the first reported failed
  partitions), the whole table equals the sandbox's truth.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.api.http import Timeouts
from sync.db import ledger
from sync.db.schema import sync_partitions, sync_runs, video_daily_earnings
from sync.errors import TaskboxError
from sync.pipeline.runs import RunResult
from sync.sandbox import Faults, SandboxServer
from sync.settings import Settings
from tests.helpers import (
    Clock,
    api_calls,
    assert_no_rule_breaks,
    assert_table_is_truth,
    plain_url,
    row_key,
    run_row,
    run_sync,
    sandbox_settings,
    storable,
    table_rows,
    wait_until,
)

# -- invariants -------------------------------------------------------------------------------


async def assert_ledger_is_table(
    engine: AsyncEngine, sandbox: SandboxServer, *, unacknowledged: bool = False
) -> int:
    """The table holds exactly the truth of every window the ledger calls 'done', nothing else.

    Valid on a table that started empty and a dataset that did not change: a 'done' partition
    without all its rows, a failed one that left rows, a wrong row or a duplicate all fail here.
    With `unacknowledged` (the database was killed under the run: a COMMIT may have succeeded
    without the client hearing of it), rows outside the 'done' windows are allowed if they are
    exact truth.
    """
    async with engine.connect() as conn:
        done = (
            await conn.execute(
                select(
                    sync_partitions.c.billing_date,
                    sync_partitions.c.window_start,
                    sync_partitions.c.window_end,
                )
                .where(sync_partitions.c.status == "done")
                .distinct()
            )
        ).all()
        stored_dates = set(
            (await conn.execute(select(video_daily_earnings.c.billing_date).distinct())).scalars()
        )
    expected: dict[dt.date, dict[tuple[int, int], dict[str, Any]]] = {}
    for day, start, end in done:
        rows = sandbox.truth(day, ledger.to_unix(start), ledger.to_unix(end))
        bucket = expected.setdefault(day, {})
        for row in rows:
            bucket[row_key(row)] = {k: storable(v) for k, v in row.items()}
    total = 0
    for day in sorted(stored_dates | set(expected)):
        actual_rows = await table_rows(engine, day)
        actual = {row_key(r): {k: storable(v) for k, v in r.items()} for r in actual_rows}
        assert len(actual) == len(actual_rows), f"{day}: duplicate keys"
        want = expected.get(day, {})
        stray = actual.keys() - want.keys()
        missing = want.keys() - actual.keys()
        if unacknowledged and stray:
            everything = {row_key(t): t for t in sandbox.truth(day)}
            for key in stray:
                assert key in everything, f"{day} {key}: a row the platform does not report"
                want_row = {k: storable(v) for k, v in everything[key].items()}
                assert actual[key] == want_row, f"{day} {key}: {actual[key]} != {want_row}"
            stray = set()
        assert not stray, f"{day}: {len(stray)} rows outside every 'done' window"
        assert not missing, f"{day}: {len(missing)} rows of 'done' windows are missing"
        for key, row in want.items():
            assert actual[key] == row, f"{day} {key}: {actual[key]} != {row}"
        total += len(want)
    return total


async def assert_run_accounted(engine: AsyncEngine, result: RunResult) -> None:
    """Every partition the run planned is done, failed or skipped, in the result and the ledger."""
    c = result.counts
    assert c.partitions_done + c.partitions_failed + c.partitions_skipped == c.partitions_total
    assert len(result.failed) == c.partitions_failed
    run = await run_row(engine, result.run_id)
    async with engine.connect() as conn:
        statuses = list(
            (
                await conn.execute(
                    select(sync_partitions.c.status).where(
                        sync_partitions.c.run_id == result.run_id
                    )
                )
            ).scalars()
        )
    assert run.status == result.status
    assert (run.partitions_done, run.partitions_failed) == (c.partitions_done, c.partitions_failed)
    assert statuses.count("done") == c.partitions_done
    assert statuses.count("failed") == c.partitions_failed
    assert "running" not in statuses
    if result.status == "succeeded":
        assert c.partitions_failed == 0 and not result.failed


async def settle(
    sandbox: SandboxServer,
    settings: Settings,
    engine: AsyncEngine,
    dates: list[dt.date],
    **options: Any,
) -> tuple[RunResult, RunResult | None]:
    """Run under the sandbox's faults; if partitions failed, clear the faults and run again.

    Checks the ledger against the table after each run and, at the end, the whole table. "Now"
    is the sandbox's clock: the test's.
    """
    clock = sandbox.config.clock
    first = await run_sync(settings, dates, now=clock(), **options)
    await assert_run_accounted(engine, first)
    await assert_ledger_is_table(engine, sandbox)
    second = None
    if first.status != "succeeded":
        assert first.status == "partial", (first.status, first.error)
        for f in first.failed:  # a failure says what and where
            assert f.error, f
        sandbox.set_faults(Faults())
        now = clock()
        second = await run_sync(settings, dates, now=now, **options)
        assert second.status == "succeeded", second.failed
        assert second.counts.partitions_skipped == first.counts.partitions_done
        await assert_run_accounted(engine, second)
        await assert_ledger_is_table(engine, sandbox)
    else:
        now = clock()
    assert await assert_table_is_truth(engine, sandbox, dates, now) > 0
    return first, second


def _codes(sandbox: SandboxServer) -> dict[str, int]:
    codes: dict[str, int] = sandbox.stats()["endpoints"]["daily_data"]["codes"]
    return codes


# -- the platform's and the network's faults --------------------------------------------------


async def test_busy_5xx_and_resets(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """5 % 28001005, 2 % HTTP 502/503 with HTML bodies, 2 % connection resets: all retried,
    table exact."""
    faults = Faults(seed=33, busy_rate=0.05, http_5xx_rate=0.02, reset_rate=0.02)
    sandbox.set_faults(faults)
    dates = clock.recent_dates(3)
    first, _ = await settle(
        sandbox, sandbox_settings(sandbox, database_url), engine, dates, page_size=20
    )
    codes = _codes(sandbox)
    assert codes.get("28001005", 0) > 0
    assert codes.get("http_502", 0) + codes.get("http_503", 0) > 0
    assert codes.get("reset", 0) > 0
    assert first.counts.retries > 0
    assert_no_rule_breaks(sandbox)


async def test_hanging_responses_time_out(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """Answers that hang past the request timeout are abandoned and retried: table exact."""
    faults = Faults(seed=16, hang_rate=0.06, hang_seconds=3.0)
    sandbox.set_faults(faults)
    dates = clock.recent_dates(2)
    started = time.monotonic()
    first, _ = await settle(
        sandbox,
        sandbox_settings(sandbox, database_url),
        engine,
        dates,
        page_size=25,
        timeouts=Timeouts(connect=1.0, total=1.0),
    )
    assert first.counts.retries > 0  # some request did hang and time out
    assert time.monotonic() - started < 40
    assert_no_rule_breaks(sandbox)


async def test_truncated_and_malformed_json(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """Bodies cut off mid-way, HTML fragments and garbage after the JSON are retried."""
    faults = Faults(seed=12, malformed_rate=0.07)
    sandbox.set_faults(faults)
    dates = clock.recent_dates(3)
    first, _ = await settle(
        sandbox, sandbox_settings(sandbox, database_url), engine, dates, page_size=20
    )
    assert _codes(sandbox).get("malformed", 0) > 0
    assert first.counts.retries > 0
    assert_no_rule_breaks(sandbox)


async def test_valid_json_of_the_wrong_shape(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """Valid JSON that is not the documented shape (data null or absent, err_no a string, a bare
    array, the list an object, `data` without video_daily_data_list) is never taken for a page.

    Seed 2 serves, among the first 20 answers, `data: null`, an envelope without `data` and
    `data: {"list": []}`: the last one, read as an empty page, would end the window early and
    let the mirror delete its rows.
    """
    faults = Faults(seed=2, wrong_shape_rate=0.08)
    sandbox.set_faults(faults)
    dates = clock.recent_dates(3)
    await settle(sandbox, sandbox_settings(sandbox, database_url), engine, dates, page_size=20)
    assert _codes(sandbox).get("wrong_shape", 0) >= 3
    assert_no_rule_breaks(sandbox)


async def test_wrong_shape_after_a_complete_sync_deletes_nothing(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A re-sync meeting wrong-shape answers never removes stored rows the platform still has."""
    dates = clock.recent_dates(2)
    settings = sandbox_settings(sandbox, database_url)
    now = clock()
    assert (await run_sync(settings, dates, now=now, page_size=20)).status == "succeeded"
    total = await assert_table_is_truth(engine, sandbox, dates, now)
    sandbox.set_faults(Faults(seed=3, wrong_shape_rate=0.08))  # `data: {"list": []}` 13th answer
    result = await run_sync(settings, dates, now=now, page_size=20, restart=True)
    await assert_run_accounted(engine, result)
    assert result.counts.rows_removed == 0
    assert await assert_table_is_truth(engine, sandbox, dates, now) == total


async def test_throttle_storm(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """Two seconds of 28003018 on every request: the run slows down, completes exactly, and
    records how often it was throttled."""
    dates = clock.recent_dates(2)
    sandbox.set_faults(Faults(throttle_storm_until=clock() + 2.0))
    started = time.monotonic()
    first, second = await settle(
        sandbox, sandbox_settings(sandbox, database_url), engine, dates, page_size=50
    )
    assert time.monotonic() - started >= 2.0
    throttled_answers = _codes(sandbox).get("28003018", 0)
    assert throttled_answers > 0
    # Every throttled answer is counted, and the count is in the ledger.
    recorded = first.counts.throttled + (second.counts.throttled if second else 0)
    assert recorded == throttled_answers
    async with engine.connect() as conn:
        stored = await conn.scalar(
            select(sync_runs.c.throttled).where(sync_runs.c.id == first.run_id)
        )
    assert stored == first.counts.throttled > 0
    # Slowed down, never hammering: not even during the storm did the client send more than
    # the platform's 10 requests in a second, and its average rate fell well below 10/s.
    assert sandbox.stats()["daily_data_peak_per_second"] <= 10
    assert first.counts.qps_used is not None and first.counts.qps_used < 8


async def test_token_expiring_every_few_seconds_and_revoked_mid_run(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """Tokens that live 3 s, and every token revoked twice while the run is in flight (after 8
    and 20 requests): the refused requests get a fresh token and are sent again, table exact."""
    faults = Faults(seed=4, token_lifetime=3.0, busy_rate=0.02)
    sandbox.set_faults(faults)
    dates = clock.recent_dates(3)
    run = asyncio.create_task(
        settle(sandbox, sandbox_settings(sandbox, database_url), engine, dates, page_size=20)
    )
    for calls in (8, 20):  # mid-run: after that many daily-data requests

        async def reached(calls: int = calls) -> bool:
            assert not run.done(), "the run ended before the tokens were revoked"
            return api_calls(sandbox, "daily_data") >= calls

        await wait_until(reached, limit=60, interval=0.01, what=f"{calls} daily-data calls")
        sandbox.revoke_tokens()
    await run
    stats = sandbox.stats()
    assert _codes(sandbox).get("28001003", 0) > 0  # revoked tokens were refused mid-run
    assert stats["endpoints"]["client_token"]["calls"] >= 3
    assert_no_rule_breaks(sandbox)


# -- PostgreSQL connections killed --------------------------------------------------------------


async def _terminate_others(database_url: str) -> int:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        killed = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return sum(1 for r in killed if r[0])


async def _done_count(database_url: str) -> int:
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM sync_partitions WHERE status = 'done'"
        )
    finally:
        await conn.close()
    return count


async def test_postgres_connections_terminated_mid_run(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """pg_terminate_backend on every connection of the run, twice (after the first partition is
    done, and again after the fifth), while partitions are copying and merging: the run
    reconnects and finishes, or fails partitions (or itself) with an error of ours, never a
    crash; the ledger never calls 'done' a partition without its rows; the next run completes
    and leaves the table exact."""
    faults = Faults(seed=9, latency_min=0.02, latency_max=0.08)
    sandbox.set_faults(faults)
    dates = clock.recent_dates(4)
    settings = sandbox_settings(sandbox, database_url)
    run = asyncio.create_task(run_sync(settings, dates, now=clock(), page_size=20, concurrency=4))
    kills = 0
    for after_done in (1, 5):

        async def progressed(after_done: int = after_done) -> bool:
            return run.done() or await _done_count(database_url) >= after_done

        await wait_until(progressed, limit=60, interval=0.05, what="the run to make progress")
        if run.done():  # it finished, or gave up, after the first kill
            break
        assert await _terminate_others(database_url) >= 1
        kills += 1
    assert kills >= 1, "the run ended before the connections could be killed"
    outcome: RunResult | BaseException
    try:
        outcome = await asyncio.wait_for(run, 90)
    except Exception as exc:
        outcome = exc
    if isinstance(outcome, RunResult):
        assert outcome.status in ("succeeded", "partial", "failed"), outcome
        c = outcome.counts
        assert c.partitions_done + c.partitions_failed == c.partitions_total, outcome
    else:
        assert isinstance(outcome, TaskboxError), f"the run crashed: {outcome!r}"
    # Whatever happened, no 'done' partition lacks its rows and no row is wrong.
    await assert_ledger_is_table(engine, sandbox, unacknowledged=True)

    sandbox.set_faults(Faults())
    now = clock()
    second = await run_sync(settings, dates, now=now, page_size=20, concurrency=4)
    assert second.status == "succeeded", (outcome, second)
    await assert_run_accounted(engine, second)
    await assert_ledger_is_table(engine, sandbox)
    await assert_table_is_truth(engine, sandbox, dates, now)
    async with engine.connect() as conn:
        left_running = await conn.scalar(
            select(sync_runs.c.id).where(sync_runs.c.status == "running")
        )
    assert left_running is None, "the killed run is still 'running' in the ledger"
