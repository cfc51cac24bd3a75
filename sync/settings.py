"""The one settings object: built from the environment, overridden by CLI flags, passed down.

Secrets are wrapped in `Secret`, whose repr and str never show the value; the database URL is
kept whole only inside a `Secret` and shown everywhere else with its password masked.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sync.errors import SettingsError

DEFAULT_OPEN_BASE_URL = "https://open.douyin.com"
DEFAULT_DEVELOPER_BASE_URL = "https://developer.toutiao.com"
MAX_QPS = 10.0


@dataclasses.dataclass(frozen=True, slots=True)
class Secret:
    """A value that must never be printed: repr and str are masked, `reveal()` gives it."""

    _value: str

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


def redact_database_url(url: str) -> str:
    """The URL with its password replaced by ***; unparseable URLs are not echoed at all."""
    from sqlalchemy.engine import make_url  # here: the command line starts without SQLAlchemy
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable DATABASE_URL>"


def normalize_database_url(url: str) -> str:
    """Accept postgresql://, postgres:// and postgresql+asyncpg://; return the asyncpg form."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise SettingsError(
            "DATABASE_URL: expected postgresql://user:password@host:port/dbname"
        ) from None
    if parsed.drivername in ("postgresql", "postgres", "postgresql+asyncpg"):
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    raise SettingsError(
        f"DATABASE_URL: expected a postgresql:// or postgresql+asyncpg:// URL, "
        f"got scheme {parsed.drivername!r}"
    )


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(name: str, url: str, allow_insecure: bool) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name}: expected an http(s) URL such as https://host, got {url!r}")
    # Plain HTTP only to this machine (the sandbox): tokens must not cross a network in clear.
    if parts.scheme == "http" and not is_loopback_url(url) and not allow_insecure:
        raise SettingsError(
            f"{name}: plain http is only allowed for loopback addresses; use https "
            "(or set TASKBOX_ALLOW_INSECURE_HTTP=1 to override)"
        )
    return url.rstrip("/")


def parse_qps(value: str, name: str = "TASKBOX_QPS") -> float:
    try:
        qps = float(value)
    except ValueError:
        qps = math.nan
    if not math.isfinite(qps) or qps <= 0 or qps > MAX_QPS:
        raise SettingsError(f"{name}: expected a number above 0 and at most 10, got {value!r}")
    return qps


def default_data_dir() -> Path:
    """Where the embedded PostgreSQL keeps its data: per user, XDG-style."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "taskbox-sync"


@dataclasses.dataclass(frozen=True, slots=True)
class ProviderSettings:
    """A service provider's (服务商) component app, as the apps file's `[provider]` table gives
    it: its id, its secret, and where the current component ticket is found (the platform
    pushes a new one to the provider's server every 10 minutes): a file the provider's event
    receiver rewrites, a program that prints it, or a value given as is."""

    component_appid: str
    component_secret: Secret
    ticket_file: Path | None = None
    ticket_command: tuple[str, ...] | None = None
    ticket: Secret | None = None
    ticket_timeout: float = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything a command may need. Frozen: derive changed copies with `replace`."""

    database_url: Secret | None = None
    client_key: str | None = None
    client_secret: Secret | None = None
    access_token: Secret | None = None
    open_base_url: str = DEFAULT_OPEN_BASE_URL
    developer_base_url: str = DEFAULT_DEVELOPER_BASE_URL
    app_id: str | None = None
    app_secret: Secret | None = None
    qps: float = MAX_QPS
    app: str | None = None  # the app's id in an apps file (`sync.apps`); see `recorded_app`
    token_command: tuple[str, ...] | None = None  # a program that prints the daily-data token
    token_timeout: float = 30.0  # seconds it may take
    apps_file: Path | None = None  # TASKBOX_APPS_FILE: several apps (`sync.apps`)
    provider: ProviderSettings | None = None  # set for an app whose token comes from a provider
    agency_client_key: str | None = None  # the app's daily-data agency filter (apps file)
    secret_key: Secret | None = None  # TASKBOX_SECRET_KEY: Fernet key(s) sealing stored tokens
    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    allow_insecure_http: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from environment variables; malformed ones raise SettingsError."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def secret(name: str) -> Secret | None:
            value = text(name)
            return Secret(value) if value else None

        allow_insecure = env.get("TASKBOX_ALLOW_INSECURE_HTTP", "") in ("1", "true", "yes")
        db = text("DATABASE_URL")
        if db is not None:
            db = normalize_database_url(db)
        data_dir = text("TASKBOX_DATA_DIR")
        apps_file = text("TASKBOX_APPS_FILE")
        return cls(
            database_url=Secret(db) if db else None,
            client_key=text("DOUYIN_CLIENT_KEY"),
            client_secret=secret("DOUYIN_CLIENT_SECRET"),
            access_token=secret("DOUYIN_ACCESS_TOKEN"),
            open_base_url=_check_base_url(
                "DOUYIN_OPEN_BASE_URL",
                text("DOUYIN_OPEN_BASE_URL") or DEFAULT_OPEN_BASE_URL,
                allow_insecure,
            ),
            developer_base_url=_check_base_url(
                "DOUYIN_DEVELOPER_BASE_URL",
                text("DOUYIN_DEVELOPER_BASE_URL") or DEFAULT_DEVELOPER_BASE_URL,
                allow_insecure,
            ),
            app_id=text("DOUYIN_APP_ID"),
            app_secret=secret("DOUYIN_APP_SECRET"),
            qps=parse_qps(text("TASKBOX_QPS") or str(MAX_QPS)),
            data_dir=Path(data_dir) if data_dir else default_data_dir(),
            apps_file=Path(apps_file) if apps_file else None,
            secret_key=secret("TASKBOX_SECRET_KEY"),
            allow_insecure_http=allow_insecure,
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (CLI flags override the environment this way)."""
        if "database_url" in changes and isinstance(changes["database_url"], str):
            changes["database_url"] = Secret(normalize_database_url(changes["database_url"]))
        for name in ("open_base_url", "developer_base_url"):
            if isinstance(changes.get(name), str):
                env_name = "DOUYIN_" + name.upper()
                changes[name] = _check_base_url(env_name, changes[name], self.allow_insecure_http)
        return dataclasses.replace(self, **changes)

    @property
    def recorded_app(self) -> str:
        """The app as the database records it on its rows, runs and locks: the apps file's id;
        else the client key (which on the platform is the mini-app id); else the mini-app id;
        else 'access-token' (a token given as is names no app)."""
        return self.app or self.client_key or self.app_id or "access-token"

    @property
    def redacted_database_url(self) -> str | None:
        return (
            None if self.database_url is None else redact_database_url(self.database_url.reveal())
        )

    def require_daily_data_credentials(self) -> None:
        """The daily-data API needs a token: given directly, printed by a command, or from key
        and secret."""
        if self.access_token or self.token_command or self.provider:
            return
        if not self.client_key:
            raise SettingsError(
                "DOUYIN_CLIENT_KEY: missing; set the app's client key "
                "(or DOUYIN_ACCESS_TOKEN to a token obtained elsewhere)"
            )
        if not self.client_secret:
            raise SettingsError("DOUYIN_CLIENT_SECRET: missing; set the app's client secret")

    def require_app_credentials(self) -> None:
        """The talent commands need the mini-app's id and secret."""
        if not self.app_id:
            raise SettingsError("DOUYIN_APP_ID: missing; set the mini-app id (tt…)")
        if not self.app_secret and self.provider is None:  # a provider's merchant: its token
            raise SettingsError("DOUYIN_APP_SECRET: missing; set the mini-app secret")
