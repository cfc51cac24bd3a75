"""Token endpoints: /oauth/client_token/, /oauth/stable_client_token/ and /api/apps/v2/token."""

from __future__ import annotations

import msgspec
from aiohttp import web

from sync.sandbox.codes import (
    APP_BAD_APPID,
    APP_BAD_GRANT,
    APP_BAD_SECRET,
    APP_SYSTEM_ERROR,
    OAUTH_BAD_PARAM,
    OAUTH_BAD_SECRET,
    OAUTH_RATE_LIMITED,
    OAUTH_UNKNOWN_KEY,
    OK,
    Reply,
    app_error,
    dumps,
    oauth_error,
)
from sync.sandbox.days import log_id
from sync.sandbox.delivery import deliver
from sync.sandbox.keys import SANDBOX
from sync.sandbox.state import Sandbox

GRANT = "client_credential"


def _decode(raw: bytes) -> object:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def client_token_reply(sandbox: Sandbox, raw: bytes, *, stable: bool) -> Reply:
    """The answer to a client_token (or stable_client_token) call."""
    now = sandbox.now()
    logid = log_id(now)
    if sandbox.token_window.hit(now):
        return oauth_error(OAUTH_RATE_LIMITED, logid, now)
    body = _decode(raw)
    if not isinstance(body, dict):
        return oauth_error(OAUTH_BAD_PARAM, logid, now)
    key, secret, grant = (body.get(k) for k in ("client_key", "client_secret", "grant_type"))
    if not (isinstance(key, str) and isinstance(secret, str) and grant == GRANT) or not key:
        return oauth_error(OAUTH_BAD_PARAM, logid, now)
    config = sandbox.config
    if key != config.client_key:
        return oauth_error(OAUTH_UNKNOWN_KEY, logid, now)
    if secret != config.client_secret:
        return oauth_error(OAUTH_BAD_SECRET, logid, now)
    store = sandbox.client_tokens
    current = store.current() if stable else None
    token, expires_in = current or store.issue(sandbox.token_lifetime())
    data = {"access_token": token, "description": "", "error_code": 0, "expires_in": expires_in}
    return Reply(dumps({"data": data, "message": "success"}), OK)


def app_token_reply(sandbox: Sandbox, raw: bytes) -> Reply:
    """The answer to a mini-app token call."""
    body = _decode(raw)
    if not isinstance(body, dict):
        return app_error(APP_SYSTEM_ERROR)
    config = sandbox.config
    if body.get("appid") != config.app_id:
        return app_error(APP_BAD_APPID)
    if body.get("secret") != config.app_secret:
        return app_error(APP_BAD_SECRET)
    if body.get("grant_type") != GRANT:
        return app_error(APP_BAD_GRANT)
    token, expires_in = sandbox.app_tokens.issue(sandbox.token_lifetime())
    data = {"access_token": token, "expires_in": expires_in}
    return Reply(dumps({"err_no": 0, "err_tips": "success", "data": data}), OK)


async def client_token(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    reply = client_token_reply(sandbox, await request.read(), stable=False)
    return await deliver(request, sandbox, "client_token", reply)


async def stable_client_token(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    reply = client_token_reply(sandbox, await request.read(), stable=True)
    return await deliver(request, sandbox, "stable_client_token", reply)


async def app_token(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    reply = app_token_reply(sandbox, await request.read())
    return await deliver(request, sandbox, "app_token", reply)
