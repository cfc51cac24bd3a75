"""developer.toutiao.com update_orient_talents: older envelope {error, message, log_id, data}.

Order of checks: the body is a JSON object (4001015); access_token present (5501) and valid
(5502) for the app it was issued to; appid is that app's (5503); task_id/op_type/douyin_ids
(4001015, 5592); the task is one of that app's exclusive tasks (5442) and not terminated (5591).
Per-creator outcomes come back with error 0, the verdict in each update_result.

A service provider calling for a merchant sends `third_appid`, the merchant's mini-app id; then
access_token must be a live authorizer access token of that merchant (5502 otherwise, a
third_appid naming no app included) and appid the merchant's mini-app id too (5503); the roster
changed is the merchant's. How the platform authenticates this case is our inference from the
talents page and the provider guide, not a captured contract. A `third_appid` of null or "" is
taken as absent; one that is not a string answers 4001015.
"""

from __future__ import annotations

from dataclasses import replace

import msgspec
from aiohttp import web

from sync.sandbox.apps import AppState
from sync.sandbox.codes import (
    OK,
    TALENT_APPID_MISMATCH,
    TALENT_BAD_PARAM,
    TALENT_BAD_TOKEN,
    TALENT_NO_TOKEN,
    TALENT_UNAVAILABLE,
    ApiError,
    Reply,
    dumps,
    talent_error,
)
from sync.sandbox.days import log_id
from sync.sandbox.delivery import deliver
from sync.sandbox.faults import NO_FAULT
from sync.sandbox.keys import SANDBOX
from sync.sandbox.rosters import parse_update
from sync.sandbox.state import Sandbox
from sync.sandbox.tokens import TokenState

_NOT_JSON = object()


def _decode(raw: bytes) -> object:
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return _NOT_JSON


def token_of(body: object) -> object:
    """The access_token a body sends (None when it sends none)."""
    return body.get("access_token") if isinstance(body, dict) else None


def _owner(sandbox: Sandbox, app: AppState, body: dict[str, object]) -> AppState | str | None:
    """The app whose roster the body may change when its token is valid: `app` (its token's)
    without third_appid, else the merchant third_appid names; None when the token is not valid
    for it; a message when third_appid is malformed."""
    token, third = body.get("access_token"), body.get("third_appid")
    if not isinstance(token, str):
        return None
    if third is None or third == "":
        return app if app.app_tokens.check(token) is TokenState.VALID else None
    if not isinstance(third, str):
        return "third_appid must be a string"
    merchant = sandbox.app_with_app_id(third)
    if merchant is None or merchant.authorizer_tokens.check(token) is not TokenState.VALID:
        return None
    return merchant


def update_talents_reply(sandbox: Sandbox, app: AppState, body: object, logid: str) -> Reply:
    """The answer to an update_orient_talents body whose token names `app`."""
    if body is _NOT_JSON:
        return talent_error(TALENT_BAD_PARAM, logid, "body is not valid JSON")
    if not isinstance(body, dict):
        return talent_error(TALENT_BAD_PARAM, logid, "body must be a JSON object")
    token = body.get("access_token")
    if token is None or token == "":
        return talent_error(TALENT_NO_TOKEN, logid)
    owner = _owner(sandbox, app, body)
    if isinstance(owner, str):
        return talent_error(TALENT_BAD_PARAM, logid, owner)
    if owner is None:
        return talent_error(TALENT_BAD_TOKEN, logid)
    app = owner
    appid = body.get("appid")
    if not isinstance(appid, str) or not appid:
        return talent_error(TALENT_BAD_PARAM, logid, "appid is required")
    if appid != app.credentials.app_id:
        return talent_error(TALENT_APPID_MISMATCH, logid)
    request = parse_update(body)
    if isinstance(request, ApiError):
        return talent_error(request.code, logid, request.message)
    problem = app.rosters.check_task(request.task_id)
    if problem is not None:
        return talent_error(problem.code, logid, problem.message)
    results = app.rosters.update(request)
    data = {"update_info_list": results}
    return Reply(dumps({"error": 0, "message": "success", "log_id": logid, "data": data}), OK)


async def update_orient_talents(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    decision = sandbox.faults.decide() if sandbox.faults.faults.apply_to_talents else NO_FAULT
    logid = log_id(sandbox.now())
    body = _decode(await request.read())
    app = sandbox.app_of_token(token_of(body))
    if decision.err_no is not None:  # "Service Unavailable": nothing is applied
        reply = talent_error(TALENT_UNAVAILABLE, logid)
        decision = replace(decision, err_no=None)
    else:
        reply = update_talents_reply(sandbox, app, body, logid)
    return await deliver(request, sandbox, app, "update_orient_talents", reply, decision=decision)
