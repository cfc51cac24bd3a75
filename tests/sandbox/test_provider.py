"""The service provider's side of the sandbox over HTTP: the component ticket and token, merchant
grants and get_auth_token's rotating refresh tokens, authorizer tokens on daily data, task info
and talents (third_appid), the counters and the control endpoints."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

import pytest

from sync.sandbox import SandboxServer
from sync.sandbox.credentials import ProviderCredentials
from tests.sandbox.conftest import Api, Resp
from tests.sandbox.test_apps import snake_rows

KEY_2 = "tt_sbx_app_0002"
KEY_3 = "tt_sbx_app_0003"
COMPONENT = "/openapi/v2/auth/tp/token/"
AUTH = "/api/tpapp/v2/auth/get_auth_token/"
REFRESH = "app_to_tp_refresh_token"
CODE = "app_to_tp_authorization_code"


@pytest.fixture
async def fleet(make_sandbox: Any, clock: Any) -> SandboxServer:
    """Three apps, each a possible merchant; app 3 lacks the data-analysis grant. The clock is
    frozen first (the tests move it), so the ticket's period starts at the test's "now"."""
    clock.frozen = True
    server: SandboxServer = await make_sandbox(apps=3, apps_without_capability=frozenset({3}))
    return server


@pytest.fixture
def api(make_api: Any, fleet: SandboxServer) -> Api:
    helper: Api = make_api(fleet)
    return helper


async def get(api: Api, path: str, query: dict[str, str], headers: Any = None) -> Resp:
    url = f"{api.server.base_url}{path}?{urlencode(query)}"
    async with api.session.get(url, headers=headers or {}) as r:
        return Resp(r.status, await r.read(), r.content_type)


async def component_call(api: Api, **override: str) -> Resp:
    provider = api.server.provider
    query = {
        "component_appid": provider.component_appid,
        "component_appsecret": provider.component_appsecret,
        "component_ticket": api.server.component_ticket(),
    }
    query.update(override)
    return await get(api, COMPONENT, {k: v for k, v in query.items() if v != "-"})


async def component_token(api: Api, **override: str) -> str:
    resp = await component_call(api, **override)
    token: str = resp.json["component_access_token"]
    return token


async def auth_call(api: Api, component: str | None, **query: str) -> Resp:
    headers = {} if component is None else {"access-token": component}
    return await get(api, AUTH, query, headers)


async def refresh(api: Api, component: str, refresh_token: str) -> Resp:
    return await auth_call(
        api, component, grant_type=REFRESH, authorizer_refresh_token=refresh_token
    )


async def authorizer_token(api: Api, app: str) -> str:
    """A fresh authorizer access token for merchant `app`, as a provider gets it."""
    component = await component_token(api)
    resp = await refresh(api, component, api.server.authorize(app))
    token: str = resp.json["data"]["authorizer_access_token"]
    return token


def err_no(resp: Resp) -> int:
    code: int = resp.json["err_no"]
    return code


# -- the component ticket and token -------------------------------------------------------------


async def test_ticket_rotates_and_the_previous_one_is_still_accepted(api, clock):
    """The ticket changes every 600 s of the sandbox clock; the previous one is accepted, the
    one before that answers 40037; rotate_ticket turns it at once, over HTTP too."""
    first = api.server.component_ticket()
    assert (await api.get("/__sandbox/provider")).json == {
        "component_appid": "tt_sbx_component",
        "component_ticket": first,
    }
    clock.advance(599)
    assert api.server.component_ticket() == first
    clock.advance(1)
    second = api.server.component_ticket()
    assert second != first
    for ticket in (first, second):
        assert "component_access_token" in (await component_call(api, component_ticket=ticket)).json
    clock.advance(600)
    assert (await component_call(api, component_ticket=first)).json == {
        "errno": 40037,
        "message": "无效的 ticket",
    }
    assert "component_access_token" in (await component_call(api, component_ticket=second)).json
    third = api.server.component_ticket()
    fourth = api.server.rotate_ticket()
    assert fourth != third
    fifth = (await api.post("/__sandbox/provider/rotate", {})).json["component_ticket"]
    assert (await component_call(api, component_ticket=fourth)).json["expires_in"] == 3600
    assert (await component_call(api, component_ticket=third)).json["errno"] == 40037
    assert api.server.component_ticket() == fifth


async def test_component_token_errors(api):
    """A missing parameter is 40001, an unknown app id 40003, a wrong secret 40038, a made-up
    ticket 40037; all HTTP 200 with {errno, message}; the good call answers a token for 3600 s."""
    cases = [
        ({"component_appid": "-"}, 40001),
        ({"component_appsecret": ""}, 40001),
        ({"component_ticket": "-"}, 40001),
        ({"component_appid": "tt_someone_else"}, 40003),
        ({"component_appsecret": "wrong"}, 40038),
        ({"component_ticket": "tkt.made-up"}, 40037),
    ]
    for override, code in cases:
        resp = await component_call(api, **override)
        assert resp.status == 200
        assert set(resp.json) == {"errno", "message"} and resp.json["errno"] == code, override
    good = (await component_call(api)).json
    assert set(good) == {"component_access_token", "expires_in"} and good["expires_in"] == 3600


async def test_component_tokens_follow_the_token_rules(api, clock):
    """Only the newest two component tokens live, the previous one for the 5-minute grace; one
    past its 3600 s answers 28001008 on get_auth_token, a made-up one 28001003."""
    first, second = await component_token(api), await component_token(api)
    grant = api.server.authorize(KEY_2)
    assert err_no(await refresh(api, first, grant)) == 0
    clock.advance(301)
    assert err_no(await refresh(api, first, grant)) == 28001008
    third = await component_token(api)
    fourth = await component_token(api)
    assert err_no(await refresh(api, second, grant)) == 28001003
    assert err_no(await refresh(api, "clt.made-up", grant)) == 28001003
    anonymous = await auth_call(api, None, grant_type=REFRESH, authorizer_refresh_token=grant)
    assert err_no(anonymous) == 28001003
    clock.advance(3600)
    resp = await refresh(api, fourth, grant)
    assert err_no(resp) == 28001008 and resp.json["err_msg"] and resp.json["log_id"]
    assert third != fourth


# -- grants and get_auth_token ------------------------------------------------------------------


async def test_refresh_chain(api, clock):
    """Every refresh answers a new refresh token; the used one stays accepted for 60 s and then
    answers 40021, while the new one goes on; the answer names the merchant and its grants."""
    component = await component_token(api)
    first = api.server.authorize(KEY_2)
    resp = await refresh(api, component, first)
    assert resp.status == 200 and err_no(resp) == 0 and resp.json["err_msg"] == ""
    assert resp.json["log_id"]
    data = resp.json["data"]
    second = data["authorizer_refresh_token"]
    assert second != first and data["authorizer_access_token"]
    assert data["expires_in"] == 7200 and data["refresh_expires_in"] == 2592000
    assert data["authorizer_appid"] == KEY_2
    assert [p["id"] for p in data["authorize_permission"]] == [4, 8]
    clock.advance(59)
    again = await refresh(api, component, first)  # a retry within the grace still works
    assert err_no(again) == 0 and again.json["data"]["authorizer_refresh_token"] != second
    clock.advance(1)
    dead = await refresh(api, component, first)
    assert dead.status == 200 and err_no(dead) == 40021
    assert dead.json["err_msg"] and dead.json["log_id"] and dead.json["data"] == {}
    third = (await refresh(api, component, second)).json["data"]["authorizer_refresh_token"]
    assert err_no(await refresh(api, component, third)) == 0
    assert err_no(await refresh(api, component, "rft.made-up")) == 40021


async def test_an_unused_refresh_token_lives_thirty_days(api, clock):
    """A refresh token never used works until 30 days after its issue, not after."""
    early, late = api.server.authorize(KEY_2), api.server.authorize(KEY_2)
    clock.advance(30 * 86400 - 1)
    component = await component_token(api)
    assert err_no(await refresh(api, component, early)) == 0
    clock.advance(1)
    assert err_no(await refresh(api, component, late)) == 40021


async def test_authorization_code_works_once(api):
    """An authorization code gives tokens once; a second use answers 40022, as a made-up one."""
    component = await component_token(api)
    code = api.server.authorization_code(KEY_3)
    first = await auth_call(api, component, grant_type=CODE, authorization_code=code)
    assert err_no(first) == 0 and first.json["data"]["authorizer_appid"] == KEY_3
    second = await auth_call(api, component, grant_type=CODE, authorization_code=code)
    assert err_no(second) == 40022
    made_up = await auth_call(api, component, grant_type=CODE, authorization_code="code.x")
    assert err_no(made_up) == 40022
    chained = first.json["data"]["authorizer_refresh_token"]
    assert err_no(await refresh(api, component, chained)) == 0


async def test_get_auth_token_parameter_errors(api):
    """No grant_type or no grant is 40002, another grant_type 40040; none of them uses the grant."""
    component = await component_token(api)
    grant = api.server.authorize(KEY_2)
    assert err_no(await auth_call(api, component, authorizer_refresh_token=grant)) == 40002
    assert err_no(await auth_call(api, component, grant_type=REFRESH)) == 40002
    assert err_no(await auth_call(api, component, grant_type=CODE)) == 40002
    resp = await auth_call(
        api, component, grant_type="refresh_token", authorizer_refresh_token=grant
    )
    assert err_no(resp) == 40040
    assert err_no(await refresh(api, component, grant)) == 0


async def test_deauthorize_kills_the_chain_and_its_tokens(api):
    """A merchant withdrawing its grant kills its refresh tokens and authorizer tokens; another
    merchant's are untouched; revoke_tokens kills access tokens but not the grants."""
    component = await component_token(api)
    two, three = api.server.authorize(KEY_2), api.server.authorize(KEY_3)
    token = (await refresh(api, component, two)).json["data"]["authorizer_access_token"]
    following = (await refresh(api, component, three)).json["data"]["authorizer_refresh_token"]
    resp = await api.post("/__sandbox/provider/deauthorize", {"app": KEY_2})
    assert resp.json == {"ok": True}
    assert err_no(await refresh(api, component, two)) == 40021
    assert err_no(await api.daily(token)) == 28001003
    api.server.revoke_tokens()
    assert err_no(await refresh(api, component, following)) == 28001003
    fresh = await component_token(api)
    assert err_no(await refresh(api, fresh, following)) == 0
    assert (await api.post("/__sandbox/provider/deauthorize", {"app": "nobody"})).status == 400


