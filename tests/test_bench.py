"""The benchmark: its quick mode passes against a real server, and its arithmetic is right."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench import fleet, pg, report, yardstick
from bench.instrument import Probe
from bench.measure import timeline
from bench.profiles import FULL, QUICK, Scenario

ROOT = Path(__file__).resolve().parent.parent


def _measured(**changes: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "status": "succeeded",
        "error": None,
        "wall": 10.0,
        "rows": 80_000,
        "requests": 10,
        "throttled": 0,
        "partitions": [{"rows": 39_000, "pages": 4, "calls": 4}] * 2,
        "cpu": {"sync": 4.0, "sandbox": 0.5, "postgres": 3.0, "other": 0.1},
        "stages": {"decode": 1.0, "map": 1.0, "write": 1.0, "merge": 0.0, "gc": 0.2},
        "in_flight_mean": 2.0,
        "in_flight_max": 3,
        "util_steady": 0.96,
        "head_s": 0.1,
        "tail_s": 0.5,
        "peak_rss_mb": 120.0,
        "dates": ["2026-01-01"],
        "rejected": {},
        "versions": 0,
        "changed": 0,
        "truth_counts": {"2026-01-01": 80_000},
        "table_counts": {"2026-01-01": 80_000},
    }
    m.update(changes)
    return m


def test_derive_counts_minimum_calls_and_cost_per_rows() -> None:
    """Ideal time counts one call per started page; CPU per stage is per 10,000 rows."""
    d = report.derive(Scenario("ceiling", "x"), _measured(), qps=10.0)
    assert d["ideal_s"] == pytest.approx(0.8)  # 2 partitions x (39,000 // 10,000 + 1) calls
    assert d["rows_per_s"] == 8_000
    assert d["qps_utilisation"] == pytest.approx(0.1)
    assert d["page_fill"] == pytest.approx(0.8)
    assert d["sync_cpu_ms_per_10k_rows"]["decode"] == pytest.approx(125.0)
    assert d["sync_cpu_ms_per_10k_rows"]["other"] == pytest.approx(125.0)


def test_checks_catch_a_missing_row_and_a_throttle() -> None:
    """A date short of the truth, a throttled answer or a rule break fails the checks."""
    sc = Scenario("resync", "x", versions="none")
    good = _measured()
    assert all(v.ok for v in report.checks(sc, good, report.derive(sc, good, 10.0)))
    bad = _measured(
        table_counts={"2026-01-01": 79_999},
        rejected={"throttled": 1, "invalid_param": 2},
        versions=3,
    )
    failed = {v.name for v in report.checks(sc, bad, report.derive(sc, bad, 10.0)) if not v.ok}
    assert failed == {
        "throttled = 0",
        "no rule breaks",
        "rows per date = truth",
        "no new row versions",
    }


def test_targets_compare_with_the_ceiling_and_the_baseline() -> None:
    """RSS spread and the baseline ratio are judged against the ceiling scenario."""
    ceiling = report.derive(Scenario("ceiling", "x"), _measured(), 10.0)
    small = report.derive(Scenario("rss-200k", "x"), _measured(peak_rss_mb=200.0), 10.0)
    base = report.derive(Scenario("baseline", "x"), _measured(wall=20.0), 10.0)
    verdicts = report.targets({"baseline": base, "ceiling": ceiling, "rss-200k": small})
    by_name = {(v.scenario, v.name): v.ok for v in verdicts}
    assert by_name[("ceiling", "rows/s >= 85,000")] is False
    assert by_name[("rss-200k", "RSS within 15 % of ceiling's")] is False
    assert by_name[("ceiling", ">= 3x the baseline")] is False  # 2x only
    assert "rows/s" in report.table({"ceiling": ceiling})


def test_server_processes_counted_for_our_database_only() -> None:
    """Backends of other databases on a shared server do not count; helpers do."""
    assert pg.counted(
        "postgres: 15/main: postgres taskbox_bench 127.0.0.1(5) idle", "taskbox_bench"
    )
    assert not pg.counted("postgres: 15/main: postgres other 127.0.0.1(5) idle", "taskbox_bench")
    assert not pg.counted("postgres: postgres other [local] idle", "taskbox_bench")
    assert pg.counted("postgres: 15/main: checkpointer ", "taskbox_bench")
    assert pg.counted("postgres: walwriter", "taskbox_bench")


async def test_stepped_timing_counts_only_the_coroutines_own_steps() -> None:
    """A coroutine that waits costs (almost) nothing; the waiting is not counted as CPU."""
    probe = Probe()

    async def waits(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    timed = probe.timed_async("write", waits)
    started = time.monotonic()
    busy = asyncio.get_running_loop().run_in_executor(None, sum, range(3_000_000))
    assert await timed(0.2) == "done"
    await busy
    assert time.monotonic() - started >= 0.2
    assert probe.cpu["write"] < 0.05


async def test_request_probe_sees_requests_in_flight() -> None:
    """Two overlapping requests show as two in flight; steady use needs two seconds of data."""
    probe = Probe()

    async def request() -> None:
        await asyncio.sleep(0.05)

    timed = probe.requests(request)
    started = time.monotonic()
    await asyncio.gather(timed(), timed())
    info = timeline(probe, 10.0, started, time.monotonic())
    assert info["in_flight_max"] == 2
    assert info["util_steady"] is None
    assert info["head_s"] >= 0.0


def test_fleet_rate_counts_until_fewer_than_ten_apps_have_work() -> None:
    """From the first departure to the 10th-last app's last one: requests there / seconds."""
    # 12 apps, each sending one request a second from t=0; app i sends its last at t=i.
    departures = {app: [float(t) for t in range(app + 1)] for app in range(12)}
    busy = fleet.rate_while_busy(departures, min_apps=10)
    assert busy["span_s"] == 2.0  # the 10th-last app (app 2) is done at t=2
    assert busy["requests"] == 12 + 11 + 10  # departures at t=0, 1 and 2
    assert busy["rate"] == pytest.approx(33 / 2)
    assert fleet.rate_while_busy({1: [0.0, 1.0]}, min_apps=10)["rate"] is None


