"""The 10-per-sliding-second limit of the daily-data endpoint, and its window arithmetic."""

from __future__ import annotations

import asyncio

from sync.sandbox.throttle import SlidingWindow


def test_window_counts_only_times_after_now_minus_window():
    """A request at t leaves the window once now - 1.0 >= t; rejected requests are recorded."""
    window = SlidingWindow(limit=2, window=1.0)
    assert window.hit(10.0) is False
    assert window.hit(10.5) is False
    assert window.hit(10.9) is True  # third in the window: over, and still recorded
    assert window.count(10.99) == 3
    assert window.count(11.0) == 2  # 10.0 <= 11.0 - 1.0 has left
    assert window.hit(11.5) is False  # 10.5 has left too: only 10.9 remains
    assert window.hit(11.6) is True  # 10.9 and 11.5
    assert window.peak == 3


async def test_eleventh_request_in_one_second_is_throttled(api):
    """Eleven requests within one real second: exactly one answers 28003018, the others succeed."""
    token = await api.token()
    replies = await asyncio.gather(*(api.daily(token, page_size=1) for _ in range(11)))
    codes = sorted(r.json["err_no"] for r in replies)
    assert codes == [0] * 10 + [28003018]
    assert api.server.stats()["daily_data_peak_per_second"] == 11


async def test_throttle_exact_with_a_driven_clock(api, clock):
    """The 11th in a window is refused, refused requests count, and the window slides."""
    clock.frozen = True
    token = await api.token()
    for _ in range(10):
        assert (await api.daily(token, page_size=1)).json["err_no"] == 0
    clock.advance(0.5)
    for _ in range(5):  # refused, but recorded in the window
        assert (await api.daily(token, page_size=1)).json["err_no"] == 28003018
    clock.advance(0.5)  # the first ten leave the window; the five refused ones stay
    for _ in range(5):
        assert (await api.daily(token, page_size=1)).json["err_no"] == 0
    assert (await api.daily(token, page_size=1)).json["err_no"] == 28003018
    stats = api.server.stats()
    assert stats["rejected"]["throttled"] == 6
    assert stats["endpoints"]["daily_data"]["codes"] == {"0": 15, "28003018": 6}


async def test_invalid_requests_count_against_the_limit(api, clock):
    """Requests with a bad token or bad parameters fill the window like good ones."""
    clock.frozen = True
    token = await api.token()
    for _ in range(5):
        assert (await api.daily("clt.bogus")).json["err_no"] == 28001003
    for _ in range(5):
        assert (await api.daily(token, page_num=0)).json["err_no"] == 28001007
    assert (await api.daily(token)).json["err_no"] == 28003018
