"""The apps file (TOML) that points taskbox-sync at a sandbox's apps, and its secrets' variables.

Secrets never go in the file: each app names the environment variables that hold them
(`SBX_APP_0001_CLIENT_SECRET`, ...), and `secret_env` gives their values. Pure functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sync.sandbox.credentials import AppCredentials


def client_secret_env(app: AppCredentials) -> str:
    return f"SBX_APP_{app.number:04d}_CLIENT_SECRET"


def app_secret_env(app: AppCredentials) -> str:
    return f"SBX_APP_{app.number:04d}_APP_SECRET"


def _string(value: str) -> str:
    # A JSON string of printable ASCII is a TOML basic string too.
    return json.dumps(value, ensure_ascii=True)


def render_apps_file(apps: Iterable[AppCredentials]) -> str:
    """One `[[app]]` table per app: `id` (its app id), `client_key` only where it differs from
    the id, and the names of the variables holding its two secrets."""
    tables = []
    for app in apps:
        lines = ["[[app]]", f"id = {_string(app.app_id)}"]
        if app.client_key != app.app_id:
            lines.append(f"client_key = {_string(app.client_key)}")
        lines.append(f"client_secret_env = {_string(client_secret_env(app))}")
        lines.append(f"app_secret_env = {_string(app_secret_env(app))}")
        tables.append("\n".join(lines) + "\n")
    return "\n".join(tables)


def secret_env(apps: Iterable[AppCredentials]) -> dict[str, str]:
    """The environment the apps file expects: variable name -> secret, app by app."""
    env: dict[str, str] = {}
    for app in apps:
        env[client_secret_env(app)] = app.client_secret
        env[app_secret_env(app)] = app.app_secret
    return env
