"""The apps file: several mini-apps, each with its own credentials, described in one TOML file.

This module owns reading and checking that file (`load_apps_file`), the value each app becomes
(`AppConfig`, its secrets already loaded), and the bridge to the one `Settings` the rest of the
code runs on: `settings_for` lays an app's credentials over the base settings, and
`app_from_settings` turns today's environment variables into the one app they describe, so one
app and many are handled alike. Every refusal is one `AppsFileError` line naming the file, the
app and the key, never a secret's value.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sync import toml_values as tv
from sync.errors import AppsFileError
from sync.settings import MAX_QPS, ProviderSettings, Secret, Settings


class Auth(enum.StrEnum):
    """How an app gets its daily-data token."""

    CLIENT_CREDENTIALS = "client_credentials"  # a client token from client key + client secret
    ACCESS_TOKEN = "access_token"  # noqa: S105 (a name): a token obtained elsewhere, as given
    TOKEN_COMMAND = "token_command"  # noqa: S105 (a name): a program prints the token (#15)
    PROVIDER = "provider"  # the file's [provider] gets it: component token + refresh token


@dataclasses.dataclass(frozen=True, slots=True)
class _AuthKeys:
    """The keys an auth method takes beyond the common ones: plain keys, and secrets (each given
    as `<secret>_env` or `<secret>_file`), required or optional."""

    plain: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def allowed(self) -> frozenset[str]:
        sources = [s + end for s in self.required + self.optional for end in ("_env", "_file")]
        return frozenset((*COMMON_KEYS, *self.plain, *sources))


COMMON_KEYS = ("id", "name", "auth", "qps", "agency_client_key")
# A new auth method ("token_command", "provider") is one more member of Auth and one more row.
AUTH_KEYS: Mapping[Auth, _AuthKeys] = {
    Auth.CLIENT_CREDENTIALS: _AuthKeys(
        plain=("client_key",), required=("client_secret",), optional=("app_secret",)
    ),
    Auth.ACCESS_TOKEN: _AuthKeys(required=("access_token",), optional=("app_secret",)),
    Auth.TOKEN_COMMAND: _AuthKeys(
        plain=("token_command", "token_timeout"), optional=("app_secret",)
    ),
    Auth.PROVIDER: _AuthKeys(),
}
MAX_TOKEN_TIMEOUT = tv.MAX_SECONDS  # seconds a token command may take (default: settings' 30)
SECRETS = ("client_secret", "access_token", "app_secret")  # the fields of AppConfig they fill
TOP_LEVEL_KEYS = ("app", "provider")
PROVIDER_KEYS = (
    "component_appid",
    "component_secret_env",
    "component_secret_file",
    "component_ticket_env",
    "component_ticket_file",
    "component_ticket_command",
    "ticket_timeout",
)
_KNOWN_KEYS = frozenset().union(*(keys.allowed for keys in AUTH_KEYS.values()))
_ID = re.compile(r"[^\s\"\\\x00-\x1f\x7f]+")  # printable, no blanks or quotes


@dataclasses.dataclass(frozen=True, slots=True)
class AppConfig:
    """One mini-app: its id (carried by every row, run and lock), how it gets its daily-data
    token, and its secrets, loaded (repr shows them masked). `talents_app_id` is the mini-app id
    the talents commands send: the id for an app of the file, DOUYIN_APP_ID (or none) for the
    environment's app."""

    id: str
    name: str | None = None
    auth: Auth = Auth.CLIENT_CREDENTIALS
    client_key: str | None = None
    client_secret: Secret | None = None
    access_token: Secret | None = None
    app_secret: Secret | None = None
    qps: float | None = None
    talents_app_id: str | None = None
    token_command: tuple[str, ...] | None = None  # argv, run without a shell
    token_timeout: float | None = None
    agency_client_key: str | None = None  # daily data of this agency only (no mirror deletes)
    provider: ProviderSettings | None = None  # the file's [provider], for auth = "provider"


