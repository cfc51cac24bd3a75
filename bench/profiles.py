"""The scenarios and the data they run on: the full benchmark and the quick CI check.

Data shape of the full run (measured; `python -m bench` prints rows per partition): the sandbox
spreads videos evenly over 120 days, and a billing date's 90-day publish range is cut into three
30-day windows. At 157,000 videos a window holds about 39,300 rows, just under four full pages, so
4 calls fetch it and ~95 % of the pages the run asks for are full: the 9 newest dates give ~1.0 M
rows in ~106 calls. The latency sandbox is small (8,000 videos: one page of ~1,800 rows per
partition) but has 120 partitions, so that 20 workers always have one to work on while answers
take 0.5-3 s, and the CPU is not what limits the requests in flight. The `-slow` scenarios run
on the main sandbox with its answers delayed by 0.5-3 s (set through its fault controls for the
scenario alone): full pages at the real platform's latency.
"""

from __future__ import annotations

import dataclasses

from bench.sandbox import SandboxSpec

MAIN, SLOW = "main", "slow"
FLEET_SMALL, FLEET_BIG, FLEET_TINY = "fleet-small", "fleet-big", "fleet-tiny"
SLOW_ANSWERS = "0.5:3"  # the real platform's answer times, uniform


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    what: str  # one line for the table's legend
    sandbox: str = MAIN
    days: int = 9  # the most recent N billing dates
    fresh: bool = False  # empty the table first
    engine: str = "sync"  # sync | baseline | fleet (the CLI over every app of the sandbox)
    # | workers (the sandbox's apps as queued jobs, run by worker processes: bench.workers)
    kind: str = "backfill"
    change_fraction: float = 0.0  # late settlement first: this fraction of rows changed ...
    change_days: int = 0  # ... on the N oldest of the scenario's dates (0: all)
    new_days: int = 0  # delete the newest N dates from the table first: they arrive as new
    sample_partitions: int = 0  # baseline: run only the plan's first N partitions
    page_size: int = 10_000
    versions: str | None = None  # "none": must write no row version; "changed": <= rows changed
    latency: str | None = None  # "MIN:MAX" seconds the sandbox waits before each answer
    timeout: float = 300.0  # seconds before the scenario's process is killed (and reported)
    apps_at_once: int = 0  # fleet: the CLI's --apps-at-once (0: its default)


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    name: str
    sandboxes: dict[str, SandboxSpec]
    scenarios: tuple[Scenario, ...]
    check_targets: bool  # the speed targets (the quick run checks only exactness and manners)


FULL = Profile(
    "full",
    {
        MAIN: SandboxSpec(videos=157_000, seed=1, warm_days=19),
        SLOW: SandboxSpec(videos=8_000, seed=2, warm_days=45, latency=SLOW_ANSWERS),
        # 200 apps of 200 videos: ~150 rows per billing date and app, one page per partition
        FLEET_SMALL: SandboxSpec(videos=200, seed=3, warm_days=8, apps=200, latency=SLOW_ANSWERS),
        # 4 apps sized as the main sandbox: ~1.0 M rows each over 9 dates, on full pages
        FLEET_BIG: SandboxSpec(videos=157_000, seed=4, warm_days=9, apps=4),
    },
    (
        Scenario(
            "baseline",
            "plain way: sequential pages, json, SQLAlchemy executemany upsert (sample)",
            engine="baseline",
            fresh=True,
            sample_partitions=3,
        ),
        Scenario("ceiling", "backfill, full pages, empty table", fresh=True),
        Scenario("resync", "the same again, nothing changed", versions="none"),
        Scenario(
            "late", "the same with 10 % of rows changed", change_fraction=0.1, versions="changed"
        ),
        Scenario(
            "nightly",
            "kind=nightly, 7 dates: newest is new, 5 % changed on the rest",
            days=7,
            kind="nightly",
            change_fraction=0.05,
            change_days=6,
            new_days=1,
            timeout=180.0,
        ),
        Scenario(
            "latency",
            "answers take 0.5-3 s; 45 dates, one small page per partition (CPU no limit)",
            sandbox=SLOW,
            days=45,
            fresh=True,
        ),
        Scenario("rss-200k", "backfill of 2 dates (RSS scaling)", days=2, fresh=True),
        Scenario("rss-2m", "backfill of 19 dates (RSS scaling)", days=19, fresh=True),
        Scenario(
            "ceiling-slow",
            "ceiling with the platform's latency: full pages answered in 0.5-3 s",
            fresh=True,
            latency=SLOW_ANSWERS,
        ),
        Scenario(
            "rss-2m-slow",
            "rss-2m with full pages answered in 0.5-3 s",
            days=19,
            fresh=True,
            latency=SLOW_ANSWERS,
        ),
        Scenario(
            "fleet-small",
            "CLI nightly (7 dates) of 200 apps x 200 videos, answers in 0.5-3 s",
            sandbox=FLEET_SMALL,
            engine="fleet",
            kind="nightly",
            days=7,
            fresh=True,
            timeout=240.0,
        ),
        Scenario(
            "workers",
            "fleet-small's 200 nightlies as queued jobs, run by 1, 2 and 4 worker processes",
            sandbox=FLEET_SMALL,
            engine="workers",
            kind="nightly",
            days=7,
            fresh=True,
            timeout=400.0,
        ),
        Scenario(
            "fleet-big",
            "CLI backfill (9 dates) of 4 apps x ~1.0 M rows, full pages, instant answers",
            sandbox=FLEET_BIG,
            engine="fleet",
            fresh=True,
            timeout=240.0,
        ),
    ),
    check_targets=True,
)

QUICK = Profile(
    "quick",
    {
        MAIN: SandboxSpec(videos=3_000, seed=1, warm_days=2),
        FLEET_TINY: SandboxSpec(videos=50, seed=5, warm_days=8, apps=5),
    },
    (
        Scenario(
            "backfill", "2 dates, 500-row pages, empty table", days=2, fresh=True, page_size=500
        ),
        Scenario(
            "resync", "the same again, nothing changed", days=2, page_size=500, versions="none"
        ),
        Scenario(
            "late",
            "the same with 10 % of rows changed",
            days=2,
            page_size=500,
            change_fraction=0.1,
            versions="changed",
        ),
        Scenario(
            "fleet",
            "CLI nightly (7 dates) of 5 apps x 50 videos",
            sandbox=FLEET_TINY,
            engine="fleet",
            kind="nightly",
            days=7,
            fresh=True,
            timeout=60.0,
        ),
    ),
    check_targets=False,
)
