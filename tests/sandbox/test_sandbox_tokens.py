"""Token life cycle: client tokens, the stable endpoint, mini-app tokens, limits and errors."""

from __future__ import annotations

from sync.sandbox.tokens import TokenState, TokenStore


async def test_client_token_success_shape(api):
    """A good client_token call answers the documented shape with a `clt.` token valid 7200 s."""
    resp = await api.client_token()
    assert resp.status == 200
    body = resp.json
    assert body["message"] == "success"
    data = body["data"]
    assert data["access_token"].startswith("clt.")
    assert data["error_code"] == 0 and data["description"] == "" and data["expires_in"] == 7200


async def test_client_token_errors(api):
    """Bad parameters give 10002, an unknown key 10003, a wrong secret 10013, all HTTP 200."""
    cases = [
        (api.credentials(grant_type="authorization_code"), 10002),
        ({"client_key": api.server.config.client_key}, 10002),
        (api.credentials(client_secret=123), 10002),
        (api.credentials(client_key="nobody"), 10003),
        (api.credentials(client_secret="wrong"), 10013),
    ]
    for body, code in cases:
        resp = await api.post("/oauth/client_token/", body)
        assert resp.status == 200
        assert resp.json["data"]["error_code"] == code, body
        extra = resp.json["extra"]
        assert isinstance(extra["logid"], str) and isinstance(extra["now"], int)
    resp = await api.post("/oauth/client_token/", raw=b"not json")
    assert resp.json["data"]["error_code"] == 10002


async def test_token_rate_limit_10020(api, clock):
    """The 501st token call within 5 minutes answers 10020; five minutes later calls work again."""
    clock.frozen = True
    for _ in range(500):
        assert (await api.client_token()).json["data"]["error_code"] == 0
    assert (await api.client_token()).json["data"]["error_code"] == 10020
    assert (await api.client_token(stable=True)).json["data"]["error_code"] == 10020
    clock.advance(300.01)
    assert (await api.client_token()).json["data"]["error_code"] == 0


async def test_previous_token_valid_during_grace(api, clock):
    """After a renewal the previous token works for the 5-minute grace, then is refused."""
    first = await api.token()
    clock.advance(10)
    second = await api.token()
    assert (await api.daily(first)).json["err_no"] == 0
    clock.advance(299)
    assert (await api.daily(first)).json["err_no"] == 0
    clock.advance(2)
    assert (await api.daily(first)).json["err_no"] == 28001008
    assert (await api.daily(second)).json["err_no"] == 0


async def test_third_token_invalidates_first(api):
    """Only the newest two tokens live: a third one invalidates the first at once."""
    first, second, third = [await api.token() for _ in range(3)]
    assert (await api.daily(first)).json["err_no"] == 28001003
    assert (await api.daily(second)).json["err_no"] == 0
    assert (await api.daily(third)).json["err_no"] == 0


async def test_grace_is_configurable(make_sandbox, make_api, clock):
    """token_grace sets how long a superseded token keeps working."""
    api = make_api(await make_sandbox(token_grace=10))
    first = await api.token()
    await api.token()
    clock.advance(9)
    assert (await api.daily(first)).json["err_no"] == 0
    clock.advance(2)
    assert (await api.daily(first)).json["err_no"] == 28001008


async def test_expiry_gives_28001008(make_sandbox, make_api, clock):
    """A token past its (configured, short) lifetime answers 28001008."""
    api = make_api(await make_sandbox(token_lifetime=60))
    resp = await api.client_token()
    assert resp.json["data"]["expires_in"] == 60
    token = resp.json["data"]["access_token"]
    assert (await api.daily(token)).json["err_no"] == 0
    clock.advance(61)
    assert (await api.daily(token)).json["err_no"] == 28001008


async def test_unknown_or_missing_token_gives_28001003(api):
    """A token never issued, or no access-token header at all, answers 28001003."""
    assert (await api.daily("clt.made-up")).json["err_no"] == 28001003
    assert (await api.daily(None)).json["err_no"] == 28001003


async def test_revoked_tokens_are_invalid(api):
    """Revoking tokens (a fault) makes every issued token answer 28001003."""
    token = await api.token()
    api.server.revoke_tokens()
    assert (await api.daily(token)).json["err_no"] == 28001003
    assert (await api.daily(await api.token())).json["err_no"] == 0


async def test_stable_client_token_returns_current(api, clock):
    """stable_client_token returns the current token while valid, with its remaining life."""
    one = (await api.client_token(stable=True)).json["data"]
    clock.advance(100)
    two = (await api.client_token(stable=True)).json["data"]
    assert one["access_token"] == two["access_token"]
    assert 7099 <= two["expires_in"] <= 7100
    fresh = await api.token()
    three = (await api.client_token(stable=True)).json["data"]
    assert three["access_token"] == fresh
    clock.advance(7201)
    four = (await api.client_token(stable=True)).json["data"]
    assert four["access_token"] != fresh and four["expires_in"] == 7200


async def test_app_token_success_and_errors(api):
    """The mini-app token endpoint answers err_no 0 with a token, or -1/40015/40017/40020."""
    config = api.server.config
    good = {"appid": config.app_id, "secret": config.app_secret, "grant_type": "client_credential"}
    resp = await api.post("/api/apps/v2/token", good)
    body = resp.json
    assert body["err_no"] == 0 and body["err_tips"] == "success"
    assert body["data"]["access_token"] and body["data"]["expires_in"] == 7200
    cases = [
        ({**good, "appid": "tt_other"}, 40015),
        ({**good, "secret": "wrong"}, 40017),
        ({**good, "grant_type": "password"}, 40020),
    ]
    for request, code in cases:
        assert (await api.post("/api/apps/v2/token", request)).json["err_no"] == code
    assert (await api.post("/api/apps/v2/token", raw=b"[")).json["err_no"] == -1


def test_token_store_grace_never_outlives_expiry():
    """A superseded token's grace ends at its own expiry if that comes first."""
    now = [1000.0]
    store = TokenStore(prefix="t.", lifetime=100, grace=300, clock=lambda: now[0])
    first, _ = store.issue()
    now[0] = 1050
    store.issue()
    now[0] = 1099
    assert store.check(first) is TokenState.VALID
    now[0] = 1100
    assert store.check(first) is TokenState.EXPIRED
    assert store.check("t.never") is TokenState.INVALID