@dataclasses.dataclass(frozen=True, slots=True)
class AppsFile:
    """The apps of one file, in the file's order."""

    path: Path
    apps: tuple[AppConfig, ...]
    provider: ProviderSettings | None = None

    def select(self, ids: Sequence[str]) -> tuple[AppConfig, ...]:
        """The apps with these ids, in the file's order; no ids means all of them. An id the
        file does not describe is refused, naming it and the ids the file has."""
        wanted = (ids,) if isinstance(ids, str) else tuple(ids)
        known = [app.id for app in self.apps]
        for app_id in wanted:
            if app_id not in known:
                raise AppsFileError(
                    str(self.path),
                    f"not in the file; its apps: {tv.brief(known)}",
                    app=tv.shown(app_id),
                )
        return tuple(app for app in self.apps if not wanted or app.id in wanted)


def load_apps_file(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    secrets: bool = True,
) -> AppsFile:
    """Read and check an apps file; every secret it names is loaded now, so a missing one is
    found before anything is called or written. `secrets=False` reads the apps without their
    secrets (all None), for commands that call nothing (`status`).

    The file is TOML: one `[[app]]` table per mini-app, nothing else at the top level.

        [[app]]
        id = "tt_0123456789abcdef"             # required: the mini-app id (rows, runs, locks)
        name = "Shop A"                        # optional label
        client_key = "tt_0123456789abcdef"     # optional: defaults to id
        client_secret_env = "SHOP_A_SECRET"    # the client secret: a variable's name, or
        # client_secret_file = "/run/secrets/shop-a"  # a file's path: exactly one of the two
        app_secret_env = "SHOP_A_APP_SECRET"   # optional: the talents commands' mini-app
                                               # secret (or app_secret_file)
        qps = 5                                # optional: 0 < qps <= 10

        [[app]]
        id = "tt_fedcba9876543210"
        auth = "access_token"                  # a token obtained elsewhere, used as given
        access_token_env = "SHOP_B_TOKEN"      # or access_token_file

        [[app]]
        id = "tt_0a1b2c3d4e5f6071"
        auth = "token_command"                 # a program prints the token when one is needed
        token_command = ["/usr/local/bin/tokens", "--app", "tt_0a1b2c3d4e5f6071"]
        token_timeout = 30                     # optional: seconds it may take (at most 300)

        [provider]                             # a service provider (服务商) syncing merchants
        component_appid = "tt_component_app_id"
        component_secret_env = "PROVIDER_SECRET"     # or component_secret_file
        component_ticket_file = "/run/provider/ticket"  # rewritten as the platform pushes;
        # or component_ticket_command = ["prog", ...], or component_ticket_env = "VAR"

        [[app]]
        id = "tt_merchant_app_id"
        auth = "provider"                      # authorizer token via the provider; seed its
                                               # refresh token: taskbox-sync apps authorize ID
        agency_client_key = "awck97…"          # optional, any app: that agency's rows only

    `auth` is "client_credentials" (the default: a client token from key and secret),
    "access_token" (then client_key and client_secret_* are refused) or "token_command" (the
    program, run without a shell, prints {"access_token": "…", "expires_in": N}). Secrets are
    never written in the file: a key such as `client_secret = "…"` is refused. An environment
    variable must be set and not empty; a secret file is read whole, surrounding whitespace (a
    trailing newline) stripped, and must not be empty; a relative path is taken from the apps
    file's folder.
    """
    where = str(path)
    env = os.environ if environ is None else environ
    doc = tv.parse_file(Path(path), where)
    unknown = sorted(set(doc) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise AppsFileError(
            where,
            "unknown top-level key; the file holds [[app]] tables only",
            key=tv.shown(unknown[0]),
        )
    provider = _provider(doc.get("provider"), where, Path(path).expanduser().parent, env, secrets)
    tables = doc.get("app")
    if tables is None or tables == []:
        raise AppsFileError(where, "no [[app]] table; describe each mini-app in an [[app]] table")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise AppsFileError(
            where, f"expected an array of tables ([[app]]), got {tv.kind(tables)}", key="app"
        )
    base = Path(path).expanduser().parent
    apps: list[AppConfig] = []
    seen: dict[str, int] = {}
    for position, table in enumerate(tables, 1):
        app = _app(table, tv.Where(where, position), base, env, secrets)
        if app.auth is Auth.PROVIDER:
            if provider is None:
                raise tv.Where(where, position, app.id).error(
                    "auth", 'auth "provider" needs the file\'s [provider] table'
                )
            app = dataclasses.replace(app, provider=provider)
        if app.id in seen:
            raise tv.Where(where, position, app.id).error(
                "id", f"also the id of app #{seen[app.id]}"
            )
        seen[app.id] = position
        apps.append(app)
    return AppsFile(Path(path), tuple(apps), provider)


def settings_for(base: Settings, app: AppConfig) -> Settings:
    """The base settings for this app: its id as `app` (what rows, runs and locks record), its
    credentials in place of the base's, all of them (an app never borrows another's secret from
    DOUYIN_*), and its qps if it sets one; the database, base URLs and data folder stay the
    base's."""
    changes: dict[str, Any] = {
        "app": app.id,
        "client_key": app.client_key,
        "client_secret": app.client_secret,
        "access_token": app.access_token,
        "app_id": app.talents_app_id,
        "app_secret": app.app_secret,
        "token_command": app.token_command,
        "provider": app.provider,
        "agency_client_key": app.agency_client_key,
    }
    if app.qps is not None:
        changes["qps"] = app.qps
    if app.token_timeout is not None:
        changes["token_timeout"] = app.token_timeout
    return base.replace(**changes)


def app_from_settings(settings: Settings) -> AppConfig:
    """The one app today's environment variables describe, its id what runs record for them
    (`Settings.recorded_app`: the client key, else DOUYIN_APP_ID, else "access-token"). Laid
    back over its settings it changes nothing but naming that id as `app`."""
    return AppConfig(
        id=settings.recorded_app,
        auth=Auth.ACCESS_TOKEN if settings.access_token else Auth.CLIENT_CREDENTIALS,
        client_key=settings.client_key,
        client_secret=settings.client_secret,
        access_token=settings.access_token,
        app_secret=settings.app_secret,
        talents_app_id=settings.app_id,
    )


def secrets_of_apps(apps: Iterable[AppConfig]) -> list[str]:
    """Every secret value of these apps (and their provider's), for the log scrubber."""
    values: list[Secret | None] = []
    for app in apps:
        values += [app.client_secret, app.access_token, app.app_secret]
        if app.provider is not None:
            values += [app.provider.component_secret, app.provider.ticket]
    return list(dict.fromkeys(secret.reveal() for secret in values if secret))


# -- reading one app ------------------------------------------------------------------------------


class _ProviderWhere(tv.Where):
    """Refusals about the [provider] table name it in place of an app."""

    def error(self, key: str, problem: str) -> AppsFileError:
        return AppsFileError(self.path, problem, key=f"[provider] {key}")


def _app(
    table: dict[str, Any], at: tv.Where, base: Path, env: Mapping[str, str], load: bool = True
) -> AppConfig:
    app_id = table.get("id")
    if app_id is None:
        raise at.error("id", "missing; every app needs its mini-app id")
    if not isinstance(app_id, str):
        raise at.error("id", f"expected a string, got {tv.kind(app_id)}")
    if not _ID.fullmatch(app_id):
        raise at.error("id", "expected the mini-app id: not blank, no spaces or quotes")
    at.app = app_id
    for key in table:
        if key in SECRETS:
            raise at.error(
                tv.shown(key),
                f"secrets are not written in the apps file; use {key}_env or {key}_file",
            )
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        raise at.error(
            tv.shown(unknown[0]), f"unknown key; an app takes {_brief_keys(_KNOWN_KEYS)}"
        )
    auth = _auth(table.get("auth", Auth.CLIENT_CREDENTIALS.value), at)
    keys = AUTH_KEYS[auth]
    wrong = sorted(set(table) - keys.allowed)
    if wrong:
        raise at.error(
            wrong[0], f'not used with auth "{auth}"; it takes {_brief_keys(keys.allowed)}'
        )
    secrets: dict[str, Secret | None] = dict.fromkeys(SECRETS)
    for name in (keys.required + keys.optional) if load else ():
        secrets[name] = tv.secret(
            table, name, name in keys.required, f'auth "{auth}"', at, base, env
        )
    client_key = tv.text(table, "client_key", at) or app_id  # the platform's key is the app id
    command = tv.command(table, at, "token_command") if auth is Auth.TOKEN_COMMAND else None
    return AppConfig(
        id=app_id,
        name=tv.text(table, "name", at),
        auth=auth,
        client_key=client_key,
        client_secret=secrets["client_secret"],
        access_token=secrets["access_token"],
        app_secret=secrets["app_secret"],
        qps=_qps(table, at),
        talents_app_id=app_id,
        token_command=command,
        token_timeout=tv.seconds(table, at, "token_timeout"),
        agency_client_key=tv.text(table, "agency_client_key", at),
    )


_TICKET_SOURCES = ("component_ticket_file", "component_ticket_command", "component_ticket_env")


def _provider(
    table: object, where: str, base: Path, env: Mapping[str, str], load: bool
) -> ProviderSettings | None:
    """The [provider] table: the component app, its secret, and where its ticket is found."""
    if table is None:
        return None
    at = _ProviderWhere(where, 0)
    if not isinstance(table, dict):
        raise AppsFileError(where, f"expected a table, got {tv.kind(table)}", key="provider")
    for key in ("component_secret", "component_ticket"):
        if key in table:
            raise at.error(key, f"secrets are not written in the apps file; use {key}_env/_file")
    unknown = sorted(set(table) - set(PROVIDER_KEYS))
    if unknown:
        raise at.error(
            tv.shown(unknown[0]), f"unknown key; [provider] takes {', '.join(PROVIDER_KEYS)}"
        )
    appid = tv.text(table, "component_appid", at)
    if appid is None:
        raise at.error("component_appid", "missing; the provider's component app id")
    sources = [key for key in _TICKET_SOURCES if key in table]
    if len(sources) != 1:
        raise at.error(
            "component_ticket_file",
            "give exactly one of component_ticket_file, component_ticket_command, "
            "component_ticket_env" + (f" (got {', '.join(sources)})" if sources else ""),
        )
    secret = tv.secret(table, "component_secret", load, "[provider]", at, base, env)
    ticket_file = ticket_command = ticket = None
    if sources[0] == "component_ticket_file":
        given = tv.text(table, "component_ticket_file", at)
        if given is None:
            raise at.error("component_ticket_file", "expected the path of the ticket's file")
        ticket_file = base / Path(given).expanduser()
    elif sources[0] == "component_ticket_command":
        ticket_command = tv.command(table, at, "component_ticket_command")
    elif load:
        ticket = tv.secret(table, "component_ticket", True, "[provider]", at, base, env)
    return ProviderSettings(
        component_appid=appid,
        component_secret=secret or Secret(""),
        ticket_file=ticket_file,
        ticket_command=ticket_command,
        ticket=ticket,
        ticket_timeout=tv.seconds(table, at, "ticket_timeout") or 30.0,
    )


def _auth(value: object, at: tv.Where) -> Auth:
    if not isinstance(value, str):
        raise at.error("auth", f"expected a string, got {tv.kind(value)}")
    try:
        return Auth(value)
    except ValueError:
        choices = " or ".join(f'"{a}"' for a in Auth)
        raise at.error("auth", f"unknown value {tv.quoted(value)}; expected {choices}") from None


def _qps(table: dict[str, Any], at: tv.Where) -> float | None:
    value = table.get("qps")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise at.error("qps", f"expected a number, got {tv.kind(value)}")
    if not math.isfinite(value) or value <= 0 or value > MAX_QPS:
        raise at.error("qps", f"expected a number above 0 and at most {MAX_QPS:g}, got {value}")
    return float(value)


# -- wording ------------------------------------------------------------------------------------


def _brief_keys(keys: Iterable[str]) -> str:
    """Keys in the file's order of importance, each secret's pair as `<secret>_env/_file`."""
    keys = set(keys)
    parts = [k for k in (*COMMON_KEYS, "client_key") if k in keys]
    parts += [f"{s}_env/_file" for s in SECRETS if s + "_env" in keys]
    return ", ".join(parts)
