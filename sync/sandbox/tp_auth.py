"""The service provider's token endpoints: the component token (GET /openapi/v2/auth/tp/token/)
and the authorizer token (GET /api/tpapp/v2/auth/get_auth_token/). Never subject to faults, as
the other token endpoints.

Component token, order of checks: the three query parameters present (40001); component_appid
the provider's (40003); component_appsecret (40038); component_ticket the current or previous
one (40037). Success: `{"component_access_token", "expires_in"}`; failure `{"errno", "message"}`,
both HTTP 200.

get_auth_token, order of checks: the access-token header a live component token (28001003
unknown or absent, 28001008 expired); grant_type present (40002) and one of the two (40040);
its grant parameter present (40002) and alive (refresh token 40021, authorization code 40022).
Success issues an authorizer access token for the grant's merchant and a new refresh token (a
used refresh token dies after the grace; see `provider`). A call counts for the provider and,
when its grant names one (alive or not), for that merchant.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from sync.sandbox.apps import AppState
from sync.sandbox.codes import (
    AUTH_CODE_INVALID,
    OK,
    REFRESH_TOKEN_INVALID,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    TP_BAD_COMPONENT_SECRET,
    TP_BAD_GRANT,
    TP_BAD_PARAM,
    TP_BAD_TICKET,
    TP_MISSING_PARAM,
    TP_UNKNOWN_COMPONENT,
    Reply,
    component_error,
    dumps,
    tp_error,
)
from sync.sandbox.days import log_id
from sync.sandbox.delivery import deliver
from sync.sandbox.keys import SANDBOX
from sync.sandbox.provider import Grants, permissions
from sync.sandbox.state import Sandbox
from sync.sandbox.tokens import TokenState

COMPONENT_TOKEN_PATH = "/openapi/v2/auth/tp/token/"  # noqa: S105 (a path)
GET_AUTH_TOKEN_PATH = "/api/tpapp/v2/auth/get_auth_token/"  # noqa: S105
REFRESH_GRANT = "app_to_tp_refresh_token"
CODE_GRANT = "app_to_tp_authorization_code"

_REFUSED = {REFRESH_GRANT: REFRESH_TOKEN_INVALID, CODE_GRANT: AUTH_CODE_INVALID}
"""What a dead grant answers, by grant_type."""


def component_token_reply(sandbox: Sandbox, query: Mapping[str, str]) -> Reply:
    """The answer to a component-token call with these query parameters."""
    provider = sandbox.provider
    appid, secret, ticket = (
        query.get(k, "") for k in ("component_appid", "component_appsecret", "component_ticket")
    )
    if not (appid and secret and ticket):
        return component_error(TP_BAD_PARAM)
    if appid != provider.credentials.component_appid:
        return component_error(TP_UNKNOWN_COMPONENT)
    if secret != provider.credentials.component_appsecret:
        return component_error(TP_BAD_COMPONENT_SECRET)
    if not provider.tickets.accepts(ticket):
        return component_error(TP_BAD_TICKET)
    token, expires_in = provider.issue_component_token(sandbox.token_lifetime())
    return Reply(dumps({"component_access_token": token, "expires_in": expires_in}), OK)


def _grant_of(sandbox: Sandbox, query: Mapping[str, str]) -> tuple[Grants, str] | None:
    grant_type = query.get("grant_type", "")
    if grant_type == REFRESH_GRANT:
        return sandbox.provider.refresh_tokens, query.get("authorizer_refresh_token", "")
    if grant_type == CODE_GRANT:
        return sandbox.provider.codes, query.get("authorization_code", "")
    return None


def grant_merchant(sandbox: Sandbox, query: Mapping[str, str]) -> AppState | None:
    """The merchant a get_auth_token call's grant was issued for, if it names one."""
    found = _grant_of(sandbox, query)
    if found is None:
        return None
    grants, value = found
    number = grants.merchant(value)
    return None if number is None else sandbox.apps[number - 1]


def auth_token_reply(
    sandbox: Sandbox, token: str | None, query: Mapping[str, str], logid: str
) -> Reply:
    """The answer to a get_auth_token call with this access-token header and query."""
    provider = sandbox.provider
    state = provider.component_tokens.check(token) if token else TokenState.INVALID
    if state is TokenState.EXPIRED:
        return tp_error(TOKEN_EXPIRED, logid)
    if state is TokenState.INVALID:
        return tp_error(TOKEN_INVALID, logid)
    grant_type = query.get("grant_type", "")
    if not grant_type:
        return tp_error(TP_MISSING_PARAM, logid)
    found = _grant_of(sandbox, query)
    if found is None:
        return tp_error(TP_BAD_GRANT, logid)
    grants, value = found
    if not value:
        return tp_error(TP_MISSING_PARAM, logid)
    number = grants.use(value)
    if number is None:
        return tp_error(_REFUSED[grant_type], logid)
    merchant = sandbox.apps[number - 1]
    access, expires_in = provider.issue_access_token(merchant, sandbox.token_lifetime())
    refresh, refresh_expires_in = provider.issue_refresh_token(merchant)
    data = {
        "authorizer_access_token": access,
        "authorizer_refresh_token": refresh,
        "expires_in": expires_in,
        "refresh_expires_in": refresh_expires_in,
        "authorizer_appid": merchant.credentials.app_id,
        "authorize_permission": permissions(merchant),
    }
    return Reply(dumps({"err_no": 0, "err_msg": "", "log_id": logid, "data": data}), OK)


async def component_token(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    reply = component_token_reply(sandbox, request.query)
    return await deliver(request, sandbox, None, "component_token", reply, provider=True)


async def get_auth_token(request: web.Request) -> web.StreamResponse:
    sandbox = request.app[SANDBOX]
    logid = log_id(sandbox.now())
    merchant = grant_merchant(sandbox, request.query)
    reply = auth_token_reply(sandbox, request.headers.get("access-token"), request.query, logid)
    return await deliver(
        request, sandbox, merchant, "get_auth_token", reply, provider=True, log_id=logid
    )
