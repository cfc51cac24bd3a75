"""SandboxServer: the sandbox on a real loopback port, as an async context manager."""

from __future__ import annotations

import datetime as dt
from types import TracebackType
from typing import Any

from aiohttp import web

from sync.sandbox.app import create_app
from sync.sandbox.config import Faults, SandboxConfig
from sync.sandbox.credentials import AppCredentials, ProviderCredentials
from sync.sandbox.rosters import Member
from sync.sandbox.state import Sandbox


class SandboxServer:
    """`async with SandboxServer(SandboxConfig(...)) as sb:` serves on host:port (port 0: a free
    one) and exposes the control surface (`truth`, `stats`, `mutate`, `reset`, `set_faults`...).

    Methods about one app's data take `app`, its client key (default: app 1); the properties
    (`exclusive_task_ids`, `terminated_task_id`, `open_task_ids`) are app 1's. The service
    provider's side: `provider`, `component_ticket`, `rotate_ticket`, `authorize`,
    `authorization_code`, `deauthorize`, `issued_secrets` (see `sync.sandbox.provider`)."""

    def __init__(
        self, config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or SandboxConfig()
        self.host = host
        self.port = port
        self.sandbox = Sandbox(self.config)
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self.sandbox.open()
        runner = web.AppRunner(
            create_app(sandbox=self.sandbox),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=1.0,
            handler_cancellation=True,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            self.sandbox.closing().set()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- the control surface, in process ------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """base_url, credentials and task ids (as strings), as the CLI's first line prints."""
        return self.sandbox.info(self.base_url)

    @property
    def apps(self) -> list[AppCredentials]:
        """Every app's credentials, app 1 first."""
        return [app.credentials for app in self.sandbox.apps]

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
        """See `Sandbox.truth`: the API's rows for a date as exact snake_case dicts."""
        return self.sandbox.truth(
            billing_date,
            start_ts,
            end_ts,
            douyin_id=douyin_id,
            agency_client_key=agency_client_key,
            app=app,
        )

    def stats(self, app: str | None = None) -> dict[str, Any]:
        """See `Sandbox.stats`: the sandbox's figures and each app's, or one app's."""
        return self.sandbox.stats(app)

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
        return self.sandbox.mutate(
            billing_dates,
            change_fraction=change_fraction,
            add=add,
            remove=remove,
            seed=seed,
            app=app,
        )

    def warm(
        self, billing_dates: list[str] | list[dt.date] | None = None, *, app: str | None = None
    ) -> int:
        return self.sandbox.warm(billing_dates, app=app)

    def reset(self) -> None:
        self.sandbox.reset()

    def set_faults(self, faults: Faults) -> None:
        self.sandbox.set_faults(faults)

    def revoke_tokens(self) -> None:
        self.sandbox.revoke_tokens()

    @property
    def exclusive_task_ids(self) -> list[int]:
        """App 1's exclusive tasks, the running one first and the terminated one second."""
        return self.sandbox.exclusive_task_ids()

    def exclusive_task_ids_of(self, app: str) -> list[int]:
        """The exclusive tasks of the app with client key `app`, as `exclusive_task_ids`."""
        return self.sandbox.exclusive_task_ids(app)

    @property
    def terminated_task_id(self) -> int:
        return next(t.task_id for t in self.sandbox.dataset.catalog.tasks if t.terminated)

    @property
    def open_task_ids(self) -> list[int]:
        """Tasks that are not exclusive (update_orient_talents answers 5442 for them)."""
        return [t.task_id for t in self.sandbox.dataset.catalog.tasks if not t.exclusive]

    def roster(self, task_id: int, *, app: str | None = None) -> list[Member]:
        """The current roster of one of `app`'s exclusive tasks."""
        return list(self.sandbox.app(app).rosters.members.get(task_id, {}).values())

    # -- the service provider ----------------------------------------------------------------

    @property
    def provider(self) -> ProviderCredentials:
        """The component app id and secret of the sandbox's one service provider."""
        return self.sandbox.provider.credentials

    def component_ticket(self) -> str:
        """The component ticket of the moment (it rotates every `config.ticket_period`)."""
        return self.sandbox.provider.tickets.current()

    def rotate_ticket(self) -> str:
        """A new component ticket now; the previous one stays accepted until the next."""
        return self.sandbox.provider.tickets.rotate()

    def authorize(self, app: str | None = None) -> str:
        """The merchant `app` (a client key) grants the provider: a fresh refresh token."""
        return self.sandbox.authorize(app)

    def authorization_code(self, app: str | None = None) -> str:
        """The merchant `app` grants the provider: a one-time authorization code."""
        return self.sandbox.authorization_code(app)

    def deauthorize(self, app: str | None = None) -> None:
        """The merchant `app` withdraws its grant: its refresh and authorizer tokens die."""
        self.sandbox.deauthorize(app)

    def issued_secrets(self) -> list[str]:
        """The component secret and every ticket, component token, refresh token, code and
        authorizer access token the sandbox ever issued."""
        return self.sandbox.provider.issued_secrets()
