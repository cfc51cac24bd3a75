"""`taskbox-sync nightly|backfill|status` end to end: the CLI as a real subprocess, the sandbox
served by the test's event loop, a real PostgreSQL database (issue #4's CLI points, part of #7).

The CLI reads the wall clock, so these tests' `clock` is the wall clock (marked `wall_clock`):
dates come from the day the test started, `nightly` gets it as `--today`."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.sandbox import Faults, SandboxServer
from tests.helpers import (
    Cli,
    CliResult,
    Clock,
    MakeSandbox,
    api_calls,
    assert_done_partitions_hold_rows,
    assert_no_rule_breaks,
    assert_table_is_truth,
    backfill_args,
    cli_env,
    done_partitions,
    partitions,
    run_cli,
    run_row,
    runs,
    spawned,
    stored_dates,
    wait_until,
)

pytestmark = pytest.mark.wall_clock

SLOW = Faults(seed=1, latency_min=0.08, latency_max=0.15)  # pages slow enough to interrupt
# A run that lasts ~25 s (24 pages one after another) unless the latency is lifted: long enough
# for other CLI processes to start and meet it even on a loaded machine.
CRAWL = Faults(seed=1, latency_min=1.0, latency_max=1.2)


@pytest.fixture
async def sandbox(make_sandbox: MakeSandbox) -> SandboxServer:
    """A smaller catalog than the suite's (~110 rows a billing date): CLI runs start slowly."""
    return await make_sandbox(seed=7, videos=150, tasks=6, creators=20)


def assert_one_line_error(result: CliResult) -> str:
    """Exit 2, nothing on stdout, one line on stderr and no traceback; returns the line."""
    assert result.status == 2, result
    assert "Traceback" not in result.stderr, result
    assert len(result.err_lines) == 1, result
    assert result.stdout == "", result
    line = result.err_lines[0]
    assert line.startswith("taskbox-sync"), result
    return line


# -- dry run ----------------------------------------------------------------------------------


