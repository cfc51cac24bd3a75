"""Tokens are cached, refreshed once for all concurrent callers, and never fetched per request."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from sync.api.tokens import AppTokenProvider, ClientTokenProvider, StaticToken
from sync.errors import CredentialsError
from sync.sandbox import SandboxServer
from sync.settings import Secret
from tests.helpers import MakeSandbox


@pytest.fixture
async def sandbox(make_sandbox: MakeSandbox) -> SandboxServer:
    """A sandbox with a tiny catalog: only its token endpoints are used."""
    return await make_sandbox(videos=20)


def _client_tokens(sb: SandboxServer, session: aiohttp.ClientSession, secret: str | None = None):
    cfg = sb.config
    return ClientTokenProvider(
        session, sb.base_url, cfg.client_key, Secret(secret or cfg.client_secret)
    )


async def test_concurrent_gets_fetch_once(
    sandbox: SandboxServer, session: aiohttp.ClientSession
) -> None:
    """Fifty concurrent callers share one token fetch."""
    tokens = _client_tokens(sandbox, session)
    values = await asyncio.gather(*(tokens.get() for _ in range(50)))
    assert len(set(values)) == 1
    assert tokens.fetches == 1
    assert sandbox.stats()["endpoints"]["client_token"]["calls"] == 1


async def test_invalidate_refreshes_once(
    sandbox: SandboxServer, session: aiohttp.ClientSession
) -> None:
    """Many requests reporting the same bad token cause one refresh; a stale report is ignored."""
    tokens = _client_tokens(sandbox, session)
    old = await tokens.get()
    await asyncio.gather(*(tokens.invalidate(old) for _ in range(10)))
    new_values = await asyncio.gather(*(tokens.get() for _ in range(10)))
    assert len(set(new_values)) == 1 and new_values[0] != old
    await tokens.invalidate(old)  # a late report about the old token changes nothing
    assert await tokens.get() == new_values[0]
    assert tokens.fetches == 2


async def test_wrong_secret_is_credentials_error(
    sandbox: SandboxServer, session: aiohttp.ClientSession
) -> None:
    """A refused key/secret (10013) names the settings and carries the code, not the secret."""
    tokens = _client_tokens(sandbox, session, secret="not-the-secret-123")
    with pytest.raises(CredentialsError) as info:
        await tokens.get()
    assert info.value.err_no == 10013
    assert "DOUYIN_CLIENT_SECRET" in str(info.value)
    assert "not-the-secret-123" not in str(info.value) + repr(info.value)


async def test_app_token(sandbox: SandboxServer, session: aiohttp.ClientSession) -> None:
    """The mini-app token comes from /api/apps/v2/token and is cached."""
    cfg = sandbox.config
    tokens = AppTokenProvider(session, sandbox.base_url, cfg.app_id, Secret(cfg.app_secret))
    assert await tokens.get() == await tokens.get()
    assert tokens.fetches == 1
    bad = AppTokenProvider(session, sandbox.base_url, cfg.app_id, Secret("wrong-app-secret"))
    with pytest.raises(CredentialsError) as info:
        await bad.get()
    assert info.value.err_no == 40017


async def test_static_token_cannot_refresh() -> None:
    """A token given in DOUYIN_ACCESS_TOKEN is used as is; when refused, the message says so."""
    tokens = StaticToken(Secret("clt.given"), endpoint="query_task_video_daily_data")
    assert await tokens.get() == "clt.given"
    with pytest.raises(CredentialsError, match="DOUYIN_ACCESS_TOKEN"):
        await tokens.invalidate("clt.given")