# -- the authorizer token on the merchant's calls ------------------------------------------------


async def test_authorizer_token_reads_the_merchants_own_data(api, clock):
    """Merchant 2's authorizer token reads app 2's rows and task info, exactly as its own client
    token does."""
    token = await authorizer_token(api, KEY_2)
    rows = snake_rows((await api.daily(token)).json)
    start, end = api.now - 30 * api.DAY, api.now
    assert rows and rows == api.server.truth(api.yesterday, start, end, app=KEY_2)[:100]
    task = api.server.exclusive_task_ids_of(KEY_2)[0]
    body = {
        "query_params_type": 1,
        "query_params_content": str(task),
        "page_num": 1,
        "page_size": 10,
    }
    info = await api.post(api.TASK_INFO, body, headers={"access-token": token})
    assert err_no(info) == 0 and len(info.json["data"]["task_list"]) == 1


async def test_authorizer_token_counts_against_its_merchants_window(api, clock):
    """Ten requests a second pass for merchant 2's authorizer token, the eleventh is throttled;
    merchant 3's window is its own; stats show the merchant's busiest second."""
    two, three = await authorizer_token(api, KEY_2), await authorizer_token(api, KEY_3)
    replies = await asyncio.gather(*(api.daily(two, page_size=1) for _ in range(10)))
    assert {err_no(r) for r in replies} == {0}
    assert err_no(await api.daily(two, page_size=1)) == 28003018
    assert err_no(await api.daily(three, page_size=1)) == 28001018  # window free, no grant
    assert api.server.stats(KEY_2)["daily_data_peak_per_second"] == 11
    assert api.server.stats(KEY_3)["daily_data_peak_per_second"] == 1
    assert api.server.stats()["apps"]["sbx_client_key_0001"]["daily_data_peak_per_second"] == 0


