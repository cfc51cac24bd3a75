"""What a scenario process is told (`ScenarioSpec`) and how it measures itself (`Snapshot`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from bench import pg
from bench.instrument import Probe
from sync import planner
from sync.pipeline.runs import DEFAULT_CONCURRENCY
from sync.settings import Secret, Settings


@dataclasses.dataclass(frozen=True, slots=True)
class ScenarioSpec:
    """One scenario run, as passed (JSON) to `python -m bench.scenario`."""

    name: str
    database_url: str
    base_url: str
    client_key: str
    client_secret: str
    dates: list[str]
    now: float  # the plan's clock, shared with the parent's truth counts
    kind: str = "backfill"
    engine: str = "sync"  # sync | baseline
    concurrency: int = DEFAULT_CONCURRENCY
    page_size: int = 10_000
    qps: float = 10.0
    sample_partitions: int = 0  # how many of the plan's partitions to run (0: all)
    sandbox_pid: int | None = None
    postmaster_pid: int | None = None
    patches: Sequence[str] = ()  # bench.experiments to apply in the scenario's process

    def plan(self) -> planner.Plan:
        days = [dt.date.fromisoformat(d) for d in self.dates]
        full = planner.plan(days, self.now)
        if self.sample_partitions:
            return planner.Plan(full.partitions[: self.sample_partitions])
        return full

    def settings(self) -> Settings:
        return Settings(
            database_url=Secret(self.database_url),
            client_key=self.client_key,
            client_secret=Secret(self.client_secret),
            open_base_url=self.base_url,
            developer_base_url=self.base_url,
            qps=self.qps,
        )


@dataclasses.dataclass
class Snapshot:
    """Wall clock and cumulative CPU seconds of everyone involved, at one moment."""

    wall: float
    sync: float
    sandbox: float
    server: dict[int, float]
    machine: float

    @classmethod
    def take(cls, spec: ScenarioSpec) -> Snapshot:
        return cls(
            time.monotonic(),
            pg.self_cpu(),
            pg.process_cpu(spec.sandbox_pid),
            pg.server_cpu(spec.postmaster_pid, pg.database_name(spec.database_url)),
            pg.machine_busy(),
        )

    def cpu_since(self, before: Snapshot) -> dict[str, float]:
        """CPU seconds per party between `before` and this; `other` is the rest of the machine."""
        sync = self.sync - before.sync
        sandbox = self.sandbox - before.sandbox
        server = pg.cpu_delta(before.server, self.server)
        machine = self.machine - before.machine
        return {
            "sync": sync,
            "sandbox": sandbox,
            "postgres": server,
            "postgres_helpers": pg.cpu_delta(before.server, self.server, helpers=True),
            "other": max(machine - sync - sandbox - server, 0.0),
        }


# The timeline of a run that sent no request (or that `timeline` cannot see: the baseline's).
NO_TIMELINE: dict[str, Any] = {
    "in_flight_mean": 0.0,
    "in_flight_max": 0,
    "util_steady": None,
    "steady_s": 0.0,
    "head_s": 0.0,
    "tail_s": 0.0,
    "last_send_s": 0.0,
    "dropped": 0,
}


def timeline(probe: Probe, qps: float, started: float, ended: float) -> dict[str, Any]:
    """Requests in flight; the QPS use in the steady part (from the first answer until the last
    request whose answer was read: before it, nothing but first pages can be asked; after it,
    the run only waits for the last answers and merges, and what it still sends are guesses
    past windows' ends, dropped unread); the time before the first request (head), after that
    last request (last_send_s: the last answers' latency) and after the last answer (tail: the
    last merges)."""
    starts = probe.request_starts
    if not starts:
        return dict(NO_TIMELINE)
    begin = min(probe.request_ends) if probe.request_ends else starts[0]
    dropped = set(probe.dropped)
    end = max((t for t in starts if t not in dropped), default=starts[-1])
    span = end - begin
    inside = [i for i, t in enumerate(starts) if begin <= t <= end]
    flying = [probe.in_flight_at_start[i] + 1 for i in inside] or [1]
    return {
        "in_flight_mean": sum(flying) / len(flying),
        "in_flight_max": max(probe.in_flight_at_start) + 1,
        "util_steady": len(inside) / (span * qps) if span >= 2.0 else None,
        "steady_s": max(span, 0.0),
        "starts_per_s": _per_second(starts, starts[0]),
        # The shortest span holding 11 departures: the platform refuses an 11th in 1 s.
        "min_span_of_11": _min_span(sorted(probe.departures), 11),
        "head_s": starts[0] - started,
        "tail_s": ended - max(probe.request_ends, default=ended),
        "last_send_s": ended - end,
        "dropped": len(probe.dropped),
    }


def _min_span(times: list[float], n: int) -> float | None:
    """The shortest span holding `n` of the sorted `times` (None: fewer)."""
    return min((b - a for a, b in zip(times, times[n - 1 :], strict=False)), default=None)


def _per_second(times: list[float], origin: float) -> list[int]:
    """How many of `times` fall in each second from `origin`."""
    counts = [0] * (int(max(times) - origin) + 1)
    for t in times:
        counts[int(t - origin)] += 1
    return counts
