"""Injected faults: each kind observable over HTTP, repeatable from a seed, off by default."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from sync.sandbox import Faults
from sync.sandbox.config import parse_faults_spec


async def codes(api, token: str, count: int, clock) -> list[object]:
    """err_no of `count` paced requests (a marker for non-JSON bodies)."""
    found: list[object] = []
    for _ in range(count):
        clock.advance(0.2)
        resp = await api.daily(token, page_size=2)
        try:
            found.append(json.loads(resp.raw).get("err_no"))
        except (ValueError, AttributeError):
            found.append("broken")
    return found


async def test_no_faults_by_default(api, clock):
    """A default sandbox answers every well-formed request with success."""
    assert Faults() == api.server.config.faults
    assert set(await codes(api, await api.token(), 30, clock)) == {0}


@pytest.mark.parametrize(
    ("field", "code"), [("busy_rate", 28001005), ("network_error_rate", 28001006)]
)
async def test_retryable_error_codes(api, field, code):
    """busy/network faults answer 28001005/28001006 in the documented error envelope."""
    token = await api.token()
    api.server.set_faults(Faults(**{field: 1.0}))
    body = (await api.daily(token)).json
    assert body["err_no"] == code and body["err_msg"] and body["log_id"]
    assert "data" not in body


async def test_http_5xx_with_html(api):
    """5xx faults answer HTTP 502/503 with an HTML page, counted by status in the stats."""
    token = await api.token()
    api.server.set_faults(Faults(http_5xx_rate=1.0, seed=3))
    statuses = set()
    for _ in range(8):
        resp = await api.daily(token)
        assert resp.content_type == "text/html" and resp.raw.startswith(b"<html>")
        statuses.add(resp.status)
    assert statuses == {502, 503}
    stats = api.server.stats()["endpoints"]["daily_data"]["codes"]
    assert stats["http_502"] + stats["http_503"] == 8


async def test_malformed_bodies(api, clock):
    """Malformed faults send bodies that do not parse as JSON."""
    token = await api.token()
    api.server.set_faults(Faults(malformed_rate=1.0))
    assert set(await codes(api, token, 9, clock)) == {"broken"}


async def test_wrong_shape_bodies(api, clock):
    """Wrong-shape faults send valid JSON without a video_daily_data_list list."""
    token = await api.token()
    api.server.set_faults(Faults(wrong_shape_rate=1.0))
    for _ in range(12):
        clock.advance(0.2)
        body = json.loads((await api.daily(token)).raw)
        data = body.get("data") if isinstance(body, dict) else None
        rows = data.get("video_daily_data_list") if isinstance(data, dict) else None
        assert not isinstance(rows, list) or body.get("err_no") != 0 or "err_msg" not in body


async def test_connection_reset(api):
    """Reset faults abort the connection; the client sees a connection error."""
    token = await api.token()
    api.server.set_faults(Faults(reset_rate=1.0))
    with pytest.raises(aiohttp.ClientError):
        await api.daily(token)
    assert api.server.stats()["endpoints"]["daily_data"]["codes"] == {"reset": 1}


async def test_hang_outlasts_client_timeout(api, session):
    """A hang holds the answer longer than the client waits; shutdown does not wait for it."""
    token = await api.token()
    api.server.set_faults(Faults(hang_rate=1.0, hang_seconds=30))
    timeout = aiohttp.ClientTimeout(total=0.3)
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            api.server.base_url + api.DAILY,
            json=api.daily_body(),
            headers={"access-token": token},
            timeout=timeout,
        ) as resp:
            await resp.read()
    assert time.monotonic() - started < 2


async def test_latency_within_bounds(api):
    """Latency faults delay answers by a uniform time within [min, max]."""
    token = await api.token()
    api.server.set_faults(Faults(latency_min=0.2, latency_max=0.3))
    started = time.monotonic()
    assert (await api.daily(token)).json["err_no"] == 0
    assert 0.2 <= time.monotonic() - started < 0.8


async def test_throttle_storm_until_a_time(api, clock):
    """A storm answers 28003018 to every request until its end, then requests succeed again."""
    token = await api.token()
    clock.frozen = True
    api.server.set_faults(Faults(throttle_storm_until=clock() + 5))
    assert (await api.daily(token)).json["err_no"] == 28003018
    clock.advance(4.9)
    assert (await api.daily(token)).json["err_no"] == 28003018
    clock.advance(0.2)
    assert (await api.daily(token)).json["err_no"] == 0


async def test_short_token_lifetime_fault(api, clock):
    """A token_lifetime fault shortens new tokens' lives."""
    api.server.set_faults(Faults(token_lifetime=30))
    resp = await api.client_token()
    assert resp.json["data"]["expires_in"] == 30
    clock.advance(31)
    assert (await api.daily(resp.json["data"]["access_token"])).json["err_no"] == 28001008


async def test_same_seed_same_faults(api, clock):
    """The same fault seed and request sequence meet the same faults."""
    token = await api.token()
    api.server.set_faults(Faults(busy_rate=0.5, seed=42))
    first = await codes(api, token, 12, clock)
    api.server.set_faults(Faults(busy_rate=0.5, seed=42))
    second = await codes(api, token, 12, clock)
    assert first == second and set(first) == {0, 28001005}


async def test_talents_faults_only_when_asked(api):
    """Faults leave talents alone unless apply_to_talents; then busy is 4001010, nothing applied."""
    token = await api.app_token()
    task = api.server.exclusive_task_ids[0]
    api.server.set_faults(Faults(busy_rate=1.0))
    resp = await api.talents(token, task_id=task, op_type=1, douyin_ids=["a1"])
    assert resp.json["error"] == 0
    api.server.set_faults(Faults(busy_rate=1.0, apply_to_talents=True))
    resp = await api.talents(token, task_id=task, op_type=1, douyin_ids=["a2"])
    assert resp.json["error"] == 4001010
    assert "a2" not in {m.douyin_id for m in api.server.roster(task)}


async def test_control_endpoints_are_never_faulted(api):
    """/__sandbox/* answers normally whatever the faults."""
    api.server.set_faults(Faults(http_5xx_rate=1.0, reset_rate=1.0))
    assert (await api.get("/__sandbox/stats")).status == 200


def test_faults_spec_parsing():
    """The CLI fault spec maps onto Faults fields; bad specs are errors."""
    faults = parse_faults_spec(
        "busy=0.1,5xx=0.2,hang=0.05@12,latency=0.5:3,storm=10,seed=4", now=100
    )
    assert faults.busy_rate == 0.1 and faults.http_5xx_rate == 0.2
    assert (faults.hang_rate, faults.hang_seconds) == (0.05, 12)
    assert (faults.latency_min, faults.latency_max) == (0.5, 3)
    assert faults.throttle_storm_until == 110 and faults.seed == 4
    for bad in ("busy", "nope=1", "busy=2", "latency=3:1"):
        with pytest.raises(ValueError):
            parse_faults_spec(bad, now=0)
