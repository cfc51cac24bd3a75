"""Progress (#17): on a terminal with text logs, a live bar per run (per app of a fleet, and a
total) with calls of the planned minimum, partitions, rows, rates and an ETA; off a terminal, or
with JSON logs, the periodic log lines of before. The CLI runs in a subprocess whose stderr is a
pseudo-terminal (`os.openpty`), against the sandbox served by the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import json
import logging
import os
import re
import struct
import sys
import termios
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.cli.progress_bar import TerminalProgress
from sync.db.counts import RunCounts
from sync.db.database import create_engine
from sync.pipeline.engine import run_app
from sync.pipeline.progress import ProgressSnapshot, RunProgress
from sync.pipeline.runs import RunOptions
from sync.sandbox import Faults, SandboxServer
from sync.sandbox.apps_file import render_apps_file, secret_env
from tests.helpers import (
    REPO,
    Clock,
    MakeSandbox,
    assert_table_is_truth,
    backfill_args,
    cli_env,
    run_cli,
    runs,
    sandbox_settings,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BAR = "━"  # rich's bar glyph


@pytest.fixture
async def sandbox(make_sandbox: MakeSandbox) -> SandboxServer:
    """~110 rows a billing date, answers in 20-60 ms: a run of a few seconds, several frames."""
    return await make_sandbox(
        seed=7, videos=150, tasks=6, creators=20, faults=Faults(latency_min=0.02, latency_max=0.06)
    )


async def run_in_pty(*args: str, env: dict[str, str], limit: float = 90.0) -> tuple[int, str, str]:
    """`python -m sync ARGS` with stderr on a pseudo-terminal of 120 x 30: its exit status, the
    terminal's output (escapes included) and stdout."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    received = bytearray()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other side closed
            chunk = b""
        if chunk:
            received.extend(chunk)
        else:
            loop.remove_reader(master)

    env = {**env, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "30"}
    loop.add_reader(master, readable)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sync", *args, env=env, cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=slave,
        )  # fmt: skip
        os.close(slave)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), limit)
        except TimeoutError:
            proc.kill()
            raise
        await asyncio.sleep(0.2)  # the last bytes in the terminal
        with contextlib.suppress(OSError):
            readable()
    finally:
        loop.remove_reader(master)
        os.close(master)
    assert proc.returncode is not None
    return proc.returncode, received.decode(errors="replace"), out.decode()


def frames(terminal: str) -> list[str]:
    """What the terminal showed, redraw by redraw, escapes removed (rich redraws a live display
    by erasing its lines upward)."""
    parts = re.split(r"\r\x1b\[2K(?:\x1b\[1A\x1b\[2K)*", terminal)
    return [ANSI.sub("", p) for p in parts if ANSI.sub("", p).strip()]


@pytest.mark.wall_clock
async def test_a_backfill_on_a_terminal_draws_a_bar_and_ends_exact(
    sandbox: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock
) -> None:
    """Under a pty the CLI draws a bar with calls of the planned minimum, partitions, rows,
    rates and an ETA; the last frame is the run's final figures, and the table is the truth."""
    dates = clock.recent_dates(3)
    status, terminal, out = await run_in_pty(
        *backfill_args(dates, "--page-size", "20"), env=cli_env(sandbox, database_url)
    )
    assert status == 0, terminal + out
    shown = frames(terminal)
    assert BAR in terminal and len(shown) >= 2, terminal
    assert any("ETA " in f and " calls" in f and " partitions" in f for f in shown), shown
    assert all(" req/s" in f and " rows/s" in f and " rows" in f for f in shown), shown
    (run,) = await runs(engine)
    last = shown[-1]
    assert f"{run.api_calls}/{run.api_calls} calls" in last, last
    total = run.partitions_total
    assert f"{total}/{total} partitions" in last and f"{run.rows_fetched:,} rows" in last, last
    assert "done" in last, last
    assert out.startswith(f"run {run.id}: succeeded"), out
    await assert_table_is_truth(engine, sandbox, dates, clock())


@pytest.fixture
async def two_apps(make_sandbox: MakeSandbox) -> SandboxServer:
    """Two apps with disjoint data (each run spans several redraws: ~9 calls at 10 QPS)."""
    return await make_sandbox(
        seed=11, videos=80, tasks=4, creators=8, apps=2,
        faults=Faults(latency_min=0.02, latency_max=0.06),
    )  # fmt: skip


@pytest.mark.wall_clock
async def test_a_fleet_on_a_terminal_draws_a_bar_per_app_and_a_total(
    two_apps: SandboxServer, database_url: str, engine: AsyncEngine, clock: Clock, tmp_path: Path
) -> None:
    """With an apps file each running app has its bar and the fleet a total that ends with
    every app done and the calls of all of them; each app's rows are its truth."""
    path = tmp_path / "apps.toml"
    path.write_text(render_apps_file(two_apps.apps))
    env = cli_env(two_apps, database_url, unset=("DOUYIN_CLIENT_KEY", "DOUYIN_CLIENT_SECRET"))
    env = {**env, **secret_env(two_apps.apps), "TASKBOX_APPS_FILE": str(path)}
    dates = clock.recent_dates(2)
    status, terminal, out = await run_in_pty(*backfill_args(dates, "--page-size", "20"), env=env)
    assert status == 0, terminal + out
    shown = frames(terminal)
    lines = [line.strip() for f in shown for line in f.splitlines()]  # a frame: a line an app
    for app in two_apps.apps:
        assert any(line.startswith(app.app_id) and BAR in line for line in lines), shown
    calls = sum(r.api_calls for r in await runs(engine))
    assert "total (2/2 apps)" in shown[-1] and f"{calls}/{calls} calls" in shown[-1], shown[-1]
    for app in two_apps.apps:
        await assert_table_is_truth(
            engine, two_apps, dates, clock(), app_id=app.app_id, app=app.client_key
        )


