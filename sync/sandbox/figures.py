"""Daily figures: a seeded pool of realistic figure sets, and a cheap (video, day) -> set pick."""

from __future__ import annotations

from decimal import Decimal

M64 = (1 << 64) - 1
POOL_BITS = 14
POOL_SIZE = 1 << POOL_BITS
POOL_SHIFT = 64 - POOL_BITS - 8
POOL_MASK = POOL_SIZE - 1

Figures = tuple[int, int, int, int, int, int, int, int]
"""(active_cnt_1d, ad_share_cost_1d, billing_gmv_1d, billing_refund_gmv_1d,
feed_ad_share_cost_1d, expected_profit_tenths, gmv_1d, refund_gmv_1d); money in fen."""

ZERO: Figures = (0, 0, 0, 0, 0, 0, 0, 0)


def mix(x: int) -> int:
    """splitmix64's finaliser: a 64-bit hash good enough to drive figures."""
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def video_hash(seed: int, video_id: int) -> int:
    """A 32-bit per-video value; with `day_multiplier` it picks the row's figure set."""
    return mix((seed * 0x9E3779B97F4A7C15 ^ video_id) & M64) & 0xFFFFFFFF


def day_multiplier(seed: int, day_ordinal: int) -> int:
    """An odd 32-bit per-day value."""
    return (mix((seed * 0xD1B54A32D192ED03 ^ day_ordinal * 0x2545F4914F6CDD1D) & M64) >> 32) | 1


def pool_index(vhash: int, day_mult: int) -> int:
    """Which figure set a (video, day) row carries: differs by day and by video."""
    return ((vhash * day_mult) >> POOL_SHIFT) & POOL_MASK


def figures_for(key: int) -> Figures:
    """One realistic figure set. About a quarter are all zero, as in the docs' sample."""
    h = mix(key)
    kind = h & 0xF
    if kind < 4:
        return ZERO
    h2 = mix(h ^ 0x5851F42D4C957F2D)
    gmv = (h >> 4) & 0x3FFFF if kind >= 7 else 0
    refund = gmv * ((h >> 22) & 0x1F) // 100
    billing_gmv = gmv - gmv * ((h >> 27) & 0x7) // 100
    billing_refund = refund - refund * ((h >> 30) & 0x3) // 10
    ad = h2 & 0xFFFF if kind & 1 else 0
    feed = ad * ((h2 >> 16) & 0x3F) // 100
    active = (h2 >> 22) & 0x3FF
    profit_tenths = (billing_gmv - billing_refund) * 3 + ad * 4
    if (h2 >> 32) & 0x7:
        profit_tenths -= profit_tenths % 10  # most rows carry a whole number
    return (active, ad, billing_gmv, billing_refund, feed, profit_tenths, gmv, refund)


def figure_pool(seed: int) -> list[Figures]:
    """POOL_SIZE figure sets from the seed."""
    base = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & M64
    return [figures_for(base ^ i) for i in range(POOL_SIZE)]


def profit_json(tenths: int) -> bytes:
    """ExpectedProfit as JSON number text: `12` or `12.5` (never exponent form)."""
    whole, frac = divmod(tenths, 10)
    if frac == 0:
        return b"%d" % whole
    return b"%d.%d" % (whole, frac)


def profit_value(tenths: int) -> int | Decimal:
    """ExpectedProfit as the exact Python value: an int, or a Decimal with one decimal digit."""
    if tenths % 10 == 0:
        return tenths // 10
    return Decimal(tenths).scaleb(-1)


def changed(old: Figures, key: int) -> Figures:
    """Different figures for a late-settled row (never equal to `old`, never all zero)."""
    new = figures_for(key)
    if new in (old, ZERO):
        active, ad, bgmv, brefund, feed, profit, gmv, refund = old
        bump = 1 + (key & 0xFFF)
        new = (active + 1, ad, bgmv + bump, brefund, feed, profit + 30 * bump, gmv + bump, refund)
    return new
