"""Each app's credentials: app 1 takes the config's, app i >= 2 derives its own from i; and the
service provider's (one per sandbox), its secret derived from the seed unless the config has one.

As on the platform, an app's mini-app id is its client key (app 1 keeps the sandbox's historic
pair, which differ). Pure values: the CLI, the apps file and the state all read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sync.sandbox.config import SandboxConfig


@dataclass(frozen=True, slots=True)
class AppCredentials:
    number: int
    """1-based; app 1 is the sandbox's default app."""
    client_key: str
    client_secret: str
    app_id: str
    app_secret: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AppCredentials:
        """From an entry of `info()["apps"]` (what the CLI's first line carries)."""
        return cls(
            number=int(data["number"]),
            client_key=str(data["client_key"]),
            client_secret=str(data["client_secret"]),
            app_id=str(data["app_id"]),
            app_secret=str(data["app_secret"]),
        )


def app_credentials(config: SandboxConfig, number: int) -> AppCredentials:
    """The credentials of app `number` (1-based)."""
    if number == 1:
        return AppCredentials(
            number=1,
            client_key=config.client_key,
            client_secret=config.client_secret,
            app_id=config.app_id,
            app_secret=config.app_secret,
        )
    app_id = f"tt_sbx_app_{number:04d}"
    return AppCredentials(
        number=number,
        client_key=app_id,
        client_secret=f"sbx_client_secret_{number:04d}",
        app_id=app_id,
        app_secret=f"sbx_app_secret_{number:04d}",
    )


def all_credentials(config: SandboxConfig) -> list[AppCredentials]:
    """Every app's credentials, app 1 first; client keys and app ids each name one app."""
    apps = [app_credentials(config, n) for n in range(1, config.apps + 1)]
    for kind in ("client_key", "app_id"):
        names = [getattr(a, kind) for a in apps]
        if len(set(names)) != len(names):
            raise ValueError(f"app 1's {kind} {names[0]!r} is another app's")
    return apps


@dataclass(frozen=True, slots=True)
class ProviderCredentials:
    """The service provider's (服务商's) component app: what it sends for a component token,
    beside the ticket of the moment."""

    component_appid: str
    component_appsecret: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProviderCredentials:
        """From `info()["provider"]` (what the CLI's first line carries)."""
        return cls(
            component_appid=str(data["component_appid"]),
            component_appsecret=str(data["component_appsecret"]),
        )


def provider_credentials(config: SandboxConfig) -> ProviderCredentials:
    """The provider's credentials: the config's app id, and its secret or one derived from the
    seed (a sandbox of another seed has another secret, as each app has its own)."""
    secret = config.component_appsecret or f"sbx_component_secret_{config.seed:04d}"
    return ProviderCredentials(component_appid=config.component_appid, component_appsecret=secret)
