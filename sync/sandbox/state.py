"""The sandbox itself, apart from HTTP: its apps (each with its dataset, rosters, tokens,
throttles and counters), its service provider, the faults, and the control surface over them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from typing import Any

from sync.sandbox.apps import AppState
from sync.sandbox.config import Faults, SandboxConfig
from sync.sandbox.credentials import all_credentials
from sync.sandbox.dataset import Dataset
from sync.sandbox.days import parse_day, yesterday
from sync.sandbox.faults import FaultEngine
from sync.sandbox.provider import Provider
from sync.sandbox.rendered import RenderedDays
from sync.sandbox.rosters import Rosters
from sync.sandbox.stats import Stats
from sync.sandbox.tokens import TokenStore, token_app


def _day(value: str | dt.date) -> dt.date:
    if isinstance(value, dt.date):
        return value
    day = parse_day(value)
    if day is None:
        raise ValueError(f"not a YYYY-MM-DD date: {value!r}")
    return day


class Sandbox:
    """Everything the endpoints share; also the in-process control surface for tests.

    A request counts against the app its credentials or token name; one that names none of them
    (no token, a made-up one, an unknown key) counts against app 1, the default app, as every
    request did when a sandbox had one app. Control methods take `app`, a client key (default:
    app 1).
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.now = config.clock
        self.rendered = RenderedDays(config.cache_dates)
        ids_in_use: set[int] = set()
        self.apps = [
            AppState(config, credentials, rendered=self.rendered, ids_in_use=ids_in_use)
            for credentials in all_credentials(config)
        ]
        self.apps[0].build()  # app 1 as ever: ready before the first request; others on demand
        self._by_client_key = {a.credentials.client_key: a for a in self.apps}
        self._by_app_id = {a.credentials.app_id: a for a in self.apps}
        self.provider = Provider(config)
        self.faults = FaultEngine(config.faults)
        self.counters = Stats()
        """Every app's requests together (the apps' own counters split them)."""
        self._closing: asyncio.Event | None = None

    # -- the apps -------------------------------------------------------------------------

    def app(self, client_key: str | None = None) -> AppState:
        """The app with this client key (app 1 when None); ValueError when there is none."""
        if client_key is None:
            return self.apps[0]
        found = self._by_client_key.get(client_key)
        if found is None:
            raise ValueError(f"no app has client key {client_key!r}")
        return found

    def app_with_client_key(self, client_key: object) -> AppState | None:
        return self._by_client_key.get(client_key) if isinstance(client_key, str) else None

    def app_with_app_id(self, app_id: object) -> AppState | None:
        return self._by_app_id.get(app_id) if isinstance(app_id, str) else None

    def app_of_token(self, token: object) -> AppState:
        """The app a token was issued to, as its value says (app 1 when it names none)."""
        number = token_app(token) if isinstance(token, str) else None
        if number is None or not 1 <= number <= len(self.apps):
            return self.apps[0]
        return self.apps[number - 1]

    # App 1's parts, under the names they had when a sandbox had one app.

    @property
    def dataset(self) -> Dataset:
        return self.apps[0].dataset

    @property
    def rosters(self) -> Rosters:
        return self.apps[0].rosters

    @property
    def client_tokens(self) -> TokenStore:
        return self.apps[0].client_tokens

    @property
    def app_tokens(self) -> TokenStore:
        return self.apps[0].app_tokens

    # -- used by the endpoints ------------------------------------------------------------

    def token_lifetime(self) -> float | None:
        """The lifetime for new tokens when a fault shortens it, else None (the config's)."""
        return self.faults.faults.token_lifetime

    def record(
        self,
        app: AppState | None,
        endpoint: str,
        code: str,
        *,
        nbytes: int = 0,
        rows: int = 0,
        provider: bool = False,
    ) -> None:
        """One answered request of `app` (None: of no app), in the sandbox's counters, the
        app's, and with `provider` the provider's."""
        self.counters.record(endpoint, code, nbytes=nbytes, rows=rows)
        if app is not None:
            app.counters.record(endpoint, code, nbytes=nbytes, rows=rows)
        if provider:
            self.provider.counters.record(endpoint, code, nbytes=nbytes, rows=rows)

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
        app: str | None = None,
    ) -> list[dict[str, Any]]:
        """The rows the API returns to `app` for a billing date, in its order, as exact Python
        values.

        snake_case keys; ints exact; expected_profit an int or a Decimal; date a "YYYY-MM-DD"
        string. Without start_ts/end_ts it covers the whole reachable range (now - 90 days .. now).
        """
        return self.app(app).dataset.truth(
            _day(billing_date),
            start_ts,
            end_ts,
            douyin_id=douyin_id,
            agency_key=agency_client_key,
        )

    def stats(self, app: str | None = None) -> dict[str, Any]:
        """Without `app`: the whole sandbox's figures (its busiest second is the busiest of any
        app's), under "apps" each app's by client key, and under "provider" the provider
        endpoints' (component_token, get_auth_token). With `app`: that app's figures (its
        get_auth_token calls as a merchant among them)."""
        if app is not None:
            one = self.app(app)
            return one.counters.snapshot(daily_peak=one.daily_window.peak, in_flight=False)
        figures = self.counters.snapshot(daily_peak=max(a.daily_window.peak for a in self.apps))
        figures["apps"] = {
            a.credentials.client_key: a.counters.snapshot(
                daily_peak=a.daily_window.peak, in_flight=False
            )
            for a in self.apps
        }
        figures["provider"] = self.provider.counters.snapshot(daily_peak=0, in_flight=False)
        return figures

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
        app: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Late settlement of `app`'s data: change figures, add and remove rows of billing dates
        (default: the three most recent). Returns per date the video ids changed/added/removed
        and the new row count."""
        dataset = self.app(app).dataset
        days = self.recent_dates() if billing_dates is None else [_day(d) for d in billing_dates]
        return dataset.mutate(
            days, change_fraction=change_fraction, add=add, remove=remove, seed=seed
        )

    def warm(
        self, billing_dates: list[str] | list[dt.date] | None = None, *, app: str | None = None
    ) -> int:
        """Render `app`'s given dates (default: the last 90) ahead of time; returns rows
        rendered (they stay while `config.cache_dates` has room)."""
        dataset = self.app(app).dataset
        days = self.recent_dates(90) if billing_dates is None else [_day(d) for d in billing_dates]
        return dataset.warm(days)

    def reset(self) -> None:
        """Stats and throttle history cleared; every app's dataset and rosters back to the seed."""
        self.counters.reset()
        self.provider.counters.reset()
        for app in self.apps:
            app.reset()

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault settings (the fault generator restarts from their seed)."""
        self.faults.replace(faults)

    def revoke_tokens(self) -> None:
        """Invalidate every client, mini-app, authorizer and component token now (the merchants'
        grants, their refresh tokens, stay)."""
        for app in self.apps:
            app.revoke_tokens()
        self.provider.component_tokens.revoke_all()

    # -- the provider's merchants -----------------------------------------------------------

    def authorize(self, app: str | None = None) -> str:
        """`app` grants the provider (as in the console): a fresh authorizer refresh token."""
        token, _ = self.provider.issue_refresh_token(self.app(app))
        return token

    def authorization_code(self, app: str | None = None) -> str:
        """`app` grants the provider: a one-time authorization code, as the redirect carries."""
        return self.provider.issue_code(self.app(app))

    def deauthorize(self, app: str | None = None) -> None:
        """`app` withdraws its grant: its refresh tokens, codes and authorizer tokens die."""
        self.provider.deauthorize(self.app(app))

    def exclusive_task_ids(self, app: str | None = None) -> list[int]:
        """`app`'s exclusive tasks, the running one first and the terminated one second."""
        return self.app(app).rosters.exclusive_task_ids()

    def info(self, base_url: str) -> dict[str, Any]:
        """What a script needs to talk to this sandbox (ids as strings, for JS readers): app 1's
        credentials and tasks at the top, as ever, every app's under "apps", and the service
        provider's credentials under "provider"."""
        first = self.apps[0]
        catalog = first.dataset.catalog
        return {
            "base_url": base_url,
            "client_key": first.credentials.client_key,
            "client_secret": first.credentials.client_secret,
            "app_id": first.credentials.app_id,
            "app_secret": first.credentials.app_secret,
            "exclusive_task_ids": [str(t) for t in self.exclusive_task_ids()],
            "terminated_task_ids": [str(t.task_id) for t in catalog.tasks if t.terminated],
            "open_task_ids": [str(t.task_id) for t in catalog.tasks if not t.exclusive],
            "agency_client_keys": [a.client_key for a in catalog.agencies],
            "videos": len(catalog.videos),
            "seed": self.config.seed,
            "snake_case": self.config.snake_case,
            "apps": [_app_info(app) for app in self.apps],
            "provider": {
                "component_appid": self.provider.credentials.component_appid,
                "component_appsecret": self.provider.credentials.component_appsecret,
            },
        }


def _app_info(app: AppState) -> dict[str, Any]:
    catalog = app.dataset.catalog
    credentials = app.credentials
    return {
        "number": app.number,
        "client_key": credentials.client_key,
        "client_secret": credentials.client_secret,
        "app_id": credentials.app_id,
        "app_secret": credentials.app_secret,
        "capability": app.capability,
        "exclusive_task_ids": [str(t) for t in app.rosters.exclusive_task_ids()],
        "terminated_task_ids": [str(t.task_id) for t in catalog.tasks if t.terminated],
        "videos": len(catalog.videos),
    }
