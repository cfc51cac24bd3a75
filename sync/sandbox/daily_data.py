"""open.douyin.com task endpoints: query_task_video_daily_data and query_task_info.

Order of checks for daily data: every request is recorded in its app's 1-second window first
(rejected ones too; the app is its token's); then throttle storm / over 10 in the window
(28003018); the access-token header (28001003 unknown, 28001008 expired); the app's capability
(28001018); the body (see validation). An app's token reads that app's data only. The token is
the app's client token, or an authorizer token the service provider got for it as a merchant:
the same data, the same window, the same capability.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from sync.sandbox.apps import AppState
from sync.sandbox.codes import (
    INVALID_PARAM,
    NO_CAPABILITY,
    OK,
    THROTTLED,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    ApiError,
    Reply,
    daily_error,
    dumps,
)
from sync.sandbox.days import log_id
from sync.sandbox.delivery import deliver
from sync.sandbox.faults import NO_FAULT
from sync.sandbox.keys import SANDBOX
from sync.sandbox.state import Sandbox
from sync.sandbox.tokens import TokenState
from sync.sandbox.validation import parse_daily_query, parse_task_info_query

FOOTER = b"]}}"


def _header(logid: str) -> bytes:
    return (
        b'{"err_no":0,"err_msg":"success","log_id":"'
        + logid.encode()
        + b'","data":{"video_daily_data_list":['
    )


def check_client_token(app: AppState, token: str | None) -> int | None:
    """The err_no for a bad access-token header, or None when it is valid (for `app`): one of
    its client tokens or of its authorizer tokens."""
    if not token:
        return TOKEN_INVALID
    state = app.client_tokens.check(token)
    if state is TokenState.INVALID:
        state = app.authorizer_tokens.check(token)
    if state is TokenState.EXPIRED:
        return TOKEN_EXPIRED
    if state is TokenState.INVALID:
        return TOKEN_INVALID
    return None


def _decode(raw: bytes) -> object | ApiError:
    try:
        body: object = msgspec.json.decode(raw)
        return body
    except msgspec.DecodeError:
        return ApiError(INVALID_PARAM, "body is not valid JSON")


def daily_data_reply(
    sandbox: Sandbox,
    app: AppState,
    token: str | None,
    raw: bytes,
    *,
    now: float,
    throttled: bool,
    logid: str,
) -> Reply:
    """The answer to one daily-data request of `app` (its token's) that arrived at `now`."""
    if throttled or sandbox.faults.storm(now):
        return daily_error(THROTTLED, logid)
    bad_token = check_client_token(app, token)
    if bad_token is not None:
        return daily_error(bad_token, logid)
    if not app.capability:
        return daily_error(NO_CAPABILITY, logid)
    body = _decode(raw)
    query = body if isinstance(body, ApiError) else parse_daily_query(body, now)
    if isinstance(query, ApiError):
        return daily_error(query.code, logid, query.message)
    page = app.dataset.page(
        query.billing_date,
        start_ts=query.start_ts,
        end_ts=query.end_ts,
        page_num=query.page_num,
        page_size=query.page_size,
        douyin_id=query.douyin_id,
        agency_key=query.agency_client_key,
    )
    if len(page.pieces) == 1:
        rows: bytes | memoryview = page.pieces[0]
    else:
        rows = b",".join(page.pieces)
    return Reply(b"".join((_header(logid), rows, FOOTER)), OK, rows=page.count)


async def query_task_video_daily_data(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    now = sandbox.now()
    token = request.headers.get("access-token")
    app = sandbox.app_of_token(token)  # the platform counts 10 a second per app
    throttled = app.daily_window.hit(now)
    decision = sandbox.faults.decide()
    logid = log_id(now)
    raw = await request.read()
    reply = daily_data_reply(sandbox, app, token, raw, now=now, throttled=throttled, logid=logid)
    return await deliver(
        request,
        sandbox,
        app,
        "daily_data",
        reply,
        decision=decision,
        fault_error=lambda code: daily_error(code, logid),
        log_id=logid,
    )


def task_info_reply(app: AppState, token: str | None, raw: bytes, logid: str) -> Reply:
    bad_token = check_client_token(app, token)
    if bad_token is not None:
        return daily_error(bad_token, logid)
    body = _decode(raw)
    query = body if isinstance(body, ApiError) else parse_task_info_query(body)
    if isinstance(query, ApiError):
        return daily_error(query.code, logid, query.message)
    task = app.rosters.task_json(query.task_id)
    tasks = [] if task is None else [task]
    first = (query.page_num - 1) * query.page_size
    data = {"task_list": tasks[first : first + query.page_size]}
    return Reply(dumps({"err_no": 0, "err_msg": "success", "log_id": logid, "data": data}), OK)


async def query_task_info(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    now = sandbox.now()
    decision = sandbox.faults.decide() if sandbox.faults.faults.apply_to_talents else NO_FAULT
    logid = log_id(now)
    token = request.headers.get("access-token")
    app = sandbox.app_of_token(token)
    reply = task_info_reply(app, token, await request.read(), logid)
    return await deliver(
        request,
        sandbox,
        app,
        "query_task_info",
        reply,
        decision=decision,
        fault_error=lambda code: daily_error(code, logid),
        log_id=logid,
    )