async def test_merchant_without_the_grant_authorizes_but_gets_28001018(api):
    """App 3 (no data-analysis grant) authorizes fine, its permissions lack id 4, and its daily
    data answers 28001018."""
    component = await component_token(api)
    resp = await refresh(api, component, api.server.authorize(KEY_3))
    data = resp.json["data"]
    assert err_no(resp) == 0 and [p["id"] for p in data["authorize_permission"]] == [8]
    assert err_no(await api.daily(data["authorizer_access_token"])) == 28001018


async def test_authorizer_tokens_take_the_sandbox_token_lifetime(make_sandbox, make_api, clock):
    """Authorizer tokens live the configured token_lifetime (here 60 s), then answer 28001008."""
    clock.frozen = True
    api = make_api(await make_sandbox(apps=2, token_lifetime=60))  # own sandbox: freeze here
    component = await component_token(api)
    resp = await refresh(api, component, api.server.authorize(KEY_2))
    assert resp.json["data"]["expires_in"] == 60
    token = resp.json["data"]["authorizer_access_token"]
    assert err_no(await api.daily(token)) == 0
    clock.advance(60)
    assert err_no(await api.daily(token)) == 28001008


# -- talents with third_appid -------------------------------------------------------------------


async def test_talents_with_third_appid_change_the_merchants_roster(api):
    """An authorizer token with third_appid and appid the merchant's changes that merchant's
    roster only."""
    token = await authorizer_token(api, KEY_2)
    task = api.server.exclusive_task_ids_of(KEY_2)[0]
    body = {"task_id": task, "op_type": 1, "douyin_ids": ["provider_added"]}
    resp = await api.talents(token, appid=KEY_2, third_appid=KEY_2, **body)
    assert resp.json["error"] == 0
    assert "provider_added" in {m.douyin_id for m in api.server.roster(task, app=KEY_2)}
    first_app_tasks = api.server.exclusive_task_ids
    assert all(
        "provider_added" not in {m.douyin_id for m in api.server.roster(t)} for t in first_app_tasks
    )


