"""Token endpoints: /oauth/client_token/, /oauth/stable_client_token/ and /api/apps/v2/token.

A client-token request counts against the token rate limit of the app whose client_key it sends
(app 1's when it names no app), before anything else is checked; the token it gets serves that
app only. A mini-app token likewise belongs to the app whose appid it sends.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from sync.sandbox.apps import AppState
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


def _field(body: object, name: str) -> object:
    return body.get(name) if isinstance(body, dict) else None


def client_token_app(sandbox: Sandbox, body: object) -> AppState:
    """The app a client-token request counts against: its client_key's, else app 1."""
    return sandbox.app_with_client_key(_field(body, "client_key")) or sandbox.app()


def client_token_reply(sandbox: Sandbox, app: AppState, body: object, *, stable: bool) -> Reply:
    """The answer to a client_token (or stable_client_token) call counted against `app`."""
    now = sandbox.now()
    logid = log_id(now)
    if app.token_window.hit(now):
        return oauth_error(OAUTH_RATE_LIMITED, logid, now)
    if not isinstance(body, dict):
        return oauth_error(OAUTH_BAD_PARAM, logid, now)
    key, secret, grant = (body.get(k) for k in ("client_key", "client_secret", "grant_type"))
    if not (isinstance(key, str) and isinstance(secret, str) and grant == GRANT) or not key:
        return oauth_error(OAUTH_BAD_PARAM, logid, now)
    if key != app.credentials.client_key:
        return oauth_error(OAUTH_UNKNOWN_KEY, logid, now)
    if secret != app.credentials.client_secret:
        return oauth_error(OAUTH_BAD_SECRET, logid, now)
    store = app.client_tokens
    current = store.current() if stable else None
    token, expires_in = current or store.issue(sandbox.token_lifetime())
    data = {"access_token": token, "description": "", "error_code": 0, "expires_in": expires_in}
    return Reply(dumps({"data": data, "message": "success"}), OK)


def app_token_reply(sandbox: Sandbox, app: AppState | None, body: object) -> Reply:
    """The answer to a mini-app token call for `app` (None: its appid names no app)."""
    if not isinstance(body, dict):
        return app_error(APP_SYSTEM_ERROR)
    if app is None:
        return app_error(APP_BAD_APPID)
    if body.get("secret") != app.credentials.app_secret:
        return app_error(APP_BAD_SECRET)
    if body.get("grant_type") != GRANT:
        return app_error(APP_BAD_GRANT)
    token, expires_in = app.app_tokens.issue(sandbox.token_lifetime())
    data = {"access_token": token, "expires_in": expires_in}
    return Reply(dumps({"err_no": 0, "err_tips": "success", "data": data}), OK)


async def client_token(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    body = _decode(await request.read())
    app = client_token_app(sandbox, body)
    reply = client_token_reply(sandbox, app, body, stable=False)
    return await deliver(request, sandbox, app, "client_token", reply)


async def stable_client_token(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    body = _decode(await request.read())
    app = client_token_app(sandbox, body)
    reply = client_token_reply(sandbox, app, body, stable=True)
    return await deliver(request, sandbox, app, "stable_client_token", reply)


async def app_token(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    body = _decode(await request.read())
    app = sandbox.app_with_app_id(_field(body, "appid"))
    reply = app_token_reply(sandbox, app, body)
    return await deliver(request, sandbox, app or sandbox.app(), "app_token", reply)
