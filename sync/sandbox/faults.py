"""Fault decisions: which injected failure (if any) a request meets, from a seeded generator.

Every decision draws the same number of random values whatever the settings, so a run with the
same seed and the same request sequence meets the same faults.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import msgspec

from sync.sandbox.codes import BUSY, NETWORK
from sync.sandbox.config import Faults


@dataclass(frozen=True)
class Decision:
    latency: float = 0.0
    reset: bool = False
    hang: float = 0.0
    http_status: int | None = None
    err_no: int | None = None
    malformed: bool = False
    wrong_shape: bool = False
    variant: int = 0
    """Which flavour of malformed/wrong-shape body to send."""


NO_FAULT = Decision()


class FaultEngine:
    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._rng = random.Random(faults.seed)

    def replace(self, faults: Faults) -> None:
        """New settings, and a generator restarted from their seed."""
        self.faults = faults
        self._rng = random.Random(faults.seed)

    def storm(self, now: float) -> bool:
        until = self.faults.throttle_storm_until
        return until is not None and now < until

    def decide(self) -> Decision:
        f = self.faults
        r = self._rng
        draws = [r.random() for _ in range(9)]
        variant = r.randrange(1 << 16)
        latency = f.latency_min + (f.latency_max - f.latency_min) * draws[0]
        if draws[1] < f.reset_rate:
            return Decision(latency=latency, reset=True)
        hang = f.hang_seconds if draws[2] < f.hang_rate else 0.0
        if draws[3] < f.http_5xx_rate:
            status = 502 if draws[4] < 0.5 else 503
            return Decision(latency=latency, hang=hang, http_status=status)
        err_no = None
        if draws[5] < f.busy_rate:
            err_no = BUSY
        elif draws[6] < f.network_error_rate:
            err_no = NETWORK
        return Decision(
            latency=latency,
            hang=hang,
            err_no=err_no,
            malformed=draws[7] < f.malformed_rate,
            wrong_shape=draws[8] < f.wrong_shape_rate,
            variant=variant,
        )


def malformed_body(body: bytes, variant: int) -> bytes:
    """A body that is not JSON: truncated mid-way, an HTML fragment, or garbage after the end."""
    kind = variant % 3
    if kind == 0 and len(body) > 2:
        return body[: 1 + variant % (len(body) - 1)]
    if kind == 1:
        return b'{"err_no":0,"err_msg":"success","data":{"video_daily_data_list":[{"VideoId":'
    return body + b"\n<!-- upstream timeout -->"


def wrong_shape_body(log_id: str, variant: int) -> bytes:
    """Valid JSON that is not the documented shape."""
    shapes: list[object] = [
        {"err_no": 0, "err_msg": "success", "log_id": log_id, "data": None},
        {"err_no": 0, "err_msg": "success", "log_id": log_id, "data": {"list": []}},
        {"err_no": 0, "err_msg": "success", "log_id": log_id},
        {"err_no": "0", "err_msg": "success", "log_id": log_id, "data": {}},
        [],
        {"err_no": 0, "data": {"video_daily_data_list": {"VideoId": 1}}},
    ]
    return msgspec.json.encode(shapes[variant % len(shapes)])
