"""Fixtures of the sandbox tests: their catalog by default, and an HTTP helper bound to a
sandbox. The clock they drive (`clock`, frozen or advanced at will) and the HTTP session come
from tests/conftest.py."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from sync.sandbox import SandboxServer
from tests.helpers import MakeSandbox

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAILY = "/api/match/v2/taskbox/query_task_video_daily_data/"
TALENTS = "/api/apps/taskbox/update_orient_talents/"
TASK_INFO = "/api/match/v2/taskbox/query_task_info/"
DAY = 86400


@dataclass
class Resp:
    status: int
    raw: bytes
    content_type: str

    @property
    def json(self) -> Any:
        """The body parsed with exact decimals (ints stay exact ints)."""
        return json.loads(self.raw, parse_float=Decimal)


class Api:
    """Small HTTP helper bound to one sandbox and one client session."""

    DAILY = DAILY
    TALENTS = TALENTS
    TASK_INFO = TASK_INFO
    DAY = DAY

    def __init__(self, session: aiohttp.ClientSession, server: SandboxServer) -> None:
        self.session = session
        self.server = server

    @property
    def now(self) -> int:
        return int(self.server.config.clock())

    @property
    def yesterday(self) -> str:
        today = dt.datetime.fromtimestamp(self.server.config.clock(), SHANGHAI).date()
        return (today - dt.timedelta(days=1)).isoformat()

    async def post(
        self, path: str, body: Any = None, *, raw: bytes | None = None, headers: Any = None
    ) -> Resp:
        data = raw if raw is not None else json.dumps(body).encode()
        hdrs = {"content-type": "application/json", **(headers or {})}
        async with self.session.post(self.server.base_url + path, data=data, headers=hdrs) as r:
            return Resp(r.status, await r.read(), r.content_type)

    async def get(self, path: str) -> Resp:
        async with self.session.get(self.server.base_url + path) as r:
            return Resp(r.status, await r.read(), r.content_type)

    def credentials(self, **override: Any) -> dict[str, Any]:
        config = self.server.config
        body: dict[str, Any] = {
            "client_key": config.client_key,
            "client_secret": config.client_secret,
            "grant_type": "client_credential",
        }
        body.update(override)
        return body

    async def client_token(self, *, stable: bool = False, **override: Any) -> Resp:
        path = "/oauth/stable_client_token/" if stable else "/oauth/client_token/"
        return await self.post(path, self.credentials(**override))

    async def token(self) -> str:
        resp = await self.client_token()
        token: str = resp.json["data"]["access_token"]
        return token

    async def app_token(self) -> str:
        config = self.server.config
        body = {
            "appid": config.app_id,
            "secret": config.app_secret,
            "grant_type": "client_credential",
        }
        resp = await self.post("/api/apps/v2/token", body)
        token: str = resp.json["data"]["access_token"]
        return token

    def daily_body(self, **fields: Any) -> dict[str, Any]:
        now = int(self.server.config.clock())
        body: dict[str, Any] = {
            "billing_date": self.yesterday,
            "page_num": 1,
            "page_size": 100,
            "video_publish_start_time": now - 30 * DAY,
            "video_publish_end_time": now,
        }
        body.update(fields)
        return {k: v for k, v in body.items() if v is not ...}

    async def daily(self, token: str | None, **fields: Any) -> Resp:
        headers = {} if token is None else {"access-token": token}
        return await self.post(DAILY, self.daily_body(**fields), headers=headers)

    async def talents(self, token: str, **fields: Any) -> Resp:
        body: dict[str, Any] = {"access_token": token, "appid": self.server.config.app_id}
        body.update(fields)
        return await self.post(TALENTS, {k: v for k, v in body.items() if v is not ...})


@pytest.fixture
def make_sandbox(make_sandbox: MakeSandbox) -> MakeSandbox:
    """tests/conftest.py's factory with this catalog by default: seed 7, 300 videos, 8 tasks, 40
    creators (the clock is the test's `clock`)."""
    return functools.partial(make_sandbox, seed=7, videos=300, tasks=8, creators=40)


@pytest.fixture
async def sandbox(make_sandbox: MakeSandbox) -> SandboxServer:
    """A live sandbox on 127.0.0.1 (seed 7, 300 videos) whose clock is the `clock` fixture."""
    return await make_sandbox()


@pytest.fixture
def api(session: aiohttp.ClientSession, sandbox: SandboxServer) -> Api:
    """HTTP helper for the default `sandbox`."""
    return Api(session, sandbox)


@pytest.fixture
def make_api(session: aiohttp.ClientSession) -> Callable[[SandboxServer], Api]:
    """HTTP helper for a sandbox made with `make_sandbox`."""
    return lambda server: Api(session, server)
