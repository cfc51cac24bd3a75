"""The sandbox itself, apart from HTTP: dataset, rosters, tokens, throttles, faults and stats."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

from sync.sandbox.config import Faults, SandboxConfig
from sync.sandbox.dataset import Dataset
from sync.sandbox.days import parse_day, yesterday
from sync.sandbox.faults import FaultEngine
from sync.sandbox.rosters import Rosters
from sync.sandbox.stats import Stats
from sync.sandbox.throttle import SlidingWindow
from sync.sandbox.tokens import TokenStore


def _day(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.date):
        return value
    day = parse_day(value)
    if day is None:
        raise ValueError(f"not a YYYY-MM-DD date: {value!r}")
    return day


class Sandbox:
    """Everything the endpoints share; also the in-process control surface for tests."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.now = config.clock
        self.dataset = Dataset(config)
        self.rosters = Rosters(self.dataset.catalog, config.seed, comma=config.talent_comma)
        self.client_tokens = TokenStore(
            prefix="clt.", lifetime=config.token_lifetime, grace=config.token_grace, clock=self.now
        )
        self.app_tokens = TokenStore(
            prefix="0801121846",
            lifetime=config.token_lifetime,
            grace=config.token_grace,
            clock=self.now,
        )
        self.daily_window = SlidingWindow(config.qps_limit, 1.0)
        self.token_window = SlidingWindow(config.token_rate_limit, config.token_rate_window)
        self.faults = FaultEngine(config.faults)
        self.counters = Stats()
        self._closing: asyncio.Event | None = None

    # -- used by the endpoints ------------------------------------------------------------

    def token_lifetime(self) -> float | None:
        """The lifetime for new tokens when a fault shortens it, else None (the config's)."""
        return self.faults.faults.token_lifetime

    def closing(self) -> asyncio.Event:
        """Set when the server shuts down: waits in handlers end at once."""
        if self._closing is None:
            self._closing = asyncio.Event()
        return self._closing

    def open(self) -> None:
        """A fresh shutdown signal for a server starting (perhaps in a new event loop)."""
        self._closing = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        """Wait (real time) unless the server is shutting down."""
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing().wait(), seconds)

    # -- control surface ------------------------------------------------------------------

    def truth(
        self,
        billing_date: str | dt.date,
        start_ts: int | None = None,
        end_ts: int | None = None,
        *,
        douyin_id: str | None = None,
        agency_client_key: str | None = None,
    ) -> list[dict[str, Any]]:
        """The rows the API returns for a billing date, in its order, as exact Python values.

        snake_case keys; ints exact; expected_profit an int or a Decimal; date a "YYYY-MM-DD"
        string. Without start_ts/end_ts it covers the whole reachable range (now - 90 days .. now).
        """
        return self.dataset.truth(
            _day(billing_date),
            start_ts,
            end_ts,
            douyin_id=douyin_id,
            agency_key=agency_client_key,
        )

    def stats(self) -> dict[str, Any]:
        return self.counters.snapshot(daily_peak=self.daily_window.peak)

    def recent_dates(self, count: int = 3) -> list[dt.date]:
        last = yesterday(self.now())
        return [last - dt.timedelta(days=i) for i in range(count)]

    def mutate(
        self,
        billing_dates: list[str] | list[dt.date] | None = None,
        *,
        change_fraction: float = 0.1,
        add: int = 0,
        remove: int = 0,
        seed: int = 0,
    ) -> dict[str, dict[str, Any]]:
        """Late settlement: change figures, add and remove rows of billing dates (default: the
        three most recent). Returns per date the video ids changed/added/removed and the new
        row count."""
        days = self.recent_dates() if billing_dates is None else [_day(d) for d in billing_dates]
        return self.dataset.mutate(
            days, change_fraction=change_fraction, add=add, remove=remove, seed=seed
        )

    def warm(self, billing_dates: list[str] | list[dt.date] | None = None) -> int:
        """Render the given dates (default: the last 90) ahead of time; returns rows rendered."""
        days = self.recent_dates(90) if billing_dates is None else [_day(d) for d in billing_dates]
        return self.dataset.warm(days)

    def reset(self) -> None:
        """Stats and throttle history cleared; dataset and rosters back to the seed."""
        self.counters.reset()
        self.daily_window.reset()
        self.token_window.reset()
        self.dataset.reset()
        self.rosters.reset()

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault settings (the fault generator restarts from their seed)."""
        self.faults.replace(faults)

    def revoke_tokens(self) -> None:
        """Invalidate every client and mini-app token now."""
        self.client_tokens.revoke_all()
        self.app_tokens.revoke_all()

    def exclusive_task_ids(self) -> list[int]:
        return self.rosters.exclusive_task_ids()

    def info(self, base_url: str) -> dict[str, Any]:
        """What a script needs to talk to this sandbox (ids as strings, for JS readers)."""
        catalog = self.dataset.catalog
        return {
            "base_url": base_url,
            "client_key": self.config.client_key,
            "client_secret": self.config.client_secret,
            "app_id": self.config.app_id,
            "app_secret": self.config.app_secret,
            "exclusive_task_ids": [str(t) for t in self.exclusive_task_ids()],
            "terminated_task_ids": [str(t.task_id) for t in catalog.tasks if t.terminated],
            "open_task_ids": [str(t.task_id) for t in catalog.tasks if not t.exclusive],
            "agency_client_keys": [a.client_key for a in catalog.agencies],
            "videos": len(catalog.videos),
            "seed": self.config.seed,
            "snake_case": self.config.snake_case,
        }
