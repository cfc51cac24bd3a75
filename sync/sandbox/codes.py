"""The platform's error codes and texts, and the JSON envelopes each API family answers with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

# query_task_video_daily_data / query_task_info (open.douyin.com, {err_no, err_msg, log_id, data})
OK = 0
BUSY = 28001005
NETWORK = 28001006
INVALID_PARAM = 28001007
TOKEN_EXPIRED = 28001008
TOKEN_INVALID = 28001003
NO_CAPABILITY = 28001018
THROTTLED = 28003018
START_TOO_EARLY = 28013009
PAGE_TOO_LARGE = 28013010

DAILY_MESSAGES = {
    BUSY: "系统内部错误,请重试",
    NETWORK: "网络调用错误,请重试",
    INVALID_PARAM: "参数不合法",
    TOKEN_EXPIRED: "access_token已过期",
    TOKEN_INVALID: "access_token无效",
    NO_CAPABILITY: "应用未获得该能力",
    THROTTLED: "请求频率过高",
    START_TOO_EARLY: "开始时间不能早于3个月",
    PAGE_TOO_LARGE: "单页数量不能超过10000",
}

# /oauth/client_token/ ({data: {error_code, description}, message, extra})
OAUTH_BAD_PARAM = 10002
OAUTH_UNKNOWN_KEY = 10003
OAUTH_BAD_SECRET = 10013
OAUTH_RATE_LIMITED = 10020

OAUTH_MESSAGES = {
    OAUTH_BAD_PARAM: "参数不合法",
    OAUTH_UNKNOWN_KEY: "client_key不存在",
    OAUTH_BAD_SECRET: "client_key或client_secret错误",
    OAUTH_RATE_LIMITED: "请求过于频繁,请稍后再试",
}

# /api/apps/v2/token ({err_no, err_tips, data})
APP_SYSTEM_ERROR = -1
APP_BAD_APPID = 40015
APP_BAD_SECRET = 40017
APP_BAD_GRANT = 40020

APP_MESSAGES = {
    APP_SYSTEM_ERROR: "system error",
    APP_BAD_APPID: "bad appid",
    APP_BAD_SECRET: "bad secret",
    APP_BAD_GRANT: "bad grant_type",
}

# update_orient_talents (developer.toutiao.com, {error, message, log_id, data})
TALENT_NO_TOKEN = 5501
TALENT_BAD_TOKEN = 5502
TALENT_APPID_MISMATCH = 5503
TALENT_NO_TASK = 5442
TALENT_TASK_TERMINATED = 5591
TALENT_BAD_COUNT = 5592
TALENT_UNAVAILABLE = 4001010
TALENT_BAD_PARAM = 4001015

TALENT_MESSAGES = {
    TALENT_NO_TOKEN: "accessToken不存在",
    TALENT_BAD_TOKEN: "accessToken不合法",
    TALENT_APPID_MISMATCH: "appID与token不一致",
    TALENT_NO_TASK: "任务不存在",
    TALENT_TASK_TERMINATED: "任务已终止,请重新创建",
    TALENT_BAD_COUNT: "操作达人数量不合法,请调整后重试",
    TALENT_UNAVAILABLE: "Service Unavailable",
    TALENT_BAD_PARAM: "Request Paramter Error",
}

# Service providers (服务商). The component token (/openapi/v2/auth/tp/token/, {errno, message})
# answers the codes the provider guide lists for its V1 twin, whose parameters are the same.
TP_BAD_PARAM = 40001
TP_UNKNOWN_COMPONENT = 40003
TP_BAD_TICKET = 40037
TP_BAD_COMPONENT_SECRET = 40038
# get_auth_token V2 ({err_no, err_msg, log_id, data}): a missing or refused component token (the
# access-token header) answers 28001003/28001008 as on the other open.douyin.com V2 calls; the
# rest are the V1 refresh page's codes, except 40022, the sandbox's own choice (the docs give no
# code for a bad authorization code).
TP_MISSING_PARAM = 40002
REFRESH_TOKEN_INVALID = 40021
AUTH_CODE_INVALID = 40022
TP_BAD_GRANT = 40040

TP_MESSAGES = {
    TP_BAD_PARAM: "参数错误",
    TP_MISSING_PARAM: "缺少参数",
    TP_UNKNOWN_COMPONENT: "找不到相关第三方小程序应用",
    TP_BAD_TICKET: "无效的 ticket",
    TP_BAD_COMPONENT_SECRET: "无效的 secret",
    REFRESH_TOKEN_INVALID: "authorizer_refresh_token 不正确或者已过期",
    AUTH_CODE_INVALID: "authorization_code 不正确、已使用或者已过期",
    TP_BAD_GRANT: "无效的 grant_type",
    TOKEN_EXPIRED: DAILY_MESSAGES[TOKEN_EXPIRED],
    TOKEN_INVALID: DAILY_MESSAGES[TOKEN_INVALID],
}

REASONS = {
    BUSY: "busy",
    NETWORK: "network_error",
    INVALID_PARAM: "invalid_param",
    TOKEN_EXPIRED: "token_expired",
    TOKEN_INVALID: "token_invalid",
    NO_CAPABILITY: "no_capability",
    THROTTLED: "throttled",
    START_TOO_EARLY: "start_too_early",
    PAGE_TOO_LARGE: "page_size_too_large",
    OAUTH_BAD_PARAM: "bad_parameter",
    OAUTH_UNKNOWN_KEY: "unknown_client_key",
    OAUTH_BAD_SECRET: "bad_client_secret",
    OAUTH_RATE_LIMITED: "token_rate_limited",
    APP_SYSTEM_ERROR: "app_token_system_error",
    APP_BAD_APPID: "bad_appid",
    APP_BAD_SECRET: "bad_app_secret",
    APP_BAD_GRANT: "bad_grant_type",
    TALENT_NO_TOKEN: "token_missing",
    TALENT_BAD_TOKEN: "token_invalid",
    TALENT_APPID_MISMATCH: "appid_mismatch",
    TALENT_NO_TASK: "task_not_found",
    TALENT_TASK_TERMINATED: "task_terminated",
    TALENT_BAD_COUNT: "talent_count",
    TALENT_UNAVAILABLE: "busy",
    TALENT_BAD_PARAM: "invalid_param",
    TP_BAD_PARAM: "tp_bad_param",
    TP_MISSING_PARAM: "tp_missing_param",
    TP_UNKNOWN_COMPONENT: "unknown_component_appid",
    TP_BAD_TICKET: "bad_component_ticket",
    TP_BAD_COMPONENT_SECRET: "bad_component_secret",
    REFRESH_TOKEN_INVALID: "refresh_token_invalid",
    AUTH_CODE_INVALID: "authorization_code_invalid",
    TP_BAD_GRANT: "bad_grant_type",
}

_encoder = msgspec.json.Encoder(decimal_format="number")


def dumps(value: Any) -> bytes:
    """JSON with big ints exact and Decimals as bare numbers."""
    try:
        return _encoder.encode(value)
    except UnicodeEncodeError:
        return _dumps_with_surrogates(value)


def _dumps_with_surrogates(value: Any) -> bytes:
    """The rare slow path: strings with lone surrogates go out as \\uXXXX escapes."""
    escaped: list[bytes] = []

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            try:
                v.encode()
            except UnicodeEncodeError:
                escaped.append(json.dumps(v).encode())
                return f"\x00SURROGATE{len(escaped) - 1}\x00"
            return v
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        return v

    out = _encoder.encode(walk(value))
    for i, text in enumerate(escaped):
        out = out.replace(_encoder.encode(f"\x00SURROGATE{i}\x00"), text)
    return out


@dataclass(frozen=True)
class ApiError:
    """A business error: the code and the message to send."""

    code: int
    message: str


@dataclass(frozen=True)
class Reply:
    """What a handler answers before faults: the body, the code for stats, rows served."""

    body: bytes
    code: int
    rows: int = 0

    @property
    def ok(self) -> bool:
        return self.code == OK


def daily_error(code: int, log_id: str, detail: str = "") -> Reply:
    message = DAILY_MESSAGES.get(code, "error")
    if detail:
        message = f"{message}: {detail}"
    return Reply(dumps({"err_no": code, "err_msg": message, "log_id": log_id}), code)


def oauth_error(code: int, log_id: str, now: float) -> Reply:
    body = {
        "data": {"description": OAUTH_MESSAGES[code], "error_code": code},
        "message": "error",
        "extra": {"logid": log_id, "now": int(now * 1000)},
    }
    return Reply(dumps(body), code)


def app_error(code: int) -> Reply:
    body = {
        "err_no": code,
        "err_tips": APP_MESSAGES[code],
        "data": {"access_token": "", "expires_in": 0},
    }
    return Reply(dumps(body), code)


def talent_error(code: int, log_id: str, detail: str = "") -> Reply:
    message = TALENT_MESSAGES.get(code, "error")
    if detail:
        message = f"{message}: {detail}"
    return Reply(dumps({"error": code, "message": message, "log_id": log_id, "data": {}}), code)


def component_error(code: int) -> Reply:
    """A refused component-token call: `{errno, message}` (HTTP 200)."""
    return Reply(dumps({"errno": code, "message": TP_MESSAGES[code]}), code)


def tp_error(code: int, log_id: str) -> Reply:
    """A refused get_auth_token call: the V2 envelope with an empty data."""
    body = {"err_no": code, "err_msg": TP_MESSAGES[code], "log_id": log_id, "data": {}}
    return Reply(dumps(body), code)


def html_error(status: int) -> bytes:
    """The HTML page a gateway sends with a 502/503."""
    title = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable"}.get(
        status, "Error"
    )
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>Tengine</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()
