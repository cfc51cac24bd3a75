"""`taskbox-sync apps list|authorize|new-key`: the apps of an apps file, and provider mode's
stored authorizations.

`authorize APP_ID` reads the merchant's authorizer refresh token (or, with
`--authorization-code`, the code the merchant's authorization gave) from standard input, never
from the command line (it would stay in the shell's history and in `ps`); it renews it once with
the platform, so it is known good and belongs to that app, and stores what the platform returned,
sealed with TASKBOX_SECRET_KEY. `list` shows how each app authenticates and, for provider apps,
whether an authorization is stored, when it was renewed and when its access token expires:
times, never a token.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import ClientSession
from sqlalchemy.ext.asyncio import AsyncEngine

from sync.api.http import Timeouts, new_session
from sync.api.provider import (
    AuthorizerGrant,
    ComponentTokens,
    ProviderTokens,
    fetch_authorizer_token,
)
from sync.api.tokens import TokenFactory, token_provider
from sync.apps import AppConfig, Auth, load_apps_file
from sync.cli.tables import table
from sync.db.connect import open_engine
from sync.db.vault import PostgresVault, Sealer, authorization_states, new_key
from sync.errors import AuthorizationError, SettingsError
from sync.planner import SHANGHAI
from sync.settings import Settings


def _apps_file(settings: Settings) -> Path:
    if settings.apps_file is None:
        raise SettingsError("--apps: needs an apps file (--apps FILE or TASKBOX_APPS_FILE)")
    return settings.apps_file


def provider_sealer(settings: Settings, apps: Sequence[AppConfig]) -> Sealer | None:
    """The sealer of a run with provider apps (None without any); refused at once, before
    anything is called or written, when TASKBOX_SECRET_KEY is missing or malformed."""
    if not any(app.auth is Auth.PROVIDER for app in apps):
        return None
    return Sealer.required(settings.secret_key, 'an app with auth = "provider"')


def token_factory(sealer: Sealer | None, db: AsyncEngine) -> TokenFactory:
    """The token sources of a run: provider mode's through the vault on `db`, else the plain."""
    return token_provider if sealer is None else ProviderTokens(PostgresVault(db, sealer))


# -- list ---------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    apps = load_apps_file(_apps_file(settings), secrets=False).apps
    print(asyncio.run(_list(settings, apps)))
    return 0


def _when(value: dt.datetime | None) -> str:
    return "—" if value is None else value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


async def _list(settings: Settings, apps: Sequence[AppConfig]) -> str:
    states = {}
    if any(app.auth is Auth.PROVIDER for app in apps):
        async with open_engine(settings) as db:
            states = await authorization_states(db)
    rows = []
    for app in apps:
        if app.auth is Auth.PROVIDER:
            state = states.get(app.id)
            stored = "no: run apps authorize" if state is None else "yes"
            renewed = "—" if state is None else _when(state.renewed_at or state.authorized_at)
            expires = "—" if state is None else _when(state.access_expires_at)
        else:
            stored, renewed, expires = "n/a", "—", "—"
        agency = app.agency_client_key or ""
        rows.append([app.id, app.name or "", str(app.auth), stored, renewed, expires, agency])
    headers = ["app", "name", "auth", "refresh token", "renewed", "token expires", "agency"]
    return f"{len(apps)} apps in the file (times in China time)\n" + table(headers, rows)


# -- authorize ----------------------------------------------------------------------------------


def _read_stdin(what: str) -> str:
    tty = sys.stdin.isatty()
    value = (getpass.getpass(f"{what} (not echoed): ") if tty else sys.stdin.read()).strip()
    if not value or any(c.isspace() for c in value):
        raise SettingsError(f"standard input: expected the {what} alone on one line")
    return value


def cmd_authorize(args: argparse.Namespace, settings: Settings) -> int:
    (app,) = load_apps_file(_apps_file(settings)).select([args.app_id])
    if app.auth is not Auth.PROVIDER or app.provider is None:
        raise SettingsError(f'app {app.id}: its auth is "{app.auth}"; only auth = "provider" apps')
    sealer = Sealer.required(settings.secret_key, "apps authorize")
    what = "authorization code" if args.authorization_code else "authorizer refresh token"
    given = _read_stdin(what)
    print(asyncio.run(_authorize(settings, app, sealer, given, code=args.authorization_code)))
    return 0


async def _authorize(
    settings: Settings, app: AppConfig, sealer: Sealer, given: str, *, code: bool
) -> str:
    async with open_engine(settings) as db, new_session(Timeouts()) as session:
        expires_in = await authorize_app(
            db, session, settings.open_base_url, app, sealer, given, code=code
        )
    return (
        f"app {app.id}: authorized; its refresh token is stored sealed (renewed with every "
        f"refresh); access token valid for {expires_in // 60} min"
    )


async def authorize_app(
    db: AsyncEngine,
    session: ClientSession,
    base_url: str,
    app: AppConfig,
    sealer: Sealer,
    given: str,
    *,
    code: bool = False,
) -> int:
    """Renew `given` (a refresh token, or with `code` an authorization code) once with the
    platform and store the grant sealed; the new access token's life in seconds. A token of
    another app is refused and nothing stored."""
    provider = app.provider
    assert provider is not None
    vault = PostgresVault(db, sealer)
    component = ComponentTokens(provider, vault, base_url)

    async def exchange(component_token: str) -> AuthorizerGrant:
        return await fetch_authorizer_token(
            session,
            base_url,
            component_token,
            refresh_token=None if code else given,
            authorization_code=given if code else None,
        )

    grant = await component.using(session, exchange)
    if grant.authorizer_appid not in (None, app.id):
        raise AuthorizationError(
            f"app {app.id}: that token authorizes app {grant.authorizer_appid}, not this one; "
            "nothing stored",
            endpoint="get_auth_token",
        )
    await vault.authorize(app.id, provider.component_appid, **grant.stored())
    return grant.expires_in


def cmd_new_key(args: argparse.Namespace, settings: Settings) -> int:
    print(new_key())
    return 0