async def test_talents_with_third_appid_refuse_the_wrong_token_or_app(api):
    """third_appid of another merchant, or a mini-app token, is 5502; appid not the merchant's
    is 5503; an authorizer token without third_appid is 5502; a non-string third_appid 4001015."""
    token = await authorizer_token(api, KEY_2)
    task = api.server.exclusive_task_ids_of(KEY_2)[0]
    body = {"task_id": task, "op_type": 1, "douyin_ids": ["x"]}
    app_token = (
        await api.post(
            "/api/apps/v2/token",
            {
                "appid": KEY_2,
                "secret": api.server.apps[1].app_secret,
                "grant_type": "client_credential",
            },
        )
    ).json["data"]["access_token"]
    cases = [
        ({"appid": KEY_3, "third_appid": KEY_3}, token, 5502),
        ({"appid": KEY_2, "third_appid": "tt_nobody"}, token, 5502),
        ({"appid": KEY_2, "third_appid": KEY_2}, app_token, 5502),
        ({"appid": KEY_3, "third_appid": KEY_2}, token, 5503),
        ({"appid": KEY_2}, token, 5502),
        ({"appid": KEY_2, "third_appid": 2}, token, 4001015),
    ]
    for fields, used, code in cases:
        resp = await api.talents(used, **fields, **body)
        assert resp.json["error"] == code, fields
    assert (await api.talents(app_token, appid=KEY_2, third_appid="", **body)).json["error"] == 0


# -- counters, secrets and the control surface ---------------------------------------------------


async def test_counters_per_merchant_and_provider(api):
    """stats count get_auth_token calls per merchant (refused ones naming it too) and the
    provider's component-token and get_auth_token calls."""
    component = await component_token(api)
    await component_call(api, component_appsecret="wrong")
    grant = api.server.authorize(KEY_2)
    await refresh(api, component, grant)
    await refresh(api, component, "rft.made-up")
    stats = api.server.stats()
    assert stats["provider"]["endpoints"] == {
        "component_token": {"calls": 2, "codes": {"0": 1, "40038": 1}},
        "get_auth_token": {"calls": 2, "codes": {"0": 1, "40021": 1}},
    }
    assert api.server.stats(KEY_2)["endpoints"]["get_auth_token"] == {
        "calls": 1,
        "codes": {"0": 1},
    }
    assert "get_auth_token" not in api.server.stats(KEY_3)["endpoints"]
    assert stats["rejected"] == {"bad_component_secret": 1, "refresh_token_invalid": 1}
    api.server.reset()
    assert api.server.stats()["provider"]["endpoints"] == {}


async def test_issued_secrets_hold_everything_issued(api):
    """issued_secrets lists the component secret and every ticket, component token, refresh
    token, code and authorizer token issued."""
    component = await component_token(api)
    code = api.server.authorization_code(KEY_2)
    grant = api.server.authorize(KEY_3)
    data = (await refresh(api, component, grant)).json["data"]
    coded = (await auth_call(api, component, grant_type=CODE, authorization_code=code)).json
    issued = set(api.server.issued_secrets())
    expected = {
        api.server.provider.component_appsecret,
        api.server.component_ticket(),
        component,
        code,
        grant,
        data["authorizer_refresh_token"],
        data["authorizer_access_token"],
        coded["data"]["authorizer_access_token"],
        coded["data"]["authorizer_refresh_token"],
    }
    assert expected <= issued


async def test_info_and_control_endpoints_serve_a_cli_sandbox(api):
    """/__sandbox/info carries the provider's credentials; /__sandbox/provider/authorize answers a
    refresh token or a code for the app named (400 for an unknown one)."""
    info = (await api.get("/__sandbox/info")).json
    provider = ProviderCredentials.from_json(info["provider"])
    assert provider == api.server.provider
    assert provider.component_appsecret == "sbx_component_secret_0007"  # seed 7
    resp = (await api.post("/__sandbox/provider/authorize", {"app": KEY_2})).json
    assert resp["authorizer_appid"] == KEY_2
    component = await component_token(api)
    assert err_no(await refresh(api, component, resp["authorizer_refresh_token"])) == 0
    body = {"app": KEY_3, "grant": "authorization_code"}
    code = (await api.post("/__sandbox/provider/authorize", body)).json["authorization_code"]
    assert err_no(await auth_call(api, component, grant_type=CODE, authorization_code=code)) == 0
    for bad in ({"app": "nobody"}, {"grant": "password"}, {"app": 3}):
        assert (await api.post("/__sandbox/provider/authorize", bad)).status == 400
