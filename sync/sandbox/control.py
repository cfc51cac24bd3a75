"""/__sandbox/* endpoints: stats, truth, info, mutate, warm, reset, faults, and the service
provider's (its ticket, a merchant's grant). Never subject to faults.

Those about one app's data or figures (stats, truth, mutate, warm, authorize, deauthorize) take
`app`, a client key (default: app 1); an unknown one answers 400.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from sync.sandbox.codes import dumps
from sync.sandbox.config import Faults
from sync.sandbox.delivery import json_response
from sync.sandbox.keys import SANDBOX


def _bad(message: str) -> web.Response:
    return web.Response(status=400, body=dumps({"error": message}), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any] | None:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    return body if isinstance(body, dict) else None


async def stats(request: web.Request) -> web.Response:
    """GET [?app=CLIENT_KEY]: the whole sandbox's figures, or one app's."""
    try:
        figures = request.app[SANDBOX].stats(request.query.get("app"))
    except ValueError as exc:
        return _bad(str(exc))
    return json_response(dumps(figures))


async def info(request: web.Request) -> web.Response:
    sandbox = request.app[SANDBOX]
    base_url = f"{request.scheme}://{request.host}"
    return json_response(dumps(sandbox.info(base_url)))


async def truth(request: web.Request) -> web.Response:
    """GET ?billing_date=YYYY-MM-DD[&start_ts=&end_ts=&douyin_id=&agency_client_key=&app=]."""
    sandbox = request.app[SANDBOX]
    query = request.query
    try:
        start = int(query["start_ts"]) if "start_ts" in query else None
        end = int(query["end_ts"]) if "end_ts" in query else None
        rows = sandbox.truth(
            query.get("billing_date", ""),
            start,
            end,
            douyin_id=query.get("douyin_id"),
            agency_client_key=query.get("agency_client_key"),
            app=query.get("app"),
        )
    except ValueError as exc:
        return _bad(str(exc))
    return json_response(dumps({"rows": rows}))


def _app(body: dict[str, Any]) -> str | None:
    """The body's `app` (None when absent); ValueError when it is not a string."""
    app = body.get("app")
    if app is not None and not isinstance(app, str):
        raise ValueError("app must be a client key (a string)")
    return app


def _dates(body: dict[str, Any]) -> list[str] | None:
    dates = body.get("billing_dates")
    if dates is not None and not (
        isinstance(dates, list) and all(isinstance(d, str) for d in dates)
    ):
        raise ValueError("billing_dates must be a list of YYYY-MM-DD strings")
    return dates


async def mutate(request: web.Request) -> web.Response:
    """POST {billing_dates?, change_fraction?, add?, remove?, seed?, app?}."""
    sandbox = request.app[SANDBOX]
    body = await _body(request)
    if body is None:
        return _bad("body must be a JSON object")
    try:
        dates, app = _dates(body), _app(body)
    except ValueError as exc:
        return _bad(str(exc))
    fraction = body.get("change_fraction", 0.1)
    add, remove, seed = (body.get(k, 0) for k in ("add", "remove", "seed"))
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        return _bad("change_fraction must be a number")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (add, remove, seed)):
        return _bad("add, remove and seed must be integers")
    try:
        changed = sandbox.mutate(
            dates, change_fraction=float(fraction), add=add, remove=remove, seed=seed, app=app
        )
    except ValueError as exc:
        return _bad(str(exc))
    return json_response(dumps({"billing_dates": changed}))


async def warm(request: web.Request) -> web.Response:
    """POST {billing_dates?, app?}: render them now (the server answers nothing meanwhile)."""
    sandbox = request.app[SANDBOX]
    body = await _body(request)
    if body is None:
        return _bad("body must be a JSON object")
    try:
        rows = sandbox.warm(_dates(body), app=_app(body))
    except ValueError as exc:
        return _bad(str(exc))
    return json_response(dumps({"rows": rows}))


async def reset(request: web.Request) -> web.Response:
    request.app[SANDBOX].reset()
    return json_response(b'{"ok":true}')


async def faults(request: web.Request) -> web.Response:
    """Replace the fault settings: a JSON object of `Faults` fields, plus `throttle_storm_seconds`,
    `latency: [min, max]` and `revoke_tokens: true`."""
    sandbox = request.app[SANDBOX]
    body = await _body(request)
    if body is None:
        return _bad("body must be a JSON object")
    try:
        new = Faults.from_mapping(body, now=sandbox.now())
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    sandbox.set_faults(new)
    if body.get("revoke_tokens") is True:
        sandbox.revoke_tokens()
    return json_response(dumps({"faults": new.to_json()}))


async def provider(request: web.Request) -> web.Response:
    """GET: the provider's app id and the component ticket of the moment (what the platform
    pushes to the provider's server; the demo writes it to a file)."""
    sandbox = request.app[SANDBOX]
    body = {
        "component_appid": sandbox.provider.credentials.component_appid,
        "component_ticket": sandbox.provider.tickets.current(),
    }
    return json_response(dumps(body))


async def rotate_ticket(request: web.Request) -> web.Response:
    """POST: a new component ticket now (the previous one stays accepted)."""
    return json_response(
        dumps({"component_ticket": request.app[SANDBOX].provider.tickets.rotate()})
    )


async def authorize(request: web.Request) -> web.Response:
    """POST {app?, grant?}: the merchant `app` grants the provider; answers its fresh
    authorizer_refresh_token, or with `grant: "authorization_code"` a one-time
    authorization_code; and its authorizer_appid."""
    sandbox = request.app[SANDBOX]
    body = await _body(request)
    if body is None:
        return _bad("body must be a JSON object")
    grant = body.get("grant", "refresh_token")
    if grant not in ("refresh_token", "authorization_code"):
        return _bad('grant must be "refresh_token" or "authorization_code"')
    try:
        app = _app(body)
        merchant = sandbox.app(app)
    except ValueError as exc:
        return _bad(str(exc))
    answer = {"authorizer_appid": merchant.credentials.app_id}
    if grant == "refresh_token":
        answer["authorizer_refresh_token"] = sandbox.authorize(app)
    else:
        answer["authorization_code"] = sandbox.authorization_code(app)
    return json_response(dumps(answer))


async def deauthorize(request: web.Request) -> web.Response:
    """POST {app?}: the merchant withdraws its grant (its refresh and access tokens die)."""
    sandbox = request.app[SANDBOX]
    body = await _body(request)
    if body is None:
        return _bad("body must be a JSON object")
    try:
        sandbox.deauthorize(_app(body))
    except ValueError as exc:
        return _bad(str(exc))
    return json_response(b'{"ok":true}')
