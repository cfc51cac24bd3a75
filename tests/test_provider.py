"""Provider mode (#15) against the sandbox's provider side over HTTP: merchants' apps synced with
the provider's tokens, the refresh-token chain kept through crashes and concurrent processes,
refusals failing one app, `apps authorize` from standard input, nothing secret in any output."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from sync import planner
from sync.api.http import Timeouts, new_session
from sync.api.provider import ComponentTokens, ProviderTokens
from sync.apps import AppConfig, Auth, load_apps_file, settings_for
from sync.cli.apps import authorize_app
from sync.db.database import create_engine
from sync.db.vault import PostgresVault, Sealer, new_key
from sync.errors import AuthorizationError, CredentialsError
from sync.pipeline.fleet import FleetApp, Outcome, run_fleet
from sync.pipeline.runs import RunOptions
from sync.sandbox import Faults, SandboxServer
from sync.settings import Secret, Settings
from tests.helpers import (
    Clock,
    MakeSandbox,
    assert_table_is_truth,
    cli_env,
    done_partitions,
    run_cli,
    sandbox_settings,
    wait_until,
)
from tests.test_token_command import FETCH, _toml_list

OPTIONS = RunOptions(kind="backfill", page_size=40, concurrency=3)
KEY = Secret(new_key())


@pytest.fixture
async def shops(make_sandbox: MakeSandbox) -> SandboxServer:
    """Four apps: 1 plain, 2 by a token command, 3 and 4 a provider's merchants (4 without the
    数据分析 grant)."""
    server: SandboxServer = await make_sandbox(
        seed=51, videos=90, tasks=4, creators=9, apps=4, apps_without_capability=frozenset({4})
    )
    return server


def _apps_file(sb: SandboxServer, tmp_path: Path, merchants: list[str]) -> Path:
    """[provider] with its ticket in a file (as the provider's receiver keeps it), and one
    `auth = "provider"` app per merchant."""
    (tmp_path / "ticket").write_text(sb.component_ticket() + "\n")
    lines = [
        "[provider]",
        f'component_appid = "{sb.provider.component_appid}"',
        'component_secret_env = "SBX_COMPONENT_SECRET"',
        'component_ticket_file = "ticket"',
        "",
    ]
    for merchant in merchants:
        lines += ["[[app]]", f'id = "{merchant}"', 'auth = "provider"', ""]
    path = tmp_path / "apps.toml"
    path.write_text("\n".join(lines))
    return path


def _env(sb: SandboxServer) -> dict[str, str]:
    return {"SBX_COMPONENT_SECRET": sb.provider.component_appsecret}


@contextlib.asynccontextmanager
async def _vault(database_url: str) -> AsyncIterator[tuple[AsyncEngine, PostgresVault]]:
    db = create_engine(database_url, pool_size=6)
    try:
        yield db, PostgresVault(db, Sealer(KEY))
    finally:
        await db.dispose()


async def _authorize(sb: SandboxServer, db: AsyncEngine, app: AppConfig, base: Settings) -> None:
    """The merchant grants the provider; its refresh token is seeded as `apps authorize` does."""
    async with new_session(Timeouts()) as session:
        await authorize_app(db, session, base.open_base_url, app, Sealer(KEY), sb.authorize(app.id))


async def _expire_access_tokens(db: AsyncEngine) -> None:
    """As if the stored access tokens had run out: the next use refreshes."""
    async with db.begin() as conn:
        await conn.execute(
            text("UPDATE provider_authorizations SET access_expires_at = now() - interval '1s'")
        )


def _refreshes(sb: SandboxServer, app: str) -> int:
    """The merchant's successful get_auth_token calls (a refused component token, renewed and
    tried again, is not a refresh)."""
    calls = sb.stats(app)["endpoints"].get("get_auth_token", {})
    return int(calls.get("codes", {}).get("0", 0))


async def test_a_fleet_of_plain_command_and_provider_apps_runs_exact(
    engine: AsyncEngine, database_url: str, shops: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """A plain app, a token-command app and two provider merchants in one run: the three with
    the grant equal their truth; the merchant without it fails alone (28001018)."""
    plain, by_command, merchant, no_grant = shops.apps
    script = tmp_path / "token.py"
    script.write_text(FETCH)
    argv = [sys.executable, str(script), shops.base_url, by_command.client_key,
            by_command.client_secret, str(tmp_path / "count")]  # fmt: skip
    path = _apps_file(shops, tmp_path, [merchant.app_id, no_grant.app_id])
    path.write_text(
        path.read_text()
        + f'[[app]]\nid = "{by_command.app_id}"\nauth = "token_command"\n'
        + f"token_command = {_toml_list(argv)}\n"
    )
    apps = load_apps_file(path, _env(shops)).apps
    assert [a.auth for a in apps] == [Auth.PROVIDER, Auth.PROVIDER, Auth.TOKEN_COMMAND]
    base = sandbox_settings(shops, database_url)
    fleet = [FleetApp(plain.app_id, base.replace(app=plain.app_id))]
    fleet += [FleetApp(a.id, settings_for(base, a)) for a in apps]
    dates, now = clock.recent_dates(2), clock()
    async with _vault(database_url) as (db, vault):
        for app in apps[:2]:
            await _authorize(shops, db, app, base)
        result = await run_fleet(
            db, fleet, OPTIONS, planner.plan(dates, now), tokens=ProviderTokens(vault)
        )
    outcomes = {a.app_id: a.outcome for a in result.apps}
    assert outcomes == {
        plain.app_id: Outcome.DONE,
        merchant.app_id: Outcome.DONE,
        no_grant.app_id: Outcome.FAILED,
        by_command.app_id: Outcome.DONE,
    }
    failed = next(a for a in result.apps if a.app_id == no_grant.app_id).result
    assert failed is not None and "28001018" in (failed.error or "")
    for app in (plain, by_command, merchant):
        await assert_table_is_truth(
            engine, shops, dates, now, app_id=app.app_id, app=app.client_key
        )


async def test_a_crash_between_refresh_and_commit_loses_no_refresh_token(
    database_url: str, shops: SandboxServer, tmp_path: Path
) -> None:
    """The platform answered a refresh but the process died before the commit: the stored
    (old) refresh token is still good within the platform's grace, so the next run renews it
    and the chain goes on."""
    merchant = shops.apps[2]
    (app,) = load_apps_file(_apps_file(shops, tmp_path, [merchant.app_id]), _env(shops)).apps
    settings = settings_for(sandbox_settings(shops, database_url), app)

    class Crash(Exception):
        """The process dies: here, between the UPDATE and the COMMIT."""

    class Crashing:
        def __init__(self, stored: Any) -> None:
            self.stored = stored
            self.access_token = stored.access_token
            self.access_seconds_left = stored.access_seconds_left
            self.refresh_token = stored.refresh_token

        async def renewed_authorization(self, **grant: Any) -> None:
            await self.stored.renewed_authorization(**grant)
            raise Crash

    class CrashingVault(PostgresVault):
        @contextlib.asynccontextmanager
        async def merchant(self, app_id: str, component_appid: str) -> AsyncIterator[Any]:
            async with super().merchant(app_id, component_appid) as stored:
                yield Crashing(stored)

    async with _vault(database_url) as (db, vault), new_session(Timeouts()) as session:
        await _authorize(shops, db, app, settings)
        await _expire_access_tokens(db)
        before = _refreshes(shops, merchant.client_key)
        crashing = ProviderTokens(CrashingVault(db, Sealer(KEY)))(settings, session)
        with pytest.raises(Crash):
            await crashing.get()
        assert _refreshes(shops, merchant.client_key) == before + 1  # the platform rotated it
        tokens = ProviderTokens(vault)(settings, session)
        token = await tokens.get()  # the old refresh token, within its grace
        await _expire_access_tokens(db)
        again = ProviderTokens(vault)(settings, session)
        assert await again.get() != token  # and the token it got renews in turn
        assert _refreshes(shops, merchant.client_key) == before + 3


async def test_two_processes_refresh_one_app_once(
    database_url: str, shops: SandboxServer, tmp_path: Path
) -> None:
    """Two processes (engines and token caches of their own) need the same merchant's token at
    the same moment: the row lock lets one refresh; the other finds its access token."""
    merchant = shops.apps[2]
    (app,) = load_apps_file(_apps_file(shops, tmp_path, [merchant.app_id]), _env(shops)).apps
    settings = settings_for(sandbox_settings(shops, database_url), app)
    async with _vault(database_url) as (db, _):
        await _authorize(shops, db, app, settings)
        await _expire_access_tokens(db)
    before = _refreshes(shops, merchant.client_key)

    async def process() -> str:
        async with _vault(database_url) as (_, vault), new_session(Timeouts()) as session:
            return await ProviderTokens(vault)(settings, session).get()

    first, second = await asyncio.gather(process(), process())
    assert first == second
    assert _refreshes(shops, merchant.client_key) == before + 1


async def test_a_refused_refresh_token_fails_only_its_app(
    database_url: str, shops: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """A merchant withdrew its grant: that app fails with a line that says to authorize again;
    the other merchant's run is done."""
    _, other, merchant, _ = shops.apps
    path = _apps_file(shops, tmp_path, [merchant.app_id, other.app_id])
    apps = load_apps_file(path, _env(shops)).apps
    base = sandbox_settings(shops, database_url)
    dates, now = clock.recent_dates(1), clock()
    async with _vault(database_url) as (db, vault):
        for app in apps:
            await _authorize(shops, db, app, base)
        await _expire_access_tokens(db)
        shops.deauthorize(merchant.client_key)
        fleet = [FleetApp(a.id, settings_for(base, a)) for a in apps]
        result = await run_fleet(
            db, fleet, OPTIONS, planner.plan(dates, now), tokens=ProviderTokens(vault)
        )
    by_app = {a.app_id: a for a in result.apps}
    assert by_app[other.app_id].outcome is Outcome.DONE
    refused = by_app[merchant.app_id]
    assert refused.outcome is Outcome.FAILED
    assert isinstance(refused.error, AuthorizationError), refused
    assert f"apps authorize {merchant.app_id}" in str(refused.error)


