"""Counters of what the sandbox (or one of its apps) served: calls and codes per endpoint, bytes,
rows, rejections."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sync.sandbox.codes import OK, REASONS


class Stats:
    def __init__(self) -> None:
        self.answering = 0  # requests received and not yet answered (in their latency)
        self.reset()

    def reset(self) -> None:
        self.calls: Counter[str] = Counter()
        self.codes: dict[str, Counter[str]] = {}
        self.rejected: Counter[str] = Counter()
        self.bytes_served = 0
        self.rows_served = 0
        self.answering_peak = self.answering  # a reset does not forget requests being answered

    def record(self, endpoint: str, code: str, *, nbytes: int = 0, rows: int = 0) -> None:
        """One answered (or aborted) request. `code` is the err_no/error_code/error as text,
        or `http_<status>`, `reset`, `malformed`, `wrong_shape` for injected faults."""
        self.calls[endpoint] += 1
        self.codes.setdefault(endpoint, Counter())[code] += 1
        self.bytes_served += nbytes
        self.rows_served += rows
        if code != str(OK):
            self.rejected[_reason(code)] += 1

    def started(self) -> None:
        """A request is being answered: how many clients keep waiting at once is visible."""
        self.answering += 1
        self.answering_peak = max(self.answering_peak, self.answering)

    def answered(self) -> None:
        self.answering -= 1

    def snapshot(self, *, daily_peak: int, in_flight: bool = True) -> dict[str, Any]:
        """The figures as JSON; `in_flight=False` leaves out the in-flight peak (an app's counters
        do not follow it: requests wait for their answer on the sandbox as a whole)."""
        figures: dict[str, Any] = {
            "endpoints": {
                name: {"calls": self.calls[name], "codes": dict(self.codes.get(name, {}))}
                for name in sorted(self.calls)
            },
            "daily_data_peak_per_second": daily_peak,
            "in_flight_peak": self.answering_peak,
            "bytes_served": self.bytes_served,
            "rows_served": self.rows_served,
            "rejected": dict(self.rejected),
        }
        if not in_flight:
            del figures["in_flight_peak"]
        return figures


def _reason(code: str) -> str:
    try:
        return REASONS.get(int(code), f"code_{code}")
    except ValueError:
        return "injected_" + code
