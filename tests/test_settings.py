"""Settings come from the environment, are checked, and never show a secret."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from sync.errors import SettingsError
from sync.logs import SecretScrubber
from sync.settings import Secret, Settings, normalize_database_url, redact_database_url

SECRET = "s3cr3t-value-XYZ"


def _env(**extra: str) -> dict[str, str]:
    return {"DOUYIN_CLIENT_KEY": "awk123", "DOUYIN_CLIENT_SECRET": SECRET, **extra}


def test_defaults() -> None:
    """With nothing set, the documented defaults apply."""
    s = Settings.from_env({})
    assert s.open_base_url == "https://open.douyin.com"
    assert s.developer_base_url == "https://developer.toutiao.com"
    assert s.qps == 10.0
    assert s.database_url is None


def test_secrets_never_in_repr() -> None:
    """Client secret, tokens, app secret and the DSN password are masked in repr and str."""
    env = _env(
        DOUYIN_ACCESS_TOKEN="clt.tokenvalue123",
        DOUYIN_APP_SECRET="appsecretvalue",
        DATABASE_URL="postgresql://u:dbpassw0rd@db.example:5432/x",
    )
    s = Settings.from_env(env)
    text = repr(s) + str(s)
    for secret in (SECRET, "clt.tokenvalue123", "appsecretvalue", "dbpassw0rd"):
        assert secret not in text
    assert s.redacted_database_url == "postgresql+asyncpg://u:***@db.example:5432/x"
    assert s.client_secret is not None and s.client_secret.reveal() == SECRET


def test_scrubber_masks_leaked_secret() -> None:
    """The log filter removes a secret that slipped into a message."""
    record = logging.LogRecord("sync", logging.INFO, "", 0, "url=%s", ("x?token=" + SECRET,), None)
    SecretScrubber([SECRET]).filter(record)
    assert SECRET not in record.getMessage()


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TASKBOX_QPS": "0"}, "TASKBOX_QPS"),
        ({"TASKBOX_QPS": "11"}, "TASKBOX_QPS"),
        ({"TASKBOX_QPS": "fast"}, "TASKBOX_QPS"),
        ({"TASKBOX_QPS": "nan"}, "TASKBOX_QPS"),
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL"),
        ({"DOUYIN_OPEN_BASE_URL": "ftp://x"}, "DOUYIN_OPEN_BASE_URL"),
        ({"DOUYIN_OPEN_BASE_URL": "http://open.example.com"}, "plain http"),
    ],
)
def test_malformed_settings_name_the_variable(env: dict[str, str], needle: str) -> None:
    """A malformed setting raises SettingsError naming it."""
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)


def test_loopback_http_allowed() -> None:
    """Plain http is fine for the sandbox on loopback."""
    s = Settings.from_env({"DOUYIN_OPEN_BASE_URL": "http://127.0.0.1:8080/"})
    assert s.open_base_url == "http://127.0.0.1:8080"


def test_missing_credentials_named() -> None:
    """A command needing the client key names DOUYIN_CLIENT_KEY when it is missing."""
    with pytest.raises(SettingsError, match="DOUYIN_CLIENT_KEY"):
        Settings.from_env({}).require_daily_data_credentials()
    with pytest.raises(SettingsError, match="DOUYIN_CLIENT_SECRET"):
        Settings.from_env({"DOUYIN_CLIENT_KEY": "k"}).require_daily_data_credentials()
    Settings.from_env({"DOUYIN_ACCESS_TOKEN": "t"}).require_daily_data_credentials()
    with pytest.raises(SettingsError, match="DOUYIN_APP_ID"):
        Settings.from_env({}).require_app_credentials()


def test_database_url_forms() -> None:
    """postgresql:// and postgresql+asyncpg:// are both accepted."""
    assert normalize_database_url("postgresql://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert normalize_database_url("postgresql+asyncpg://u@h/d") == "postgresql+asyncpg://u@h/d"
    assert "pw" not in redact_database_url("postgresql://u:pw@h/d")
    assert repr(Secret("x")) == "Secret('**********')"


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOUYIN_", "TASKBOX_"))}
    base.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "sync", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_malformed_setting_one_line_exit_2() -> None:
    """A malformed setting gives one line naming it and exit 2, no traceback."""
    out = _cli("migrate", env={"DATABASE_URL": "postgresql://u:hunter2@h:notaport/d"})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "DATABASE_URL" in out.stderr
    assert "Traceback" not in out.stderr and "hunter2" not in out.stderr


def test_cli_unreachable_database_exit_2_no_password() -> None:
    """An unreachable database is one line, exit 2, password masked."""
    out = _cli("migrate", env={"DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:1/d"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "cannot connect" in out.stderr
    assert "hunter2" not in out.stderr


def test_cli_unknown_flag_exit_2() -> None:
    """An unknown flag is one line and exit 2."""
    out = _cli("migrate", "--bogus", env={})
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1


def test_cli_migrate_on_server(database_url: str) -> None:
    """`taskbox-sync migrate` works against the test server (already at head: idempotent)."""
    out = _cli("migrate", env={"DATABASE_URL": database_url})
    assert out.returncode == 0, out.stderr
    assert "schema is at head" in out.stdout