@pytest.mark.wall_clock
async def test_json_logs_on_a_terminal_stay_json_lines(
    sandbox: SandboxServer, database_url: str, clock: Clock
) -> None:
    """With --log-format json on a terminal no bar is drawn: every line of stderr is JSON."""
    dates = clock.recent_dates(2)
    status, terminal, _ = await run_in_pty(
        *backfill_args(dates, "--log-format", "json"), env=cli_env(sandbox, database_url)
    )
    assert status == 0, terminal
    assert BAR not in terminal and "\x1b[" not in terminal, terminal
    for line in terminal.splitlines():
        if line.strip():
            json.loads(line)


@pytest.mark.wall_clock
async def test_off_a_terminal_no_bar_is_drawn(
    sandbox: SandboxServer, database_url: str, clock: Clock
) -> None:
    """With stderr a pipe, text logs show no bar and no terminal escape."""
    result = await run_cli(
        *backfill_args(clock.recent_dates(2)), env=cli_env(sandbox, database_url)
    )
    assert result.status == 0, result
    assert BAR not in result.stderr and "\x1b[" not in result.stderr, result


async def test_without_a_watcher_a_run_logs_the_progress_lines_of_before(
    sandbox: SandboxServer,
    database_url: str,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pipeline's default watcher logs `progress: partitions a/b (failed f) · pages p ·
    rows r · x req/s · y rows/s` every interval, as before the bars."""
    caplog.set_level(logging.INFO, logger="sync")
    settings = sandbox_settings(sandbox, database_url)
    assert settings.database_url is not None
    db = create_engine(settings.database_url.reveal(), pool_size=8)
    try:
        result = await run_app(
            db,
            settings,
            RunOptions(kind="backfill", page_size=20),
            planner.plan(clock.recent_dates(2), clock()),
            progress_interval=0.05,  # a line at almost every turn of the run
        )
    finally:
        await db.dispose()
    assert result.status == "succeeded"
    lines = [r.getMessage() for r in caplog.records if r.name == "sync.pipeline.progress"]
    pattern = re.compile(
        r"progress: partitions \d+/\d+ \(failed 0\) · pages \d+ · rows [\d,]+ · "
        r"[\d.]+ req/s · [\d,]+ rows/s"
    )
    assert lines and all(pattern.fullmatch(line) for line in lines), lines


# -- the figures and the drawing, without a run -----------------------------------------------


def _snapshot(**changes: object) -> ProgressSnapshot:
    base: dict[str, object] = dict(
        app_id="tt_a", calls=40, min_calls=100, partitions_total=100, partitions_finished=30,
        partitions_failed=0, partitions_skipped=0, pages=40, rows=8_000, elapsed=4.0,
    )  # fmt: skip
    base.update(changes)
    return ProgressSnapshot(**base)  # type: ignore[arg-type]


def test_expected_calls_start_at_the_plans_minimum_and_end_at_the_calls_made() -> None:
    """The bar's total is the plan's minimum until partitions need more pages (one more call at
    least for each unfinished one), and the calls made once the run is over."""
    assert _snapshot(calls=30).expected_calls == 100
    assert _snapshot(calls=95, partitions_finished=60).expected_calls == 135
    assert _snapshot(calls=130, partitions_finished=100, finished=True).expected_calls == 130


def test_eta_is_the_larger_of_the_calls_and_the_partitions_left() -> None:
    """ETA: the calls still expected at the call rate, or the partitions left at the rate they
    finish, whichever is longer; none before the first call."""
    s = _snapshot()  # 60 calls left at 10/s: 6 s; 70 partitions left at 30 in 4 s: 9.3 s
    assert s.eta == pytest.approx(70 * 4.0 / 30)
    assert _snapshot(calls=0, partitions_finished=0).eta is None
    assert _snapshot(finished=True).eta == 0.0


def test_a_fleets_total_adds_the_apps_up() -> None:
    """The total of several runs sums their figures and is finished when every one is."""
    total = ProgressSnapshot.summed([_snapshot(), _snapshot(calls=10, finished=True)])
    assert (total.calls, total.min_calls, total.rows, total.finished) == (50, 200, 16_000, False)


async def test_the_bars_of_a_fleet_show_running_apps_and_a_total() -> None:
    """Drawn to a console of 120 columns: a bar per running app with its figures, and a total
    counting the apps not started at their planned minimum."""
    out = io.StringIO()
    bars = TerminalProgress(
        apps=3, min_calls=10, console=Console(file=out, width=120, force_terminal=False)
    )
    counts = RunCounts(partitions_total=10, api_calls=3, partitions_done=3, rows_read=1_234)
    run = RunProgress("tt_running_app", counts, 10)
    bars.run_started(run)
    text = _render(bars)
    assert text.splitlines()[0].startswith("tt_running_app") and "3/10 calls" in text, text
    assert "3/10 partitions" in text and "1,234 rows" in text and "ETA " in text, text
    assert "total (0/3 apps)" in text and "3/30 calls" in text, text
    run.end()
    bars.run_ended(run)
    text = _render(bars)
    assert "tt_running_app" not in text and "total (1/3 apps)" in text, text


def _render(bars: TerminalProgress) -> str:
    out = io.StringIO()
    Console(file=out, width=120).print(bars.render())
    return out.getvalue()
