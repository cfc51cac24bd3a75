"""The connection's timestamptz and numeric codecs (sync.db.codecs) against PostgreSQL itself:
what they encode is what the server reads from the same value as text, and what they decode is
what asyncpg's own codecs decode, value and form."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import AsyncIterator
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from sync.db import codecs

SHANGHAI = ZoneInfo("Asia/Shanghai")

NUMERIC_TEXTS = [
    "0", "00", "0.0", "0.00", "5", "12", "9999", "10000", "10001", "99999999", "100000000",
    "123456789012345678901234567890", "1.3", "12.5", "0.5", "0.05", "0.0001", "0.00001",
    "1000.01", "9999.9999", "12345678.1234", "123456789.1", "0.10", "1.2300", "-1.3", "-0",
    "-0.00", "-123456.789", "007", "007.50", "1E+5", "1e-7", "1.5E3", "-2.5e-10", "NaN",
    "Infinity", "-Infinity", "3.14159265358979323846264338327950288419716939937510",
]  # fmt: skip


def _random_texts(count: int) -> list[str]:
    rng = random.Random(7)
    out = []
    for _ in range(count):
        sign = rng.choice(["", "", "", "-"])
        whole = str(rng.randint(0, 10 ** rng.randint(0, 20)))
        scale = rng.randint(0, 12)
        fraction = "".join(rng.choice("0123456789") for _ in range(scale))
        out.append(sign + whole + ("." + fraction if scale else ""))
    return out


@pytest.fixture
async def connections(database_url: str) -> AsyncIterator[tuple[asyncpg.Connection, ...]]:
    """Two connections: one with our codecs, one with asyncpg's own."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    ours = await asyncpg.connect(dsn)
    theirs = await asyncpg.connect(dsn)
    await codecs.install(ours)
    try:
        yield ours, theirs
    finally:
        await ours.close()
        await theirs.close()


async def test_numeric_texts_encode_as_the_server_reads_them(
    connections: tuple[asyncpg.Connection, ...],
) -> None:
    ours, _ = connections
    for text in NUMERIC_TEXTS + _random_texts(2000):
        sent = await ours.fetchval("SELECT $1::numeric::text", text)
        read = await ours.fetchval("SELECT $1::text::numeric::text", text)
        assert sent == read, text


async def test_ints_decimals_and_floats_encode_as_asyncpg_does(
    connections: tuple[asyncpg.Connection, ...],
) -> None:
    ours, theirs = connections
    rng = random.Random(3)
    values: list[object] = [0, 1, 9999, 10_000, 99_999_999, 100_000_000, -1, -10_000, 2**63 - 1]
    values += [rng.randint(-(10**25), 10**25) for _ in range(300)]
    values += [Decimal(t) for t in NUMERIC_TEXTS + _random_texts(500)]
    values += [0.1, 1.5, -2.25, 1e-7]
    for value in values:
        mine = await ours.fetchval("SELECT $1::numeric::text", value)
        asyncpgs = await theirs.fetchval("SELECT $1::numeric::text", value)
        assert mine == asyncpgs, value


async def test_numerics_decode_as_asyncpg_decodes_them(
    connections: tuple[asyncpg.Connection, ...],
) -> None:
    ours, theirs = connections
    for text in NUMERIC_TEXTS + _random_texts(1000):
        mine = await ours.fetchval("SELECT $1::text::numeric", text)
        asyncpgs = await theirs.fetchval("SELECT $1::text::numeric", text)
        assert repr(mine) == repr(asyncpgs), text


def test_a_profit_too_fine_for_numeric_is_refused() -> None:
    with pytest.raises(ValueError, match="16383"):
        codecs.encode_numeric("0." + "1" * 16_384)


async def test_timestamps_encode_and_decode_as_asyncpg_does(
    connections: tuple[asyncpg.Connection, ...],
) -> None:
    ours, theirs = connections
    aware = [
        dt.datetime(2026, 11, 30, 23, 59, 59, 999_999, tzinfo=SHANGHAI),
        dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        dt.datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=dt.UTC),
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2262, 4, 11, 23, 47, 16, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))),
    ]
    others: list[object] = [
        dt.datetime(2026, 11, 30, 8, 0),  # naive: local time, as asyncpg takes it
        dt.date(2026, 11, 30),
        codecs.INFINITY,
        codecs.NEGATIVE_INFINITY,
    ]
    for value in aware + others:
        mine = await ours.fetchval("SELECT $1::timestamptz", value)
        asyncpgs = await theirs.fetchval("SELECT $1::timestamptz", value)
        assert mine == asyncpgs and repr(mine) == repr(asyncpgs), value
    for text in ["infinity", "-infinity", "2026-11-30 08:00:00.000001+08", "1900-02-28 12:00:00Z"]:
        mine = await ours.fetchval("SELECT $1::text::timestamptz", text)
        asyncpgs = await theirs.fetchval("SELECT $1::text::timestamptz", text)
        assert repr(mine) == repr(asyncpgs), text


async def test_unix_seconds_encode_as_to_timestamp_reads_them(
    connections: tuple[asyncpg.Connection, ...],
) -> None:
    ours, _ = connections
    for seconds in [0, 1, 946_684_800, 1_764_518_400, 1_692_878_009, -86_400, 4_102_444_800]:
        assert await ours.fetchval("SELECT $1::timestamptz = to_timestamp($2)", seconds, seconds)
    for seconds in [1_764_518_400.5, 1_764_518_400.000001, 1_764_518_400.123456, 0.25]:
        sent = await ours.fetchval("SELECT $1::timestamptz", seconds)
        assert sent == await ours.fetchval("SELECT to_timestamp($1::float8)", seconds)


def test_a_value_of_another_type_is_refused() -> None:
    with pytest.raises(TypeError, match="Unix seconds or a datetime"):
        codecs.encode_timestamptz("2026-11-30")


def test_a_page_s_answer_time_is_encoded_once_and_never_mistaken_for_another() -> None:
    """The float every row of a page shares is encoded once; another float, even the next one
    and even one equal to it, is encoded for itself."""
    answered = 1_764_518_400.25
    first = codecs.encode_timestamptz(answered)
    assert codecs.encode_timestamptz(answered) is first
    later = answered + 0.5
    assert codecs.encode_timestamptz(later) == ((1_764_518_400.75 - 946_684_800) * 1_000_000,)
    equal = float(str(answered))
    assert equal is not answered and codecs.encode_timestamptz(equal) == first
    assert codecs.encode_timestamptz(answered) == first


def test_a_profit_text_that_is_no_number_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'lots' is not a number"):
        codecs.encode_numeric("lots")