def test_fleet_busiest_second_and_departures_per_app() -> None:
    """The busiest half-open second of an app's departures; requests that never left and
    other apps' do not count."""
    assert fleet.max_in_window([0.0, 0.5, 0.999, 1.0, 1.5]) == 3
    assert fleet.max_in_window([]) == 0
    trace = [[1, 0.0, 0.1, 0.2, 0], [1, 0.0, None, 0.3, 1], [2, 0.0, 0.05, 0.2, 0]]
    assert fleet.per_app(trace) == {1: [0.1], 2: [0.05]}


def test_fleet_scenarios_are_in_the_full_and_quick_runs() -> None:
    """`--only fleet-small,fleet-big` finds them; the quick run has a tiny fleet."""
    full = {s.name: s for s in FULL.scenarios}
    assert full["fleet-small"].engine == full["fleet-big"].engine == "fleet"
    assert FULL.sandboxes[full["fleet-small"].sandbox].apps == 200
    assert FULL.sandboxes[full["fleet-big"].sandbox].apps == 4
    assert [s.name for s in QUICK.scenarios if s.engine == "fleet"] == ["fleet"]


@pytest.mark.slow
def test_quick_mode_passes(admin_url: str, tmp_path: Path) -> None:
    """`python -m bench --quick` syncs exactly and politely, and exits 0, in under a minute."""
    name = f"taskbox_bench_t{os.getpid()}"
    out = tmp_path / "quick.json"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench",
                "--quick",
                f"--database-url={admin_url}",
                f"--database-name={name}",
                f"--out={out}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        asyncio.run(pg.drop_database(admin_url, name))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert time.monotonic() - started < 60
    doc = json.loads(out.read_text())
    assert doc["checks"] and all(c["ok"] for c in doc["checks"])
    assert set(doc["scenarios"]) == {s.name for s in QUICK.scenarios}


def test_the_yardstick_measures_three_positive_figures_and_says_them() -> None:
    """The machine's yardstick: the loop in seconds, decode + map a row and a page fault in us,
    each positive and finite; the line names all three."""
    figures = yardstick.measure()
    assert set(figures) == {"loop_s", "page_us_per_row", "fault_us"}
    assert all(0 < value < 1_000 for value in figures.values()), figures
    text = yardstick.line(figures)
    assert f"{figures['loop_s']:.2f} s" in text and f"{figures['page_us_per_row']:.2f} us" in text
