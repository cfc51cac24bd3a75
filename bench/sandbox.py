"""The sandbox processes seen from the benchmark: start, control over HTTP, stop."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from typing import Any


@dataclasses.dataclass(frozen=True, slots=True)
class SandboxSpec:
    """What a sandbox process serves."""

    videos: int
    seed: int = 1
    warm_days: int = 0
    latency: str | None = None  # "MIN:MAX" seconds
    apps: int = 1  # apps served, each with `videos` videos of its own


class SandboxProcess:
    """A running `python -m bench.sandbox_server`; its first stdout line is its info."""

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        args = [
            sys.executable,
            "-m",
            "bench.sandbox_server",
            f"--videos={spec.videos}",
            f"--seed={spec.seed}",
            f"--warm-days={spec.warm_days}",
            f"--apps={spec.apps}",
        ]
        if spec.latency:
            args.append(f"--latency={spec.latency}")
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        self.info: dict[str, Any] = {}
        # The platform's clock is not starved by our database: on this 2-core box the sandbox
        # shares the CPU with PostgreSQL, and a request it stamps 30 ms late can look like an
        # 11th in a second. Ahead of the others in the scheduler where we may (root), else as is.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, self._proc.pid, -10)

    def wait_ready(self) -> None:
        """Block until the sandbox has warmed up and printed its info line."""
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            raise RuntimeError(f"the sandbox process exited with {code} before serving")
        self.info = json.loads(line)
        self._proc.stdout.close()  # the human summary that follows is not needed

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def base_url(self) -> str:
        return str(self.info["base_url"])

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=600) as resp:
            return json.loads(resp.read())  # stdlib: titles hold lone surrogates

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("/__sandbox/stats")
        return result

    def set_latency(self, latency: str | None) -> None:
        """Delay every answer by a uniform MIN:MAX seconds from now on (None: answer at once)."""
        low, high = (float(x) for x in latency.split(":")) if latency else (0.0, 0.0)
        self._call("/__sandbox/faults", {"latency": [low, high]})

    def mutate(self, dates: list[dt.date], change_fraction: float, seed: int = 0) -> int:
        """Late settlement on `dates`; re-renders them now; returns how many rows changed."""
        body = {
            "billing_dates": [d.isoformat() for d in dates],
            "change_fraction": change_fraction,
            "seed": seed,
        }
        report = self._call("/__sandbox/mutate", body)["billing_dates"]
        for day in dates:  # render the edited dates now rather than during the next run
            self.publish_times(day, 0, 0)
        return sum(len(r["changed"]) for r in report.values())

    def publish_times(self, day: dt.date, start: int, end: int) -> list[int]:
        """The publish times of the rows the platform reports for `day` over [start, end]."""
        query = urllib.parse.urlencode(
            {"billing_date": day.isoformat(), "start_ts": start, "end_ts": end}
        )
        rows = self._call(f"/__sandbox/truth?{query}")["rows"]
        return sorted(int(r["publish_time"]) for r in rows)

    def truth_keys(
        self, day: dt.date, start: int, end: int, app: str
    ) -> tuple[list[int], list[int]]:
        """Video ids and task ids of the rows app `app` (a client key) is answered for `day`
        over [start, end] (`bench.sandbox_server`'s own route)."""
        query = urllib.parse.urlencode(
            {"billing_date": day.isoformat(), "start_ts": start, "end_ts": end, "app": app}
        )
        doc = self._call(f"/__bench/truth_keys?{query}")
        return doc["video_ids"], doc["task_ids"]

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def rejected_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Rejections by reason between two stats snapshots."""
    old = before.get("rejected", {})
    new = after.get("rejected", {})
    delta = {k: int(v) - int(old.get(k, 0)) for k, v in new.items()}
    return {k: v for k, v in delta.items() if v}


def daily_calls(stats: dict[str, Any]) -> int:
    return int(stats.get("endpoints", {}).get("daily_data", {}).get("calls", 0))
