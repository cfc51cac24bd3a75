"""No secret in any output: the client secret, the app secret, every token the platform issued
and the database password never reach stdout, stderr, the ledger, the audit table, a repr or an
exception's text — under faults, with text and JSON logs, and in `status`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import sys
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from sync.api.http import Timeouts, new_session
from sync.api.tokens import ClientTokenProvider
from sync.db.database import check_schema, create_engine
from sync.errors import CredentialsError, DatabaseConnectError, SettingsError
from sync.logs import SecretScrubber, configure_logging
from sync.sandbox import Faults, SandboxServer
from sync.settings import Secret, Settings
from tests.helpers import (
    CliResult,
    Clock,
    MakeSandbox,
    api_calls,
    cli_env,
    plain_url,
    run_cli,
    wait_until,
)

_TAG = uuid.uuid4().hex[:10]
CLIENT_SECRET = f"cs-Qx7{_TAG}-secret"
WRONG_SECRET = f"cs-Wr0ng{_TAG}-secret"
APP_SECRET = f"as-Kp3{_TAG}-secret"
PASSWORD = f"pw@Zt9{_TAG}/%x"  # '@', '/' and '%' must be percent-encoded in a URL
ROLE = f"taskbox_secret_test_{_TAG}"


def forms(secret: str) -> list[str]:
    """A secret as it could appear: as is, and percent-encoded (in a URL)."""
    return list(dict.fromkeys([secret, quote(secret, safe=""), quote(secret)]))


def assert_clean(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        for form in forms(secret):
            assert form not in text, f"{where} contains a secret ({form[:6]}…): {text[:2000]}"


CLI_TIMEOUT = 180.0


async def cli(env: dict[str, str], *args: str) -> CliResult:
    return await run_cli(*args, env=env, limit=CLI_TIMEOUT)


@pytest.fixture
async def secret_url(admin_url: str, database_url: str) -> AsyncIterator[str]:
    """The test database's URL as a role with a password (trust auth ignores it; it is in the
    URL all the same, which is what must not leak)."""
    admin = await asyncpg.connect(plain_url(admin_url))
    try:
        escaped = PASSWORD.replace("'", "''")
        await admin.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{escaped}'")
    finally:
        await admin.close()
    url = make_url(database_url).set(drivername="postgresql", username=ROLE, password=PASSWORD)
    yield url.render_as_string(hide_password=False)
    admin = await asyncpg.connect(plain_url(admin_url))
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", ROLE
        )
        with contextlib.suppress(asyncpg.PostgresError):
            await admin.execute(f"DROP ROLE IF EXISTS {ROLE}")
    finally:
        await admin.close()


async def revoke_while_running(sb: SandboxServer, run: asyncio.Task[CliResult]) -> int:
    """Revoke every token twice while `run` is requesting pages: after 5 and after 12 more
    daily-data calls (a subprocess takes a while to start, so not on a timer)."""
    base, revoked = api_calls(sb, "daily_data"), 0
    for more in (5, 12):

        async def reached(more: int = more) -> bool:
            return run.done() or api_calls(sb, "daily_data") >= base + more

        await wait_until(reached, limit=CLI_TIMEOUT, what=f"{more} more daily-data calls")
        if run.done():
            return revoked
        sb.revoke_tokens()
        revoked += 1
    return revoked


def issued_tokens(sb: SandboxServer) -> list[str]:
    """Every token the sandbox issued that it still remembers (live, expired or revoked)."""
    return sb.sandbox.client_tokens.remembered() + sb.sandbox.app_tokens.remembered()


async def database_texts(url: str) -> dict[str, list[str]]:
    """Every row of the ledger, the audit table and the data table, as text."""
    conn = await asyncpg.connect(url)
    try:
        return {
            table: [r[0] for r in await conn.fetch(f"SELECT t::text FROM {table} t")]
            for table in (
                "sync_runs",
                "sync_partitions",
                "talent_operations",
                "video_daily_earnings",
            )
        }
    finally:
        await conn.close()


@pytest.mark.wall_clock  # the CLI runs in a subprocess
async def test_no_secret_in_cli_output_ledger_or_status(
    secret_url: str, make_sandbox: MakeSandbox, clock: Clock
) -> None:
    """Backfills under busy answers, 5xx, malformed bodies, resets, short-lived and revoked
    tokens, with text and JSON logs, then `status`, `status --run`, `status --check` and
    `migrate`, and refused credentials and an unreachable database: nothing printed or stored
    holds the client secret, the app secret, a token or the database password."""
    faults = Faults(
        seed=21,
        busy_rate=0.05,
        http_5xx_rate=0.03,
        malformed_rate=0.05,
        reset_rate=0.02,
        token_lifetime=3.0,
    )
    sb = await make_sandbox(
        seed=3,
        videos=250,
        tasks=8,
        creators=30,
        client_secret=CLIENT_SECRET,
        app_secret=APP_SECRET,
        faults=faults,
    )
    dates = clock.recent_dates(2)
    runs: list[CliResult] = []
    env = cli_env(sb, secret_url)
    for fmt in ("text", "json"):
        backfill = asyncio.create_task(
            cli(
                env,
                "backfill",
                "--from",
                dates[0].isoformat(),
                "--to",
                dates[-1].isoformat(),
                "--page-size",
                "20",
                "--concurrency",
                "4",
                "--restart",
                "--log-format",
                fmt,
            )
        )
        revoked = await revoke_while_running(sb, backfill)
        run = await backfill
        assert revoked == 2, run  # both revocations hit the run in flight
        assert run.status in (0, 1), run
        assert run.stdout.startswith("run "), run
        runs.append(run)
    unreachable = make_url(secret_url).set(port=1).render_as_string(hide_password=False)
    one_date = ["--from", dates[-1].isoformat(), "--to", dates[-1].isoformat()]
    others = await asyncio.gather(
        cli(env, "status"),
        cli(env, "status", "--run", "1"),
        cli(env, "status", "--run", "2"),
        cli(env, "migrate"),
        cli(env, "status", "--check"),
        cli({**env, "DOUYIN_CLIENT_SECRET": WRONG_SECRET}, "backfill", *one_date),
        cli({**env, "DATABASE_URL": unreachable}, "status"),
    )
    for run in others[:4]:
        assert run.status == 0, run
    assert others[4].status in (0, 1), others[4]
    for run in others[5:]:  # refused credentials, unreachable database: said, not leaked
        assert run.status != 0 and run.stderr.strip(), run
    runs.extend(others)
    stats = sb.stats()
    tokens = issued_tokens(sb)

    codes = stats["endpoints"]["daily_data"]["codes"]
    assert codes.get("28001003", 0) + codes.get("28001008", 0) > 0, codes  # tokens were refused
    assert len(tokens) >= 3
    secrets = [CLIENT_SECRET, WRONG_SECRET, APP_SECRET, PASSWORD]
    secrets += tokens + [t.removeprefix("clt.") for t in tokens]
    for run in runs:
        for name, stream in (("stdout", run.stdout), ("stderr", run.stderr)):
            assert_clean(stream, secrets, f"{name} of {' '.join(run.args)}")
    json_lines = [line for line in runs[1].stderr.splitlines() if line.startswith("{")]
    assert json_lines, runs[1].stderr  # the JSON run did log

    texts = await database_texts(secret_url)
    assert texts["sync_runs"] and texts["sync_partitions"]
    for table, rows in texts.items():
        for row in rows:
            assert_clean(row, secrets, table)


# -- reprs and exceptions -----------------------------------------------------------------------


def _secret_env(url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": url,
        "DOUYIN_CLIENT_KEY": "ck_visible",
        "DOUYIN_CLIENT_SECRET": CLIENT_SECRET,
        "DOUYIN_ACCESS_TOKEN": f"act.{_TAG}tokenvalue",
        "DOUYIN_APP_ID": "tt_visible",
        "DOUYIN_APP_SECRET": APP_SECRET,
    }


def test_settings_repr_and_str_hide_secrets() -> None:
    """repr/str of Settings, of its secrets and of the redacted URL show none of them."""
    url = f"postgresql://someone:{quote(PASSWORD, safe='')}@db.example:5432/prod"
    settings = Settings.from_env(_secret_env(url))
    assert settings.database_url is not None and settings.client_secret is not None
    assert make_url(settings.database_url.reveal()).password == PASSWORD
    secrets = [CLIENT_SECRET, APP_SECRET, PASSWORD, f"act.{_TAG}tokenvalue"]
    for shown in (
        repr(settings),
        str(settings),
        repr(settings.client_secret),
        f"{settings.database_url}",
        str(settings.redacted_database_url),
        repr(settings.replace(qps=5)),
    ):
        assert_clean(shown, secrets, "a repr")
    assert "ck_visible" in repr(settings)  # the repr is still useful


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://someone:{quote(PASSWORD, safe='')}@db.example/prod",
        f"postgresql://someone:{quote(PASSWORD, safe='')}@db.example:notaport/prod",
        f"postgresql://someone:{PASSWORD}@db.example/prod",  # not encoded: still secret
    ],
    # Fixed ids: the password is new in every process, and test ids must be the same in all.
    ids=["other-scheme", "bad-port", "password-not-encoded"],
)
def test_bad_database_url_errors_hide_the_password(url: str) -> None:
    """A DATABASE_URL that is refused is named, not echoed with its password."""
    try:
        Settings.from_env({"DATABASE_URL": url})
    except SettingsError as exc:
        assert_clean(str(exc) + repr(exc), [PASSWORD], "the SettingsError")
    else:  # accepted: then the stored URL must not show when printed
        settings = Settings.from_env({"DATABASE_URL": url})
        assert_clean(repr(settings), [PASSWORD], "the Settings")


async def test_database_error_hides_the_password(database_url: str) -> None:
    """Cannot connect: the error names the server, never the password."""
    url = make_url(database_url).set(port=1, password=PASSWORD).render_as_string(False)
    engine = create_engine(url)
    try:
        with pytest.raises(DatabaseConnectError) as info:
            await check_schema(engine)
    finally:
        await engine.dispose()
    shown = f"{info.value} {info.value!r} {info.value.__cause__!r} {info.value.__context__!r}"
    parsed = make_url(database_url)  # a TCP host, or the embedded server's socket directory
    server = parsed.host or str(parsed.query["host"])
    assert server in shown or urllib.parse.quote(server, safe="") in shown
    assert_clean(shown, [PASSWORD], "the DatabaseConnectError")


async def test_refused_credentials_error_hides_the_secret(make_sandbox: MakeSandbox) -> None:
    """The platform refusing key and secret: the error says so without the secret."""
    sb = await make_sandbox(seed=3, videos=10, client_secret=CLIENT_SECRET)
    session = new_session(Timeouts(connect=2, total=5))
    try:
        provider = ClientTokenProvider(
            session, sb.base_url, sb.config.client_key, Secret(WRONG_SECRET)
        )
        with pytest.raises(CredentialsError) as info:
            await provider.get()
    finally:
        await session.close()
    shown = f"{info.value} {info.value!r}"
    assert "DOUYIN_CLIENT_SECRET" in shown
    assert_clean(shown, [WRONG_SECRET, CLIENT_SECRET], "the CredentialsError")


# -- the scrubber: the last guard ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_scrubber_covers_messages_args_tracebacks_and_extras(
    fmt: str, restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret that slips into a log record — in the message, its arguments, an exception's
    traceback or an `extra` field — is replaced by *** in both formats."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging(fmt, secrets=[CLIENT_SECRET, PASSWORD, "abc"])
    log = logging.getLogger("sync.test_secrets")
    url = f"postgresql://u:{PASSWORD}@db/prod"
    log.warning("connecting to %s", url)
    log.warning(f"secret {CLIENT_SECRET} in the message")
    try:
        raise RuntimeError(f"cannot connect to {url}")
    except RuntimeError:
        log.exception("connect failed")
    log.warning("with extra", extra={"url": url})
    out = stream.getvalue()
    assert out.count("***") >= 2
    assert "connect failed" in out and "with extra" in out
    assert_clean(out, [CLIENT_SECRET, PASSWORD], f"{fmt} log output")


def test_scrubber_ignores_short_values() -> None:
    """Values under 4 characters are not treated as secrets (they would mangle every line)."""
    scrubber = SecretScrubber(["abc", CLIENT_SECRET])
    assert scrubber.scrub(f"abc {CLIENT_SECRET}") == "abc ***"
