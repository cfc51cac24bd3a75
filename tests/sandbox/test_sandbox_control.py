"""The control surface: /__sandbox/stats, mutate, reset, faults, truth, info (and in process)."""

from __future__ import annotations

import datetime as dt
import re

from sync.sandbox.render import PASCAL_TO_SNAKE

DAY = 86400
FIGURES = (
    "active_cnt_1d",
    "ad_share_cost_1d",
    "billing_gmv_1d",
    "billing_refund_gmv_1d",
    "feed_ad_share_cost_1d",
    "expected_profit",
    "gmv_1d",
    "refund_gmv_1d",
)


def by_id(rows: list[dict]) -> dict[int, dict]:
    return {r["video_id"]: r for r in rows}


async def test_stats_endpoint_counts_calls_codes_bytes_and_rejections(api):
    """Stats count calls and codes per endpoint, bytes and rows served, and rejections by reason."""
    token_resp = await api.client_token()
    token = token_resp.json["data"]["access_token"]
    replies = [
        await api.daily(token, page_size=3),
        await api.daily(token, page_size=3),
        await api.daily(token, page_num=0),
        await api.daily("clt.unknown"),
    ]
    stats = (await api.get("/__sandbox/stats")).json
    assert stats == api.server.stats()
    daily = stats["endpoints"]["daily_data"]
    assert daily == {"calls": 4, "codes": {"0": 2, "28001007": 1, "28001003": 1}}
    assert stats["endpoints"]["client_token"] == {"calls": 1, "codes": {"0": 1}}
    assert stats["bytes_served"] == len(token_resp.raw) + sum(len(r.raw) for r in replies)
    assert stats["rows_served"] == 6
    assert stats["rejected"] == {"invalid_param": 1, "token_invalid": 1}
    assert stats["daily_data_peak_per_second"] >= 1


async def test_mutate_changes_adds_and_removes_rows(api):
    """mutate() changes a fraction of a date's figures, adds and removes rows, and says which."""
    server = api.server
    day = api.yesterday
    before = by_id(server.truth(day))
    other_day = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    other_before = server.truth(other_day)
    report = server.mutate([day], change_fraction=0.1, add=5, remove=2, seed=1)[day]
    assert len(report["added"]) == 5 and len(report["removed"]) == 2
    assert len(report["changed"]) >= 10
    after = by_id(server.truth(day))
    assert not set(report["removed"]) & set(after)
    assert set(report["added"]) <= set(after) and not set(report["added"]) & set(before)
    for vid in report["changed"]:
        if vid in before:
            assert any(after[vid][k] != before[vid][k] for k in FIGURES)
    untouched = set(before) - set(report["changed"]) - set(report["removed"])
    assert all(after[v] == before[v] for v in untouched)
    assert server.truth(other_day) == other_before
    token = await api.token()
    resp = await api.daily(
        token,
        page_size=10000,
        video_publish_start_time=api.now - 30 * DAY,
        video_publish_end_time=api.now,
    )
    rows = [
        {PASCAL_TO_SNAKE[k]: v for k, v in r.items()}
        for r in resp.json["data"]["video_daily_data_list"]
    ]
    assert rows == server.truth(day, api.now - 30 * DAY, api.now)


async def test_mutate_over_http(api):
    """POST /__sandbox/mutate answers per date the ids (bare numbers) changed, added, removed."""
    day = api.yesterday
    body = {"billing_dates": [day], "change_fraction": 0.05, "add": 2, "remove": 1, "seed": 3}
    resp = await api.post("/__sandbox/mutate", body)
    assert resp.status == 200
    report = resp.json["billing_dates"][day]
    assert len(report["added"]) == 2 and len(report["removed"]) == 1
    assert re.search(rb'"added":\[[0-9]{19},[0-9]{19}\]', resp.raw)
    today = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    for bad in ({"billing_dates": [today]}, {"billing_dates": ["2026/03/01"]}, {"add": -1}):
        assert (await api.post("/__sandbox/mutate", bad)).status == 400


async def test_mutate_defaults_to_recent_dates(api):
    """Without billing_dates, mutate touches the three most recent billing dates."""
    report = api.server.mutate(change_fraction=0.01)
    latest = dt.date.fromisoformat(api.yesterday)
    assert list(report) == [(latest - dt.timedelta(days=i)).isoformat() for i in range(3)]


async def test_reset_restores_seed_data_stats_and_throttle(api, clock):
    """reset puts the dataset back to the seed and clears stats and throttle history."""
    clock.frozen = True
    server = api.server
    day = api.yesterday
    original = server.truth(day)
    server.mutate([day], change_fraction=0.5, add=3, remove=3, seed=9)
    assert server.truth(day) != original
    token = await api.token()
    for _ in range(10):
        await api.daily(token, page_size=1)
    assert (await api.daily(token, page_size=1)).json["err_no"] == 28003018
    assert (await api.post("/__sandbox/reset", {})).json == {"ok": True}
    assert server.truth(day) == original
    assert server.stats()["endpoints"] == {} and server.stats()["bytes_served"] == 0
    assert (await api.daily(token, page_size=1)).json["err_no"] == 0


async def test_faults_endpoint_replaces_settings(api, clock):
    """POST /__sandbox/faults replaces the faults; storm seconds, revocation and errors work."""
    clock.frozen = True
    token = await api.token()
    resp = await api.post("/__sandbox/faults", {"busy_rate": 1})
    assert resp.status == 200 and resp.json["faults"]["busy_rate"] == 1
    assert (await api.daily(token)).json["err_no"] == 28001005
    await api.post("/__sandbox/faults", {"throttle_storm_seconds": 5})
    assert (await api.daily(token)).json["err_no"] == 28003018
    clock.advance(5)
    assert (await api.daily(token)).json["err_no"] == 0
    await api.post("/__sandbox/faults", {"revoke_tokens": True})
    assert (await api.daily(token)).json["err_no"] == 28001003
    assert (await api.post("/__sandbox/faults", {"bogus": 1})).status == 400
    assert (await api.post("/__sandbox/faults", {"busy_rate": 3})).status == 400


async def test_truth_and_info_endpoints(api):
    """GET /__sandbox/truth serves truth() exactly; /__sandbox/info gives ids as strings."""
    day = api.yesterday
    resp = await api.get(f"/__sandbox/truth?billing_date={day}")
    assert resp.json["rows"] == api.server.truth(day)
    info = (await api.get("/__sandbox/info")).json
    assert info["base_url"] == api.server.base_url
    assert all(isinstance(t, str) and t.isdigit() for t in info["exclusive_task_ids"])
    assert [int(t) for t in info["exclusive_task_ids"]] == api.server.exclusive_task_ids
    assert (await api.get("/__sandbox/truth?billing_date=nope")).status == 400