async def test_backfill_dry_run_prints_plan_and_touches_nothing(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """--dry-run prints dates, windows, minimum calls and time at the QPS, exits 0, and makes no
    API call and no ledger row."""
    dates = clock.recent_dates(3)
    now = clock()
    plan = planner.plan(dates, now)
    result = await run_cli(
        *backfill_args(dates, "--dry-run", "--qps", "4"), env=cli_env(sandbox, database_url)
    )
    assert result.status == 0, result
    out = result.stdout
    for d in dates:
        windows = planner.windows_for(d, now)
        assert f"{d}: {len(windows)} windows" in out, result
        # The newest window ends with the China-time day; the others are stable within the day.
        assert f".. {planner.shanghai_text(planner.day_end(d))} (China time)" in out, result
    window_lines = [line for line in out.splitlines() if line.endswith("(China time)")]
    assert len(window_lines) == len(plan.partitions)
    total = out.strip().splitlines()[-1]
    n = len(plan.partitions)
    seconds = n / 4
    assert total == (
        f"total: 3 billing dates, {n} partitions, at least {n} calls, "
        f"at least {seconds:.1f} s at 4 QPS"
    ), result
    assert api_calls(sandbox) == 0
    assert await runs(engine) == []
    assert await partitions(engine) == []
    assert await stored_dates(engine) == set()


# -- refusals ---------------------------------------------------------------------------------

WRONG_SECRET = "not-the-secret-0042"
DB_PASSWORD = "Pw-S3cret-never-shown"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Refusal:
    """A command line (built from today's date) the CLI must refuse with exit 2."""

    args: Callable[[dt.date], list[str]]
    names: str  # text the error line must contain
    env: dict[str, str] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    token_call: bool = False  # the refusal needs the platform's answer to the token request
    closed_db: bool = False
    hidden: tuple[str, ...] = ()  # text that must not appear anywhere in the output


def _days(t: dt.date, n: int) -> str:
    return (t + dt.timedelta(days=n)).isoformat()


def _backfill(first: int | str, last: int | str, *extra: str) -> Callable[[dt.date], list[str]]:
    """backfill --from FIRST --to LAST: days relative to today, or text as given."""

    def args(t: dt.date) -> list[str]:
        def day(v: int | str) -> str:
            return v if isinstance(v, str) else _days(t, v)

        return ["backfill", "--from", day(first), "--to", day(last), *extra]

    return args


def _nightly(*extra: str) -> Callable[[dt.date], list[str]]:
    return lambda t: ["nightly", *extra]


KEY, SECRET = "DOUYIN_CLIENT_KEY", "DOUYIN_CLIENT_SECRET"

REFUSALS = {
    "malformed-date": Refusal(_backfill("2024-13-01", -1), "--from"),
    "not-a-date": Refusal(_backfill(-2, "yesterday"), "--to"),
    "slashed-date": Refusal(_backfill("2024/01/01", -1), "--from"),
    "from-after-to": Refusal(_backfill(-1, -3), "is after"),
    "today": Refusal(_backfill(-2, 0), "not available yet"),
    "future": Refusal(_backfill(-2, 5), "not available yet"),
    "beyond-reach": Refusal(_backfill(-95, -1), "90-day reach"),
    "nightly-today-malformed": Refusal(_nightly("--today", "20240101"), "--today"),
    "qps-0": Refusal(_backfill(-2, -1, "--qps", "0"), "--qps"),
    "qps-11": Refusal(_backfill(-2, -1, "--qps", "11"), "--qps"),
    "qps-nan": Refusal(_backfill(-2, -1, "--qps", "nan"), "--qps"),
    "page-size-0": Refusal(_backfill(-2, -1, "--page-size", "0"), "--page-size"),
    "page-size-10001": Refusal(_backfill(-2, -1, "--page-size", "10001"), "--page-size"),
    "lookback-0": Refusal(_nightly("--lookback-days", "0"), "--lookback-days"),
    "lookback-90": Refusal(_nightly("--lookback-days", "90"), "--lookback-days"),
    "unknown-flag": Refusal(_backfill(-2, -1, "--bogus"), "--bogus"),
    "missing-client-key": Refusal(_backfill(-2, -1), KEY, unset=(KEY,)),
    "missing-client-secret": Refusal(_backfill(-2, -1), SECRET, unset=(SECRET,)),
    "wrong-client-secret": Refusal(
        _backfill(-2, -1),
        SECRET,
        env={SECRET: WRONG_SECRET},
        token_call=True,
        hidden=(WRONG_SECRET,),
    ),
    "database-closed-port": Refusal(
        _backfill(-2, -1), "cannot connect", closed_db=True, hidden=(DB_PASSWORD,)
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS.values()), ids=list(REFUSALS))
async def test_refused_with_one_line_and_exit_2(
    case: Refusal,
    sandbox: SandboxServer,
    database_url: str,
    engine: AsyncEngine,
    clock: Clock,
) -> None:
    """A bad date, flag or setting is refused with one stderr line naming it and exit 2, no
    traceback, before any data call and without writing a run."""
    env = cli_env(sandbox, database_url, unset=case.unset, **case.env)
    if case.closed_db:
        port = _closed_port()
        env["DATABASE_URL"] = f"postgresql://taskbox:{DB_PASSWORD}@127.0.0.1:{port}/taskbox"
    result = await run_cli(*case.args(clock.today), env=env)
    line = assert_one_line_error(result)
    assert case.names in line, result
    for secret in case.hidden:
        assert secret not in result.stdout + result.stderr
    assert api_calls(sandbox, "daily_data") == 0
    if case.token_call:
        assert api_calls(sandbox) == api_calls(sandbox, "client_token") >= 1
    else:
        assert api_calls(sandbox) == 0
        assert await runs(engine) == []
    assert await stored_dates(engine) == set()
    # Whatever was recorded is finished: no run and no partition is left 'running'.
    assert not [r for r in await runs(engine) if r.status == "running"]
    assert not [p for p in await partitions(engine) if p.status == "running"]


# -- nightly ----------------------------------------------------------------------------------


async def test_nightly_lookback_three_syncs_exactly_three_dates(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """`nightly --lookback-days 3` syncs yesterday and the two days before, nothing else, and the
    table equals the platform's answer for them."""
    dates = clock.recent_dates(3)
    now = clock()
    result = await run_cli(
        *("nightly", "--today", str(clock.today), "--lookback-days", "3", "--page-size", "50"),
        env=cli_env(sandbox, database_url),
    )
    assert result.status == 0, result
    (run,) = await runs(engine)
    assert (run.kind, run.status) == ("nightly", "succeeded")
    assert run.params["dates"] == [dates[0].isoformat(), dates[-1].isoformat()]
    expected = len(planner.plan(dates, now).partitions)
    assert run.partitions_total == run.partitions_done == expected
    assert f"run {run.id}: succeeded" in result.stdout
    assert {p.billing_date for p in await partitions(engine)} == set(dates)
    assert await stored_dates(engine) == set(dates)
    assert await assert_table_is_truth(engine, sandbox, dates, now) > 0
    assert_no_rule_breaks(sandbox)


# -- logs -------------------------------------------------------------------------------------


def assert_json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line is a JSON object with the formatter's keys; the objects."""
    docs = []
    for line in stderr.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            raise AssertionError(f"stderr line is not JSON: {line!r}") from None
        assert isinstance(doc, dict), line
        assert {"ts", "level", "logger", "msg"} <= doc.keys(), line
        docs.append(doc)
    return docs


async def test_json_log_format_every_stderr_line_is_json(
    make_sandbox: MakeSandbox, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """With --log-format json every stderr line of a run is a JSON object (retry logs included)."""
    faults = Faults(seed=4, busy_rate=0.3)
    sb = await make_sandbox(seed=7, videos=150, faults=faults)
    dates = clock.recent_dates(2)
    now = clock()
    result = await run_cli(
        *backfill_args(dates, "--page-size", "20", "--log-format", "json"),
        env=cli_env(sb, database_url),
    )
    assert result.status == 0, result
    assert result.err_lines, "expected retry log lines on stderr"
    docs = assert_json_lines(result.stderr)
    assert any("retry" in d["msg"] for d in docs), result.stderr
    await assert_table_is_truth(engine, sb, dates, now)


async def test_json_log_format_holds_when_locked_out_or_interrupted(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """With --log-format json, the stderr of a run locked out (75) and of a run stopped by
    SIGTERM (143) is JSON lines too, so a log pipeline never meets a plain line."""
    sandbox.set_faults(CRAWL)
    env = cli_env(sandbox, database_url)
    args = backfill_args(
        clock.recent_dates(2), "--page-size", "10", "--concurrency", "1", "--log-format", "json"
    )
    async with spawned(*args, env=env) as first:
        await _wait_running(engine, first)
        locked = await run_cli(*args, env=env)
        assert first.running, "the first run ended before the second was tried"
        sandbox.set_faults(Faults())
        first.send(signal.SIGTERM)
        stopped = await first.wait(60)
    assert stopped.status == 143, stopped
    assert locked.status == 75, locked
    assert any(d["level"] == "warning" for d in assert_json_lines(stopped.stderr)), stopped
    (line,) = assert_json_lines(locked.stderr)
    assert "in progress" in line["msg"], locked


@contextlib.asynccontextmanager
async def token_outage(sandbox: SandboxServer, failures: int) -> AsyncIterator[str]:
    """A base URL in front of the sandbox whose first `failures` client-token requests answer
    HTTP 502 (the sandbox cannot fault that endpoint); everything else is passed through."""
    left = failures
    hop = {"host", "content-length", "transfer-encoding", "connection"}
    async with aiohttp.ClientSession() as upstream:

        async def forward(request: web.Request) -> web.StreamResponse:
            nonlocal left
            body = await request.read()
            if request.path.startswith("/oauth/client_token") and left > 0:
                left -= 1
                return web.Response(status=502, text="<html>502 Bad Gateway</html>")
            headers = {k: v for k, v in request.headers.items() if k.lower() not in hop}
            url = sandbox.base_url + request.path_qs
            async with upstream.request(request.method, url, data=body, headers=headers) as resp:
                kept = {"Content-Type": resp.headers.get("Content-Type", "application/json")}
                return web.Response(status=resp.status, body=await resp.read(), headers=kept)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            yield f"http://127.0.0.1:{server.port}"
        finally:
            await server.close()
    assert left == 0, "the outage was never met"


async def test_transient_token_failure_at_start_is_retried(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A 502 on the first client-token request is retried like any transient failure: the run
    succeeds and the table equals the truth (only refused credentials stop a run at start)."""
    dates = clock.recent_dates(1)
    now = clock()
    async with token_outage(sandbox, failures=1) as base_url:
        env = cli_env(sandbox, database_url, DOUYIN_OPEN_BASE_URL=base_url)
        result = await run_cli(*backfill_args(dates, "--page-size", "50"), env=env)
    assert result.status == 0, result
    (run,) = await runs(engine)
    assert run.status == "succeeded"
    await assert_table_is_truth(engine, sandbox, dates, now)


# -- the run lock -----------------------------------------------------------------------------


async def _wait_running(engine: AsyncEngine, cli: Cli) -> None:
    async def started() -> bool:
        assert cli.running, await cli.wait()
        return any(r.status == "running" for r in await runs(engine))

    await wait_until(started, what="the run to start")


async def test_second_run_of_same_app_exits_75(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """While a run is in progress a second run of the same app exits 75 with one line, writes no
    run, and the first still finishes with 0."""
    sandbox.set_faults(CRAWL)
    dates = clock.recent_dates(2)
    now = clock()
    env = cli_env(sandbox, database_url)
    args = backfill_args(dates, "--page-size", "10", "--concurrency", "1")
    async with spawned(*args, env=env) as first:
        await _wait_running(engine, first)
        second = await run_cli(*args, env=env)
        # A different date range of the same app is kept out too.
        other = await run_cli(*backfill_args(clock.recent_dates(1, skip=5)), env=env)
        assert first.running, "the first run ended before the others were tried"
        for result in (second, other):
            assert result.status == 75, result
            assert len(result.err_lines) == 1 and "Traceback" not in result.stderr, result
            assert "in progress" in result.err_lines[0], result
            assert sandbox.config.client_key in result.err_lines[0], result
            assert result.stdout == "", result
        assert len(await runs(engine)) == 1
        sandbox.set_faults(Faults())  # let the first run finish quickly
        done = await first.wait()
    assert done.status == 0, done
    (run,) = await runs(engine)
    assert run.status == "succeeded"
    await assert_table_is_truth(engine, sandbox, dates, now)


# -- signals and resume -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signum", "exit_status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"]
)
async def test_signal_interrupts_then_same_command_resumes(
    signum: int,
    exit_status: int,
    sandbox: SandboxServer,
    database_url: str,
    engine: AsyncEngine,
    clock: Clock,
) -> None:
    """A signal mid-run exits 128+signal with the run 'interrupted' and every done partition
    holding its rows; the same command then completes, skipping what was done."""
    sandbox.set_faults(SLOW)
    dates = clock.recent_dates(3)
    env = cli_env(sandbox, database_url)
    args = backfill_args(dates, "--page-size", "20", "--concurrency", "2")
    async with spawned(*args, env=env) as cli:

        async def some_done() -> bool:
            assert cli.running, await cli.wait()
            return await done_partitions(engine) >= 1

        await wait_until(some_done, what="a partition to be done")
        cli.send(signum)
        first = await cli.wait(60)
    assert first.status == exit_status, first
    assert "Traceback" not in first.stderr, first
    (run,) = await runs(engine)
    assert run.status == "interrupted", run
    assert run.finished_at is not None
    assert signal.Signals(signum).name in (run.error or ""), run.error
    parts = await partitions(engine, run.id)
    assert not [p for p in parts if p.status == "running"], "partitions left 'running'"
    done_before = await assert_done_partitions_hold_rows(engine, sandbox, parts)
    assert 0 < done_before < run.partitions_total, (done_before, run.partitions_total)
    assert run.partitions_done == done_before

    sandbox.set_faults(Faults())
    now = clock()
    again = await run_cli(*args, env=env)
    assert again.status == 0, again
    first_run, second_run = await runs(engine)
    assert first_run.id == run.id and first_run.status == "interrupted"
    assert second_run.status == "succeeded"
    assert second_run.partitions_skipped == done_before
    assert second_run.partitions_done + second_run.partitions_skipped == second_run.partitions_total
    done_keys = {(p.billing_date, p.window_end) for p in parts if p.status == "done"}
    refetched = {(p.billing_date, p.window_end) for p in await partitions(engine, second_run.id)}
    assert not done_keys & refetched, "done partitions were fetched again"
    await assert_table_is_truth(engine, sandbox, dates, now)
    assert_no_rule_breaks(sandbox)


async def test_second_signal_rolls_back_in_flight_partitions(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """A second SIGTERM stops at once: exit 143, the run 'interrupted', no partition left
    'running', every done partition holding its rows; the same command then completes."""
    sandbox.set_faults(Faults(seed=1, latency_min=0.3, latency_max=0.4))
    dates = clock.recent_dates(2)
    env = cli_env(sandbox, database_url)
    args = backfill_args(dates, "--page-size", "10", "--concurrency", "2")
    async with spawned(*args, env=env) as cli:

        async def some_done() -> bool:
            assert cli.running, await cli.wait()
            return await done_partitions(engine) >= 1

        await wait_until(some_done, what="a partition to be done")
        cli.send(signal.SIGTERM)
        assert not await cli.ended_within(0.2), "the first signal did not let in-flight work end"
        cli.send(signal.SIGTERM)
        stopped = time.monotonic()
        first = await cli.wait(60)
        took = time.monotonic() - stopped
    assert first.status == 143, first
    assert "Traceback" not in first.stderr, first
    (run,) = await runs(engine)
    assert run.status == "interrupted", run
    parts = await partitions(engine, run.id)
    assert not [p for p in parts if p.status == "running"], [(p.id, p.status) for p in parts]
    done_before = await assert_done_partitions_hold_rows(engine, sandbox, parts)
    assert done_before < run.partitions_total
    assert took < 5, f"the second signal took {took:.1f}s to stop the run"

    sandbox.set_faults(Faults())
    now = clock()
    again = await run_cli(*args, env=env)
    assert again.status == 0, again
    second_run = (await runs(engine))[-1]
    assert second_run.partitions_skipped == done_before
    await assert_table_is_truth(engine, sandbox, dates, now)


async def test_fatal_error_stops_run_without_leaving_partitions_running(
    make_sandbox: MakeSandbox, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """An app without the data permission (28001018) stops the run: exit 1, the run 'failed'
    naming the code, and none of its partitions left 'running' in the ledger."""
    sb = await make_sandbox(seed=7, videos=100, capability=False)
    result = await run_cli(*backfill_args(clock.recent_dates(2)), env=cli_env(sb, database_url))
    assert result.status == 1, result
    assert "Traceback" not in result.stderr, result
    (run,) = await runs(engine)
    assert run.status == "failed" and "28001018" in (run.error or ""), run
    parts = await partitions(engine, run.id)
    assert not [p for p in parts if p.status == "running"], [(p.id, p.status) for p in parts]
    assert await stored_dates(engine) == set()


# -- status -----------------------------------------------------------------------------------


async def test_status_commands(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """`status` lists the runs, `status --check` prints one line, `status --run ID` shows the
    run's partitions, and an unknown run id is exit 2."""
    env = cli_env(sandbox, database_url)
    nightly = await run_cli("nightly", "--today", str(clock.today), "--lookback-days", "2", env=env)
    assert nightly.status == 0, nightly
    backfill = await run_cli(*backfill_args(clock.recent_dates(1, skip=4)), env=env)
    assert backfill.status == 0, backfill
    first, second = await runs(engine)

    shown = await run_cli("status", env=env)
    assert shown.status == 0, shown
    rows = {
        int(line.split()[0]): line.split()
        for line in shown.stdout.splitlines()
        if re.match(r"\s*\d+\s+(nightly|backfill)\s", line)
    }
    assert rows.keys() == {first.id, second.id}, shown
    assert rows[first.id][1:3] == ["nightly", "succeeded"]
    assert rows[second.id][1:3] == ["backfill", "succeeded"]

    check = await run_cli("status", "--check", env=env)
    assert len(check.stdout.splitlines()) == 1, check
    assert check.err_lines == [], check
    line = check.stdout.strip()
    # Older billing dates were never synced and some are about to leave the 90-day reach.
    assert check.status == 1 and line.startswith("PROBLEM: "), check
    assert "nightly" not in line, check  # the last nightly run succeeded

    detail = await run_cli("status", "--run", str(first.id), env=env)
    assert detail.status == 0, detail
    parts = await partitions(engine, first.id)
    assert parts
    for p in parts:
        window = (
            f"{planner.shanghai_text(int(p.window_start.timestamp()))} .. "
            f"{planner.shanghai_text(int(p.window_end.timestamp()))}"
        )
        matching = [
            line
            for line in detail.stdout.splitlines()
            if line.startswith(str(p.billing_date)) and window in line
        ]
        assert len(matching) == 1 and " done " in matching[0], detail
    other_run = await run_row(engine, second.id)
    assert str(other_run.params["dates"][0]) not in detail.stdout

    missing = await run_cli("status", "--run", "999999", env=env)
    line = assert_one_line_error(missing)
    assert "999999" in line