@pytest.mark.wall_clock  # the CLI runs in a subprocess
async def test_apps_authorize_reads_stdin_and_nothing_secret_shows(
    database_url: str, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    """`apps authorize` takes the refresh token on stdin and stores it sealed; `apps list` shows
    it stored; a nightly of the merchant syncs with it; without the key, or with another app's
    token, one line and exit 2. No output and no table holds anything the provider issued."""
    sb: SandboxServer = await make_sandbox(seed=52, videos=40, tasks=3, creators=5, apps=3)
    merchant, stranger = sb.apps[1], sb.apps[2]
    path = _apps_file(sb, tmp_path, [merchant.app_id])
    env = cli_env(sb, database_url, TASKBOX_SECRET_KEY=KEY.reveal(), **_env(sb))
    outputs: list[str] = []

    async def cli(*args: str, stdin: str | None = None, **extra: str) -> Any:
        result = await run_cli(*args, "--apps", str(path), env={**env, **extra}, stdin=stdin)
        outputs.append(result.stdout + result.stderr)
        return result

    listed = await cli("apps", "list")
    assert listed.status == 0 and "no: run apps authorize" in listed.stdout
    no_key = await cli("apps", "authorize", merchant.app_id, stdin="x", TASKBOX_SECRET_KEY="")
    assert no_key.status == 2 and "TASKBOX_SECRET_KEY" in no_key.stderr
    wrong = await cli("apps", "authorize", merchant.app_id, stdin=sb.authorize(stranger.app_id))
    assert wrong.status == 2 and "nothing stored" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    done = await cli("apps", "authorize", merchant.app_id, stdin=sb.authorize(merchant.app_id))
    assert done.status == 0, done.stderr
    listed = await cli("apps", "list")
    assert listed.status == 0 and " yes " in listed.stdout
    nightly = await cli("nightly", "--lookback-days", "1", "--page-size", "50")
    assert nightly.status == 0, nightly.stderr
    task = sb.exclusive_task_ids_of(merchant.client_key)[0]
    talents = await cli("talents", "add", "--task-id", str(task), "new_creator_1")
    assert talents.status == 0, talents.stderr + talents.stdout
    roster = sb.roster(task, app=merchant.client_key)
    assert "new_creator_1" in {m.douyin_id for m in roster}
    async with _vault(database_url) as (db, _), db.connect() as conn:
        tables = {}
        audit = await conn.execute(text("SELECT app_id, third_appid FROM talent_operations"))
        assert audit.all() == [(merchant.app_id, merchant.app_id)]
        for table in ("provider_authorizations", "provider_components", "sync_runs"):
            rows = await conn.execute(text(f"SELECT t::text FROM {table} t"))
            tables[table] = "\n".join(r[0] for r in rows)
    issued = sb.issued_secrets()
    assert len(issued) > 5
    for where, value in [*tables.items(), *enumerate(outputs)]:
        for secret in [*issued, KEY.reveal()]:
            assert secret not in value, f"{where} holds a secret"


async def test_a_revoked_authorizer_token_is_renewed_mid_run(
    engine: AsyncEngine, database_url: str, shops: SandboxServer, clock: Clock, tmp_path: Path
) -> None:
    """The platform refuses the merchant's access token mid-run (28001003): it is renewed once
    through the vault (a new refresh token stored) and the run ends exact."""
    merchant = shops.apps[2]
    (app,) = load_apps_file(_apps_file(shops, tmp_path, [merchant.app_id]), _env(shops)).apps
    settings = settings_for(sandbox_settings(shops, database_url), app)
    dates, now = clock.recent_dates(3), clock()
    async with _vault(database_url) as (db, vault):
        await _authorize(shops, db, app, settings)
        before = _refreshes(shops, merchant.client_key)
        # Slow answers and small pages: many requests remain once the first partition is done
        # (with 0.05-0.1 s answers a busy machine could see the run end before the revocation).
        shops.sandbox.set_faults(Faults(latency_min=0.2, latency_max=0.3))
        run = asyncio.create_task(
            run_fleet(
                db,
                [FleetApp(app.id, settings)],
                dataclasses.replace(OPTIONS, page_size=10),
                planner.plan(dates, now),
                tokens=ProviderTokens(vault),
            )
        )

        async def started() -> bool:
            return run.done() or await done_partitions(engine) > 0

        await wait_until(started, what="the first partition")
        shops.sandbox.revoke_tokens()
        result = await asyncio.wait_for(run, 60)
    assert [a.outcome for a in result.apps] == [Outcome.DONE]
    assert _refreshes(shops, merchant.client_key) == before + 1
    await assert_table_is_truth(
        engine, shops, dates, now, app_id=merchant.app_id, app=merchant.client_key
    )


async def test_the_ticket_is_read_when_a_component_token_is_needed(
    database_url: str, shops: SandboxServer, tmp_path: Path
) -> None:
    """The ticket file is read at each component-token fetch: a ticket two rotations old is
    refused with one line (no secret in it); once the receiver rewrote the file, it works."""
    path = _apps_file(shops, tmp_path, [shops.apps[2].app_id])
    (app,) = load_apps_file(path, _env(shops)).apps
    assert app.provider is not None
    shops.rotate_ticket()
    shops.rotate_ticket()
    async with _vault(database_url) as (_, vault), new_session(Timeouts()) as session:
        component = ComponentTokens(app.provider, vault, shops.base_url)
        with pytest.raises(CredentialsError) as info:
            await component.get(session)
        message = str(info.value)
        assert "component token refused" in message and "\n" not in message
        assert not any(secret in message for secret in shops.issued_secrets())
        (tmp_path / "ticket").write_text(shops.component_ticket())
        assert await component.get(session) and component.fetches == 1


@pytest.mark.wall_clock  # the CLI runs in subprocesses
async def test_two_cli_processes_need_one_merchants_token_and_it_is_refreshed_once(
    database_url: str, make_sandbox: MakeSandbox, tmp_path: Path
) -> None:
    """Two `talents list` processes of one provider merchant start together with its stored
    access token expired: both succeed, the platform sees one refresh, and the refresh token
    stored is the newest (the chain goes on from it)."""
    sb: SandboxServer = await make_sandbox(seed=53, videos=30, tasks=3, creators=5, apps=2)
    merchant = sb.apps[1]
    path = _apps_file(sb, tmp_path, [merchant.app_id])
    (app,) = load_apps_file(path, _env(sb)).apps
    async with _vault(database_url) as (db, _):
        await _authorize(sb, db, app, settings_for(sandbox_settings(sb, database_url), app))
        await _expire_access_tokens(db)
    before = _refreshes(sb, merchant.client_key)
    env = cli_env(sb, database_url, TASKBOX_SECRET_KEY=KEY.reveal(), **_env(sb))
    task = str(sb.exclusive_task_ids_of(merchant.client_key)[0])
    args = ("talents", "list", "--task-id", task, "--apps", str(path))
    first, second = await asyncio.gather(run_cli(*args, env=env), run_cli(*args, env=env))
    assert first.status == 0 and second.status == 0, (first.stderr, second.stderr)
    assert _refreshes(sb, merchant.client_key) == before + 1
    async with _vault(database_url) as (db, vault), new_session(Timeouts()) as session:
        await _expire_access_tokens(db)
        settings = settings_for(sandbox_settings(sb, database_url), app)
        assert await ProviderTokens(vault)(settings, session).get()  # the stored one works
    assert _refreshes(sb, merchant.client_key) == before + 2
