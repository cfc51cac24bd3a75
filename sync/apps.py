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
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

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
MAX_TOKEN_TIMEOUT = 300.0  # seconds a token command may take (default: settings' 30)
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
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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
                    f"not in the file; its apps: {_brief(known)}",
                    app=_shown(app_id),
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
    doc = _parse(Path(path), where)
    unknown = sorted(set(doc) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise AppsFileError(
            where,
            "unknown top-level key; the file holds [[app]] tables only",
            key=_shown(unknown[0]),
        )
    provider = _provider(doc.get("provider"), where, Path(path).expanduser().parent, env, secrets)
    tables = doc.get("app")
    if tables is None or tables == []:
        raise AppsFileError(where, "no [[app]] table; describe each mini-app in an [[app]] table")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise AppsFileError(
            where, f"expected an array of tables ([[app]]), got {_kind(tables)}", key="app"
        )
    base = Path(path).expanduser().parent
    apps: list[AppConfig] = []
    seen: dict[str, int] = {}
    for position, table in enumerate(tables, 1):
        app = _app(table, _Where(where, position), base, env, secrets)
        if app.auth is Auth.PROVIDER:
            if provider is None:
                raise _Where(where, position, app.id).error(
                    "auth", 'auth "provider" needs the file\'s [provider] table'
                )
            app = dataclasses.replace(app, provider=provider)
        if app.id in seen:
            raise _Where(where, position, app.id).error("id", f"also the id of app #{seen[app.id]}")
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


@dataclasses.dataclass(slots=True)
class _Where:
    """The file and the app a refusal is about (the id once it is known)."""

    path: str
    position: int
    app: str | None = None

    def error(self, key: str, problem: str) -> AppsFileError:
        return AppsFileError(self.path, problem, app=self.app, position=self.position, key=key)


class _ProviderWhere(_Where):
    """Refusals about the [provider] table name it in place of an app."""

    def error(self, key: str, problem: str) -> AppsFileError:
        return AppsFileError(self.path, problem, key=f"[provider] {key}")


def _parse(path: Path, where: str) -> dict[str, Any]:
    try:
        raw = path.expanduser().read_bytes()
    except OSError as exc:
        raise AppsFileError(where, f"cannot read: {exc.strerror or type(exc).__name__}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AppsFileError(where, f"not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        first = (str(exc).splitlines() or ["?"])[0]
        raise AppsFileError(where, f"not valid TOML: {first}") from None


def _app(
    table: dict[str, Any], at: _Where, base: Path, env: Mapping[str, str], load: bool = True
) -> AppConfig:
    app_id = table.get("id")
    if app_id is None:
        raise at.error("id", "missing; every app needs its mini-app id")
    if not isinstance(app_id, str):
        raise at.error("id", f"expected a string, got {_kind(app_id)}")
    if not _ID.fullmatch(app_id):
        raise at.error("id", "expected the mini-app id: not blank, no spaces or quotes")
    at.app = app_id
    for key in table:
        if key in SECRETS:
            raise at.error(
                _shown(key),
                f"secrets are not written in the apps file; use {key}_env or {key}_file",
            )
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        raise at.error(_shown(unknown[0]), f"unknown key; an app takes {_brief_keys(_KNOWN_KEYS)}")
    auth = _auth(table.get("auth", Auth.CLIENT_CREDENTIALS.value), at)
    keys = AUTH_KEYS[auth]
    wrong = sorted(set(table) - keys.allowed)
    if wrong:
        raise at.error(
            wrong[0], f'not used with auth "{auth}"; it takes {_brief_keys(keys.allowed)}'
        )
    secrets: dict[str, Secret | None] = dict.fromkeys(SECRETS)
    for name in (keys.required + keys.optional) if load else ():
        secrets[name] = _secret(table, name, name in keys.required, auth, at, base, env)
    client_key = _text(table, "client_key", at) or app_id  # the platform's key is the app id
    command = _command(table, at) if auth is Auth.TOKEN_COMMAND else None
    return AppConfig(
        id=app_id,
        name=_text(table, "name", at),
        auth=auth,
        client_key=client_key,
        client_secret=secrets["client_secret"],
        access_token=secrets["access_token"],
        app_secret=secrets["app_secret"],
        qps=_qps(table, at),
        talents_app_id=app_id,
        token_command=command,
        token_timeout=_timeout(table, at),
        agency_client_key=_text(table, "agency_client_key", at),
    )


def _command(table: dict[str, Any], at: _Where, key: str = "token_command") -> tuple[str, ...]:
    """A program and its arguments, as a list (never a shell line)."""
    value = table.get(key)
    if value is None:
        raise at.error(key, f'missing; auth "{key}" needs ["program", "arg", ...]')
    if isinstance(value, str):
        raise at.error(key, 'expected a list such as ["program", "arg"] (no shell is used)')
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise at.error(key, f"expected a non-empty list of strings, got {_kind(value)}")
    if not value[0].strip():
        raise at.error(key, "expected the program first, got an empty string")
    return tuple(value)


def _timeout(table: dict[str, Any], at: _Where, key: str = "token_timeout") -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise at.error(key, f"expected seconds, got {_kind(value)}")
    if not 0 < value <= MAX_TOKEN_TIMEOUT:
        raise at.error(key, f"expected seconds above 0 and at most {MAX_TOKEN_TIMEOUT:g}")
    return float(value)


_TICKET_SOURCES = ("component_ticket_file", "component_ticket_command", "component_ticket_env")


def _provider(
    table: object, where: str, base: Path, env: Mapping[str, str], load: bool
) -> ProviderSettings | None:
    """The [provider] table: the component app, its secret, and where its ticket is found."""
    if table is None:
        return None
    at = _ProviderWhere(where, 0)
    if not isinstance(table, dict):
        raise AppsFileError(where, f"expected a table, got {_kind(table)}", key="provider")
    for key in ("component_secret", "component_ticket"):
        if key in table:
            raise at.error(key, f"secrets are not written in the apps file; use {key}_env/_file")
    unknown = sorted(set(table) - set(PROVIDER_KEYS))
    if unknown:
        raise at.error(
            _shown(unknown[0]), f"unknown key; [provider] takes {', '.join(PROVIDER_KEYS)}"
        )
    appid = _text(table, "component_appid", at)
    if appid is None:
        raise at.error("component_appid", "missing; the provider's component app id")
    sources = [key for key in _TICKET_SOURCES if key in table]
    if len(sources) != 1:
        raise at.error(
            "component_ticket_file",
            "give exactly one of component_ticket_file, component_ticket_command, "
            "component_ticket_env" + (f" (got {', '.join(sources)})" if sources else ""),
        )
    secret = _secret(table, "component_secret", load, Auth.PROVIDER, at, base, env)
    ticket_file = ticket_command = ticket = None
    if sources[0] == "component_ticket_file":
        given = _text(table, "component_ticket_file", at)
        if given is None:
            raise at.error("component_ticket_file", "expected the path of the ticket's file")
        ticket_file = base / Path(given).expanduser()
    elif sources[0] == "component_ticket_command":
        ticket_command = _command(table, at, "component_ticket_command")
    elif load:
        ticket = _secret(table, "component_ticket", True, Auth.PROVIDER, at, base, env)
    return ProviderSettings(
        component_appid=appid,
        component_secret=secret or Secret(""),
        ticket_file=ticket_file,
        ticket_command=ticket_command,
        ticket=ticket,
        ticket_timeout=_timeout(table, at, "ticket_timeout") or 30.0,
    )


def _auth(value: object, at: _Where) -> Auth:
    if not isinstance(value, str):
        raise at.error("auth", f"expected a string, got {_kind(value)}")
    try:
        return Auth(value)
    except ValueError:
        choices = " or ".join(f'"{a}"' for a in Auth)
        raise at.error("auth", f"unknown value {_quoted(value)}; expected {choices}") from None


def _text(table: dict[str, Any], key: str, at: _Where) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise at.error(key, f"expected a string, got {_kind(value)}")
    return value.strip() or None


def _qps(table: dict[str, Any], at: _Where) -> float | None:
    value = table.get("qps")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise at.error("qps", f"expected a number, got {_kind(value)}")
    if not math.isfinite(value) or value <= 0 or value > MAX_QPS:
        raise at.error("qps", f"expected a number above 0 and at most {MAX_QPS:g}, got {value}")
    return float(value)


def _secret(
    table: dict[str, Any],
    name: str,
    required: bool,
    auth: Auth,
    at: _Where,
    base: Path,
    env: Mapping[str, str],
) -> Secret | None:
    """The secret `name` from `<name>_env` or `<name>_file`, loaded; None if optional and absent."""
    env_key, file_key = name + "_env", name + "_file"
    if env_key in table and file_key in table:
        raise at.error(file_key, f"{env_key} is given too; keep one of the two")
    if env_key in table:
        var = table[env_key]
        if not isinstance(var, str):
            raise at.error(env_key, f"expected a string, got {_kind(var)}")
        if not _ENV_NAME.fullmatch(var):  # perhaps the secret itself: never echoed
            raise at.error(
                env_key, "expected the name of an environment variable (letters, digits, _)"
            )
        value = env.get(var)
        if value is None:
            raise at.error(env_key, f"environment variable {var} is not set")
        return _checked(value.strip(), env_key, f"environment variable {var}", at)
    if file_key in table:
        given = table[file_key]
        if not isinstance(given, str):
            raise at.error(file_key, f"expected a string, got {_kind(given)}")
        if not given.strip():
            raise at.error(file_key, "expected the path of a file holding the secret")
        file = base / Path(given).expanduser()
        try:
            text = file.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise at.error(
                file_key, f"cannot read {_shown(str(file))}: {exc.strerror or type(exc).__name__}"
            ) from None
        except UnicodeDecodeError:
            raise at.error(file_key, f"{_shown(str(file))} is not UTF-8 text") from None
        return _checked(text.strip(), file_key, _shown(str(file)), at)
    if required:
        raise at.error(
            name,
            f'missing; auth "{auth}" needs it from {env_key} (an environment variable\'s name) '
            f"or {file_key} (a file's path)",
        )
    return None


def _checked(value: str, key: str, source: str, at: _Where) -> Secret:
    if not value:
        raise at.error(key, f"{source} is empty")
    if "\n" in value or "\r" in value:
        raise at.error(key, f"{source} holds more than one line; expected the secret alone")
    return Secret(value)


# -- wording ------------------------------------------------------------------------------------


def _kind(value: object) -> str:
    """What a TOML value is, in words (the value itself is never shown: it may be a secret)."""
    if isinstance(value, bool):
        return "a boolean"
    kinds = {
        str: "a string",
        int: "an integer",
        float: "a float",
        dict: "a table",
        list: "an array",
    }
    return next((w for t, w in kinds.items() if isinstance(value, t)), "a date or time")


def _shown(text: str) -> str:
    """A name from the file as it can be printed on one line."""
    return text if text.isprintable() else ascii(text)


def _quoted(text: str) -> str:
    return f'"{text}"' if text.isprintable() and '"' not in text else ascii(text)


def _brief(names: Sequence[str], most: int = 6) -> str:
    shown = ", ".join(_shown(n) for n in names[:most])
    return shown + (f", … ({len(names)} in all)" if len(names) > most else "")


def _brief_keys(keys: Iterable[str]) -> str:
    """Keys in the file's order of importance, each secret's pair as `<secret>_env/_file`."""
    keys = set(keys)
    parts = [k for k in (*COMMON_KEYS, "client_key") if k in keys]
    parts += [f"{s}_env/_file" for s in SECRETS if s + "_env" in keys]
    return ", ".join(parts)
